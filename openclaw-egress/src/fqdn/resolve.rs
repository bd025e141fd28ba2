//! Resolving `fqdn` rules ahead of time, against the policy's own resolvers,
//! so the first connection after a policy is applied is never dropped.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use hickory_resolver::{
    Resolver, TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
};

use crate::policy::Fqdn;

/// How long one lookup may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot set up a resolver for {servers:?}: {source}")]
    Setup {
        servers: Vec<IpAddr>,
        #[source]
        source: NetError,
    },
    #[error("{name}: {source}")]
    Lookup {
        name: Fqdn,
        #[source]
        source: NetError,
    },
}

/// The addresses a name resolved to and how long the answer is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub ips: Vec<IpAddr>,
    pub ttl: Duration,
}

/// A resolver that asks only the given servers, never /etc/hosts nor the
/// system configuration, and caches nothing (TTLs are handled by the caller).
#[derive(Clone)]
pub struct NameResolver {
    inner: TokioResolver,
}

impl NameResolver {
    pub fn new(servers: &[IpAddr]) -> Result<Self, ResolveError> {
        let config = ResolverConfig::from_name_servers(
            servers
                .iter()
                .copied()
                .map(NameServerConfig::udp_and_tcp)
                .collect(),
        );
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        let options = builder.options_mut();
        options.timeout = LOOKUP_TIMEOUT;
        options.attempts = 1;
        options.cache_size = 0;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.use_hosts_file = ResolveHosts::Never;
        options.ndots = 0;
        let inner = builder.build().map_err(|source| ResolveError::Setup {
            servers: servers.to_vec(),
            source,
        })?;
        Ok(Self { inner })
    }

    pub async fn resolve(&self, name: &Fqdn) -> Result<Resolution, ResolveError> {
        // The trailing dot makes the name absolute: no search domains.
        let lookup = self
            .inner
            .lookup_ip(format!("{name}."))
            .await
            .map_err(|source| ResolveError::Lookup {
                name: name.clone(),
                source,
            })?;
        let mut ips: Vec<IpAddr> = lookup.iter().collect();
        ips.sort();
        ips.dedup();
        Ok(Resolution {
            ips,
            ttl: lookup
                .valid_until()
                .saturating_duration_since(Instant::now()),
        })
    }
}
