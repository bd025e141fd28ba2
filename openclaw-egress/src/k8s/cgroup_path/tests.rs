//! Pod cgroup paths for both drivers and QoS classes, layout detection and the bounded search.

use super::*;

const UID: &str = "3f2a6c1e-8b4d-4e7a-9c1f-2d5e8a7b9c01";

#[test]
fn k8s_cgroup_dir_systemd_escapes_dashes_and_nests_by_qos() {
    let dir = |qos| pod_cgroup_dir(CgroupDriver::Systemd, qos, UID);
    assert_eq!(
        dir(QosClass::Guaranteed),
        Path::new("kubepods.slice/kubepods-pod3f2a6c1e_8b4d_4e7a_9c1f_2d5e8a7b9c01.slice")
    );
    assert_eq!(
        dir(QosClass::Burstable),
        Path::new(
            "kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod3f2a6c1e_8b4d_4e7a_9c1f_2d5e8a7b9c01.slice"
        )
    );
    assert_eq!(
        dir(QosClass::BestEffort),
        Path::new(
            "kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod3f2a6c1e_8b4d_4e7a_9c1f_2d5e8a7b9c01.slice"
        )
    );
}

#[test]
fn k8s_cgroup_dir_cgroupfs_keeps_the_uid_and_nests_by_qos() {
    let dir = |qos| pod_cgroup_dir(CgroupDriver::Cgroupfs, qos, UID);
    assert_eq!(
        dir(QosClass::Guaranteed),
        Path::new("kubepods/pod3f2a6c1e-8b4d-4e7a-9c1f-2d5e8a7b9c01")
    );
    assert_eq!(
        dir(QosClass::Burstable),
        Path::new("kubepods/burstable/pod3f2a6c1e-8b4d-4e7a-9c1f-2d5e8a7b9c01")
    );
    assert_eq!(
        dir(QosClass::BestEffort),
        Path::new("kubepods/besteffort/pod3f2a6c1e-8b4d-4e7a-9c1f-2d5e8a7b9c01")
    );
}

#[test]
fn k8s_cgroup_pod_dir_names_match_only_their_own_uid() {
    let escaped = "3f2a6c1e_8b4d_4e7a_9c1f_2d5e8a7b9c01";
    for name in [
        format!("pod{UID}"),
        format!("kubepods-pod{escaped}.slice"),
        format!("kubepods-burstable-pod{escaped}.slice"),
        format!("kubelet-kubepods-besteffort-pod{escaped}.slice"),
    ] {
        assert!(is_pod_dir_name(&name, UID), "{name}");
    }
    for name in [
        format!("pod{UID}0"),
        format!("xpod{UID}"),
        format!("kubepods-pod{escaped}.scope"),
        format!("kubepods-pod{UID}.slice"),
        format!("kubepods-burstable-pod{escaped}0.slice"),
        "kubepods-burstable.slice".to_owned(),
    ] {
        assert!(!is_pod_dir_name(&name, UID), "{name}");
    }
}

#[test]
fn k8s_cgroup_uids_that_could_leave_the_tree_are_refused() {
    let layout = CgroupLayout::with_driver(Path::new("/nonexistent"), CgroupDriver::Cgroupfs);
    for uid in ["", "../../etc", "a/b", "a b", &"a".repeat(65)] {
        assert!(
            matches!(
                layout.pod_cgroup(uid, Some(QosClass::Burstable)),
                Err(PodCgroupError::InvalidUid(_))
            ),
            "{uid:?}"
        );
    }
    assert!(matches!(
        layout.pod_cgroup(UID, Some(QosClass::Burstable)),
        Err(PodCgroupError::NotFound { .. })
    ));
}

#[test]
fn k8s_cgroup_qos_classes_are_the_api_spellings() {
    assert_eq!(
        QosClass::from_status("Guaranteed"),
        Some(QosClass::Guaranteed)
    );
    assert_eq!(
        QosClass::from_status("Burstable"),
        Some(QosClass::Burstable)
    );
    assert_eq!(
        QosClass::from_status("BestEffort"),
        Some(QosClass::BestEffort)
    );
    assert_eq!(QosClass::from_status("besteffort"), None);
    assert_eq!(QosClass::from_status(""), None);
}
