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

// ---------------------------------------------------------------------------
// Just enough PromQL: the `openclaw_egress_*` selectors of a query and the
// labels it groups or matches by.

/// A label matcher of a selector: `label op "value"`.
#[derive(Debug)]
struct Matcher {
    label: String,
    op: &'static str,
    value: String,
}

/// `metric{matchers}`.
#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<Matcher>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        let found = self.text[self.pos..].starts_with(token);
        if found {
            self.pos += token.len();
        }
        found
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// The identifier here (empty if there is none).
    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_ident) {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    /// The string literal here, unquoted; `None` if there is none or it is
    /// not closed.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek().filter(|c| matches!(c, '"' | '\'' | '`'))?;
        self.bump();
        let mut value = String::new();
        loop {
            let c = self.peek()?;
            self.bump();
            match c {
                c if c == quote => return Some(value),
                '\\' if quote != '`' => {
                    value.push(self.peek()?);
                    self.bump();
                }
                c => value.push(c),
            }
        }
    }

    /// Moves past the token here: a string, an identifier or one character;
    /// returns the identifier, if it was one.
    fn next_word(&mut self) -> Option<&'a str> {
        match self.peek()? {
            '"' | '\'' | '`' => {
                self.string();
                Some("")
            }
            c if is_ident(c) => Some(self.ident()),
            _ => {
                self.bump();
                Some("")
            }
        }
    }
}

/// Every `openclaw_egress_*` selector of `query` (PromQL, a
/// `label_values(...)` query, or a series in promtool's notation).
fn selectors(query: &str) -> Result<Vec<Selector>, String> {
    let mut found = Vec::new();
    let mut cursor = Cursor::new(query);
    while let Some(word) = cursor.next_word() {
        if !word.starts_with(PREFIX) {
            continue;
        }
        let mut selector = Selector {
            metric: word.to_owned(),
            matchers: Vec::new(),
        };
        cursor.skip_whitespace();
        if cursor.eat("{") {
            loop {
                cursor.skip_whitespace();
                if cursor.eat("}") {
                    break;
                }
                if cursor.eat(",") {
                    continue;
                }
                let label = cursor.ident();
                cursor.skip_whitespace();
                let op = ["=~", "!~", "!=", "="]
                    .into_iter()
                    .find(|op| cursor.eat(op))
                    .filter(|_| !label.is_empty())
                    .ok_or_else(|| format!("cannot read the matchers of {word} in {query:?}"))?;
                cursor.skip_whitespace();
                let value = cursor
                    .string()
                    .ok_or_else(|| format!("no quoted value for {label}{op} in {query:?}"))?;
                selector.matchers.push(Matcher {
                    label: label.to_owned(),
                    op,
                    value,
                });
            }
        }
        found.push(selector);
    }
    Ok(found)
}

/// The labels named by the `by`, `without`, `on`, `ignoring`, `group_left`
/// and `group_right` clauses of `query`.
fn clause_labels(query: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut cursor = Cursor::new(query);
    while let Some(word) = cursor.next_word() {
        if !matches!(
            word,
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) {
            continue;
        }
        cursor.skip_whitespace();
        if !cursor.eat("(") {
            continue;
        }
        loop {
            cursor.skip_whitespace();
            let label = cursor.ident();
            if !label.is_empty() {
                labels.push(label.to_owned());
            }
            cursor.skip_whitespace();
            if !cursor.eat(",") {
                break;
            }
        }
    }
    labels
}

/// `label_values(metric, label)`: the metric and the label.
fn label_values(query: &str) -> Option<(&str, &str)> {
    let args = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (series, label) = args.rsplit_once(',')?;
    Some((series.trim(), label.trim()))
}

/// The metric names `queries` use.
fn metric_names(queries: &[(String, String)]) -> BTreeSet<String> {
    queries
        .iter()
        .flat_map(|(place, query)| selectors(query).unwrap_or_else(|e| panic!("{place}: {e}")))
        .map(|selector| selector.metric)
        .collect()
}

#[test]
fn the_query_scanner_finds_selectors_and_clause_labels() {
    let query = r#"sum without (reason, direction) (rate(openclaw_egress_drops_total{policy=~"$policy", reason = "no_rule"}[5m]))
        > 4 * on(instance) group_left openclaw_egress_policy_info
        and ignoring (mode) openclaw_egress_learned_ips{a="x\"}openclaw_egress_fake"} or label_replace(vector(1), "d", "openclaw_egress_no", "", "")"#;
    let found = selectors(query).unwrap();
    let names: Vec<&str> = found.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(
        names,
        [
            "openclaw_egress_drops_total",
            "openclaw_egress_policy_info",
            "openclaw_egress_learned_ips"
        ]
    );
    let matchers: Vec<(&str, &str, &str)> = found[0]
        .matchers
        .iter()
        .map(|m| (m.label.as_str(), m.op, m.value.as_str()))
        .collect();
    assert_eq!(
        matchers,
        [("policy", "=~", "$policy"), ("reason", "=", "no_rule")]
    );
    assert_eq!(found[2].matchers[0].value, "x\"}openclaw_egress_fake");
    assert_eq!(
        clause_labels(query),
        ["reason", "direction", "instance", "mode"]
    );
    assert_eq!(
        label_values("label_values(openclaw_egress_policy_info, policy)"),
        Some(("openclaw_egress_policy_info", "policy"))
    );
    assert!(selectors(r#"openclaw_egress_x{a="b""#).is_err());
    assert!(selectors(r#"openclaw_egress_x{a}"#).is_err());
}

// ---------------------------------------------------------------------------
// promtool (no root)

#[test]
fn promtool_checks_the_alerting_rules() {
    let out = promtool(&["check", "rules", RULES]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{out}"
    );
}

#[test]
fn promtool_runs_the_rules_unit_tests() {
    promtool(&["test", "rules", RULES_TEST]);
}

/// Every dashboard query parses as PromQL: each becomes a recording rule
/// (with Grafana's variables replaced by values) that promtool checks.
#[test]
fn promtool_parses_every_dashboard_query() {
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > METRICS.len(), "{queries:#?}");
    let substitutions = [
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "6h"),
        ("$policy", ".*"),
        ("$instance", ".*"),
    ];
    let rules: Vec<Json> = queries
        .iter()
        .enumerate()
        .map(|(i, (place, query))| {
            // A variable's `label_values(selector, label)` is Grafana's, not
            // PromQL: check its selector.
            let mut expr = label_values(query)
                .map_or(query.as_str(), |(series, _)| series)
                .to_owned();
            for (variable, value) in substitutions {
                expr = expr.replace(variable, value);
            }
            assert!(!expr.contains('$'), "{place}: unknown variable in {query}");
            serde_json::json!({"record": format!("dashboard_query_{i}"), "expr": expr})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = TempDir::new("dashboards");
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, serde_yaml::to_string(&file).unwrap()).unwrap();
    // Shown if promtool fails: which panel each rule comes from.
    for (i, (place, _)) in queries.iter().enumerate() {
        eprintln!("dashboard_query_{i}: {place}");
    }
    let out = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// The files' shape (no root)

#[test]
fn the_dashboard_is_a_grafana_model_with_a_panel_for_every_metric() {
    let dashboard = dashboard();
    assert_eq!(dashboard["schemaVersion"], 39, "{DASHBOARD}");
    assert_eq!(dashboard["uid"], "openclaw-egress");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));

    // A Prometheus data source variable, and a policy variable from the
    // policies applied.
    let variable = |name: &str| {
        variables(&dashboard)
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{DASHBOARD}: no variable {name}"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let policy = variable("policy");
    assert_eq!(policy["type"], "query");
    assert_eq!(
        variable_query(policy),
        Some("label_values(openclaw_egress_policy_info, policy)")
    );
    assert_eq!(policy["datasource"]["uid"], DATASOURCE_UID);
    assert_eq!(policy["multi"], true);
    assert_eq!(policy["includeAll"], true);

    // Every panel and every target queries the chosen data source; ids are
    // unique; panels fit the 24-column grid.
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "{DASHBOARD}: id {id} used twice");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: {grid}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(panel["datasource"]["uid"], DATASOURCE_UID, "{title}");
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], DATASOURCE_UID, "{title}");
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "{title}: a target without expr: {target}"
            );
        }
    }

    // Per-policy series follow the policy variable (the pod gate's
    // metrics are per daemon, without a policy label).
    for (place, query) in dashboard_queries(&dashboard) {
        if label_values(&query).is_some() {
            continue;
        }
        for selector in selectors(&query).unwrap_or_else(|e| panic!("{place}: {e}")) {
            if selector.metric.starts_with("openclaw_egress_pod_gate_") {
                continue;
            }
            assert!(
                selector
                    .matchers
                    .iter()
                    .any(|m| m.label == "policy" && m.op == "=~" && m.value == "$policy"),
                "{place}: {} does not follow $policy: {query}",
                selector.metric
            );
        }
    }

    let used = metric_names(&dashboard_queries(&dashboard));
    let missing: Vec<&str> = METRICS.into_iter().filter(|m| !used.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "{DASHBOARD}: no panel shows {missing:?}"
    );
}

#[test]
fn every_alert_has_a_severity_and_annotations_and_tests_firing_and_not() {
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().map(rule_name).collect();
    assert_eq!(names, BTreeSet::from(ALERTS), "{RULES}");
    assert_eq!(names.len(), rules.len(), "{RULES}: an alert defined twice");
    let mut severities = BTreeMap::new();
    for rule in &rules {
        let name = rule_name(rule);
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{name}: severity {severity:?}"
        );
        severities.insert(name, severity.unwrap());
        for annotation in ["summary", "description"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(
                text.trim().len() > 20,
                "{name}: no real {annotation}: {text:?}"
            );
        }
    }

    // Each alert is tested firing and not firing, and fires with its
    // severity.
    let tests = yaml(RULES_TEST);
    assert_eq!(
        tests["rule_files"],
        serde_yaml::from_str::<Yaml>("[rules.yaml]").unwrap()
    );
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_sequence().into_iter().flatten() {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default();
            assert!(names.contains(name), "{RULES_TEST}: unknown alert {name}");
            let expected = case["exp_alerts"]
                .as_sequence()
                .map_or(&[][..], Vec::as_slice);
            if expected.is_empty() {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
            for alert in expected {
                assert_eq!(
                    alert["exp_labels"]["severity"].as_str(),
                    Some(severities[name]),
                    "{RULES_TEST}: {name}: {alert:?}"
                );
            }
        }
    }
    assert_eq!(firing, names, "{RULES_TEST}: alerts never tested firing");
    assert_eq!(quiet, names, "{RULES_TEST}: alerts never tested quiet");
}

// ---------------------------------------------------------------------------
// Against a real daemon (root)

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("api.example.com", "203.0.113.10")
        .tcp("203.0.113.10:443")
        .udp("203.0.113.99:4000")
}

/// What is wrong with `query` (found at `place`) given the daemon's
/// `metrics`.
fn problems_of(place: &str, query: &str, metrics: &Metrics) -> Vec<String> {
    let mut problems = Vec::new();
    let all_labels: BTreeSet<&str> = metrics
        .samples
        .iter()
        .filter(|s| s.name.starts_with(PREFIX))
        .flat_map(|s| s.labels.keys().map(String::as_str))
        .chain(TARGET_LABELS)
        .collect();
    let selectors = match selectors(query) {
        Ok(selectors) => selectors,
        Err(e) => return vec![format!("{place}: {e}")],
    };
    for selector in selectors {
        let metric = &selector.metric;
        let samples: Vec<&Sample> = metrics.series(metric);
        if samples.is_empty() {
            problems.push(format!("{place}: the daemon exports no {metric}"));
            continue;
        }
        for Matcher { label, op, value } in &selector.matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            if !samples.iter().any(|s| s.labels.contains_key(label)) {
                problems.push(format!("{place}: {metric} has no label {label}"));
            } else if *op == "="
                && !FREE_VALUE_LABELS.contains(&label.as_str())
                && !samples.iter().any(|s| s.labels.get(label) == Some(value))
            {
                problems.push(format!("{place}: no {metric} series has {label}={value:?}"));
            }
        }
    }
    for label in clause_labels(query) {
        if !all_labels.contains(label.as_str()) {
            problems.push(format!(
                "{place}: groups or matches by {label}, which no metric has"
            ));
        }
    }
    if let Some((metric, label)) = label_values(query)
        && !TARGET_LABELS.contains(&label)
        && !metrics
            .series(metric)
            .iter()
            .any(|s| s.labels.contains_key(label))
    {
        problems.push(format!("{place}: {metric} has no label {label}"));
    }
    problems
}

#[test]
fn the_daemon_exports_every_metric_and_label_the_dashboard_and_rules_use() {
    if skip_unless_root() {
        return;
    }
    let mut queries = dashboard_queries(&dashboard());
    queries.extend(rules_queries());

    let rig = Rig::start(&world());
    rig.apply(
        &PolicyYaml::for_sandbox(&rig.sandbox).fqdn("api.example.com", &["443/tcp"]),
        "policy.yaml",
    );
    // A drop, an allowed DNS query and a denied one (itself a drop).
    rig.probe(&["udp", "203.0.113.99:4000", "--payload", "x"])
        .assert_error(probe_error::PERMISSION_DENIED);
    rig.assert_allowed(&["dns", "10.77.0.1", "api.example.com"]);
    rig.probe(&["dns", "10.77.0.1", "evil.example", "--timeout-ms", "500"])
        .assert_error(probe_error::PERMISSION_DENIED);

    let (text, metrics) = common::poll_until(
        "the drops and queries counted",
        Duration::from_secs(5),
        || {
            let text = rig.daemon.metrics_text().map_err(|e| format!("{e:#}"))?;
            let metrics = Metrics::parse(&text).map_err(|e| format!("{e:#}\n{text}"))?;
            let count = |name: &str, labels: &[(&str, &str)]| {
                let mut all = vec![("policy", POLICY)];
                all.extend_from_slice(labels);
                metrics.sum(name, &all)
            };
            let counted = [
                count(common::DROPS_TOTAL, &[("reason", "no_rule")]),
                count(common::DROPS_TOTAL, &[("reason", "dns_denied")]),
                count(DNS_QUERIES_TOTAL, &[("verdict", "allowed")]),
                count(DNS_QUERIES_TOTAL, &[("verdict", "denied")]),
            ];
            if counted.iter().all(|&n| n >= 1) {
                Ok((text, metrics))
            } else {
                Err(format!("no_rule, dns_denied, allowed, denied: {counted:?}"))
            }
        },
    );

    // Every metric name (exactly as exposed: counters keep their `_total`),
    // label and label value in use.
    let problems: Vec<String> = queries
        .iter()
        .flat_map(|(place, query)| problems_of(place, query, &metrics))
        .collect();
    assert!(
        problems.is_empty(),
        "{}\n--- the daemon's /metrics:\n{text}",
        problems.join("\n")
    );
    assert!(!metric_names(&queries).is_empty(), "{queries:#?}");

    // And the other way round: the dashboard shows every metric of
    // METRICS (checked without root), which must be all the daemon has.
    let exposed: BTreeSet<&str> = metrics
        .samples
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| name.starts_with(PREFIX))
        .collect();
    assert_eq!(
        exposed,
        METRICS.into_iter().collect(),
        "the daemon's metrics changed: update METRICS, the dashboard and the rules"
    );
}
