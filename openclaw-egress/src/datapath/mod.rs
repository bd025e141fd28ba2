//! One loaded copy of the eBPF programs and maps for one workload of one
//! policy.
//!
//! Every workload gets its own instance of every map (design rule: a lookup
//! made by one workload must never open anything for another), which also
//! makes an atomic policy swap simple: load and fill a complete new instance,
//! attach it, then detach the old one.
//!
//! An instance can be pinned in bpffs (see `pins`): its links and maps then
//! outlive the daemon, which keeps enforcing while the daemon is down and lets
//! a restarted daemon adopt the instance, learned addresses included.

pub mod encode;
pub mod frames;
mod pins;

use std::{
    net::IpAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, RingBuf, lpm_trie},
    pin::PinError,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, Program, ProgramError,
        SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, TestRunResult,
        links::{FdLink, LinkError, PinnedLink},
    },
};
use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, DnsName, DnsNameRules, FlowKey, PolicyConfig,
    RulePorts,
    dns::DnsStat,
    maps::{self as names, DROP_COUNTERS_LEN},
};

pub use encode::{CidrEntry, EncodeError, PrefixEntry, StaticEntries};

/// The eBPF object built from `openclaw-egress-ebpf` by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/openclaw-egress"));

/// The embedded eBPF object (e.g. to measure what verifying it costs).
pub fn object() -> &'static [u8] {
    EBPF_OBJECT
}

/// Program names, i.e. the function names in the eBPF crate.
pub const EGRESS_PROGRAM: &str = "egress";
pub const INGRESS_PROGRAM: &str = "ingress";
pub const TC_FROM_WORKLOAD_PROGRAM: &str = "tc_from_workload";
pub const TC_TO_WORKLOAD_PROGRAM: &str = "tc_to_workload";
/// `connect()` and unconnected UDP `sendmsg()` hooks (cgroup_sock_addr), by
/// family: they refuse a forbidden destination with EPERM before any packet.
pub const SOCK_ADDR_PROGRAMS: [&str; 4] = ["connect4", "connect6", "sendmsg4", "sendmsg6"];

/// Which programs an instance loads: those for cgroups, those for host-side
/// interfaces, or both (each load is a verifier run, so only what is needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hooks {
    pub cgroup: bool,
    pub interfaces: bool,
}

impl Hooks {
    pub const CGROUP: Self = Self {
        cgroup: true,
        interfaces: false,
    };
    pub const INTERFACES: Self = Self {
        cgroup: false,
        interfaces: true,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("eBPF program `{name}`: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("eBPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("attaching to interface {interface}: {source}")]
    Interface {
        interface: String,
        #[source]
        source: ProgramError,
    },
    #[error("the eBPF object has no {kind} named `{name}`")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("link of `{name}`: {source}")]
    Link {
        name: &'static str,
        #[source]
        source: LinkError,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("pinned instance {path}: {source}")]
    Pinned {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("this instance was adopted from bpffs; its programs are not loaded here")]
    Adopted,
}

type Result<T, E = DatapathError> = std::result::Result<T, E>;

/// Summed per-CPU drop counters, indexed by `maps::counter_index`.
pub type DropCounts = Vec<u64>;
/// Summed per-CPU DNS counters, indexed by `DnsStat`.
pub type DnsStats = Vec<u64>;

/// An attachment of one of the instance's programs.
enum Attachment {
    /// Detached when dropped (the link is only held for that).
    Owned { _link: FdLink },
    /// Pinned in bpffs: stays attached when dropped, until unpinned.
    Pinned(PinnedLink),
}

pub struct PolicyDatapath {
    /// The programs, for instances loaded by this process (`None` when
    /// adopted from bpffs: the kernel keeps the programs alive through their
    /// links).
    ebpf: Option<Ebpf>,
    attachments: Vec<Attachment>,
    /// Where the instance is pinned, if it is.
    pin_dir: Option<PathBuf>,
    allow: HashMap<MapData, AllowKey, AllowValue>,
    cidr: LpmTrie<MapData, CidrKey, CidrValue>,
    resolvers: HashMap<MapData, Addr, u32>,
    config: Array<MapData, PolicyConfig>,
    dns_names: HashMap<MapData, DnsName, DnsNameRules>,
    rule_ports: Array<MapData, RulePorts>,
    internal_ranges: LpmTrie<MapData, Addr, u32>,
    cidr_addrs: LpmTrie<MapData, Addr, u32>,
    drop_counters: PerCpuArray<MapData, u64>,
    dns_stats: PerCpuArray<MapData, u64>,
    events_lost: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    /// The TC verdict cache (absent from instances pinned by daemons that
    /// did not pin it).
    flows: Option<HashMap<MapData, FlowKey, u8>>,
}

impl PolicyDatapath {
    /// Loads a fresh instance: programs verified, maps empty and the policy
    /// not ready (so it would drop everything if attached now).
    pub fn load(hooks: Hooks) -> Result<Self> {
        Self::load_into(hooks, None)
    }

    /// Like [`Self::load`], with every map pinned under `dir` (which must not
    /// exist yet) and every later attachment pinned there too.
    pub fn load_pinned(hooks: Hooks, dir: &Path) -> Result<Self> {
        pins::create_dir(dir)?;
        Self::load_into(hooks, Some(dir)).inspect_err(|_| pins::remove_dir(dir))
    }

    /// Re-opens an instance pinned under `dir` by an earlier daemon: its maps
    /// (learned addresses, counters, pending events) and its attachments.
    pub fn adopt(dir: &Path) -> Result<Self> {
        let maps = MapSource::Pinned(dir);
        let mut datapath = Self::from_maps(None, maps)?;
        datapath.attachments = pins::links(dir)?
            .into_iter()
            .map(Attachment::Pinned)
            .collect();
        datapath.pin_dir = Some(dir.to_path_buf());
        Ok(datapath)
    }

    fn load_into(hooks: Hooks, pin_dir: Option<&Path>) -> Result<Self> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT)?;
        if hooks.cgroup {
            for name in [EGRESS_PROGRAM, INGRESS_PROGRAM] {
                let program: &mut CgroupSkb = program(Some(&mut ebpf), name)?;
                program
                    .load()
                    .map_err(|source| DatapathError::Program { name, source })?;
            }
            for name in SOCK_ADDR_PROGRAMS {
                let program: &mut CgroupSockAddr = program(Some(&mut ebpf), name)?;
                program
                    .load()
                    .map_err(|source| DatapathError::Program { name, source })?;
            }
        }
        if hooks.interfaces {
            for name in [TC_FROM_WORKLOAD_PROGRAM, TC_TO_WORKLOAD_PROGRAM] {
                let program: &mut SchedClassifier = program(Some(&mut ebpf), name)?;
                program
                    .load()
                    .map_err(|source| DatapathError::Program { name, source })?;
            }
        }
        let mut datapath = Self::from_maps(None, MapSource::Loaded(&mut ebpf, pin_dir))?;
        datapath.ebpf = Some(ebpf);
        datapath.pin_dir = pin_dir.map(Path::to_path_buf);
        Ok(datapath)
    }

    fn from_maps(ebpf: Option<Ebpf>, mut maps: MapSource<'_>) -> Result<Self> {
        Ok(Self {
            allow: maps.take(names::ALLOW)?,
            cidr: maps.take(names::CIDR)?,
            resolvers: maps.take(names::RESOLVERS)?,
            config: maps.take(names::CONFIG)?,
            dns_names: maps.take(names::DNS_NAMES)?,
            rule_ports: maps.take(names::RULE_PORTS)?,
            internal_ranges: maps.take(names::INTERNAL_RANGES)?,
            cidr_addrs: maps.take(names::CIDR_ADDRS)?,
            drop_counters: maps.take(names::DROP_COUNTERS)?,
            dns_stats: maps.take(names::DNS_STATS)?,
            events_lost: maps.take(names::EVENTS_LOST)?,
            events: Some(maps.take(names::EVENTS)?),
            flows: maps.take_optional(names::FLOWS)?,
            ebpf,
            attachments: Vec::new(),
            pin_dir: None,
        })
    }

    /// Where the instance is pinned, if it is.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// Detaches the instance and removes its pins: the explicit end of an
    /// instance (dropping a pinned instance leaves it enforcing).
    pub fn remove(mut self) {
        for attachment in self.attachments.drain(..) {
            if let Attachment::Pinned(link) = attachment
                && let Err(error) = link.unpin()
            {
                tracing::error!("unpinning a link: {error}");
            }
        }
        if let Some(dir) = self.pin_dir.take() {
            pins::remove_dir(&dir);
        }
    }

    /// Writes the entries the policy text determines. The config (and with it
    /// the `ready` flag) is written last, so the programs never act on a
    /// partially written policy.
    pub fn install_static(&mut self, entries: &StaticEntries) -> Result<()> {
        for resolver in &entries.resolvers {
            self.resolvers
                .insert(resolver, 0, 0)
                .map_err(map_error(names::RESOLVERS))?;
        }
        for entry in &entries.cidrs {
            let key = lpm_trie::Key::new(entry.prefix_len, entry.key);
            self.cidr
                .insert(&key, entry.value, 0)
                .map_err(map_error(names::CIDR))?;
        }
        for (trie, entries, name) in [
            (&mut self.cidr_addrs, &entries.cidr_addrs, names::CIDR_ADDRS),
            (
                &mut self.internal_ranges,
                &entries.internal_ranges,
                names::INTERNAL_RANGES,
            ),
        ] {
            for entry in entries {
                let key = lpm_trie::Key::new(entry.prefix_len, entry.addr);
                trie.insert(&key, entry.value, 0).map_err(map_error(name))?;
            }
        }
        for (name, rules) in &entries.dns_names {
            self.dns_names
                .insert(name, rules, 0)
                .map_err(map_error(names::DNS_NAMES))?;
        }
        for (rule, ports) in &entries.rule_ports {
            self.rule_ports
                .set(*rule, ports, 0)
                .map_err(map_error(names::RULE_PORTS))?;
        }
        self.config
            .set(0, entries.config, 0)
            .map_err(map_error(names::CONFIG))
    }

    pub fn upsert_allow(&mut self, entries: &[(AllowKey, AllowValue)]) -> Result<()> {
        for (key, value) in entries {
            self.allow
                .insert(key, value, 0)
                .map_err(map_error(names::ALLOW))?;
        }
        Ok(())
    }

    pub fn remove_allow(&mut self, key: &AllowKey) -> Result<()> {
        match self.allow.remove(key) {
            // Already gone (e.g. removed by an earlier GC pass): nothing to do.
            Err(MapError::KeyNotFound) => Ok(()),
            other => other.map_err(map_error(names::ALLOW)),
        }
    }

    /// Every entry of the `ALLOW` map; entries that vanish while iterating are skipped.
    pub fn allow_entries(&self) -> Vec<(AllowKey, AllowValue)> {
        self.allow.iter().filter_map(Result::ok).collect()
    }

    /// Attaches the programs to a cgroup v2 directory: ingress first, so DNS
    /// answers are learned from the moment queries can leave, then egress,
    /// then the `connect()`/`sendmsg()` hooks. The attachments are BPF
    /// links, and links on a cgroup always coexist (the kernel refuses attach
    /// flags on them; `Single` means no flags): a new instance joins before
    /// the old one leaves, and while both are attached a packet must pass
    /// both, so a swap never opens anything.
    pub fn attach_cgroup(&mut self, cgroup: impl AsFd) -> Result<()> {
        for (name, attach_type) in [
            (INGRESS_PROGRAM, CgroupSkbAttachType::Ingress),
            (EGRESS_PROGRAM, CgroupSkbAttachType::Egress),
        ] {
            let program: &mut CgroupSkb = program(self.ebpf.as_mut(), name)?;
            let id = program
                .attach(cgroup.as_fd(), attach_type, CgroupAttachMode::Single)
                .map_err(|source| DatapathError::Program { name, source })?;
            let link = program
                .take_link(id)
                .map_err(|source| DatapathError::Program { name, source })?;
            let link =
                FdLink::try_from(link).map_err(|source| DatapathError::Link { name, source })?;
            self.keep(name, link)?;
        }
        // The early answers to connect()/sendmsg(), once the packet-level
        // enforcement is in place.
        for name in SOCK_ADDR_PROGRAMS {
            let program: &mut CgroupSockAddr = program(self.ebpf.as_mut(), name)?;
            let id = program
                .attach(cgroup.as_fd(), CgroupAttachMode::Single)
                .map_err(|source| DatapathError::Program { name, source })?;
            let link = program
                .take_link(id)
                .map_err(|source| DatapathError::Program { name, source })?;
            let link =
                FdLink::try_from(link).map_err(|source| DatapathError::Link { name, source })?;
            self.keep(name, link)?;
        }
        Ok(())
    }

    /// Attaches the TC programs to a host-side interface: packets from the
    /// workload arrive there as ingress, packets to it leave as egress. TCX
    /// links, like cgroup links, coexist, so a swap never opens anything.
    pub fn attach_interface(&mut self, interface: &str) -> Result<()> {
        for (name, attach_type) in [
            (TC_TO_WORKLOAD_PROGRAM, TcAttachType::Egress),
            (TC_FROM_WORKLOAD_PROGRAM, TcAttachType::Ingress),
        ] {
            let program: &mut SchedClassifier = program(self.ebpf.as_mut(), name)?;
            let interface_error = |source| DatapathError::Interface {
                interface: interface.to_string(),
                source,
            };
            let id = program
                .attach(interface, attach_type)
                .map_err(interface_error)?;
            let link = program.take_link(id).map_err(interface_error)?;
            let link =
                FdLink::try_from(link).map_err(|source| DatapathError::Link { name, source })?;
            self.keep(name, link)?;
        }
        Ok(())
    }

    /// Holds on to an attachment, pinning it if the instance is pinned.
    fn keep(&mut self, name: &'static str, link: FdLink) -> Result<()> {
        let attachment = match &self.pin_dir {
            Some(dir) => Attachment::Pinned(pins::pin_link(dir, name, link)?),
            None => Attachment::Owned { _link: link },
        };
        self.attachments.push(attachment);
        Ok(())
    }

    pub fn drop_counts(&self) -> Result<DropCounts> {
        (0..DROP_COUNTERS_LEN)
            .map(|index| {
                self.drop_counters
                    .get(&index, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(map_error(names::DROP_COUNTERS))
            })
            .collect()
    }

    pub fn dns_stats(&self) -> Result<DnsStats> {
        (0..DnsStat::COUNT)
            .map(|index| {
                self.dns_stats
                    .get(&index, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(map_error(names::DNS_STATS))
            })
            .collect()
    }

    pub fn events_lost(&self) -> Result<u64> {
        self.events_lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .map_err(map_error(names::EVENTS_LOST))
    }

    /// Runs the egress program on `frame` (an Ethernet frame: the kernel strips
    /// the Ethernet header, as the program expects) `repeat` times without
    /// attaching it, through `BPF_PROG_TEST_RUN`. For tests and benchmarks;
    /// the return value is 1 for pass, 0 for drop.
    pub fn test_run_egress(&self, frame: &[u8], repeat: u32) -> Result<TestRunResult> {
        self.test_run(EGRESS_PROGRAM, frame, repeat)
    }

    /// Like [`Self::test_run_egress`], for the ingress (DNS learning) program.
    pub fn test_run_ingress(&self, frame: &[u8]) -> Result<TestRunResult> {
        self.test_run(INGRESS_PROGRAM, frame, 1)
    }

    /// Like [`Self::test_run_egress`], for the TC program that sees what the
    /// workload sends (the frame keeps its Ethernet header; TC_ACT_SHOT = 2
    /// is a drop, -1 = continue).
    pub fn test_run_tc_from_workload(&self, frame: &[u8]) -> Result<TestRunResult> {
        self.test_run(TC_FROM_WORKLOAD_PROGRAM, frame, 1)
    }

    /// Like [`Self::test_run_ingress`], for the TC program on the way to the workload.
    pub fn test_run_tc_to_workload(&self, frame: &[u8]) -> Result<TestRunResult> {
        self.test_run(TC_TO_WORKLOAD_PROGRAM, frame, 1)
    }

    /// Like [`Self::test_run_egress`] (one run), with `context` as the
    /// packet's `struct __sk_buff` (e.g. to mark it as a GSO packet).
    pub fn test_run_egress_with_context(
        &self,
        frame: &[u8],
        context: &[u8],
    ) -> Result<TestRunResult> {
        self.test_run_options(
            EGRESS_PROGRAM,
            TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(context),
                ..TestRunOptions::default()
            },
        )
    }

    fn test_run(&self, name: &'static str, frame: &[u8], repeat: u32) -> Result<TestRunResult> {
        self.test_run_options(
            name,
            TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            },
        )
    }

    fn test_run_options(
        &self,
        name: &'static str,
        options: TestRunOptions<'_>,
    ) -> Result<TestRunResult> {
        let ebpf = self.ebpf.as_ref().ok_or(DatapathError::Adopted)?;
        let result = match ebpf.program(name) {
            Some(Program::CgroupSkb(program)) => program.test_run(options),
            Some(Program::SchedClassifier(program)) => program.test_run(options),
            _ => {
                return Err(DatapathError::Missing {
                    kind: "program",
                    name,
                });
            }
        };
        result.map_err(|source| DatapathError::Program { name, source })
    }

    /// The flows the TC verdict cache holds as allowed.
    pub fn allowed_flows(&self) -> Vec<FlowKey> {
        let Some(flows) = &self.flows else {
            return Vec::new();
        };
        flows
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, verdict)| *verdict == names::FLOW_ALLOWED)
            .map(|(key, _)| key)
            .collect()
    }

    /// Marks `flows` as allowed in the TC verdict cache (carried over from
    /// an instance this one replaces, so that live connections whose first
    /// bytes were inspected there are not inspected again mid-stream).
    pub fn allow_flows(&mut self, flows: &[FlowKey]) -> Result<()> {
        let Some(map) = &mut self.flows else {
            return Ok(());
        };
        for key in flows {
            map.insert(key, names::FLOW_ALLOWED, 0)
                .map_err(map_error(names::FLOWS))?;
        }
        Ok(())
    }

    /// Hands the event ring buffer to its reader (once).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }
}

/// `true` when an address is in the map form of `ip`'s family (helper for status output).
pub fn ip_of(addr: &Addr) -> IpAddr {
    match openclaw_egress_common::addr::as_ipv4(addr) {
        Some(v4) => IpAddr::from(v4),
        None => IpAddr::from(*addr),
    }
}

fn program<'a, T>(ebpf: Option<&'a mut Ebpf>, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .ok_or(DatapathError::Adopted)?
        .program_mut(name)
        .ok_or(DatapathError::Missing {
            kind: "program",
            name,
        })?;
    program
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })
}

/// Where an instance's maps come from.
enum MapSource<'a> {
    /// A freshly loaded object, pinning each map under the directory if given.
    Loaded(&'a mut Ebpf, Option<&'a Path>),
    /// Pins of an earlier daemon.
    Pinned(&'a Path),
}

impl MapSource<'_> {
    /// Like [`Self::take`], for a map that instances pinned by older daemons
    /// lack: `None` when its pin is missing.
    fn take_optional<T>(&mut self, name: &'static str) -> Result<Option<T>>
    where
        T: TryFrom<Map, Error = MapError>,
    {
        if let Self::Pinned(dir) = self
            && !pins::has_map(dir, name)
        {
            return Ok(None);
        }
        self.take(name).map(Some)
    }

    fn take<T>(&mut self, name: &'static str) -> Result<T>
    where
        T: TryFrom<Map, Error = MapError>,
    {
        let map = match self {
            Self::Loaded(ebpf, pin_dir) => {
                let map = ebpf
                    .take_map(name)
                    .ok_or(DatapathError::Missing { kind: "map", name })?;
                if let Some(dir) = pin_dir {
                    pins::pin_map(dir, name, &map)?;
                }
                map
            }
            Self::Pinned(dir) => pins::open_map(dir, name)?,
        };
        T::try_from(map).map_err(map_error(name))
    }
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}
