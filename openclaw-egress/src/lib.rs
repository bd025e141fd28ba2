//! openclaw-egress: an eBPF network egress enforcer for AI agents.
//!
//! The crate is both the daemon and the CLI that talks to it; `main.rs` only
//! parses arguments and calls into these modules.

pub mod policy;
