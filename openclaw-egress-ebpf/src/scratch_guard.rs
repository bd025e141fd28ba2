//! Making sure this CPU's scratch area still holds what we put there.
//!
//! `SCRATCH` is per CPU, but a program running in process context (the
//! cgroup egress hook runs in the sending task, with bottom halves
//! enabled) can be interrupted by softirq work that runs our ingress or TC
//! programs on the same CPU, or preempted by another task's egress hook.
//! Either may fill the scratch area with another name; a decision made on
//! it afterwards would judge the wrong name (a query for a denied name
//! passing on an allowed one's lookup). So a phase that fills the area and
//! decides on it first takes a ticket, and its outcome counts only if no
//! one took a ticket since; otherwise it fails closed (the application's
//! retry is judged again).

use core::{
    arch::asm,
    ptr::{NonNull, read_volatile},
};

use crate::maps::SCRATCH_TICKETS;

/// A claim on this CPU's scratch area.
#[derive(Clone, Copy)]
pub struct Ticket(u64);

/// Claims the scratch area (before filling it).
#[inline(always)]
pub fn claim() -> Ticket {
    match counter() {
        // An atomic add: a program interrupting this one between a load
        // and a store must not get the same ticket.
        Some(counter) => Ticket(fetch_add_one(counter) + 1),
        // Never (a one-entry per-CPU array): a ticket nothing holds, so
        // `held` fails closed.
        None => Ticket(0),
    }
}

/// Whether nobody claimed the scratch area since `ticket` was taken.
#[inline(always)]
pub fn held(ticket: Ticket) -> bool {
    counter().is_some_and(|counter| {
        // SAFETY: as in `claim`; an aligned 8-byte load is one BPF
        // instruction, which no store can tear.
        let now = unsafe { read_volatile(counter.as_ptr()) };
        ticket.0 != 0 && now == ticket.0
    })
}

/// Adds one to `*counter` atomically and returns what it held before.
///
/// LLVM emits BPF's fetching atomics only for `-mcpu=v3`, which the build
/// (aya-build) does not pass, so the instruction is written out; every
/// kernel this runs on (>= 5.12) has it.
#[inline(always)]
fn fetch_add_one(counter: NonNull<u64>) -> u64 {
    let mut value: u64 = 1;
    // SAFETY: an aligned u64 in map memory, only accessed atomically or by
    // aligned 8-byte loads.
    unsafe {
        asm!(
            "{value} = atomic_fetch_add((u64 *)({counter} + 0), {value})",
            value = inout(reg) value,
            counter = in(reg) counter.as_ptr(),
            options(nostack),
        );
    }
    value
}

/// This CPU's ticket counter.
#[inline(always)]
fn counter() -> Option<NonNull<u64>> {
    NonNull::new(SCRATCH_TICKETS.get_ptr_mut(0)?)
}
