//! A real daemon exports every metric, label and label value the dashboard and the rules use.

use super::*;

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
