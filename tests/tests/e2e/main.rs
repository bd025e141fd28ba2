//! The end-to-end tests: the real `openclaw-egress` binary, `oce-world`
//! and `oce-probe` in sandboxes (network namespaces, a veth, cgroups; see
//! the `openclaw-egress-e2e` library), one module per subject.
//!
//! One test binary, as aya's integration tests are: one link instead of one
//! per file, and the helpers in `common` compiled once. A subject's tests
//! run alone with a filter on its module, e.g.
//! `cargo test -p openclaw-egress-e2e --test e2e dns_datapath::` (after
//! `cargo build --bins`, which builds the binaries they drive).
//!
//! Root-only; each test is skipped with a message otherwise. CI runs them
//! as root.

mod common;
mod harness;

mod audit_mode;
mod bypass_answers;
mod bypass_daemonset;
mod bypass_dns;
mod bypass_feedback;
mod bypass_ip_options;
mod bypass_learning;
mod bypass_privileged;
mod cli_ops;
mod dashboards;
mod dns_datapath;
mod enforcement;
mod flow_log;
mod hardening_api_input;
mod hardening_exec;
mod hardening_host_cgroup;
mod kubernetes;
mod kubernetes_cnp;
mod kubernetes_crd;
mod learn_mode;
mod observability;
mod pod_start;
mod policy_lifecycle;
mod restart;
mod server_names;
mod systemd_unit;
mod tc_classifier;
mod trace_datapath;
