//! The names of a policy's `fqdn` rules and what the daemon knows of each:
//! when it resolves them, what their last answer was and which `ALLOW`
//! entries that answer stands for. The first resolution happens before a
//! policy is attached (so the first connection is never dropped), then each
//! name is re-resolved before its answer expires.
//!
//! Nothing here writes into a workload's maps: recording an answer returns
//! the entries it stands for, and the daemon writes them into every
//! instance of the policy (see `daemon::name_refresher`).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use openclaw_egress_common::{AllowKey, AllowValue};

use super::{
    rebinding,
    resolve::{Resolution, ResolveError},
};
use crate::{
    clock,
    datapath::encode,
    policy::{Fqdn, Policy, Target},
};

/// Re-resolve when this fraction of the effective TTL has passed, so fresh
/// addresses are in the map before the old answer expires.
const REFRESH_AT_TTL_FRACTION: f64 = 0.75;
/// Retry a failed resolution after this long (doubling up to the max).
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Names are looked at again at least this often, so that garbage
/// collection (which runs with each look) keeps its cadence.
const MAX_SLEEP: Duration = Duration::from_secs(10);

/// What we know about one name of a policy.
#[derive(Clone, Debug, Default)]
pub struct NameState {
    /// Indices of the rules that name it (several rules may, with different ports).
    pub rules: Vec<u32>,
    /// Whether the last resolution found no address at all.
    pub empty: bool,
    pub next_refresh_ns: u64,
    pub failures: u32,
    pub last_error: Option<String>,
    pub resolutions_ok: u64,
    pub resolutions_failed: u64,
    /// Addresses refused by rebinding protection.
    pub refused_internal: u64,
    /// Addresses refused by the per-name cap.
    pub refused_cap: u64,
    /// The addresses of the last successful resolution, and when they
    /// expire (`CLOCK_MONOTONIC` ns): what a workload added later starts with.
    pub addresses: Vec<IpAddr>,
    pub expires_at_ns: u64,
}

impl NameState {
    /// The `ALLOW` entries this name's last resolution stands for.
    fn allow_entries(&self, policy: &Policy) -> Vec<(AllowKey, AllowValue)> {
        self.rules
            .iter()
            .flat_map(|&rule| {
                encode::allow_entries(
                    rule,
                    &policy.egress[rule as usize],
                    &self.addresses,
                    self.expires_at_ns,
                )
            })
            .collect()
    }

    /// Records `name`'s answer, received at `now` (`CLOCK_MONOTONIC` ns):
    /// its addresses less those rebinding protection and the policy's
    /// per-name cap refuse, valid for at least the policy's minimum TTL.
    /// Returns the `ALLOW` entries the answer stands for, and a warning for
    /// the person applying the policy when something is off.
    pub fn record_answer(
        &mut self,
        name: &Fqdn,
        resolution: Resolution,
        policy: &Policy,
        now: u64,
    ) -> (Vec<(AllowKey, AllowValue)>, Option<String>) {
        let mut warnings = Vec::new();
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in resolution.ips {
            if let Some(kind) = rebinding::refusal(ip, policy) {
                self.refused_internal += 1;
                warnings.push(format!("{name} resolved to {ip} ({kind}): refused"));
            } else if ips.len() >= policy.dns.max_ips_per_name as usize {
                self.refused_cap += 1;
                warnings.push(format!(
                    "{name}: more than maxIPsPerName={} addresses; {ip} refused",
                    policy.dns.max_ips_per_name
                ));
            } else {
                ips.push(ip);
            }
        }
        let ttl = resolution.ttl.max(policy.dns.min_ttl);
        self.addresses = ips;
        self.expires_at_ns = after(now, ttl);
        self.empty = self.addresses.is_empty();
        self.next_refresh_ns = after(
            now,
            ttl.mul_f64(REFRESH_AT_TTL_FRACTION)
                .max(Duration::from_secs(1)),
        );
        self.failures = 0;
        self.last_error = None;
        self.resolutions_ok += 1;
        if self.empty && warnings.is_empty() {
            warnings.push(format!("{name} has no A/AAAA records yet; retrying"));
        }
        let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
        (self.allow_entries(policy), warning)
    }

    /// Records a failed resolution at `now`: the addresses of the last one
    /// stay until they expire, and the name is tried again sooner than its
    /// TTL would say, backing off while it keeps failing. Returns the
    /// warning for the person applying the policy.
    pub fn record_failure(&mut self, error: &ResolveError, now: u64) -> String {
        let retry = RETRY_MIN
            .saturating_mul(1 << self.failures.min(5))
            .min(RETRY_MAX);
        self.failures += 1;
        self.resolutions_failed += 1;
        self.next_refresh_ns = after(now, retry);
        self.last_error = Some(error.to_string());
        format!(
            "{error} (its addresses stay blocked; retrying in {}s)",
            retry.as_secs()
        )
    }
}

/// `CLOCK_MONOTONIC` nanoseconds `duration` after `now`, saturating.
fn after(now: u64, duration: Duration) -> u64 {
    now.saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
}

/// Every name of an applied policy and its state; shared by the task that
/// keeps them resolved, the builder of a joining workload's instance and
/// the metrics.
pub type Names = Arc<Mutex<BTreeMap<Fqdn, NameState>>>;

/// The names of a policy's `fqdn` rules, none resolved yet (so all due).
pub fn names_of(policy: &Policy) -> BTreeMap<Fqdn, NameState> {
    let mut names: BTreeMap<Fqdn, NameState> = BTreeMap::new();
    for (index, rule) in policy.egress.iter().enumerate() {
        // A dnsOnly name opens nothing: resolving it ahead would only make
        // noise (and retries, for one that does not exist).
        if let Target::Fqdn(name) = &rule.target
            && !rule.is_dns_only()
        {
            names
                .entry(name.clone())
                .or_default()
                .rules
                .push(encode::rule_id(index));
        }
    }
    names
}

/// What the daemon resolved for every name of a policy, as `ALLOW` entries
/// (for a workload that joins an applied policy).
pub fn allow_entries(policy: &Policy, names: &Names) -> Vec<(AllowKey, AllowValue)> {
    names
        .lock()
        .expect("names lock")
        .values()
        .flat_map(|state| state.allow_entries(policy))
        .collect()
}

/// The names due for resolution at `now`.
pub fn due(names: &Names, now: u64) -> Vec<Fqdn> {
    names
        .lock()
        .expect("names lock")
        .iter()
        .filter(|(_, state)| state.next_refresh_ns <= now)
        .map(|(name, _)| name.clone())
        .collect()
}

/// How long until a name is due again (at most `MAX_SLEEP`).
pub fn until_next_due(names: &Names) -> Duration {
    names
        .lock()
        .expect("names lock")
        .values()
        .map(|state| clock::until(state.next_refresh_ns))
        .min()
        .unwrap_or(MAX_SLEEP)
        .min(MAX_SLEEP)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::policy;

    const POLICY: &str = "\
apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata:
  name: agent
spec:
  selector:
    cgroupPath: /sys/fs/cgroup/agent
  dns:
    resolvers: [10.96.0.10]
    maxIPsPerName: 2
    minTTL: 30
  egress:
    - fqdn: api.example.com
      ports: [443/tcp]
    - fqdn: api.example.com
      ports: [8443/tcp]
    - fqdn: quiet.example.com
      dnsOnly: true
";

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
    }

    #[test]
    fn an_answer_stands_for_its_allowed_addresses_on_every_rule_of_the_name() {
        let policy = policy::parse_str("t", POLICY).unwrap();
        let names = names_of(&policy);
        // dnsOnly names are not resolved ahead.
        assert_eq!(
            names.keys().map(ToString::to_string).collect::<Vec<_>>(),
            ["api.example.com"]
        );
        let name: Fqdn = names.keys().next().unwrap().clone();
        let mut state = names[&name].clone();
        assert_eq!(state.rules, [0, 1]);
        let answer = Resolution {
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST), ip(1), ip(2), ip(3)],
            ttl: Duration::from_secs(5),
        };
        let now = 1_000_000_000;
        let (entries, warning) = state.record_answer(&name, answer, &policy, now);
        assert_eq!(state.addresses, [ip(1), ip(2)]);
        assert_eq!((state.refused_internal, state.refused_cap), (1, 1));
        // Two addresses on two rules of one port each.
        assert_eq!(entries.len(), 4);
        // The policy's minimum TTL wins over a shorter answer.
        assert_eq!(state.expires_at_ns, now + 30_000_000_000);
        assert_eq!(state.next_refresh_ns, now + 22_500_000_000);
        assert!(
            entries
                .iter()
                .all(|(_, value)| value.expires_at_ns == state.expires_at_ns)
        );
        let warning = warning.unwrap();
        assert!(warning.contains("127.0.0.1"), "{warning}");
        assert!(warning.contains("maxIPsPerName=2"), "{warning}");
    }

    #[test]
    fn failures_keep_the_last_answer_and_back_off() {
        let policy = policy::parse_str("t", POLICY).unwrap();
        let name: Fqdn = names_of(&policy).into_keys().next().unwrap();
        let mut state = NameState::default();
        let answer = Resolution {
            ips: vec![ip(1)],
            ttl: Duration::from_secs(60),
        };
        state.record_answer(&name, answer, &policy, 0);
        let error = ResolveError::Setup {
            servers: Vec::new(),
            source: "no servers".into(),
        };
        let retries: Vec<u64> = (0..7)
            .map(|_| {
                state.record_failure(&error, 0);
                state.next_refresh_ns / 1_000_000_000
            })
            .collect();
        assert_eq!(retries, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(state.addresses, [ip(1)]);
        assert_eq!((state.resolutions_ok, state.resolutions_failed), (1, 7));
        assert!(state.last_error.is_some());
    }
}
