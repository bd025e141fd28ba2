//! openclaw-egress: an eBPF network egress enforcer for AI agents.
//!
//! The crate is both the daemon and the CLI that talks to it; `main.rs` only
//! parses arguments and calls into these modules.

pub mod api;
pub mod bpf_sys;
pub mod bpffs;
pub mod cgroup;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod datapath;
pub mod error_text;
pub mod exec;
pub mod fqdn;
pub mod k8s;
pub mod learn;
pub mod netlink;
pub mod pod_network;
pub mod policy;
// Their paths before they joined `fqdn`, which the datapath and the tests use.
pub use fqdn::{rebinding, resolve};
