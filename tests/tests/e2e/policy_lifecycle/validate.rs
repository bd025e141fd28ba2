//! `validate` accepts the shipped policies and pinpoints errors.

use super::*;

#[test]
fn validate_accepts_the_shipped_policies_and_pinpoints_errors() {
    if skip_unless_root() {
        return;
    }
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut shipped: Vec<_> = std::fs::read_dir(&policies)
        .unwrap_or_else(|e| panic!("reading {}: {e}", policies.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    shipped.sort();
    assert!(!shipped.is_empty(), "no policies in {}", policies.display());
    for file in &shipped {
        let file = file.display().to_string();
        let output = run_cli(&["validate", &file]);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "validate {file}: {:?}\n{stdout}{}",
            output.status,
            text(&output.stderr)
        );
        assert!(
            stdout.starts_with(&format!("{file}: ok (policy ")),
            "{stdout}"
        );
    }

    let dir = TempDir::new("validate");
    let good = r#"apiVersion: openclaw.io/v1
kind: EgressPolicy
metadata:
  name: agent
spec:
  selector:
    cgroupPath: agent
  dns:
    resolvers: [10.77.0.1]
  egress:
    - fqdn: api.example.com
      ports: [443/tcp]
"#;
    let good_path = write_file(dir.path(), "good.yaml", good);
    // Line 12, column 7: the misspelt key.
    let broken_path = write_file(
        dir.path(),
        "broken.yaml",
        &good.replace("      ports:", "      portz:"),
    );
    let (good_path, broken_path) = (
        good_path.display().to_string(),
        broken_path.display().to_string(),
    );
    let output = run_cli(&["validate", &broken_path]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "{broken_path}:12:7: spec.egress[0].portz: unknown field `portz`"
        )),
        "expected file:line:col: field: message, got:\n{stderr}"
    );

    // Several files: each is reported, and one broken file fails the run.
    let output = run_cli(&["validate", &good_path, &broken_path]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        text(&output.stdout).contains(&format!("{good_path}: ok (policy agent, 1 rule)")),
        "{output:?}"
    );
    assert!(
        text(&output.stderr).contains(&format!("{broken_path}:12:7: ")),
        "{output:?}"
    );
}
