//! The daemon's errors, in one module that every part of it imports from
//! (so that no two parts import each other for an error type): what an
//! apply, or an instance built for a workload that joins a policy, refuses
//! with ([`ApplyError`]), and what the other requests on applied policies
//! and adopting them after a restart fail with ([`DaemonError`]).
//!
//! Messages are what clients and logs show; tests match on them.

use super::workload::AttachError;
use crate::{
    cgroup::CgroupError,
    datapath::{DatapathError, EncodeError},
    fqdn::resolve::ResolveError,
    policy::PolicyError,
};

/// Why a policy (or one more workload of an applied one) cannot be put in
/// force; nothing of it is then.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{source_name}: spec.selector: {message}")]
    Selector {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: spec.selector.cgroupPath: {error}")]
    Cgroup {
        source_name: String,
        #[source]
        error: CgroupError,
    },
    #[error("{source_name}: spec.dns.resolvers: {error}")]
    Resolver {
        source_name: String,
        #[source]
        error: Box<ResolveError>,
    },
    #[error("{source_name}: spec.egress: {error}")]
    Encode {
        source_name: String,
        #[source]
        error: EncodeError,
    },
    #[error("loading the datapath for {workload} of policy {name}: {error}")]
    Datapath {
        name: String,
        workload: String,
        #[source]
        error: Box<DatapathError>,
    },
    #[error("attaching policy {name} to {workload}: {error}")]
    Attach {
        name: String,
        workload: String,
        #[source]
        error: Box<AttachError>,
    },
    #[error("recording policy {name} in {dir}: {error}")]
    State {
        name: String,
        dir: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Why a request on applied policies, or adopting one an earlier daemon
/// left enforcing, fails.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `remove` or `learn` of a policy that is not applied.
    #[error("no policy named {name} is applied")]
    NotApplied { name: String },
    /// A policy record whose text no longer parses (say, a newer daemon's).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A policy record whose resolvers cannot be asked.
    #[error(transparent)]
    Resolver(#[from] ResolveError),
}
