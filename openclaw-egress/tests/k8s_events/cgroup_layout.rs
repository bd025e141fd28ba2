//! Detecting the kubelet's cgroup layout, and the bounded search fallback.

use std::fs;

use openclaw_egress::k8s::{CgroupDriver, CgroupLayout, PodCgroupError, QosClass};

#[test]
fn k8s_cgroup_layout_detection() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let detect = || CgroupLayout::detect(mount).driver();
    assert_eq!(detect(), None, "an empty tree");
    fs::write(mount.join("kubepods"), "").unwrap();
    assert_eq!(detect(), None, "a file is not the kubelet's directory");
    fs::remove_file(mount.join("kubepods")).unwrap();
    fs::create_dir(mount.join("kubepods")).unwrap();
    assert_eq!(detect(), Some(CgroupDriver::Cgroupfs));
    fs::create_dir(mount.join("kubepods.slice")).unwrap();
    assert_eq!(detect(), None, "both: ambiguous, so search");
    fs::remove_dir(mount.join("kubepods")).unwrap();
    assert_eq!(detect(), Some(CgroupDriver::Systemd));
    assert_eq!(CgroupLayout::detect(mount).mount(), mount);
}

#[test]
fn k8s_cgroup_layout_notices_a_kubelet_that_starts_later() {
    // At boot the daemon may come up before the kubelet has made its
    // directory; the detected layout keeps looking, a searching one not.
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let detected = CgroupLayout::detect(mount);
    let searching = CgroupLayout::searching(mount);
    assert_eq!(detected.driver(), None);
    let uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let pod = mount
        .join("kubepods.slice/kubepods-burstable.slice")
        .join("kubepods-burstable-pod0a1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice");
    fs::create_dir_all(&pod).unwrap();
    assert_eq!(detected.driver(), Some(CgroupDriver::Systemd));
    assert_eq!(searching.driver(), None);
    assert_eq!(
        detected.pod_cgroup(uid, Some(QosClass::Burstable)).unwrap(),
        pod
    );
    assert_eq!(searching.pod_cgroup(uid, None).unwrap(), pod);
    let fixed = CgroupLayout::with_driver(mount, CgroupDriver::Cgroupfs);
    assert!(
        fixed.pod_cgroup(uid, None).is_err(),
        "a configured driver is not second-guessed"
    );
}

#[test]
fn k8s_cgroup_search_is_bounded_and_skips_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let layout = CgroupLayout::searching(mount);
    let not_found = |layout: &CgroupLayout| {
        matches!(
            layout.pod_cgroup(uid, Some(QosClass::Burstable)),
            Err(PodCgroupError::NotFound { .. })
        )
    };
    assert!(not_found(&layout));

    // Under a container scope: never a pod's place, not searched.
    let under_scope = mount.join("system.slice/containerd.service/x.scope");
    fs::create_dir_all(under_scope.join(format!("pod{uid}"))).unwrap();
    assert!(not_found(&layout));

    // Depth 5 (the limit) is found, depth 6 is not.
    let deep5 = mount.join("a/b/c/d").join(format!("pod{uid}"));
    fs::create_dir_all(&deep5).unwrap();
    assert_eq!(layout.pod_cgroup(uid, None).unwrap(), deep5);
    fs::remove_dir(&deep5).unwrap();
    let deep6 = mount.join("a/b/c/d/e").join(format!("pod{uid}"));
    fs::create_dir_all(&deep6).unwrap();
    assert!(not_found(&layout));

    // The shallowest match wins (breadth first).
    let shallow = mount.join("kubepods/besteffort").join(format!("pod{uid}"));
    fs::create_dir_all(&shallow).unwrap();
    let also = mount
        .join("x/kubepods/besteffort")
        .join(format!("pod{uid}"));
    fs::create_dir_all(&also).unwrap();
    assert_eq!(layout.pod_cgroup(uid, None).unwrap(), shallow);

    // A systemd-style name with any prefix.
    let kind = mount
        .join("kubelet.slice/kubelet-kubepods.slice")
        .join(format!(
            "kubelet-kubepods-pod{}.slice",
            uid.replace('-', "_")
        ));
    fs::create_dir_all(&kind).unwrap();
    fs::remove_dir(&shallow).unwrap();
    fs::remove_dir(&also).unwrap();
    assert_eq!(layout.pod_cgroup(uid, None).unwrap(), kind);

    // A missing mount is an error of its own, not "not found".
    let gone = CgroupLayout::searching(&mount.join("nonexistent"));
    assert!(matches!(
        gone.pod_cgroup(uid, None),
        Err(PodCgroupError::Search { .. })
    ));
}

#[test]
fn k8s_cgroup_known_driver_does_not_search() {
    // With a detected driver only the computed paths count: a directory
    // elsewhere named after the pod is not taken.
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    fs::create_dir(mount.join("kubepods.slice")).unwrap();
    let uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    fs::create_dir_all(mount.join("elsewhere").join(format!("pod{uid}"))).unwrap();
    let layout = CgroupLayout::detect(mount);
    let error = layout
        .pod_cgroup(uid, Some(QosClass::BestEffort))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("kubepods-besteffort-pod0a1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice"),
        "the error names the path it looked for: {message}"
    );
    assert!(message.contains("systemd"), "{message}");
}
