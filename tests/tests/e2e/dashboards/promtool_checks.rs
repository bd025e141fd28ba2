//! promtool checks the alerting rules, runs their unit tests and parses every dashboard query.

use super::*;

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
