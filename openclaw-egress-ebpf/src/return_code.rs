//! What the programs return, named after the kernel's UAPI values as aya
//! binds them, so that no program spells a bare 0 or 1.

use aya_ebpf::bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, sk_action};

/// cgroup_skb: the packet goes on; cgroup_sock_addr: the system call goes
/// on. (The kernel reads these programs' 1 and 0 as `sk_action`.)
pub const SK_PASS: i32 = sk_action::SK_PASS as i32;
/// cgroup_skb: the packet is dropped; cgroup_sock_addr: the system call
/// fails with EPERM.
pub const SK_DROP: i32 = sk_action::SK_DROP as i32;
/// TC: the packet goes on to the next classifier, or the stack.
pub const TC_NEXT: i32 = TC_ACT_UNSPEC;
/// TC: the packet is dropped.
pub const TC_SHOT: i32 = TC_ACT_SHOT;
