//! `cargo xtask demo`: a self-contained, narrated demonstration of
//! enforcement, which doubles as a smoke test.
//!
//! It builds the binaries, creates a sandbox with the end-to-end harness (an
//! agent netns in a fresh cgroup, wired to a world netns that plays the
//! internet: DNS, HTTP and TCP servers), shows that the agent can reach
//! everything, starts the daemon and applies `policies/openclaw.yaml`, then
//! shows allowed traffic getting through and blocked traffic being dropped,
//! the drop events, the metrics and the status. No packet leaves the
//! sandbox's namespaces.
//!
//! It exits 0 only if every check passed: allowed traffic got through,
//! blocked traffic was dropped, the daemon reported drop events for it, the
//! drop counters moved and the sandbox was removed without leftovers.

mod after_daemon;
mod commands;
mod drops;
mod footprint;
mod narrate;
mod retarget;
mod story;

use std::{
    env,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use openclaw_egress_e2e::{Sandbox, WorldConfig};

use self::{
    footprint::Footprint,
    narrate::{Checks, note, section, shell},
};
use crate::{cmd, setup, workspace};

/// The policy the demo applies, relative to the workspace.
const POLICY: &str = "policies/openclaw.yaml";
/// Where the harness looks for `openclaw-egress`, `oce-world` and `oce-probe`.
const BIN_DIR_ENV: &str = "OPENCLAW_EGRESS_BIN_DIR";
const BINARIES: [&str; 3] = ["openclaw-egress", "oce-world", "oce-probe"];

/// Allowed by the policy (`fqdn`, ports 443/tcp and 80/tcp).
const TRUSTED: &str = "api.trusted.test";
const TRUSTED_V4: &str = "203.0.113.10";
const TRUSTED_V6: &str = "2001:db8:1::10";
/// In no rule; also runs a DNS server of its own.
const EVIL: &str = "evil.example";
const EVIL_V4: &str = "203.0.113.66";
/// In no rule and without a name: a direct connection by address.
const UNLISTED: &str = "198.51.100.7:443";
/// Inside the policy's `cidr: 203.0.113.128/25` rule (port 8443/tcp).
const IN_CIDR: &str = "203.0.113.200:8443";

/// How long to wait for a drop event to reach the daemon's log.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run() -> Result<()> {
    if !setup::is_root() {
        bail!(
            "`cargo xtask demo` must run as root: it creates network namespaces and a \
             cgroup and loads eBPF programs. Try `sudo -E env PATH=\"$PATH\" cargo xtask demo`."
        );
    }
    section("1. Prerequisites");
    setup::run()?;

    section("2. Build");
    let workspace = workspace::root();
    let bin_dir = build(&workspace)?;

    let mut checks = Checks::default();
    let sandbox = Sandbox::new().context("creating the sandbox")?;
    let footprint = Footprint::of(&sandbox);
    let result = story::story(&workspace, &bin_dir, &sandbox, &mut checks);
    section("12. Tear down");
    note(
        "Removing the sandbox: killing what is left in its cgroup and namespaces, then\n\
         removing both network namespaces, the cgroup, /etc/netns/<agent> and the scratch\n\
         directory.",
    );
    drop(sandbox);
    let leftovers = footprint.leftovers();
    checks.record(
        leftovers.is_empty(),
        if leftovers.is_empty() {
            format!("sandbox {} removed, nothing left behind", footprint.id)
        } else {
            format!("left behind: {}", leftovers.join(", "))
        },
    );
    result?;

    section("Summary");
    for check in checks.all() {
        println!("{} {}", narrate::mark(check.passed), check.text);
    }
    let failed: Vec<&str> = checks.failed().map(|c| c.text.as_str()).collect();
    if !failed.is_empty() {
        bail!(
            "demo failed: {} of {} checks failed:\n  - {}",
            failed.len(),
            checks.all().len(),
            failed.join("\n  - ")
        );
    }
    println!(
        "\ndemo passed: allowed traffic got through, blocked traffic was dropped and reported, \
         the drop counters moved, enforcement outlived the daemon, uninstall removed it."
    );
    Ok(())
}

/// Builds the workspace's binaries (default members: the daemon, the
/// harness's `oce-world` and `oce-probe`) and points the harness at them.
fn build(workspace: &Path) -> Result<PathBuf> {
    let mut command = cmd::new("cargo");
    command.args(["build", "--bins"]).current_dir(workspace);
    shell("host", &cmd::display(&command));
    cmd::run(&mut command).context("building the demo's binaries")?;

    let bin_dir = workspace::target_dir(workspace).join("debug");
    for name in BINARIES {
        let path = bin_dir.join(name);
        if !path.is_file() {
            bail!("`cargo build --bins` did not produce {}", path.display());
        }
    }
    // SAFETY: xtask has not started any thread (only child processes, which
    // were waited for), so nothing can read the environment concurrently.
    unsafe { env::set_var(BIN_DIR_ENV, &bin_dir) };
    note(&format!(
        "binaries: {} ({BIN_DIR_ENV} for the harness)",
        bin_dir.display()
    ));
    Ok(bin_dir)
}

/// The fake internet: DNS on the agent's gateway (the policy's resolvers)
/// plus a rogue DNS server on `evil.example`'s host, HTTP for both names,
/// and plain TCP servers (greeting, then echo).
fn world_config() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .dns(&format!("{EVIL_V4}:53"))
        .record(TRUSTED, TRUSTED_V4)
        .record(TRUSTED, TRUSTED_V6)
        .record(EVIL, EVIL_V4)
        .http(&format!("{TRUSTED_V4}:80"))
        .http(&format!("[{TRUSTED_V6}]:80"))
        .http(&format!("{EVIL_V4}:80"))
        .tcp(&format!("{TRUSTED_V4}:443"))
        .tcp(IN_CIDR)
        .tcp(UNLISTED)
}
