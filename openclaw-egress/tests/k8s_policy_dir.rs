//! Policies from a ConfigMap volume: the directory is laid out and updated
//! the way the kubelet does it (files are symlinks into `..data`, which is
//! swapped to a new timestamped directory in one rename), starting from the
//! ConfigMap in `deploy/`.

mod k8s_common;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use k8s_common::{deploy_dir, yaml_documents};
use k8s_openapi::api::core::v1::ConfigMap;
use openclaw_egress::k8s::{PolicyChange, PolicyDir, PolicyDirError, PolicyFileError};

/// A ConfigMap volume as the kubelet's atomic writer maintains it.
struct ConfigMapVolume {
    dir: tempfile::TempDir,
}

impl ConfigMapVolume {
    fn new(data: &BTreeMap<String, String>) -> ConfigMapVolume {
        let volume = ConfigMapVolume {
            dir: tempfile::tempdir().unwrap(),
        };
        volume.update(data);
        volume
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a new timestamped directory, swaps `..data` to it with one
    /// rename, then fixes the visible symlinks and drops the old directory.
    fn update(&self, data: &BTreeMap<String, String>) {
        static GENERATION: AtomicU32 = AtomicU32::new(0);
        let root = self.path();
        let generation = format!(
            "..2026_11_24_09_00_00.{:09}",
            GENERATION.fetch_add(1, Ordering::Relaxed)
        );
        fs::create_dir(root.join(&generation)).unwrap();
        for (key, value) in data {
            fs::write(root.join(&generation).join(key), value).unwrap();
        }
        let old = fs::read_link(root.join("..data")).ok();
        symlink(&generation, root.join("..data_tmp")).unwrap();
        fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        for entry in fs::read_dir(root).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !data.contains_key(&name) {
                fs::remove_file(root.join(&name)).unwrap();
            }
        }
        for key in data.keys() {
            if fs::symlink_metadata(root.join(key)).is_err() {
                symlink(PathBuf::from("..data").join(key), root.join(key)).unwrap();
            }
        }
        if let Some(old) = old {
            fs::remove_dir_all(root.join(old)).unwrap();
        }
    }
}

fn deployed_policies() -> BTreeMap<String, String> {
    let doc = yaml_documents(&deploy_dir().join("configmap-policies.yaml")).remove(0);
    let config_map: ConfigMap = serde_json::from_value(doc).unwrap();
    config_map.data.unwrap()
}

/// A change, short: `apply NAME`, `remove NAME`, `rejected FILE`.
fn summary(changes: &[PolicyChange]) -> Vec<String> {
    changes
        .iter()
        .map(|change| match change {
            PolicyChange::Apply { policy, .. } => format!("apply {}", policy.name),
            PolicyChange::Remove { name, .. } => format!("remove {name}"),
            PolicyChange::Rejected { file, .. } => {
                format!("rejected {}", file.file_name().unwrap().to_string_lossy())
            }
        })
        .collect()
}

fn applied_names(dir: &PolicyDir) -> Vec<String> {
    dir.applied().map(|p| p.name.clone()).collect()
}

#[test]
fn k8s_policy_dir_follows_a_config_map_volume() {
    let mut data = deployed_policies();
    let volume = ConfigMapVolume::new(&data);
    // The kubelet's bookkeeping is there and must be ignored.
    assert!(volume.path().join("..data").is_symlink());
    let mut dir = PolicyDir::new(volume.path());

    let first = dir.poll().unwrap();
    assert_eq!(
        summary(&first),
        ["apply coding-agent", "apply research-agent"]
    );
    match &first[0] {
        PolicyChange::Apply { file, policy } => {
            assert_eq!(file, &volume.path().join("coding-agent.yaml"));
            assert_eq!(policy.selector.pod_labels["role"], "coding-agent");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        summary(&dir.poll().unwrap()),
        Vec::<String>::new(),
        "nothing changed"
    );

    // A new generation with only a comment changed: same policy, nothing
    // to re-apply.
    data.insert(
        "coding-agent.yaml".into(),
        format!("# reviewed\n{}", data["coding-agent.yaml"]),
    );
    volume.update(&data);
    assert_eq!(summary(&dir.poll().unwrap()), Vec::<String>::new());

    // A rule changed.
    data.insert(
        "coding-agent.yaml".into(),
        data["coding-agent.yaml"].replace("fqdn: pypi.org", "fqdn: test.pypi.org"),
    );
    volume.update(&data);
    assert_eq!(summary(&dir.poll().unwrap()), ["apply coding-agent"]);

    // A broken edit: reported once, and the last good policy stays.
    let good = data["coding-agent.yaml"].clone();
    data.insert(
        "coding-agent.yaml".into(),
        good.replace("ports: [443/tcp]", "ports: [443/tcpp]"),
    );
    volume.update(&data);
    let rejected = dir.poll().unwrap();
    assert_eq!(summary(&rejected), ["rejected coding-agent.yaml"]);
    assert!(
        matches!(&rejected[0], PolicyChange::Rejected { error: PolicyFileError::Invalid(e), .. } if e.to_string().contains("443/tcpp")),
        "{rejected:?}"
    );
    assert_eq!(
        summary(&dir.poll().unwrap()),
        Vec::<String>::new(),
        "reported once"
    );
    assert_eq!(applied_names(&dir), ["coding-agent", "research-agent"]);
    let kept = dir.applied().find(|p| p.name == "coding-agent").unwrap();
    assert!(
        format!("{kept:?}").contains("test.pypi.org"),
        "the last good version"
    );

    // Fixed again, with the same content as the applied one: nothing to do.
    data.insert("coding-agent.yaml".into(), good.clone());
    volume.update(&data);
    assert_eq!(summary(&dir.poll().unwrap()), Vec::<String>::new());

    // Renamed inside its file: the new name is applied before the old one
    // is removed (never a moment without either).
    data.insert(
        "coding-agent.yaml".into(),
        good.replace("name: coding-agent", "name: coding-agent-v2"),
    );
    volume.update(&data);
    assert_eq!(
        summary(&dir.poll().unwrap()),
        ["apply coding-agent-v2", "remove coding-agent"]
    );

    // A second file with a name already taken: the first file keeps it.
    data.insert("zz-copy.yaml".into(), data["research-agent.yaml"].clone());
    volume.update(&data);
    let duplicate = dir.poll().unwrap();
    assert_eq!(summary(&duplicate), ["rejected zz-copy.yaml"]);
    assert!(matches!(
        &duplicate[0],
        PolicyChange::Rejected { error: PolicyFileError::DuplicateName { name, other, .. }, .. }
            if name == "research-agent" && other.ends_with("research-agent.yaml")
    ));

    // Keys removed from the ConfigMap: their policies go.
    data.remove("research-agent.yaml");
    volume.update(&data);
    // zz-copy.yaml now defines research-agent alone: it is the same policy,
    // so it stays applied without a change.
    assert_eq!(summary(&dir.poll().unwrap()), Vec::<String>::new());
    data.remove("zz-copy.yaml");
    volume.update(&data);
    assert_eq!(summary(&dir.poll().unwrap()), ["remove research-agent"]);
    assert_eq!(applied_names(&dir), ["coding-agent-v2"]);
}

#[test]
fn k8s_policy_dir_reads_only_yaml_files() {
    let volume = ConfigMapVolume::new(&BTreeMap::from([
        ("README.txt".to_owned(), "not a policy".to_owned()),
        ("notes.json".to_owned(), "{}".to_owned()),
        (
            "agent.yml".to_owned(),
            deployed_policies()["research-agent.yaml"].clone(),
        ),
    ]));
    fs::create_dir(volume.path().join("subdir.yaml")).unwrap();
    let mut dir = PolicyDir::new(volume.path());
    assert_eq!(summary(&dir.poll().unwrap()), ["apply research-agent"]);
}

#[test]
fn k8s_policy_dir_unreadable_directory_changes_nothing() {
    let volume = ConfigMapVolume::new(&deployed_policies());
    let mut dir = PolicyDir::new(volume.path().join("missing"));
    assert!(matches!(dir.poll(), Err(PolicyDirError::Read { .. })));
    assert_eq!(dir.applied().count(), 0);

    let mut dir = PolicyDir::new(volume.path());
    dir.poll().unwrap();
    let path = volume.path().to_path_buf();
    drop(volume);
    assert!(!path.exists());
    assert!(matches!(dir.poll(), Err(PolicyDirError::Read { .. })));
    assert_eq!(
        applied_names(&dir),
        ["coding-agent", "research-agent"],
        "a failed read is not an empty directory"
    );
}
