//! `daemon --flow-log`: allowed connections logged beside the drops, at
//! most so many per second (a busy node opens thousands; a SIEM wants the
//! picture, not a flood). What the limit holds back is counted
//! (`openclaw_egress_flow_log_suppressed_total`).

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

pub struct FlowLog {
    per_second: f64,
    bucket: Mutex<Bucket>,
    suppressed: AtomicU64,
}

/// A token bucket holding up to a second's worth of lines.
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl FlowLog {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            bucket: Mutex::new(Bucket {
                tokens: per_second,
                refilled: Instant::now(),
            }),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether one more line may be logged now (else it is counted).
    pub fn admit(&self) -> bool {
        let mut bucket = self.bucket.lock().expect("flow log lock");
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Allowed flows not logged because of the rate limit, so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_rate_is_counted_not_logged() {
        let log = FlowLog::new(10);
        let admitted = (0..25).filter(|_| log.admit()).count();
        assert_eq!(admitted, 10);
        assert_eq!(log.suppressed(), 15);
    }

    #[test]
    fn the_bucket_refills_with_time() {
        let log = FlowLog::new(1000);
        while log.admit() {}
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(log.admit());
    }
}
