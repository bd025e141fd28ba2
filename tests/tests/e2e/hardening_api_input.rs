//! Bad input at the API gets an answer: a policy too large for a request is
//! refused by the CLI before it is sent, the daemon answers an oversized or
//! non-UTF-8 request with an error line (never by hanging up mid-read), and
//! a policy too large for the kernel's maps is refused at validation, by the
//! CLI and by the daemon, naming the limit.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use common::{PolicyYaml, run_cli, skip_unless_root, write_file};
use openclaw_egress_e2e::{Daemon, Sandbox, binary_path};
use serde_json::{Value, json};

fn start() -> (Daemon, Sandbox) {
    let sandbox = Sandbox::new().expect("creating the sandbox");
    let daemon = sandbox
        .spawn_daemon(&binary_path("openclaw-egress"))
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    (daemon, sandbox)
}

/// Writes `bytes` to the daemon's socket as one request, closes the writing
/// side and returns the one line the daemon answers.
fn raw_request(socket: &Path, bytes: &[u8]) -> Value {
    let stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // Written on a thread: the daemon may answer before it has read it all.
    let bytes = bytes.to_vec();
    let written = std::thread::spawn(move || {
        let result = writer.write_all(&bytes);
        let _ = writer.shutdown(std::net::Shutdown::Write);
        result
    });
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("no answer from the daemon: {e}"));
    let written = written.join().unwrap();
    assert!(
        !line.is_empty(),
        "the daemon hung up without answering (writing: {written:?})"
    );
    written.unwrap_or_else(|e| panic!("the daemon stopped reading the request: {e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[track_caller]
fn assert_error(response: &Value, phrase: &str) {
    assert_eq!(response["response"], "error", "{response}");
    let message = response["message"].as_str().unwrap_or_default();
    assert!(message.contains(phrase), "{phrase:?} not in {message:?}");
}

/// 1025 `cidr` rules, one more than the kernel's rule table holds.
/// The most rules a policy may have (`RULES_MAX` of the kernel's maps).
const RULES_MAX: usize = 16_384;

fn too_many_rules(sandbox: &Sandbox) -> PolicyYaml {
    (0..=RULES_MAX).fold(PolicyYaml::for_sandbox(sandbox), |policy, i| {
        policy.cidr(&format!("10.0.{}.{}/32", i / 256, i % 256), &["443/tcp"])
    })
}

#[test]
fn a_policy_larger_than_a_request_is_refused_before_it_is_sent() {
    if skip_unless_root() {
        return;
    }
    let (daemon, sandbox) = start();
    // A valid policy padded with comments to 5 MiB.
    let mut yaml = PolicyYaml::for_sandbox(&sandbox).to_yaml();
    while yaml.len() < 5 << 20 {
        yaml += &format!("# {}\n", "x".repeat(1000));
    }
    let file = write_file(sandbox.scratch_dir(), "huge.yaml", &yaml);
    let output = daemon.cli(&["apply", file.to_str().unwrap()]).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: the policy is {} bytes; the daemon accepts at most 4 MiB (4194304 bytes) per request",
            file.display(),
            yaml.len()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("Broken pipe"), "{stderr}");

    // Sent anyway, the daemon answers with the limit.
    let mut request = serde_json::to_vec(&json!({
        "request": "apply", "source": "huge.yaml", "yaml": yaml,
    }))
    .unwrap();
    request.push(b'\n');
    let response = raw_request(daemon.socket(), &request);
    assert_error(
        &response,
        "request too large: the daemon reads at most 4 MiB",
    );
    // And it still serves.
    daemon.status_json().unwrap();
}

#[test]
fn bytes_that_are_not_utf8_json_get_an_error_line() {
    if skip_unless_root() {
        return;
    }
    let (daemon, _sandbox) = start();
    let garbage = [0xff, 0xfe, 0x00, 0x80, b'{', 0xc3, 0x28, b'\n'];
    assert_error(
        &raw_request(daemon.socket(), &garbage),
        "bad request: not UTF-8 JSON",
    );
    // Without a newline too.
    assert_error(
        &raw_request(daemon.socket(), &garbage[..5]),
        "bad request: not UTF-8 JSON",
    );
    assert_error(
        &raw_request(daemon.socket(), b"{\"request\": \"destroy\"}\n"),
        "bad request: unknown variant `destroy`",
    );
    daemon.status_json().unwrap();
}

#[test]
fn a_policy_larger_than_the_kernel_maps_is_refused_at_validation() {
    if skip_unless_root() {
        return;
    }
    let (daemon, sandbox) = start();
    let policy = too_many_rules(&sandbox);
    let file = policy.write(sandbox.scratch_dir(), "rules.yaml").unwrap();
    let egress_line = 1 + policy
        .to_yaml()
        .lines()
        .position(|l| l.trim() == "egress:")
        .unwrap();
    let expected = format!(
        "{}:{egress_line}:3: spec.egress: {} rules; a policy may have at most {RULES_MAX}",
        file.display(),
        RULES_MAX + 1
    );

    let output = run_cli(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");

    let output = daemon.cli(&["apply", file.to_str().unwrap()]).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");

    // The daemon checks too, whoever sends the policy.
    let mut request = serde_json::to_vec(&json!({
        "request": "apply", "source": "direct.yaml", "yaml": policy.to_yaml(),
    }))
    .unwrap();
    request.push(b'\n');
    assert_error(&raw_request(daemon.socket(), &request), "direct.yaml:");
    assert_error(
        &raw_request(daemon.socket(), &request),
        &format!(
            "spec.egress: {} rules; a policy may have at most {RULES_MAX}",
            RULES_MAX + 1
        ),
    );
    let status = daemon.status_json().unwrap();
    assert_eq!(status["policies"], json!([]), "{status:#}");
}
