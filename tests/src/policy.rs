//! Policy files for tests, written as YAML text (not through a YAML library,
//! so the tests see exactly what a person would write).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::Sandbox;

/// The name [`PolicyYaml::for_sandbox`] gives a policy.
pub const DEFAULT_POLICY_NAME: &str = "agent";

/// A policy file; a builder over its fields.
#[derive(Clone, Debug)]
pub struct PolicyYaml {
    pub name: String,
    /// `enforce` or `audit`.
    pub mode: String,
    /// `spec.selector.cgroupPath`, if any.
    pub cgroup_path: Option<String>,
    /// `spec.selector.interfaces` (omitted when empty).
    pub interfaces: Vec<String>,
    /// `spec.selector.podLabels` (omitted when empty), in order.
    pub pod_labels: Vec<(String, String)>,
    pub resolvers: Vec<String>,
    /// `spec.dns.minTTL` (omitted when `None`: the daemon's default).
    pub min_ttl: Option<u32>,
    /// `spec.dns.maxIPsPerName` (omitted when `None`).
    pub max_ips_per_name: Option<u32>,
    /// `spec.dns.maxIPsPerPattern` (omitted when `None`).
    pub max_ips_per_pattern: Option<u32>,
    /// (`fqdn` | `fqdnPattern` | `cidr`, value, ports, more fields as
    /// `key: value` lines, e.g. `tls: []`).
    pub rules: Vec<(String, String, Vec<String>, Vec<String>)>,
}

impl PolicyYaml {
    /// An enforcing policy named [`DEFAULT_POLICY_NAME`] on the sandbox's
    /// cgroup (as a path relative to the cgroup2 mount, as in `policies/`),
    /// with the world's DNS server on both families as resolvers, and no
    /// rules.
    pub fn for_sandbox(sandbox: &Sandbox) -> Self {
        Self {
            cgroup_path: Some(sandbox.cgroup_relative().to_owned()),
            ..Self::for_interfaces(&[])
        }
    }

    /// Like [`PolicyYaml::for_sandbox`], but selecting host-side interfaces
    /// (TC) instead of a cgroup.
    pub fn for_interfaces(interfaces: &[&str]) -> Self {
        Self {
            name: DEFAULT_POLICY_NAME.to_owned(),
            mode: "enforce".to_owned(),
            cgroup_path: None,
            interfaces: interfaces.iter().map(|i| (*i).to_owned()).collect(),
            pod_labels: Vec::new(),
            resolvers: vec!["10.77.0.1".to_owned(), "fd77::1".to_owned()],
            min_ttl: None,
            max_ips_per_name: None,
            max_ips_per_pattern: None,
            rules: Vec::new(),
        }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// `enforce` or `audit`.
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.to_owned();
        self
    }

    pub fn cgroup_path(mut self, path: &str) -> Self {
        self.cgroup_path = Some(path.to_owned());
        self
    }

    /// Adds host-side interfaces to the selector.
    pub fn interfaces(mut self, interfaces: &[&str]) -> Self {
        self.interfaces
            .extend(interfaces.iter().map(|i| (*i).to_owned()));
        self
    }

    /// Adds `podLabels` to the selector (DaemonSet mode: the daemon runs
    /// with `--kubernetes`). [`PolicyYaml::for_interfaces`]`(&[])` and this
    /// give a policy that selects pods only.
    pub fn pod_labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.pod_labels.extend(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self
    }

    pub fn resolvers(mut self, resolvers: &[&str]) -> Self {
        self.resolvers = resolvers.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    pub fn min_ttl(mut self, seconds: u32) -> Self {
        self.min_ttl = Some(seconds);
        self
    }

    pub fn max_ips_per_name(mut self, count: u32) -> Self {
        self.max_ips_per_name = Some(count);
        self
    }

    /// `spec.dns.maxIPsPerPattern`: addresses learned per `fqdnPattern`
    /// rule (all its names together) per TTL window.
    pub fn max_ips_per_pattern(mut self, count: u32) -> Self {
        self.max_ips_per_pattern = Some(count);
        self
    }

    pub fn fqdn(self, name: &str, ports: &[&str]) -> Self {
        self.rule("fqdn", name, ports)
    }

    /// An `fqdnPattern` rule, e.g. `"*.pkg.test"` or `"**.cdn.test"`.
    pub fn fqdn_pattern(self, pattern: &str, ports: &[&str]) -> Self {
        self.rule("fqdnPattern", pattern, ports)
    }

    pub fn cidr(self, cidr: &str, ports: &[&str]) -> Self {
        self.rule("cidr", cidr, ports)
    }

    /// A rule of any kind (`fqdn`, `fqdnPattern`, `cidr`, or a wrong one to
    /// test validation).
    pub fn rule(mut self, kind: &str, value: &str, ports: &[&str]) -> Self {
        self.rules.push((
            kind.to_owned(),
            value.to_owned(),
            ports.iter().map(|p| (*p).to_owned()).collect(),
            Vec::new(),
        ));
        self
    }

    /// Adds `key: value` to the last rule, e.g. `("tls", "[]")` to check no
    /// TLS server names on its ports, or `("quic", "allow")`.
    pub fn rule_field(mut self, key: &str, value: &str) -> Self {
        self.rules
            .last_mut()
            .expect("rule_field follows a rule")
            .3
            .push(format!("{key}: {value}"));
        self
    }

    pub fn to_yaml(&self) -> String {
        let quoted = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut yaml = format!(
            "apiVersion: openclaw.io/v1\n\
             kind: EgressPolicy\n\
             metadata:\n  name: {}\n\
             spec:\n  mode: {}\n\
             \x20 selector:\n",
            self.name, self.mode,
        );
        if let Some(path) = &self.cgroup_path {
            writeln!(yaml, "    cgroupPath: {path}").expect("writing to a String");
        }
        if !self.interfaces.is_empty() {
            writeln!(yaml, "    interfaces: [{}]", quoted(&self.interfaces))
                .expect("writing to a String");
        }
        if !self.pod_labels.is_empty() {
            yaml.push_str("    podLabels:\n");
            for (key, value) in &self.pod_labels {
                writeln!(yaml, "      {key}: \"{value}\"").expect("writing to a String");
            }
        }
        writeln!(yaml, "  dns:\n    resolvers: [{}]", quoted(&self.resolvers))
            .expect("writing to a String");
        if let Some(ttl) = self.min_ttl {
            writeln!(yaml, "    minTTL: {ttl}").expect("writing to a String");
        }
        if let Some(count) = self.max_ips_per_name {
            writeln!(yaml, "    maxIPsPerName: {count}").expect("writing to a String");
        }
        if let Some(count) = self.max_ips_per_pattern {
            writeln!(yaml, "    maxIPsPerPattern: {count}").expect("writing to a String");
        }
        if self.rules.is_empty() {
            yaml.push_str("  egress: []\n");
        } else {
            yaml.push_str("  egress:\n");
        }
        for (kind, value, ports, fields) in &self.rules {
            writeln!(
                yaml,
                "    - {kind}: \"{value}\"\n      ports: [{}]",
                quoted(ports)
            )
            .expect("writing to a String");
            for field in fields {
                writeln!(yaml, "      {field}").expect("writing to a String");
            }
        }
        yaml
    }

    /// Writes the policy to `dir/file` and returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> Result<PathBuf> {
        let path = dir.join(file);
        std::fs::write(&path, self.to_yaml())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_has_only_the_fields_that_are_set() {
        let policy = PolicyYaml::for_interfaces(&["eth0"])
            .mode("audit")
            .min_ttl(1)
            .max_ips_per_name(2)
            .fqdn_pattern("*.pkg.test", &["443/tcp"])
            .cidr("10.1.2.0/24", &["5432/tcp", "53/udp"]);
        assert_eq!(
            policy.to_yaml(),
            "apiVersion: openclaw.io/v1\nkind: EgressPolicy\nmetadata:\n  name: agent\n\
             spec:\n  mode: audit\n  selector:\n    interfaces: [\"eth0\"]\n\
             \x20 dns:\n    resolvers: [\"10.77.0.1\", \"fd77::1\"]\n    minTTL: 1\n    maxIPsPerName: 2\n\
             \x20 egress:\n    - fqdnPattern: \"*.pkg.test\"\n      ports: [\"443/tcp\"]\n\
             \x20   - cidr: \"10.1.2.0/24\"\n      ports: [\"5432/tcp\", \"53/udp\"]\n"
        );
        let pods =
            PolicyYaml::for_interfaces(&[]).pod_labels(&[("app", "openclaw"), ("tier", "a")]);
        assert!(
            pods.to_yaml().contains(
                "  selector:\n    podLabels:\n      app: \"openclaw\"\n      tier: \"a\"\n  dns:\n"
            ),
            "{}",
            pods.to_yaml()
        );
        let capped = PolicyYaml::for_interfaces(&["eth0"]).max_ips_per_pattern(3);
        assert!(
            capped
                .to_yaml()
                .contains("    resolvers: [\"10.77.0.1\", \"fd77::1\"]\n    maxIPsPerPattern: 3\n"),
            "{}",
            capped.to_yaml()
        );
        let empty = PolicyYaml::for_interfaces(&[]).cgroup_path("agent");
        assert_eq!(
            empty.to_yaml(),
            "apiVersion: openclaw.io/v1\nkind: EgressPolicy\nmetadata:\n  name: agent\n\
             spec:\n  mode: enforce\n  selector:\n    cgroupPath: agent\n\
             \x20 dns:\n    resolvers: [\"10.77.0.1\", \"fd77::1\"]\n  egress: []\n"
        );
    }
}
