//! `cgroup/connect4`, `connect6`, `sendmsg4`, `sendmsg6`: a `connect()` (TCP
//! or UDP) or an unconnected UDP `sendmsg()` to a destination the policy does
//! not allow fails at once with EPERM, instead of a SYN retransmitted until
//! the application's own timeout. The packet-level hooks stay the
//! enforcement of record: these only answer earlier, with the same lookups
//! (see `connect_policy`).

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::{
    connect_policy::{self, Family},
    trace,
};

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let verdict = connect_policy::decide(&ctx, Family::V4);
    trace::connect4(&ctx, "connect4", verdict);
    verdict
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let verdict = connect_policy::decide(&ctx, Family::V6);
    trace::connect6(&ctx, "connect6", verdict);
    verdict
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    let verdict = connect_policy::decide(&ctx, Family::V4);
    trace::connect4(&ctx, "sendmsg4", verdict);
    verdict
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    let verdict = connect_policy::decide(&ctx, Family::V6);
    trace::connect6(&ctx, "sendmsg6", verdict);
    verdict
}
