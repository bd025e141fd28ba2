//! Names in policies and the addresses they stand for, as Cilium's
//! `pkg/fqdn` groups them: resolving `fqdn` rules against the policy's own
//! resolvers ([`resolve`], many at once in [`lookups`]), refusing answers
//! that point inside the node or the cluster ([`rebinding`]), the names of
//! a policy and what is known of each ([`names`]), and what a workload's
//! `ALLOW` map holds for its name rules ([`learned`]).
//!
//! Nothing here touches a workload's maps: these modules compute the
//! entries a policy's names need and which ones expired, and the daemon
//! writes them into its instances (`daemon::name_refresher`). That keeps
//! the decisions testable without a kernel, and the maps written in one
//! place.

pub mod learned;
pub mod lookups;
pub mod names;
pub mod rebinding;
pub mod resolve;
