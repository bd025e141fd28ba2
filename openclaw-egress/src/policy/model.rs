//! A validated policy. Values of these types only exist once every check in
//! `policy::parse` has passed, so the datapath never sees a half-valid policy.

use std::{collections::BTreeMap, fmt, net::IpAddr, path::PathBuf, time::Duration};

pub use openclaw_egress_common::Mode;

/// `kind: EgressPolicy`, `apiVersion: openclaw.io/v1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `metadata.name`: a DNS label (lowercase alphanumerics and '-', at most
    /// 63 characters), because it names bpffs pins and metric labels.
    pub name: String,
    pub mode: Mode,
    pub selector: Selector,
    pub dns: DnsConfig,
    /// Allow rules; anything they do not allow is denied.
    pub egress: Vec<EgressRule>,
}

/// `spec.selector`: which workloads the policy applies to (any of).
/// At least one of the three is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// A cgroup v2 directory. Absolute, or relative to the cgroup2 mount
    /// (resolved when the policy is applied, not when it is parsed).
    pub cgroup_path: Option<PathBuf>,
    /// Host-side interfaces (e.g. a pod's veth) to attach TC programs to.
    pub interfaces: Vec<String>,
    /// Kubernetes pod labels (DaemonSet mode).
    pub pod_labels: BTreeMap<String, String>,
}

/// `spec.dns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The only servers the workload may send DNS (UDP and TCP port 53) to,
    /// and the servers the daemon resolves `fqdn` rules against.
    pub resolvers: Vec<IpAddr>,
    /// `minTTL` (seconds): addresses learned from DNS stay allowed at least this long.
    pub min_ttl: Duration,
    /// `maxIPsPerName`: at most this many addresses are allowed per name.
    pub max_ips_per_name: u32,
    /// `maxIPsPerPattern`: at most this many addresses are learned per
    /// `fqdnPattern` rule, whatever names it matches.
    pub max_ips_per_pattern: u32,
}

impl DnsConfig {
    pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_IPS_PER_NAME: u32 = 64;
    pub const DEFAULT_MAX_IPS_PER_PATTERN: u32 = 256;

    /// No resolvers, every limit at its default.
    pub fn with_resolvers(resolvers: Vec<IpAddr>) -> Self {
        Self {
            resolvers,
            min_ttl: Self::DEFAULT_MIN_TTL,
            max_ips_per_name: Self::DEFAULT_MAX_IPS_PER_NAME,
            max_ips_per_pattern: Self::DEFAULT_MAX_IPS_PER_PATTERN,
        }
    }
}

/// One item of `spec.egress`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    pub target: Target,
    /// Empty only for a DNS-only name rule (`dnsOnly: true`): its names may
    /// be resolved (the kernel lets their questions through), but no
    /// address is allowed for them. Every other rule lists 1 to
    /// [`Self::MAX_PORTS`] entries.
    pub ports: Vec<PortSpec>,
    /// What the first bytes of a connection the rule admits must say.
    pub inspection: Inspection,
}

/// A rule's checks of the names inside its connections: the server name of
/// a TLS ClientHello on `tls_ports`, the `Host` of an HTTP request on
/// `http_ports`. Every port listed is one the rule allows over TCP, and no
/// port is in both lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    pub tls_ports: Vec<u16>,
    pub http_ports: Vec<u16>,
    /// Whether a ClientHello may carry Encrypted Client Hello (whose outer
    /// server name, the provider's front end, is what is checked).
    pub ech: Ech,
    /// Whether the rule's TLS ports may be reached over UDP (QUIC), whose
    /// Initial is encrypted: checked by address only.
    pub quic: bool,
}

impl EgressRule {
    /// A rule with the checks a policy file gets when it sets none of `tls`,
    /// `http`, `ech` and `quic`.
    pub fn new(target: Target, ports: Vec<PortSpec>) -> Self {
        let inspection = Inspection::defaults(&target, &ports);
        Self {
            target,
            ports,
            inspection,
        }
    }
}

impl Inspection {
    /// The TLS port of a name rule unless it says otherwise.
    pub const DEFAULT_TLS_PORT: u16 = 443;
    /// The HTTP port of a name rule unless it says otherwise.
    pub const DEFAULT_HTTP_PORT: u16 = 80;

    /// The defaults: a name rule checks TLS on 443 and HTTP on 80 if it
    /// allows them over TCP; a `cidr` rule checks nothing.
    pub fn defaults(target: &Target, ports: &[PortSpec]) -> Self {
        let on = |port: u16| {
            let listed = ports.iter().any(|spec| {
                spec.port == port && matches!(spec.protocol, Protocol::Tcp | Protocol::Any)
            });
            if listed && !matches!(target, Target::Cidr(_)) {
                vec![port]
            } else {
                Vec::new()
            }
        };
        Self {
            tls_ports: on(Self::DEFAULT_TLS_PORT),
            http_ports: on(Self::DEFAULT_HTTP_PORT),
            ech: Ech::Allow,
            quic: false,
        }
    }

    /// What is checked on TCP port `port`.
    pub fn on_port(&self, port: u16) -> Option<Inspect> {
        if self.tls_ports.contains(&port) {
            Some(Inspect::Tls)
        } else if self.http_ports.contains(&port) {
            Some(Inspect::Http)
        } else {
            None
        }
    }
}

/// The check made on a connection's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspect {
    Tls,
    Http,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ech {
    #[default]
    Allow,
    Deny,
}

/// What a rule allows traffic to: exactly one of `fqdn`, `fqdnPattern`, `cidr`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Fqdn(Fqdn),
    Pattern(FqdnPattern),
    Cidr(Cidr),
}

/// A fully qualified DNS name, lowercased, without the trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fqdn(pub String);

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name pattern with Cilium semantics: a leading `*.` stands for exactly one
/// label, a leading `**.` for one or more labels; the rest is matched exactly
/// (case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FqdnPattern {
    pub depth: WildcardDepth,
    /// The fixed suffix after the wildcard, lowercased, e.g. `github.com`.
    pub suffix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WildcardDepth {
    /// `*.suffix`
    OneLabel,
    /// `**.suffix`
    AnyDepth,
}

impl fmt::Display for FqdnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.depth {
            WildcardDepth::OneLabel => write!(f, "*.{}", self.suffix),
            WildcardDepth::AnyDepth => write!(f, "**.{}", self.suffix),
        }
    }
}

/// An address prefix with no host bits set (`10.0.1.0/24`, not `10.0.1.5/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One entry of `ports`: `443`, `443/tcp` or `53/udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    /// 1..=65535.
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// A bare port number: TCP and UDP.
    Any,
}

impl Protocol {
    /// IP protocol numbers this stands for.
    pub fn ip_protocols(self) -> &'static [u8] {
        use openclaw_egress_common::proto::{TCP, UDP};
        match self {
            Self::Tcp => &[TCP],
            Self::Udp => &[UDP],
            Self::Any => &[TCP, UDP],
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Tcp => write!(f, "{}/tcp", self.port),
            Protocol::Udp => write!(f, "{}/udp", self.port),
            Protocol::Any => write!(f, "{}", self.port),
        }
    }
}

impl EgressRule {
    /// The most entries a rule's `ports` may list.
    pub const MAX_PORTS: usize = 16;

    /// Whether the rule only lets its names be resolved (`dnsOnly: true`):
    /// nothing to resolve ahead of time, no address to allow.
    pub fn is_dns_only(&self) -> bool {
        self.ports.is_empty()
    }
}

impl Target {
    /// Whether a DNS name is allowed by this target; a CIDR allows addresses,
    /// never names.
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            Self::Fqdn(fqdn) => fqdn.matches(name),
            Self::Pattern(pattern) => pattern.matches(name),
            Self::Cidr(_) => false,
        }
    }
}

impl Target {
    /// Whether every name `other` matches, this matches too (a CIDR matches
    /// no name, and covers nothing). Lets the encoder drop a `dnsOnly`
    /// entry that a rule with ports already lets through, and learn mode
    /// tell what a policy already allows.
    pub fn covers_names_of(&self, other: &Target) -> bool {
        match (self, other) {
            (Self::Fqdn(a), Self::Fqdn(b)) => a == b,
            (Self::Pattern(pattern), Self::Fqdn(name)) => pattern.matches(&name.0),
            (Self::Pattern(a), Self::Pattern(b)) => a.covers(b),
            (Self::Fqdn(_), Self::Pattern(_)) | (Self::Cidr(_), _) | (_, Self::Cidr(_)) => false,
        }
    }
}

impl FqdnPattern {
    /// Whether every name `other` matches, this matches too: `**.s` covers
    /// `*.s` and any pattern below `s`; `*.s` covers only itself.
    fn covers(&self, other: &FqdnPattern) -> bool {
        if self.suffix == other.suffix {
            return self.depth == WildcardDepth::AnyDepth || other.depth == WildcardDepth::OneLabel;
        }
        self.depth == WildcardDepth::AnyDepth
            && other
                .suffix
                .strip_suffix(self.suffix.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1)
    }
}

impl Fqdn {
    /// Whether `name` (e.g. a DNS query name: any case, with or without the
    /// trailing dot) is this name.
    pub fn matches(&self, name: &str) -> bool {
        without_root(name).eq_ignore_ascii_case(&self.0)
    }
}

impl FqdnPattern {
    /// Whether `name` (any case, with or without the trailing dot) is the
    /// suffix preceded by one label (`*.`) or by one or more labels (`**.`).
    pub fn matches(&self, name: &str) -> bool {
        let name = without_root(name);
        // Split `name` into the part the wildcard stands for and `.suffix`.
        let Some(wild_len) = name.len().checked_sub(self.suffix.len() + 1) else {
            return false;
        };
        let (Some(wild), Some(rest)) = (name.get(..wild_len), name.get(wild_len..)) else {
            return false;
        };
        let dot_suffix = rest.strip_prefix('.');
        if !dot_suffix.is_some_and(|suffix| suffix.eq_ignore_ascii_case(&self.suffix)) {
            return false;
        }
        match self.depth {
            WildcardDepth::OneLabel => !wild.is_empty() && !wild.contains('.'),
            WildcardDepth::AnyDepth => wild.split('.').all(|label| !label.is_empty()),
        }
    }
}

/// DNS names may end in the root's dot (`example.com.`); names in a policy
/// are stored without it.
fn without_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}
