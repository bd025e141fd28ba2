//! The Grafana dashboard (`deploy/grafana/openclaw-egress.json`) and the
//! Prometheus alerting rules (`deploy/prometheus/rules.yaml`, unit-tested by
//! `deploy/prometheus/rules_test.yaml`), against the daemon they watch:
//!
//! - promtool checks the rules, runs their unit tests and parses every
//!   dashboard query. These tests need no root and always run; promtool is
//!   required (`cargo xtask test` installs it with the Debian package
//!   `prometheus`; `PROMTOOL` names another binary).
//! - The dashboard is a Grafana model with a `datasource` variable, a
//!   `policy` variable that its per-policy queries follow, and panels for
//!   every metric; every alert has a severity, a summary and a description,
//!   and its unit tests show it both firing and not firing.
//! - A real daemon, after a drop and DNS queries, exports every metric name,
//!   label and label value the dashboard and the rules use (and the rules'
//!   tests feed them), so renaming one breaks this test. Root-only; skipped
//!   with a message otherwise.

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{DNS_QUERIES_TOTAL, POLICY, PolicyYaml, Rig, TempDir, skip_unless_root};
use openclaw_egress_e2e::{Metrics, Sample, WorldConfig, probe_error};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

mod daemon_metrics;
mod models;
mod promtool_checks;
mod query_scanner;

use query_scanner::{Matcher, clause_labels, label_values, metric_names, selectors};

const DASHBOARD: &str = "deploy/grafana/openclaw-egress.json";
const RULES: &str = "deploy/prometheus/rules.yaml";
const RULES_TEST: &str = "deploy/prometheus/rules_test.yaml";

/// What every metric of the daemon starts with.
const PREFIX: &str = "openclaw_egress_";

/// Every metric the daemon exports (`openclaw-egress/src/daemon/metrics.rs`):
/// the dashboard must show each one.
const METRICS: [&str; 13] = [
    "openclaw_egress_drops_total",
    "openclaw_egress_audit_would_drop_total",
    "openclaw_egress_ringbuf_lost_events_total",
    "openclaw_egress_learned_ips",
    "openclaw_egress_policy_info",
    "openclaw_egress_dns_queries_total",
    "openclaw_egress_dns_answers_total",
    "openclaw_egress_dns_learned_addresses_total",
    "openclaw_egress_dns_refused_addresses_total",
    "openclaw_egress_dns_resolutions_total",
    "openclaw_egress_map_memory_bytes",
    "openclaw_egress_pod_gate_held_packets_total",
    "openclaw_egress_pod_gate_armed",
];

/// The alerts of `rules.yaml`.
const ALERTS: [&str; 5] = [
    "OpenclawEgressDropsSpiking",
    "OpenclawEgressRingBufferLosingEvents",
    "OpenclawEgressResolutionsFailing",
    "OpenclawEgressPolicyNotReady",
    "OpenclawEgressPodGateStuckArmed",
];

/// Labels Prometheus adds to every scraped series: not in the daemon's
/// output, so not checked against it.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Labels whose values depend on what is applied (the rules' tests make
/// them up): their names are checked against the daemon, not their values.
const FREE_VALUE_LABELS: [&str; 2] = ["policy", "mode"];

/// The Grafana data source every panel and query must use.
const DATASOURCE_UID: &str = "${datasource}";

/// `relative` (to the workspace root).
fn workspace_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[track_caller]
fn read(relative: &str) -> String {
    let path = workspace_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs promtool in the workspace root and returns its stdout; panics if it
/// fails or is missing (never skips).
#[track_caller]
fn promtool(args: &[&str]) -> String {
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    let output = Command::new(&program)
        .args(args)
        .current_dir(workspace_path("."))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {program:?}: {e}: promtool is required (install the Debian package \
                 `prometheus`, as `cargo xtask test` does, or set PROMTOOL)"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "promtool {args:?}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

// ---------------------------------------------------------------------------
// The files, parsed

#[track_caller]
fn dashboard() -> Json {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

#[track_caller]
fn yaml(relative: &str) -> Yaml {
    serde_yaml::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every panel of the dashboard, those inside rows included (a collapsed
/// row keeps its panels).
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The template variables.
fn variables(dashboard: &Json) -> &[Json] {
    dashboard["templating"]["list"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// The query of a `query` variable: a string, or (Grafana 10+) an object
/// with the text in `query`.
fn variable_query(variable: &Json) -> Option<&str> {
    variable["query"]
        .as_str()
        .or_else(|| variable["query"]["query"].as_str())
}

/// Every query of the dashboard, with where it is: each panel target's
/// `expr` and each `query` variable's query.
fn dashboard_queries(dashboard: &Json) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let place = format!(
                    "{DASHBOARD}: panel {:?} target {}",
                    panel["title"].as_str().unwrap_or_default(),
                    target["refId"]
                );
                queries.push((place, expr.to_owned()));
            }
        }
    }
    for variable in variables(dashboard) {
        if variable["type"] == "query"
            && let Some(query) = variable_query(variable)
        {
            let place = format!("{DASHBOARD}: variable {}", variable["name"]);
            queries.push((place, query.to_owned()));
        }
    }
    queries
}

/// The rules of the `openclaw-egress` group (the only group).
#[track_caller]
fn rules() -> Vec<Yaml> {
    let file = yaml(RULES);
    let groups = file["groups"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{RULES}: no `groups` list"));
    let [group] = &groups[..] else {
        panic!("{RULES}: expected one group, got {}", groups.len());
    };
    assert_eq!(group["name"].as_str(), Some("openclaw-egress"), "{RULES}");
    group["rules"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{RULES}: the group has no `rules` list"))
        .clone()
}

/// The alert's name (or the recording rule's).
fn rule_name(rule: &Yaml) -> &str {
    rule["alert"]
        .as_str()
        .or_else(|| rule["record"].as_str())
        .unwrap_or("?")
}

/// Every rule's expression, and every input series of the rules' unit tests
/// (in promtool's notation, `name{label="value",...}`), with where it is.
#[track_caller]
fn rules_queries() -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = rules()
        .iter()
        .map(|rule| {
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{RULES}: {} has no expr", rule_name(rule)));
            (format!("{RULES}: {}", rule_name(rule)), expr.to_owned())
        })
        .collect();
    let tests = yaml(RULES_TEST);
    for (i, test) in tests["tests"]
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for input in test["input_series"].as_sequence().into_iter().flatten() {
            let series = input["series"]
                .as_str()
                .unwrap_or_else(|| panic!("{RULES_TEST}: test {i}: an input without `series`"));
            queries.push((format!("{RULES_TEST}: test {i}"), series.to_owned()));
        }
    }
    queries
}
