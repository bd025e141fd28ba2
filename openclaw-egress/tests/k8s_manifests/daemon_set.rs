//! The DaemonSet's wiring (mounts, environment, probes) and the image it runs.

use std::{collections::BTreeMap, fs, path::Path};

use super::{daemon_container, load, the};

#[test]
fn k8s_manifests_daemon_set_wiring() {
    let manifests = load();
    let namespace = the(&manifests.namespaces, "Namespace")
        .metadata
        .name
        .clone()
        .unwrap();
    let daemon_set = the(&manifests.daemon_sets, "DaemonSet");
    let spec = daemon_set.spec.as_ref().unwrap();
    let template = &spec.template;
    let pod = template.spec.as_ref().unwrap();
    let container = daemon_container(&manifests);

    // Everything namespaced is in the one namespace.
    let namespaces: Vec<Option<&String>> = [
        daemon_set.metadata.namespace.as_ref(),
        manifests.service_accounts[0].metadata.namespace.as_ref(),
        manifests.config_maps[0].metadata.namespace.as_ref(),
    ]
    .into();
    assert!(
        namespaces.iter().all(|n| *n == Some(&namespace)),
        "{namespaces:?}"
    );
    // The namespace allows what the pod needs (Pod Security Admission).
    assert_eq!(
        manifests.namespaces[0].metadata.labels.as_ref().unwrap()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    // The selector selects the template.
    let template_labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    for (key, value) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(template_labels.get(key), Some(value));
    }

    assert_eq!(
        pod.service_account_name.as_ref(),
        manifests.service_accounts[0].metadata.name.as_ref()
    );
    assert_ne!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    // Every taint: one toleration with operator Exists, no key, no effect.
    let toleration = the(pod.tolerations.as_deref().unwrap(), "toleration");
    assert_eq!(toleration.operator.as_deref(), Some("Exists"));
    assert!(toleration.key.is_none() && toleration.effect.is_none());
    assert!(toleration.toleration_seconds.is_none());

    // NODE_NAME from the downward API.
    let node_name = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == openclaw_egress::k8s::NODE_NAME_ENV)
        .expect("NODE_NAME is set");
    assert!(node_name.value.is_none());
    let field = node_name
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("NODE_NAME comes from a fieldRef");
    assert_eq!(field.field_path, "spec.nodeName");

    // The command line.
    let mut command = container.command.clone().unwrap();
    command.extend(container.args.clone().unwrap());
    let arg_after = |flag: &str| {
        let i = command
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing"));
        command[i + 1].clone()
    };
    assert_eq!(&command[..2], ["openclaw-egress", "daemon"]);
    assert!(command.contains(&"--kubernetes".to_owned()));
    assert_eq!(arg_after("--log-format"), "json");
    let metrics_addr = arg_after("--metrics-addr");

    // The metrics port: the daemon's address, the container port, the
    // probe and the scrape annotations all agree.
    let port = the(container.ports.as_deref().unwrap(), "port");
    assert_eq!(metrics_addr, format!("0.0.0.0:{}", port.container_port));
    assert_eq!(
        port.host_port,
        Some(port.container_port),
        "hostNetwork: the same port"
    );
    let probe = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/metrics"));
    assert_eq!(
        probe.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
            port.name.clone().unwrap()
        )
    );
    let annotations = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        port.container_port.to_string()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Resources: requests and a memory limit.
    let resources = container.resources.as_ref().unwrap();
    let requests = resources.requests.as_ref().unwrap();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"));

    // Mounts: each from the host path it claims, the policies from the
    // ConfigMap at the directory given to --policy-dir.
    let volumes: BTreeMap<&str, _> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mounts: BTreeMap<&str, _> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.as_str(), m))
        .collect();
    for (path, read_only) in [
        ("/sys/fs/cgroup", true),
        ("/sys/fs/bpf", false),
        ("/run/openclaw-egress", false),
    ] {
        let mount = mounts
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not mounted"));
        let host = volumes[mount.name.as_str()].host_path.as_ref().unwrap();
        assert_eq!(host.path, path);
        assert_eq!(mount.read_only.unwrap_or(false), read_only, "{path}");
    }
    assert_eq!(
        mounts["/sys/fs/bpf"].mount_propagation.as_deref(),
        Some("HostToContainer")
    );
    let policy_dir = arg_after("--policy-dir");
    assert_eq!(policy_dir, openclaw_egress::k8s::DEFAULT_POLICY_DIR);
    let policies = mounts
        .get(policy_dir.as_str())
        .expect("the policy dir is mounted");
    assert_eq!(policies.read_only, Some(true));
    let config_map = volumes[policies.name.as_str()].config_map.as_ref().unwrap();
    assert_eq!(
        Some(&config_map.name),
        manifests.config_maps[0].metadata.name.as_ref()
    );
    assert!(config_map.items.is_none(), "every key becomes a file");
    // The API socket's default path is in the mounted directory.
    assert!(Path::new(openclaw_egress::api::DEFAULT_SOCKET).starts_with("/run/openclaw-egress"));
}

#[test]
fn k8s_manifests_daemon_set_runs_the_image_xtask_builds() {
    // `cargo xtask image` tags `<IMAGE>:<version>`; the DaemonSet must name
    // exactly that (a kubelet given the saved archive finds it by name).
    let manifests = load();
    let container = daemon_container(&manifests);
    assert_eq!(
        container.image.as_deref(),
        Some(
            format!(
                "ghcr.io/openclaw/openclaw-egress:{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
    let xtask_image =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/src/image.rs"))
            .unwrap();
    assert!(xtask_image.contains("pub const IMAGE: &str = \"ghcr.io/openclaw/openclaw-egress\";"));
}
