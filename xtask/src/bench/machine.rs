//! Facts about the machine a benchmark ran on, for the report.

use std::{
    fs,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::cmd;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
    pub nproc: usize,
    pub kernel: String,
    pub cpu: String,
    /// `/proc/loadavg`'s first three fields: other work on the machine skews
    /// throughput numbers, so the report shows how busy it was.
    pub loadavg: String,
    pub iperf3: String,
    pub iptables: String,
    pub nft: String,
}

impl Machine {
    pub fn now() -> Self {
        let version = |program: &str, arg: &str| {
            cmd::probe(cmd::new(program).arg(arg))
                .and_then(|out| out.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into())
        };
        Self {
            date: utc_now(),
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            cpu: fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".into()),
            loadavg: loadavg(),
            iperf3: version("iperf3", "--version"),
            iptables: version("iptables", "--version"),
            nft: version("nft", "--version"),
        }
    }
}

pub fn loadavg() -> String {
    read_trimmed("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// `YYYY-MM-DD HH:MM` of a Unix time (UTC), by Howard Hinnant's
/// days-to-civil algorithm.
fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(format_utc(1_709_210_096), "2024-02-29 12:34");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00");
    }
}
