//! `spec.selector`: which workloads a policy applies to.

use std::path::{Component, Path, PathBuf};

use super::{error::Issue, labels, model::Selector, path::FieldPath, raw::RawSelector};

/// `IFNAMSIZ` (16) less the terminating NUL.
const MAX_INTERFACE_NAME_LEN: usize = 15;

pub(super) fn selector(raw: RawSelector, path: &FieldPath) -> Result<Selector, Issue> {
    if raw.cgroup_path.is_none() && raw.interfaces.is_empty() && raw.pod_labels.is_empty() {
        return Err(Issue::at_key(
            path.clone(),
            "the selector selects nothing; set at least one of cgroupPath, interfaces or podLabels",
        ));
    }
    let cgroup_path = match raw.cgroup_path {
        Some(cgroup_path) => Some(
            check_cgroup_path(&cgroup_path)
                .map_err(|m| Issue::at_value(path.key("cgroupPath"), m))?,
        ),
        None => None,
    };

    let interfaces_path = path.key("interfaces");
    for (i, name) in raw.interfaces.iter().enumerate() {
        let issue = |message| Issue::at_value(interfaces_path.index(i), message);
        check_interface(name).map_err(issue)?;
        if let Some(first) = raw.interfaces[..i].iter().position(|other| other == name) {
            return Err(issue(format!(
                "interface `{name}` is listed twice (also interfaces[{first}])"
            )));
        }
    }

    let labels_path = path.key("podLabels");
    for (key, value) in &raw.pod_labels {
        labels::check_key(key).map_err(|m| Issue::at_key(labels_path.key(key), m))?;
        labels::check_value(value).map_err(|m| Issue::at_value(labels_path.key(key), m))?;
    }

    Ok(Selector {
        cgroup_path,
        interfaces: raw.interfaces,
        pod_labels: raw.pod_labels,
    })
}

/// Relative paths are resolved against the cgroup2 mount when the policy is
/// applied; `..` could climb out of it, so it is refused in either form.
fn check_cgroup_path(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("cgroupPath must not be empty".into());
    }
    let path = Path::new(raw);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "cgroupPath `{raw}` contains `..`; name the cgroup directory directly"
        ));
    }
    Ok(path.to_path_buf())
}

/// The kernel's own rules for interface names (`dev_valid_name`).
fn check_interface(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(format!(
            "interface name `{name}` must be 1 to {MAX_INTERFACE_NAME_LEN} characters long (it is {})",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not an interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name `{name}` contains {c:?}, which Linux does not allow"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_selector_interface_names_follow_the_kernel() {
        for name in ["eth0", "veth1234", "lxc_abc-01", &"i".repeat(15)] {
            assert_eq!(check_interface(name), Ok(()), "{name}");
        }
        for name in ["", ".", "..", "a/b", "a b", "eth0:1", &"i".repeat(16)] {
            assert!(check_interface(name).is_err(), "{name}");
        }
    }

    #[test]
    fn policy_selector_cgroup_paths_stay_inside_the_mount() {
        assert_eq!(
            check_cgroup_path("openclaw-demo"),
            Ok(PathBuf::from("openclaw-demo"))
        );
        assert_eq!(
            check_cgroup_path("/sys/fs/cgroup/a/b"),
            Ok(PathBuf::from("/sys/fs/cgroup/a/b"))
        );
        assert!(
            check_cgroup_path("")
                .unwrap_err()
                .contains("must not be empty")
        );
        assert!(
            check_cgroup_path("../etc")
                .unwrap_err()
                .contains("contains `..`")
        );
        assert!(
            check_cgroup_path("/sys/fs/cgroup/a/../b")
                .unwrap_err()
                .contains("contains `..`")
        );
    }
}
