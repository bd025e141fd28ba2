//! Pointing the demo policy at the sandbox's cgroup.
//!
//! `policies/openclaw.yaml` selects `cgroupPath: openclaw-demo`, but every
//! sandbox creates a cgroup with a unique name (so the demo can run while
//! the end-to-end tests do, and leftovers of a killed run are recognisable).
//! The demo therefore applies a copy of the policy whose only change is the
//! `cgroupPath` value. The copy is made line by line rather than through a
//! YAML parser so that it stays byte-for-byte the published file otherwise,
//! comments included.

use anyhow::{Result, bail};

/// `yaml` with the value of its one `cgroupPath:` line replaced by `cgroup`,
/// and the value it had.
///
/// Only the block style the policies use (`cgroupPath: VALUE` on a line of
/// its own, without a trailing comment) is supported; anything else is an
/// error rather than a guess.
pub fn cgroup_path(yaml: &str, cgroup: &str) -> Result<(String, String)> {
    let mut old = None;
    let mut out = String::with_capacity(yaml.len() + cgroup.len());
    for line in yaml.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let trimmed = body.trim_start();
        let Some(value) = trimmed.strip_prefix("cgroupPath:") else {
            out.push_str(line);
            continue;
        };
        if old.is_some() {
            bail!("more than one `cgroupPath:` line");
        }
        if value.contains('#') {
            bail!("`cgroupPath:` line with a comment: {body:?}");
        }
        let indent = &body[..body.len() - trimmed.len()];
        old = Some(value.trim().to_owned());
        out.push_str(&format!("{indent}cgroupPath: {cgroup}{newline}"));
    }
    match old {
        Some(old) => Ok((out, old)),
        None => bail!("no `cgroupPath:` line (the demo needs a cgroup selector)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_value() {
        let yaml =
            "spec:\n  selector:\n    # The cgroup.\n    cgroupPath: openclaw-demo\n  dns: {}\n";
        let (new, old) = cgroup_path(yaml, "oce-12-0").unwrap();
        assert_eq!(old, "openclaw-demo");
        assert_eq!(
            new,
            "spec:\n  selector:\n    # The cgroup.\n    cgroupPath: oce-12-0\n  dns: {}\n"
        );
    }

    #[test]
    fn the_published_demo_policy_can_be_retargeted() {
        let yaml = include_str!("../../../policies/openclaw.yaml");
        let (new, old) = cgroup_path(yaml, "oce-1-0").unwrap();
        assert_eq!(old, "openclaw-demo");
        assert_eq!(new.replace("oce-1-0", "openclaw-demo"), yaml);
    }

    #[test]
    fn refuses_what_it_cannot_edit_safely() {
        assert!(cgroup_path("spec: {}\n", "x").is_err());
        assert!(cgroup_path("cgroupPath: a\ncgroupPath: b\n", "x").is_err());
        assert!(cgroup_path("cgroupPath: a # comment\n", "x").is_err());
    }
}
