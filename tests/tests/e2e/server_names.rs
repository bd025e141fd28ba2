//! Names bound to connections, end to end: real TLS servers (`openssl
//! s_server`) on an address that serves any name, real clients (curl, and
//! `oce-probe tls-hello` for hellos cut or padded on purpose), the real
//! daemon. The address is allowed for api.trusted.test; what decides is the
//! server name (TLS) or the Host (HTTP) the client sends.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    net::SocketAddr,
    process::Output,
    time::{Duration, Instant},
};

use common::{
    AUDIT_WOULD_DROP_TOTAL, DROPS_TOTAL, DaemonSide, PolicyYaml, Rig, poll_until, skip_unless_root,
};
use openclaw_egress_e2e::{AGENT_IPV4, AGENT_IPV6, TlsServers, WorldConfig};
use serde_json::Value;

const ALLOWED: &str = "api.trusted.test";
const TRUSTED4: &str = "203.0.113.10";
const TRUSTED6: &str = "2001:db8:1::10";
/// A refused client must hear about it well before an application's
/// timeout: the bound is one second; the margin is for slow CI.
const PROMPTLY: Duration = Duration::from_millis(1500);

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record(ALLOWED, TRUSTED4)
        .record(ALLOWED, TRUSTED6)
        .http("203.0.113.10:80")
}

/// A rig on `side` with HTTPS on both addresses, for every name.
fn tls_rig(side: DaemonSide) -> (Rig, TlsServers) {
    let rig = match side {
        DaemonSide::Agent => Rig::start(&world()),
        DaemonSide::World => Rig::start_tc(&world()),
        DaemonSide::Both => Rig::start_both(&world()),
    };
    let addrs: Vec<SocketAddr> = [format!("{TRUSTED4}:443"), format!("[{TRUSTED6}]:443")]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let servers = TlsServers::start(&rig.sandbox, &addrs, &[ALLOWED, "evil.test"])
        .unwrap_or_else(|e| panic!("starting the TLS servers: {e:#}"));
    (rig, servers)
}

fn https_policy(rig: &Rig) -> PolicyYaml {
    rig.policy().fqdn(ALLOWED, &["443/tcp"])
}

/// curl from the workload (inside the cgroup, or outside it on a TC rig)
/// to `https://<name>/` on `address`, from `local_port`; its output and how
/// long it took.
fn curl(rig: &Rig, url: &str, resolve: &str, extra: &[&str]) -> (Output, Duration) {
    let mut args = vec!["-sk", "--max-time", "5", "-o", "/dev/null"];
    args.extend(["-w", "%{http_code}", "--resolve", resolve]);
    args.extend(extra);
    args.push(url);
    let mut command = match rig.side {
        DaemonSide::World => rig.sandbox.command_in_agent_outside_cgroup("curl", &args),
        _ => rig.sandbox.command_in_agent("curl", &args),
    }
    .expect("a curl command");
    let started = Instant::now();
    let output = command.output().expect("running curl");
    (output, started.elapsed())
}

fn http_code(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[track_caller]
fn assert_https_works(rig: &Rig, name: &str, address: &str) {
    let resolve = format!("{name}:443:{address}");
    let (output, _) = curl(rig, &format!("https://{name}/"), &resolve, &[]);
    assert_eq!(
        http_code(&output),
        "200",
        "https://{name}/ on {address}: {output:?}"
    );
}

/// curl to `name` on `address` from `local_port` must fail promptly (not
/// by its timeout); returns the drop event of that connection.
#[track_caller]
fn assert_https_refused(
    rig: &Rig,
    name: &str,
    address: &str,
    local: SocketAddr,
    reason: &str,
) -> Value {
    let resolve = format!("{name}:443:{address}");
    let port = local.port().to_string();
    let (output, took) = curl(
        rig,
        &format!("https://{name}/"),
        &resolve,
        &["--local-port", &port],
    );
    assert!(
        !output.status.success() && http_code(&output) == "000",
        "https://{name}/ on {address} went through: {output:?}"
    );
    assert!(
        took < PROMPTLY,
        "https://{name}/ on {address}: the client waited {took:?} to hear it was refused"
    );
    let event = rig.wait_for_drop_event(local);
    assert_eq!(event["reason"], reason, "{event}");
    assert_eq!(event["dst_port"], 443, "{event}");
    event
}

fn sni_drops(rig: &Rig, reason: &str) -> u64 {
    rig.counter(DROPS_TOTAL, &[("reason", reason)])
}

#[test]
fn https_reaches_the_allowed_name_and_no_other_name_on_its_address() {
    if skip_unless_root() {
        return;
    }
    let (rig, _servers) = tls_rig(DaemonSide::Agent);
    rig.apply(&https_policy(&rig), "policy.yaml");

    assert_https_works(&rig, ALLOWED, TRUSTED4);
    assert_https_works(&rig, ALLOWED, &format!("[{TRUSTED6}]"));
    // Any case, with the trailing dot.
    assert_https_works(&rig, "API.Trusted.Test.", TRUSTED4);

    // Another name on the very same address and port.
    let local = SocketAddr::new(AGENT_IPV4.into(), 41_001);
    let event = assert_https_refused(&rig, "evil.test", TRUSTED4, local, "sni_denied");
    assert_eq!(event["server_name"], "evil.test", "{event}");
    assert_eq!(event["dst"], TRUSTED4, "{event}");
    let local6 = SocketAddr::new(AGENT_IPV6.into(), 41_002);
    let event = assert_https_refused(
        &rig,
        "evil.test",
        &format!("[{TRUSTED6}]"),
        local6,
        "sni_denied",
    );
    assert_eq!(event["dst"], TRUSTED6, "{event}");

    // Counted once per connection, not per retransmission: wait past the
    // first retransmission timeouts of both refused connections.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sni_drops(&rig, "sni_denied"), 2);

    // A ClientHello without a server name.
    let outcome = rig.probe(&["tls-hello", &format!("{TRUSTED4}:443")]);
    assert!(!outcome.ok, "{outcome:?}");
    let event = rig.wait_for_drop_event(outcome.local.unwrap());
    assert_eq!(event["reason"], "sni_missing", "{event}");

    // The allowed name still works after all that.
    assert_https_works(&rig, ALLOWED, TRUSTED4);
}

/// `tls-hello` from the workload: Ok(detail) or Err((error, event)).
fn hello(rig: &Rig, name: &str, extra: &[&str]) -> Result<String, (String, Value)> {
    let target = format!("{TRUSTED4}:443");
    let mut args = vec!["tls-hello", target.as_str(), "--name", name];
    args.extend(extra);
    let outcome = rig.probe(&args);
    if outcome.ok {
        return Ok(outcome.detail.unwrap_or_default());
    }
    let local = outcome.local.expect("the probe's local address");
    eprintln!("DEBUG outcome {outcome:?}");
    for e in rig.daemon.drop_events() {
        eprintln!("DEBUG event {e:?}");
    }
    let event = rig.wait_for_drop_event(local);
    // "after N ms": the refusal reached the client promptly.
    let after: u64 = outcome
        .detail
        .as_deref()
        .and_then(|d| d.strip_prefix("after "))
        .and_then(|d| d.strip_suffix(" ms"))
        .and_then(|d| d.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        Duration::from_millis(after) < PROMPTLY,
        "{args:?}: refused after {after} ms ({outcome:?})"
    );
    Err((outcome.error.unwrap_or_default(), event))
}

#[track_caller]
fn assert_refused(result: Result<String, (String, Value)>, reason: &str) {
    match result {
        Ok(detail) => panic!("went through ({detail}), expected {reason}"),
        Err((_, event)) => assert_eq!(event["reason"], reason, "{event}"),
    }
}

fn hellos_cut_or_padded_are_judged_whole_on(side: DaemonSide) {
    let (rig, _servers) = tls_rig(side);
    rig.apply(&https_policy(&rig), "policy.yaml");
    for extra in [
        // Two send() calls, so two segments: the name is in the second.
        &["--writes", "2"][..],
        // Padded past one MSS, in one send().
        &["--padding", "3000"][..],
        // A post-quantum key share, written in three pieces.
        &["--key-share", "1216", "--writes", "3"][..],
    ] {
        let allowed = hello(&rig, ALLOWED, extra);
        assert!(
            allowed.as_ref().is_ok_and(|d| d.starts_with("answered")),
            "{extra:?}: {allowed:?}"
        );
        assert_refused(hello(&rig, "evil.test", extra), "sni_denied");
    }
}

#[test]
fn hellos_cut_or_padded_are_judged_whole() {
    if skip_unless_root() {
        return;
    }
    hellos_cut_or_padded_are_judged_whole_on(DaemonSide::Agent);
}

#[test]
fn the_tc_classifier_checks_names_and_resets_refused_connections() {
    if skip_unless_root() {
        return;
    }
    hellos_cut_or_padded_are_judged_whole_on(DaemonSide::World);
}

#[test]
fn ech_is_refused_where_the_rule_says_so() {
    if skip_unless_root() {
        return;
    }
    let (rig, _servers) = tls_rig(DaemonSide::Agent);
    rig.apply(&https_policy(&rig).rule_field("ech", "deny"), "policy.yaml");
    assert!(hello(&rig, ALLOWED, &[]).is_ok());
    assert_refused(hello(&rig, ALLOWED, &["--ech"]), "ech_denied");
    // Without `ech: deny`, the outer name is what counts.
    rig.apply(&https_policy(&rig), "policy.yaml");
    assert!(hello(&rig, ALLOWED, &["--ech"]).is_ok());
}

#[test]
fn http_requests_must_name_an_allowed_host() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    rig.apply(&rig.policy().fqdn(ALLOWED, &["80/tcp"]), "policy.yaml");
    let resolve = format!("{ALLOWED}:80:{TRUSTED4}");
    let url = format!("http://{ALLOWED}/");
    let (output, _) = curl(&rig, &url, &resolve, &[]);
    assert_eq!(http_code(&output), "200", "{output:?}");

    let local = SocketAddr::new(AGENT_IPV4.into(), 41_010);
    let port = local.port().to_string();
    let (output, took) = curl(
        &rig,
        &url,
        &resolve,
        &["-H", "Host: evil.test", "--local-port", &port],
    );
    assert_eq!(http_code(&output), "000", "went through: {output:?}");
    assert!(took < PROMPTLY, "the client waited {took:?}");
    let event = rig.wait_for_drop_event(local);
    assert_eq!(event["reason"], "host_denied", "{event}");
    assert_eq!(event["server_name"], "evil.test", "{event}");
}

#[test]
fn audit_mode_reports_what_it_would_refuse_and_drops_nothing() {
    if skip_unless_root() {
        return;
    }
    let (rig, _servers) = tls_rig(DaemonSide::Agent);
    rig.apply(&https_policy(&rig).mode("audit"), "policy.yaml");
    let resolve = format!("evil.test:443:{TRUSTED4}");
    let (output, _) = curl(
        &rig,
        "https://evil.test/",
        &resolve,
        &["--local-port", "41020"],
    );
    assert_eq!(http_code(&output), "200", "{output:?}");
    let event = rig.wait_for_drop_event(SocketAddr::new(AGENT_IPV4.into(), 41_020));
    assert_eq!(event["reason"], "sni_denied", "{event}");
    assert_eq!(event["verdict"], "audited", "{event}");
    poll_until("the audit counter", Duration::from_secs(5), || {
        match rig.counter(AUDIT_WOULD_DROP_TOTAL, &[("reason", "sni_denied")]) {
            1 => Ok(()),
            other => Err(format!("{other}")),
        }
    });
    assert_eq!(sni_drops(&rig, "sni_denied"), 0);
}
