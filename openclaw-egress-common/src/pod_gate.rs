//! The pod gate: what holds a pod's first packets until its policy is in
//! force (DaemonSet mode).
//!
//! The kubelet creates a pod's cgroup and starts its containers moments
//! later; attaching the pod's instance takes the daemon a few milliseconds
//! after it sees the directory. To leave no window, one program is attached
//! to the kubepods root cgroup: cgroup programs attached to an ancestor are
//! in force in a new cgroup from its `mkdir`, with no work by anybody.
//! While the daemon waits for a selected pod's cgroup (the gate is *armed*),
//! every pod cgroup created after the arming is held (all it sends is
//! dropped) until the daemon marks it: [`GATE_PASS`] once the pod's policy
//! is attached, or at once for a pod no policy selects.
//!
//! A pod's cgroup is at one level below the root (Guaranteed pods) or two
//! (under a QoS-class cgroup, which the daemon marks [`GATE_DESCEND`]).
//! Cgroup ids grow without end (kernfs allocates them cyclically with a
//! generation in the high bits), so "created after the arming" is
//! `id > armed_after`.

/// `POD_GATE[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodGate {
    /// 0: disarmed (nothing is held). Otherwise a cgroup id taken when the
    /// gate was armed: pod cgroups with a greater id are held until marked.
    pub armed_after: u64,
    /// The level of the kubepods root cgroup (the cgroup2 root is 0).
    pub root_level: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<PodGate>() == 16);

/// A `POD_GATE_MARKS` value: the pod in this cgroup may send (its policy is
/// in force, or no policy selects it).
pub const GATE_PASS: u8 = 1;
/// A `POD_GATE_MARKS` value: a QoS-class cgroup; the pods are one level
/// below.
pub const GATE_DESCEND: u8 = 2;

/// Marks kept at once: every pod cgroup created while the gate is armed,
/// and the QoS-class cgroups.
pub const POD_GATE_MARKS_MAX_ENTRIES: u32 = 16_384;
