//! Sections 10 and 11 of `cargo xtask demo`: enforcement outlives the
//! daemon, then `uninstall` removes it.

use std::path::Path;

use anyhow::Result;
use openclaw_egress_e2e::{Daemon, Sandbox, probe_error};

use super::{
    TRUSTED, UNLISTED,
    commands::{agent_curl, agent_probe, cli},
    narrate::{Checks, note, section},
};

/// Section 10: enforcement outlives the daemon.
pub(super) fn fail_closed(daemon: Daemon, sandbox: &Sandbox, checks: &mut Checks) -> Result<()> {
    section("10. Fail closed: the daemon stops, enforcement does not");
    note(
        "Stopping the daemon with SIGTERM. The programs and maps are pinned in bpffs, so\n\
         they keep enforcing without it (a crash or SIGKILL is no different); a restarted\n\
         daemon adopts them, learned addresses included.",
    );
    let pid = daemon.pid();
    let status = daemon.stop();
    checks.record(
        status.is_some_and(|status| status.success()),
        match status {
            Some(status) => format!("daemon (pid {pid}) stopped: {status}"),
            None => format!("daemon (pid {pid}) could not be waited for"),
        },
    );
    let still_blocked = agent_probe(sandbox, &["tcp", UNLISTED])?;
    checks.record(
        still_blocked.error.as_deref() == Some(probe_error::PERMISSION_DENIED),
        format!("daemon down: TCP to {UNLISTED} is still refused"),
    );
    let still_allowed = agent_curl(
        sandbox,
        &["-sS", "--max-time", "5", &format!("http://{TRUSTED}/")],
    )?;
    checks.record(
        still_allowed.status.success(),
        format!("daemon down: http://{TRUSTED}/ still works"),
    );
    Ok(())
}

/// Section 11: `uninstall` removes the policy.
pub(super) fn uninstall(
    egress: &Path,
    socket: &Path,
    sandbox: &Sandbox,
    checks: &mut Checks,
) -> Result<()> {
    section("11. Uninstall");
    note(
        "`uninstall` removes every policy and pin (through the daemon if one runs, else\n\
         directly); then nothing filters the agent any more.",
    );
    let state_dir = sandbox.scratch_dir().join("state");
    let uninstall = cli(
        egress,
        socket,
        &[
            "uninstall",
            "--state-dir",
            &state_dir.display().to_string(),
            "--bpffs-dir",
            &sandbox.pins_dir().display().to_string(),
        ],
        None,
    )?;
    checks.record(
        uninstall.status.success() && !sandbox.pins_dir().exists(),
        format!("uninstalled: {} is gone", sandbox.pins_dir().display()),
    );
    let reopened = agent_probe(sandbox, &["tcp", UNLISTED])?;
    checks.record(
        reopened.ok,
        format!("after uninstall: TCP to {UNLISTED} gets through again"),
    );
    Ok(())
}
