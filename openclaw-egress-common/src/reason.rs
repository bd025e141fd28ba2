//! Why a packet was dropped. Indexes the drop counters and labels metrics.

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The destination (address, protocol, port) is in no allow map.
    NoRule = 0,
    /// The destination was allowed by a resolved name whose TTL has run out.
    Expired = 1,
    /// DNS (port 53) to a server that is not one of the policy's resolvers.
    DnsResolver = 2,
    /// A DNS query for a name no rule allows.
    DnsDenied = 3,
    /// A DNS query the program could not parse.
    DnsMalformed = 4,
    /// Neither TCP nor UDP (ICMP echo, raw IP, SCTP, ...).
    Protocol = 5,
    /// An IP fragment without a transport header to check.
    Fragment = 6,
    /// A packet too short or inconsistent to parse.
    Malformed = 7,
    /// The policy is still being loaded; nothing passes until it is complete.
    NotReady = 8,
    /// IPv4 options or an IPv6 routing header: source routing could send the
    /// packet past the destination in its header, and options carry data.
    IpOptions = 9,
    /// A TLS ClientHello naming a server the policy does not allow on the port.
    SniDenied = 10,
    /// A TLS ClientHello without a server name, on a port that checks it.
    SniMissing = 11,
    /// Bytes that are not a TLS ClientHello, on a port that expects one (or
    /// one too big, split too finely, or out of order to be checked).
    TlsMalformed = 12,
    /// An HTTP request whose `Host` the policy does not allow (or none, or
    /// not an HTTP request), on a port that checks it.
    HostDenied = 13,
    /// A ClientHello with Encrypted Client Hello, which the rule refuses.
    EchDenied = 14,
    /// A decision on a name was interrupted on its CPU by another program
    /// run that reused the per-CPU scratch area, so it was refused (fail
    /// closed); the application's retry is judged again.
    Contended = 15,
}

impl DropReason {
    pub const COUNT: usize = 16;
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::NoRule,
        Self::Expired,
        Self::DnsResolver,
        Self::DnsDenied,
        Self::DnsMalformed,
        Self::Protocol,
        Self::Fragment,
        Self::Malformed,
        Self::NotReady,
        Self::IpOptions,
        Self::SniDenied,
        Self::SniMissing,
        Self::TlsMalformed,
        Self::HostDenied,
        Self::EchDenied,
        Self::Contended,
    ];

    pub const fn from_u8(value: u8) -> Option<Self> {
        if (value as usize) < Self::COUNT {
            Some(Self::ALL[value as usize])
        } else {
            None
        }
    }

    /// Whether the drop is about a name inside a connection (the event
    /// then carries the server name, if one was read).
    pub const fn is_about_server_name(self) -> bool {
        matches!(
            self,
            Self::SniDenied
                | Self::SniMissing
                | Self::TlsMalformed
                | Self::HostDenied
                | Self::EchDenied
        )
    }

    /// The `reason` label of metrics and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoRule => "no_rule",
            Self::Expired => "expired",
            Self::DnsResolver => "dns_resolver",
            Self::DnsDenied => "dns_denied",
            Self::DnsMalformed => "dns_malformed",
            Self::Protocol => "protocol",
            Self::Fragment => "fragment",
            Self::Malformed => "malformed",
            Self::NotReady => "not_ready",
            Self::IpOptions => "ip_options",
            Self::SniDenied => "sni_denied",
            Self::SniMissing => "sni_missing",
            Self::TlsMalformed => "tls_malformed",
            Self::HostDenied => "host_denied",
            Self::EchDenied => "ech_denied",
            Self::Contended => "contended",
        }
    }
}
