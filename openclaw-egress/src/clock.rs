//! The kernel programs time entries with `bpf_ktime_get_ns`, i.e.
//! `CLOCK_MONOTONIC`; userspace must use the same clock for expiries.

use std::time::{Duration, SystemTime};

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail");
    // tv_sec/tv_nsec are non-negative for CLOCK_MONOTONIC.
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC` nanoseconds `after` from now, saturating.
pub fn monotonic_ns_after(after: Duration) -> u64 {
    monotonic_ns().saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX))
}

/// The wall-clock time of a `CLOCK_MONOTONIC` timestamp in the recent past or near future.
pub fn wall_time_of(monotonic: u64) -> SystemTime {
    let now_mono = monotonic_ns();
    let now_wall = SystemTime::now();
    if monotonic <= now_mono {
        now_wall - Duration::from_nanos(now_mono - monotonic)
    } else {
        now_wall + Duration::from_nanos(monotonic - now_mono)
    }
}

/// How long until a `CLOCK_MONOTONIC` deadline (zero if it has passed).
pub fn until(monotonic: u64) -> Duration {
    Duration::from_nanos(monotonic.saturating_sub(monotonic_ns()))
}
