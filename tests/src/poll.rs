//! Waiting for a condition that settles asynchronously, instead of
//! sleeping for a guessed time.

use std::{
    thread,
    time::{Duration, Instant},
};

/// Calls `check` until it returns `Ok`, at most for `timeout` (every 50 ms);
/// panics with `what` and the last `Err` otherwise.
#[track_caller]
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {timeout:?}; last: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}
