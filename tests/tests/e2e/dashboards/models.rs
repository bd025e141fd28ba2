//! The dashboard as a Grafana model and the alerts with their severities, annotations and tests.

use super::*;

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
