//! Learn sessions (`learn` over the API): while a learner is connected,
//! its policy's instances record everything its workloads do (see
//! `recording`). The session holds a [`Learner`] guard; dropping it,
//! however the session ends, puts back what the instances recorded before
//! once the policy's last learner is gone.

use super::{Daemon, active, active::ActivePolicy, error::DaemonError};

impl Daemon {
    /// Starts recording everything `policy`'s workloads do, until the
    /// returned guard is dropped; with the policy as applied. Events are
    /// read with [`Self::subscribe`] (subscribe first: nothing is lost).
    pub fn learn(
        &self,
        policy: &str,
    ) -> Result<(Learner<'_>, crate::api::LearningStart), DaemonError> {
        let active = self
            .policies
            .read()
            .expect("policies lock")
            .get(policy)
            .cloned()
            .ok_or_else(|| DaemonError::NotApplied {
                name: policy.into(),
            })?;
        let bits = self.recording.add_learner(policy);
        self.set_record(&active, bits);
        let start = crate::api::LearningStart {
            policy: policy.to_string(),
            mode: active::mode_name(active.policy.mode).to_string(),
            resolvers: active.policy.dns.resolvers.clone(),
            yaml: active.yaml.clone(),
        };
        tracing::info!(policy, "learning: recording every flow and DNS question");
        Ok((
            Learner {
                daemon: self,
                policy: policy.to_string(),
            },
            start,
        ))
    }

    /// Writes `bits` into every instance of `active`.
    fn set_record(&self, active: &ActivePolicy, bits: u32) {
        for instance in active.instances() {
            if let Some(Err(error)) = instance.with(|datapath| datapath.set_record(bits)) {
                tracing::error!(policy = %active.policy.name, "setting what is recorded: {error}");
            }
        }
    }
}

/// A learner of one policy: recording goes on while it lives.
pub struct Learner<'a> {
    daemon: &'a Daemon,
    policy: String,
}

impl Drop for Learner<'_> {
    fn drop(&mut self) {
        let bits = self.daemon.recording.remove_learner(&self.policy);
        let active = self
            .daemon
            .policies
            .read()
            .expect("policies lock")
            .get(&self.policy)
            .cloned();
        if let Some(active) = active {
            self.daemon.set_record(&active, bits);
        }
        tracing::info!(policy = %self.policy, "learning stopped");
    }
}
