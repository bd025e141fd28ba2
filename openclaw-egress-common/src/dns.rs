//! DNS names as the kernel matches them, and the per-rule port lists the
//! kernel needs to turn a DNS answer into allow entries.

/// Size of a [`DnsName`] key: the longest wire-format name (255 bytes) plus one.
pub const DNS_NAME_KEY_LEN: usize = 256;

/// A DNS name as a map key: lowercase wire-format labels (`\x03api\x06github\x03com`,
/// without the root label's zero byte) **right-aligned** in the buffer, zero bytes in front.
///
/// Right alignment makes every suffix of a name a valid key of its own: the
/// kernel strips leading labels by zeroing bytes, with no copying, and looks up
/// `github.com` for `*.github.com` and `**.github.com` rules.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsName {
    pub bytes: [u8; DNS_NAME_KEY_LEN],
}

const _: () = assert!(core::mem::size_of::<DnsName>() == DNS_NAME_KEY_LEN);

/// No rule of this kind names this suffix.
pub const NO_RULE: u32 = u32::MAX;

/// Value of the `DNS_NAMES` map: for one name, the rule (index in `spec.egress`)
/// allowing it exactly, as `*.name` (one more label) and as `**.name` (one or
/// more labels), each [`NO_RULE`] when absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsNameRules {
    pub exact: u32,
    pub one_label: u32,
    pub any_depth: u32,
}

const _: () = assert!(core::mem::size_of::<DnsNameRules>() == 12);

impl DnsNameRules {
    pub const NONE: Self = Self {
        exact: NO_RULE,
        one_label: NO_RULE,
        any_depth: NO_RULE,
    };
}

/// Most (protocol, port) pairs a rule may expand to: 16 listed ports, each possibly TCP and UDP.
pub const MAX_RULE_PORTS: usize = 32;

/// One (protocol, port) of a rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortProto {
    /// Host byte order.
    pub port: u16,
    pub proto: u8,
    /// What a connection to this port must start with: `inspect` bits.
    pub inspect: u8,
}

const _: () = assert!(core::mem::size_of::<PortProto>() == 4);

/// Value of the `RULE_PORTS` array (index = rule id): the ports a DNS-learned
/// address is allowed on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulePorts {
    pub count: u32,
    /// A [`RuleKind`] as `u32`.
    pub kind: u32,
    pub ports: [PortProto; MAX_RULE_PORTS],
}

const _: () = assert!(core::mem::size_of::<RulePorts>() == 8 + 4 * MAX_RULE_PORTS);

/// Whether a name rule is an exact name or a pattern: patterns have an
/// address budget of their own (`PolicyConfig::max_ips_per_pattern`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Exact = 0,
    Pattern = 1,
}

/// Indices of the `DNS_STATS` per-CPU counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsStat {
    /// Queries whose name a rule allows.
    QueriesAllowed = 0,
    /// Queries dropped (or audited) because no rule allows the name.
    QueriesDenied = 1,
    /// Answers to allowed questions that were parsed for addresses.
    AnswersParsed = 2,
    /// A/AAAA records that became allow entries.
    AddressesLearned = 3,
    /// A/AAAA records refused: internal address (rebinding protection).
    AddressesRefusedInternal = 4,
    /// A/AAAA records refused: the name already has `maxIPsPerName` addresses.
    AddressesRefusedCap = 5,
    /// Answers from a resolver that could not be parsed (nothing learned).
    AnswersUnparsed = 6,
    /// Answers that match no outstanding query of the workload (resolver,
    /// ports, protocol, ID, question): spoofed, replayed or late. Nothing
    /// is learned from them.
    AnswersUnsolicited = 7,
    /// A/AAAA records refused: the pattern rule already has
    /// `maxIPsPerPattern` addresses.
    AddressesRefusedPatternCap = 8,
    /// A/AAAA records refused: the slot's `ALLOW` map is full (it is sized
    /// to the policy's budgets, so this means addresses pile up faster than
    /// they expire).
    AddressesRefusedFull = 9,
}

impl DnsStat {
    pub const COUNT: u32 = 10;
}

/// Key of the `PENDING_QUERIES` map: a query the workload sent and whose
/// answer may teach addresses. An answer teaches only if all of this matches
/// (the resolver answers from the address and port the query went to, to the
/// port it came from, with its ID and its question), and only once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PendingQuery {
    /// The question name as a `DNS_NAMES` key (lowercased, right-aligned).
    pub name: DnsName,
    pub resolver: crate::Addr,
    /// The workload's port, host byte order.
    pub client_port: u16,
    /// The DNS message ID.
    pub id: u16,
    pub qtype: u16,
    /// TCP or UDP.
    pub proto: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<PendingQuery>() == DNS_NAME_KEY_LEN + 16 + 8);

/// Value of the `NAME_BUDGETS` LRU map: how many addresses a name has had
/// learned in the current window.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameBudget {
    pub learned: u32,
    pub _pad: u32,
    /// `CLOCK_MONOTONIC` ns at which the count starts over (the latest expiry
    /// of an address counted in it).
    pub window_end_ns: u64,
}

const _: () = assert!(core::mem::size_of::<NameBudget>() == 16);
