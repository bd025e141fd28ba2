//! Sections 3 to 11 of `cargo xtask demo`, one function per section (or
//! per two short ones), run in order by [`story`].

use std::{path::Path, process::Command, thread, time::Duration};

use anyhow::{Context as _, Result, bail};
use openclaw_egress_e2e::{Daemon, Monitor, Sandbox, World, probe_error};
use serde_json::Value;

use super::{
    EVENT_TIMEOUT, EVIL, EVIL_V4, IN_CIDR, POLICY, TRUSTED, TRUSTED_V4, TRUSTED_V6, UNLISTED,
    after_daemon,
    commands::{agent_curl, agent_probe, cli, cli_quiet},
    drops::{DropMatch, drops_lines, drops_total, is_drop},
    narrate::{Checks, note, output, section, shell},
    retarget, world_config,
};
use crate::cmd;

/// Sections 3 to 11. Returns an error only when the demo cannot go on (the
/// world or the daemon does not start, the policy is refused); failed checks
/// are recorded in `checks` and the story continues, so the summary shows
/// everything.
pub(super) fn story(
    workspace: &Path,
    bin_dir: &Path,
    sandbox: &Sandbox,
    checks: &mut Checks,
) -> Result<()> {
    let egress = bin_dir.join("openclaw-egress");
    let world = fake_internet(sandbox)?;
    baseline(sandbox, checks)?;
    let socket = sandbox.scratch_dir().join("api.sock");
    let (daemon, drops_before) = daemon_and_policy(workspace, &egress, &socket, sandbox)?;
    allowed(sandbox, checks)?;
    blocked_and_drop_events(sandbox, &daemon, checks)?;
    metrics_and_status(&egress, &socket, drops_before, &daemon, checks)?;
    after_daemon::fail_closed(daemon, sandbox, checks)?;
    after_daemon::uninstall(&egress, &socket, sandbox, checks)?;
    note("Stopping the world (oce-world).");
    drop(world);
    Ok(())
}

/// Section 3: the sandbox and the world it talks to.
fn fake_internet(sandbox: &Sandbox) -> Result<World> {
    section("3. A sandbox with a fake internet");
    note(&format!(
        "sandbox {id}:\n  \
         agent netns {agent}: 10.77.0.2, fd77::2; the AI agent's side\n  \
         world netns {world}: 10.77.0.1, fd77::1; the 'internet', the agent's only way out\n  \
         cgroup {cgroup}: every agent process starts in it\n\
         Prompts say where a command runs:\n  \
         [host]         this machine\n  \
         [world]        the world netns\n  \
         [agent]        the agent netns, inside the sandbox cgroup: the workload under policy\n                 \
         (curl via `ip netns exec {agent}`, oce-probe via setns(2); both\n                 \
         join the cgroup before they exec, so all their sockets belong to it)\n  \
         [agent netns]  the agent netns, outside the cgroup (the daemon)",
        id = sandbox.id(),
        agent = sandbox.agent_netns(),
        world = sandbox.world_netns(),
        cgroup = sandbox.cgroup_path().display(),
    ));
    let config = world_config();
    let mut world_command = Command::new("oce-world");
    world_command.args(config.to_args());
    shell("world", &format!("{} &", cmd::display(&world_command)));
    let world = sandbox
        .start_world(&config)
        .context("starting the world (oce-world)")?;
    note(&format!(
        "DNS: {TRUSTED} -> {TRUSTED_V4}, {TRUSTED_V6}; {EVIL} -> {EVIL_V4}\n  \
         served on 10.77.0.1 and fd77::1 (the policy's resolvers) and on {EVIL_V4} (a rogue resolver)\n\
         HTTP on port 80 for both names. TCP (greeting + echo) on {TRUSTED_V4}:443, {IN_CIDR}, {UNLISTED}.\n\
         The world speaks plain HTTP and TCP only, no TLS: port 443 below is a TCP connection."
    ));
    Ok(world)
}

/// Section 4: without a policy, everything answers.
fn baseline(sandbox: &Sandbox, checks: &mut Checks) -> Result<()> {
    section("4. Before the policy: the agent can reach anything");
    let curl = agent_curl(
        sandbox,
        &["-sS", "--max-time", "5", &format!("http://{EVIL}/")],
    )?;
    checks.record(
        curl.status.success(),
        format!("baseline: http://{EVIL}/ answers without a policy"),
    );
    let unlisted = agent_probe(sandbox, &["tcp", UNLISTED])?;
    checks.record(
        unlisted.ok,
        format!("baseline: {UNLISTED} accepts connections without a policy"),
    );
    let rogue = agent_probe(sandbox, &["dns", EVIL_V4, TRUSTED])?;
    checks.record(
        rogue.ok,
        format!("baseline: the rogue resolver {EVIL_V4} answers without a policy"),
    );
    Ok(())
}

/// Section 5: starts the daemon and applies the policy; returns the daemon
/// and the drop counters' total before any blocked traffic.
fn daemon_and_policy(
    workspace: &Path,
    egress: &Path,
    socket: &Path,
    sandbox: &Sandbox,
) -> Result<(Daemon, u64)> {
    section("5. The daemon and the policy");
    shell(
        "agent netns",
        &format!(
            "openclaw-egress daemon --socket {} --metrics-addr {} --log-format json &",
            socket.display(),
            Daemon::METRICS_ADDR
        ),
    );
    let daemon = sandbox
        .spawn_daemon(egress)
        .context("starting the daemon")?;
    note(&format!(
        "daemon ready (pid {}); its log (JSON lines, drop events included) is captured",
        daemon.pid()
    ));
    // Every CLI call below talks to this daemon through its socket.
    shell(
        "host",
        &format!("export OPENCLAW_EGRESS_SOCKET={}", socket.display()),
    );

    shell("host", &format!("cat {POLICY}"));
    let policy_file = workspace.join(POLICY);
    let yaml = std::fs::read_to_string(&policy_file)
        .with_context(|| format!("reading {}", policy_file.display()))?;
    output(&yaml);
    let validated = cli(egress, socket, &["validate", POLICY], Some(workspace))?;
    if !validated.status.success() {
        bail!("`openclaw-egress validate {POLICY}` failed");
    }

    let (retargeted, old) = retarget::cgroup_path(&yaml, sandbox.cgroup_relative())
        .with_context(|| format!("pointing {POLICY} at the sandbox cgroup"))?;
    let copy = sandbox.scratch_dir().join("openclaw.yaml");
    std::fs::write(&copy, retargeted).with_context(|| format!("writing {}", copy.display()))?;
    note(&format!(
        "applying {POLICY} (cgroupPath -> {new}): the sandbox's cgroup has a unique name,\n\
         so the demo applies a copy, {copy}, that differs only in\n\
         `cgroupPath: {old}` -> `cgroupPath: {new}`.\n\
         The fqdnPattern rule (*.pkg.test) needs the DNS-aware datapath, which is not built yet;\n\
         the demo does not rely on it.",
        new = sandbox.cgroup_relative(),
        copy = copy.display(),
    ));
    let copy_arg = copy.to_str().context("scratch path is not UTF-8")?;
    let applied = cli(egress, socket, &["apply", copy_arg], None)?;
    if !applied.status.success() {
        bail!("`openclaw-egress apply` failed: the daemon refused the policy");
    }
    let drops_before = drops_total(egress, socket)?;
    Ok((daemon, drops_before))
}

/// Section 6: what the policy allows gets through.
fn allowed(sandbox: &Sandbox, checks: &mut Checks) -> Result<()> {
    section("6. Allowed traffic");
    note(&format!(
        "{TRUSTED} is allowed on 80/tcp and 443/tcp: the daemon resolved it through the\n\
         policy's resolvers before attaching, so even the first connection goes through."
    ));
    let curl = agent_curl(
        sandbox,
        &["-sS", "--max-time", "5", &format!("http://{TRUSTED}/")],
    )?;
    checks.record(
        curl.status.success(),
        format!("allowed: http://{TRUSTED}/ (HTTP on port 80, allowed by the policy)"),
    );
    let curl6 = agent_curl(
        sandbox,
        &[
            "-6",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{TRUSTED}/"),
        ],
    )?;
    checks.record(
        curl6.status.success(),
        format!("allowed: http://{TRUSTED}/ over IPv6 ({TRUSTED_V6})"),
    );
    let tls_port = agent_probe(sandbox, &["tcp", &format!("{TRUSTED_V4}:443")])?;
    checks.record(
        tls_port.ok,
        format!("allowed: TCP to {TRUSTED} ({TRUSTED_V4}) port 443"),
    );
    let cidr = agent_probe(sandbox, &["tcp", IN_CIDR])?;
    checks.record(
        cidr.ok,
        format!("allowed: TCP to {IN_CIDR} (rule cidr: 203.0.113.128/25, 8443/tcp)"),
    );
    Ok(())
}

/// Sections 7 and 8: blocked traffic, then the drop events it caused.
fn blocked_and_drop_events(sandbox: &Sandbox, daemon: &Daemon, checks: &mut Checks) -> Result<()> {
    section("7. Blocked traffic");
    note("Watching drop events as they happen, in the background:");
    shell("host", "openclaw-egress monitor &");
    let mut monitor = Monitor::spawn_human(daemon)?;
    // The monitor subscribes once the daemon has read its request; give it a
    // moment so it sees the first drop too (it is shown, not checked).
    thread::sleep(Duration::from_millis(500));

    note(&format!(
        "The agent asks the policy's own resolver for {EVIL}: no rule allows that name, so\n\
         the kernel drops the query itself (this is what stops DNS tunnelling through an\n\
         allowed resolver). curl cannot even resolve the name."
    ));
    let curl = agent_curl(
        sandbox,
        &["-sS", "--max-time", "3", &format!("http://{EVIL}/")],
    )?;
    // 6: curl's "could not resolve host". A timeout would mean the query
    // left and only the connection was stopped.
    checks.record(
        curl.status.code() == Some(6),
        format!("blocked: the DNS query for {EVIL} never left the agent"),
    );
    note("A direct connection to an address no rule mentions:");
    let direct = agent_probe(sandbox, &["tcp", UNLISTED])?;
    checks.record(
        direct.error.as_deref() == Some(probe_error::PERMISSION_DENIED),
        format!("blocked: connect() to {UNLISTED} failed at once with EPERM (no packet left)"),
    );
    note(
        "DNS to a server that is not one of the policy's resolvers (a way around the\n\
         resolvers, or a tunnel): UDP sends to it fail with EPERM.",
    );
    let dns = agent_probe(sandbox, &["dns", EVIL_V4, TRUSTED])?;
    checks.record(
        dns.error.as_deref() == Some(probe_error::PERMISSION_DENIED),
        format!("blocked: DNS query to {EVIL_V4}:53 was refused by the kernel (EPERM)"),
    );

    section("8. Drop events");
    let expected = [
        DropMatch {
            what: format!("DNS query for {EVIL}"),
            proto: "udp",
            dst: "10.77.0.1".into(),
            dst_port: 53,
            src_port: None,
            reason: "dns_denied",
        },
        DropMatch {
            what: format!("TCP to {UNLISTED}"),
            proto: "tcp",
            dst: "198.51.100.7".into(),
            dst_port: 443,
            src_port: direct.local_port(),
            reason: "no_rule",
        },
        DropMatch {
            what: format!("DNS to {EVIL_V4}"),
            proto: "udp",
            dst: EVIL_V4.into(),
            dst_port: 53,
            src_port: dns.local_port(),
            reason: "dns_resolver",
        },
    ];
    note("The daemon logs each drop as a JSON line (target openclaw_egress::drop), for a SIEM.");
    note("The first one for each blocked attempt:");
    for drop in &expected {
        let found = daemon
            .wait_for_log(|v| drop.matches(v), EVENT_TIMEOUT)
            .is_ok();
        if found {
            let raw = daemon
                .log_lines()
                .into_iter()
                .find(|line| serde_json::from_str(&line.text).is_ok_and(|v| drop.matches(&v)));
            if let Some(line) = raw {
                output(&line.text);
            }
        }
        checks.record(
            found,
            format!(
                "drop event: {} -> {}:{} {} ({})",
                drop.proto, drop.dst, drop.dst_port, drop.reason, drop.what
            ),
        );
    }
    let all_drops = daemon
        .log_lines()
        .iter()
        .filter(|line| serde_json::from_str::<Value>(&line.text).is_ok_and(|v| is_drop(&v)))
        .count();
    note(&format!(
        "({all_drops} drop events logged in all: TCP retransmits its SYN, and each try is dropped)"
    ));

    note("What `openclaw-egress monitor` printed meanwhile (human-readable):");
    // Its events come from the same broadcast as the log lines; allow a
    // moment for the last ones to arrive.
    monitor.next_line_matching(
        |line| line.contains(&format!("-> {EVIL_V4}:53 ")),
        EVENT_TIMEOUT,
    );
    let monitored = monitor.stop();
    if monitored.is_empty() {
        note("(nothing: the monitor connected too late; the log lines above are authoritative)");
    }
    output(&monitored.join("\n"));
    Ok(())
}

/// Section 9: the drop counters moved; the daemon's status.
fn metrics_and_status(
    egress: &Path,
    socket: &Path,
    drops_before: u64,
    daemon: &Daemon,
    checks: &mut Checks,
) -> Result<()> {
    section("9. Metrics and status");
    shell(
        "host",
        "openclaw-egress metrics | grep '^openclaw_egress_drops_total' | grep -v ' 0$'",
    );
    let metrics = cli_quiet(egress, socket, &["metrics"])?;
    let nonzero: Vec<&str> = drops_lines(&metrics)
        .filter(|(_, value)| *value > 0)
        .map(|(line, _)| line)
        .collect();
    output(&nonzero.join("\n"));
    let drops_after = drops_lines(&metrics).map(|(_, value)| value).sum::<u64>();
    checks.record(
        drops_after > drops_before,
        format!(
            "metrics: openclaw_egress_drops_total went from {drops_before} to {drops_after} \
             (summed over reasons)"
        ),
    );
    cli(egress, socket, &["status"], None)?;

    if checks.failed().next().is_some() {
        note("Something failed; the daemon's log for the post-mortem:");
        for line in daemon.log_lines() {
            println!("  {line}");
        }
    }
    Ok(())
}
