//! The learn-mode commands: `exec --learn OUT -- CMD` (one command, under a
//! policy that allows nothing and reports everything) and `learn --policy
//! NAME` (an applied policy's workloads, for a while). Both collect what the
//! daemon records (see `daemon::recording`) and write the proposal.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{sync::oneshot, task::JoinHandle};

use super::{observations::Observations, recorder::Recorder, write};
use crate::{
    api::{
        LearningStart, Request, Response,
        client::{open_session, read_policy, unexpected},
    },
    cli::ProposalArgs,
    exec,
};

/// How long after the command ends the last records may still be on their
/// way (ring buffer, daemon, socket).
const SETTLE: Duration = Duration::from_millis(500);

/// `exec --learn`'s arguments.
pub struct ExecLearning<'a> {
    /// A policy to learn under (in audit mode) instead of one that allows
    /// nothing.
    pub policy: Option<&'a Path>,
    pub output: &'a Path,
    pub proposal: &'a ProposalArgs,
}

pub async fn exec(
    socket: &Path,
    learning: ExecLearning<'_>,
    command: &[String],
    keep_capabilities: bool,
) -> anyhow::Result<ExitCode> {
    let (source, yaml) = match learning.policy {
        Some(file) => (file.display().to_string(), read_policy(file)?),
        None => {
            let resolvers = system_resolvers(Path::new("/etc/resolv.conf"))?;
            ("(learn mode)".to_string(), record_everything(&resolvers))
        }
    };
    let base = crate::policy::parse_str(&source, &yaml)?;
    let run = exec::Run {
        source,
        yaml,
        audit: true,
        keep_capabilities,
    };
    let (code, session) = exec::run_under(socket, run, command, async |name: &str| {
        Session::start(socket, name).await
    })
    .await?;
    let (_, observations, notes) = session.finish().await?;
    let name = learning
        .proposal
        .name
        .clone()
        .unwrap_or_else(|| default_name(learning.policy.map(|_| base.name.as_str()), command));
    // The selector of the policy learned under, if any: `exec --policy`
    // replaces it with its own cgroup anyway.
    let selector_from = learning.policy.map(|_| &base);
    write::proposal(
        &observations,
        &notes,
        learning.proposal,
        &name,
        selector_from,
        learning.output,
    )?;
    Ok(code)
}

/// `learn --policy NAME --duration D -o OUT`.
pub async fn watch(
    socket: &Path,
    policy: &str,
    duration: Duration,
    output: &Path,
    proposal: &ProposalArgs,
) -> anyhow::Result<()> {
    let session = Session::start(socket, policy).await?;
    if session.start.mode != "audit" {
        eprintln!(
            "openclaw-egress: policy {policy} is in {} mode: what it refuses stays refused \
             (and is proposed); audit mode lets the workload show all it needs",
            session.start.mode
        );
    }
    eprintln!(
        "openclaw-egress: learning from policy {policy} for {} (Ctrl-C stops earlier)",
        humantime::format_duration(duration)
    );
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let (start, observations, notes) = session.finish().await?;
    let applied = crate::policy::parse_str(&format!("policy {policy}"), &start.yaml)?;
    let name = proposal.name.clone().unwrap_or_else(|| policy.to_string());
    write::proposal(
        &observations,
        &notes,
        proposal,
        &name,
        Some(&applied),
        output,
    )
}

/// A learner's connection to the daemon: records are collected in the
/// background until [`Session::finish`].
pub struct Session {
    start: LearningStart,
    stop: oneshot::Sender<()>,
    collector: JoinHandle<anyhow::Result<Recorder>>,
}

impl Session {
    pub async fn start(socket: &Path, policy: &str) -> anyhow::Result<Self> {
        let request = Request::Learn {
            policy: policy.to_string(),
        };
        let mut exchange = open_session(socket, &request).await?;
        let start = match exchange.next().await? {
            Some(Response::Learning(start)) => start,
            Some(Response::Error { message }) => bail!("{message}"),
            Some(other) => return Err(unexpected(other).into()),
            None => bail!("the daemon closed the connection without answering"),
        };
        let mut recorder = Recorder::new(start.resolvers.clone());
        let (stop, mut stopped) = oneshot::channel();
        let collector = tokio::spawn(async move {
            loop {
                let response = tokio::select! {
                    response = exchange.next() => response?,
                    _ = &mut stopped => return Ok(recorder),
                };
                match response {
                    Some(Response::Event(record)) => recorder.record(&record),
                    Some(Response::Error { message }) => {
                        eprintln!("openclaw-egress: warning: {message}");
                    }
                    Some(other) => return Err(unexpected(other).into()),
                    None => bail!("the daemon closed the learning stream"),
                }
            }
        });
        Ok(Self {
            start,
            stop,
            collector,
        })
    }

    /// Stops collecting (after the last records had time to arrive).
    pub async fn finish(self) -> anyhow::Result<(LearningStart, Observations, Vec<String>)> {
        tokio::time::sleep(SETTLE).await;
        let _ = self.stop.send(());
        let recorder = self.collector.await.context("the learning task failed")??;
        let (observations, notes) = recorder.finish();
        Ok((self.start, observations, notes))
    }
}

/// The policy `exec --learn` runs a command under when given none: nothing
/// allowed, everything reported (audit mode), DNS to `resolvers` only.
fn record_everything(resolvers: &[IpAddr]) -> String {
    let resolvers: Vec<String> = resolvers.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!(
        "apiVersion: openclaw.io/v1\n\
         kind: EgressPolicy\n\
         metadata:\n  name: learn\n\
         spec:\n  mode: audit\n\
         \x20 selector:\n    cgroupPath: /openclaw-egress-learn\n\
         \x20 dns:\n    resolvers: [{}]\n\
         \x20 egress: []\n",
        resolvers.join(", ")
    )
}

/// The `nameserver` addresses of a resolv.conf.
fn system_resolvers(file: &Path) -> anyhow::Result<Vec<IpAddr>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading {} for the resolvers to learn with", file.display()))?;
    let resolvers: Vec<IpAddr> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        // A scoped IPv6 address (fe80::1%eth0) has no place in a policy.
        .filter_map(|rest| rest.trim().parse().ok())
        .collect();
    if resolvers.is_empty() {
        bail!(
            "{} lists no nameserver; give a policy with `--policy` whose spec.dns.resolvers \
             are the servers the command asks",
            file.display()
        );
    }
    Ok(resolvers)
}

/// A policy name from the command (`curl` for `/usr/bin/curl ...`) or the
/// policy learned under.
fn default_name(policy: Option<&str>, command: &[String]) -> String {
    if let Some(policy) = policy {
        return policy.to_string();
    }
    let program = command
        .first()
        .map(PathBuf::from)
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let name: String = program
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "learned".to_string()
    } else {
        format!("{}-learned", &name[..name.len().min(40)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_everything_policy_is_valid() {
        let yaml = record_everything(&["10.77.0.1".parse().unwrap(), "fd77::1".parse().unwrap()]);
        let policy = crate::policy::parse_str("learn", &yaml).unwrap();
        assert!(policy.egress.is_empty());
        assert_eq!(policy.dns.resolvers.len(), 2);
    }

    #[test]
    fn resolvers_come_from_nameserver_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resolv.conf");
        std::fs::write(
            &file,
            "# comment\nsearch example\nnameserver 10.77.0.1\nnameserver fd77::1\nnameserver fe80::1%eth0\n",
        )
        .unwrap();
        assert_eq!(
            system_resolvers(&file).unwrap(),
            vec![
                "10.77.0.1".parse::<IpAddr>().unwrap(),
                "fd77::1".parse().unwrap()
            ]
        );
        std::fs::write(&file, "search example\n").unwrap();
        assert!(system_resolvers(&file).is_err());
    }

    #[test]
    fn names_come_from_the_command() {
        assert_eq!(
            default_name(None, &["/usr/bin/Curl_7".into()]),
            "curl-7-learned"
        );
        assert_eq!(default_name(Some("agent"), &["sh".into()]), "agent");
        assert_eq!(default_name(None, &["/".into()]), "learned");
    }
}
