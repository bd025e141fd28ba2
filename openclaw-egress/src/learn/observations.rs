//! What a learning run saw: the DNS questions a workload asked, the
//! addresses their answers carried, and every connection it attempted,
//! gathered from the datapath's records (see `daemon::learning`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::SystemTime,
};

/// How often and when something was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
}

impl Seen {
    pub fn once(at: SystemTime) -> Self {
        Self {
            count: 1,
            first: at,
            last: at,
        }
    }

    pub fn again(&mut self, at: SystemTime) {
        self.count += 1;
        self.first = self.first.min(at);
        self.last = self.last.max(at);
    }
}

/// A transport protocol a connection used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Where a connection went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    pub addr: IpAddr,
    pub transport: Transport,
    pub port: u16,
}

/// One asked name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Query types asked (1 = A, 28 = AAAA, ...).
    pub types: BTreeSet<u16>,
    pub seen: Seen,
}

/// Connections to one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub seen: Seen,
    /// The asked names whose answers carried the address (empty: the
    /// workload connected to an address no answer gave it).
    pub names: BTreeSet<String>,
}

/// Everything one learning run saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    /// The policy's resolvers (DNS to them is not a connection rule).
    pub resolvers: Vec<IpAddr>,
    /// Names asked, lowercased, without the trailing dot.
    pub questions: BTreeMap<String, Question>,
    /// Connections other than DNS to the resolvers.
    pub connections: BTreeMap<Destination, Connection>,
}
