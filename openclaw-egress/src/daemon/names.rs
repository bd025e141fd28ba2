//! Keeping `fqdn` rules resolved: the first resolution happens before a policy
//! is attached (so the first connection is never dropped), then each name is
//! re-resolved before its answer expires, and expired addresses are removed.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use openclaw_egress_common::{AllowKey, AllowValue};
use tokio::{sync::Semaphore, task::JoinSet};

use super::instance::Instances;
use crate::{
    clock,
    datapath::encode,
    policy::{Fqdn, Policy, Target},
    rebinding,
    resolve::NameResolver,
};

/// Re-resolve when this fraction of the effective TTL has passed, so fresh
/// addresses are in the map before the old answer expires.
const REFRESH_AT_TTL_FRACTION: f64 = 0.75;
/// Retry a failed resolution after this long (doubling up to the max).
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Expired entries linger this long before garbage collection, so drops to a
/// recently expired address are reported as `expired` rather than `no_rule`.
pub const GC_GRACE: Duration = Duration::from_secs(300);
/// Lookups in flight at once (each asks for A and AAAA).
const MAX_CONCURRENT_LOOKUPS: usize = 64;
/// The refresher never sleeps longer than this (garbage collection cadence).
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
}

pub type Names = Arc<Mutex<BTreeMap<Fqdn, NameState>>>;

/// The names of a policy's `fqdn` rules, none resolved yet.
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

/// Resolves `name` once and records the result in `names`. Returns the
/// `ALLOW` entries to write into every instance (none when the resolution
/// failed: the addresses of the last one stay until they expire), and a
/// warning for the person applying the policy when something is off.
pub async fn refresh(
    resolver: &NameResolver,
    policy: &Policy,
    name: &Fqdn,
    names: &Names,
) -> (Vec<(AllowKey, AllowValue)>, Option<String>) {
    let result = resolver.resolve(name).await;
    let mut names = names.lock().expect("names lock");
    let Some(state) = names.get_mut(name) else {
        return (Vec::new(), None);
    };
    match result {
        Ok(resolution) => {
            let mut warnings = Vec::new();
            let mut ips: Vec<IpAddr> = Vec::new();
            for ip in resolution.ips {
                if let Some(kind) = rebinding::refusal(ip, policy) {
                    state.refused_internal += 1;
                    warnings.push(format!("{name} resolved to {ip} ({kind}): refused"));
                } else if ips.len() >= policy.dns.max_ips_per_name as usize {
                    state.refused_cap += 1;
                    warnings.push(format!(
                        "{name}: more than maxIPsPerName={} addresses; {ip} refused",
                        policy.dns.max_ips_per_name
                    ));
                } else {
                    ips.push(ip);
                }
            }
            let ttl = resolution.ttl.max(policy.dns.min_ttl);
            state.addresses = ips;
            state.expires_at_ns = clock::monotonic_ns_after(ttl);
            state.empty = state.addresses.is_empty();
            state.next_refresh_ns = clock::monotonic_ns_after(
                ttl.mul_f64(REFRESH_AT_TTL_FRACTION)
                    .max(Duration::from_secs(1)),
            );
            state.failures = 0;
            state.last_error = None;
            state.resolutions_ok += 1;
            if state.empty && warnings.is_empty() {
                warnings.push(format!("{name} has no A/AAAA records yet; retrying"));
            }
            let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
            (state.allow_entries(policy), warning)
        }
        Err(error) => {
            let retry = RETRY_MIN
                .saturating_mul(1 << state.failures.min(5))
                .min(RETRY_MAX);
            state.failures += 1;
            state.resolutions_failed += 1;
            state.next_refresh_ns = clock::monotonic_ns_after(retry);
            state.last_error = Some(error.to_string());
            let warning = format!(
                "{error} (its addresses stay blocked; retrying in {}s)",
                retry.as_secs()
            );
            (Vec::new(), Some(warning))
        }
    }
}

/// Resolves every name of the policy (each recorded in `names`); returns
/// the entries to install and the warnings, sorted.
pub async fn resolve_all(
    resolver: &NameResolver,
    policy: &Arc<Policy>,
    names: &Names,
) -> (Vec<(AllowKey, AllowValue)>, Vec<String>) {
    let all: Vec<_> = names.lock().expect("names lock").keys().cloned().collect();
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (found, warning) in refresh_concurrently(resolver, policy, all, names).await {
        entries.extend(found);
        warnings.extend(warning);
    }
    warnings.sort();
    (entries, warnings)
}

/// [`refresh`]es `due`, at most [`MAX_CONCURRENT_LOOKUPS`] at a time: a
/// policy of 10 000 names is resolved in parallel without 20 000 queries
/// in flight at once (which a resolver would drop, and retries would make
/// slower than waiting).
async fn refresh_concurrently(
    resolver: &NameResolver,
    policy: &Arc<Policy>,
    due: Vec<Fqdn>,
    names: &Names,
) -> Vec<(Vec<(AllowKey, AllowValue)>, Option<String>)> {
    let resolver = Arc::new(resolver.clone());
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS));
    let mut lookups = JoinSet::new();
    for name in due {
        let (resolver, policy, names, permits) = (
            Arc::clone(&resolver),
            Arc::clone(policy),
            Arc::clone(names),
            Arc::clone(&permits),
        );
        lookups.spawn(async move {
            // The semaphore is never closed.
            let _permit = permits.acquire_owned().await.expect("open semaphore");
            refresh(&resolver, &policy, &name, &names).await
        });
    }
    lookups.join_all().await
}

/// Writes `entries` into every instance; failures are logged (a missing
/// entry keeps its destination closed).
fn install(policy: &str, instances: &Instances, entries: &[(AllowKey, AllowValue)]) {
    if entries.is_empty() {
        return;
    }
    for instance in instances.read().expect("instances lock").iter() {
        if let Some(Err(error)) = instance.with(|datapath| datapath.upsert_allow(entries)) {
            tracing::error!(
                policy,
                workload = %instance.workload,
                "cannot allow resolved addresses: {error}"
            );
        }
    }
}

/// Starts [`keep_resolved`] for an applied policy; the handle stops it.
pub fn spawn_refresher(
    resolver: NameResolver,
    policy: &Arc<Policy>,
    names: &Names,
    instances: &Instances,
) -> tokio::task::AbortHandle {
    tokio::spawn(keep_resolved(
        resolver,
        Arc::clone(policy),
        Arc::clone(names),
        Arc::clone(instances),
    ))
    .abort_handle()
}

/// Runs for the life of an applied policy (it is aborted when the policy
/// goes): re-resolves names when due (all of them at once when it starts
/// from scratch) and garbage-collects expired entries.
async fn keep_resolved(
    resolver: NameResolver,
    policy: Arc<Policy>,
    names: Names,
    instances: Instances,
) {
    loop {
        let now = clock::monotonic_ns();
        let due: Vec<Fqdn> = names
            .lock()
            .expect("names lock")
            .iter()
            .filter(|(_, state)| state.next_refresh_ns <= now)
            .map(|(name, _)| name.clone())
            .collect();
        let mut entries = Vec::new();
        for (found, warning) in refresh_concurrently(&resolver, &policy, due, &names).await {
            if let Some(warning) = warning {
                tracing::warn!(policy = %policy.name, "{warning}");
            }
            entries.extend(found);
        }
        install(&policy.name, &instances, &entries);
        collect_garbage(&instances);
        let next = names
            .lock()
            .expect("names lock")
            .values()
            .map(|state| clock::until(state.next_refresh_ns))
            .min()
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::time::sleep(next).await;
    }
}

/// Removes entries expired for longer than [`GC_GRACE`], whether the daemon
/// or the kernel (from a DNS answer) put them there.
fn collect_garbage(instances: &Instances) {
    let cutoff = clock::monotonic_ns().saturating_sub(GC_GRACE.as_nanos() as u64);
    for instance in instances.read().expect("instances lock").iter() {
        instance.with(|datapath| {
            for (key, value) in datapath.allow_entries() {
                if value.expires_at_ns < cutoff
                    && let Err(error) = datapath.remove_allow(&key)
                {
                    tracing::error!("garbage collection: {error}");
                }
            }
        });
    }
}
