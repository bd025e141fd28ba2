//! A directory of policy files (a mounted ConfigMap in DaemonSet mode):
//! files that appear or change are applied, files that go are removed.
//! The directory is read every [`POLICY_DIR_POLL`], and at once on SIGHUP
//! (`systemctl reload`).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use tokio::signal::unix::Signal;

use super::Daemon;
use crate::{
    error_text::full_message,
    k8s::{PolicyChange, PolicyDir},
};

/// How often the policy directory is checked for changes.
const POLICY_DIR_POLL: Duration = Duration::from_secs(2);

impl Daemon {
    /// Applies and removes policies as files appear, change and disappear in
    /// `dir` (a mounted ConfigMap in DaemonSet mode). `hangup` (SIGHUP)
    /// makes it read the directory now rather than at the next poll.
    pub async fn follow_policy_dir(self: Arc<Self>, dir: PathBuf, mut hangup: Signal) {
        let mut policies = PolicyDir::new(&dir);
        // The last failure per file, so a retried apply that keeps failing
        // is logged once, not every poll.
        let mut failures: BTreeMap<PathBuf, String> = BTreeMap::new();
        loop {
            match policies.poll() {
                Ok(changes) => {
                    for change in changes {
                        if let Some((name, file, error)) = self.policy_change(change).await {
                            if failures.get(&file) != Some(&error) {
                                tracing::error!(file = %file.display(), "policy not applied (retrying): {error}");
                                failures.insert(file, error);
                            }
                            policies.apply_failed(&name);
                        }
                    }
                }
                Err(error) => tracing::error!(dir = %dir.display(), "{}", full_message(&error)),
            }
            tokio::select! {
                () = tokio::time::sleep(POLICY_DIR_POLL) => {}
                Some(()) = hangup.recv() => {
                    tracing::info!(dir = %dir.display(), "re-reading the policy directory (SIGHUP)");
                }
            }
        }
    }

    /// SIGHUP without a policy directory: nothing to re-read, but the
    /// signal must not kill the daemon (its default action would).
    pub async fn ignore_hangups(mut hangup: Signal) {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: no --policy-dir was given, so there is nothing to re-read");
        }
    }

    /// Carries out one change; a failed apply comes back as (policy name,
    /// file, error) to be retried.
    async fn policy_change(&self, change: PolicyChange) -> Option<(String, PathBuf, String)> {
        match change {
            PolicyChange::Apply { file, policy } => {
                let source = file.display().to_string();
                let result = match std::fs::read_to_string(&file) {
                    Ok(yaml) => self
                        .apply(&source, &yaml, &Default::default())
                        .await
                        .map(drop)
                        .map_err(|e| full_message(&e)),
                    Err(error) => Err(error.to_string()),
                };
                return result.err().map(|error| (policy.name, file, error));
            }
            PolicyChange::Remove { file, name } => {
                if let Err(error) = self.remove(&name).await {
                    tracing::warn!(file = %file.display(), "{error}");
                }
            }
            PolicyChange::Rejected { file, error } => tracing::error!(
                file = %file.display(),
                "policy rejected (the version applied before stays): {}",
                full_message(&error)
            ),
        }
        None
    }
}
