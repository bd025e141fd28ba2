//! Errors in the values of `spec.selector`.

use super::*;

#[test]
fn policy_selector_must_select_something() {
    let yaml = with(
        "    cgroupPath: /sys/fs/cgroup/agent\n",
        "    interfaces: []\n",
    );
    assert_rejected(&yaml, Some(7), Some("spec.selector"), "selects nothing");
}

#[test]
fn policy_cgroup_path_must_not_climb() {
    let yaml = with("/sys/fs/cgroup/agent", "/sys/fs/cgroup/../agent");
    assert_rejected(
        &yaml,
        Some(8),
        Some("spec.selector.cgroupPath"),
        "contains `..`",
    );
    assert_rejected(
        &with("/sys/fs/cgroup/agent", "\"\""),
        Some(8),
        Some("spec.selector.cgroupPath"),
        "must not be empty",
    );
}

#[test]
fn policy_interface_names() {
    let yaml = with(
        "    cgroupPath: /sys/fs/cgroup/agent\n",
        "    interfaces:\n      - eth0\n      - a-very-long-name0\n",
    );
    assert_rejected(
        &yaml,
        Some(10),
        Some("spec.selector.interfaces[1]"),
        "1 to 15 characters",
    );
    let yaml = with(
        "    cgroupPath: /sys/fs/cgroup/agent\n",
        "    interfaces: [eth0, eth0]\n",
    );
    assert_rejected(
        &yaml,
        Some(8),
        Some("spec.selector.interfaces[1]"),
        "listed twice",
    );
}

#[test]
fn policy_pod_labels() {
    let yaml = with(
        "    cgroupPath: /sys/fs/cgroup/agent\n",
        "    podLabels:\n      app: ok\n      -bad: x\n",
    );
    assert_rejected(
        &yaml,
        Some(10),
        Some("spec.selector.podLabels.-bad"),
        "label key `-bad`",
    );
    let yaml = with(
        "    cgroupPath: /sys/fs/cgroup/agent\n",
        "    podLabels:\n      app: \"not ok\"\n",
    );
    assert_rejected(
        &yaml,
        Some(9),
        Some("spec.selector.podLabels.app"),
        "label value `not ok`",
    );
    let yaml = with(
        "    cgroupPath: /sys/fs/cgroup/agent\n",
        "    podLabels: { version: 2 }\n",
    );
    assert_rejected(
        &yaml,
        Some(8),
        Some("spec.selector.podLabels.version"),
        "expected a string",
    );
}
