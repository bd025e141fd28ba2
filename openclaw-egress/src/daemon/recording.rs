//! What each policy's instances report beyond drops (`record` bits of their
//! config): allowed connections under `--flow-log`; everything (allowed
//! connections, DNS questions, answers' addresses) while a learner watches
//! the policy. Nothing is recorded otherwise, and recording costs nothing
//! then.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use openclaw_egress_common::record;

#[derive(Clone, Default)]
pub struct Recording(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    flow_log: bool,
    /// Learners connected, per policy name.
    learners: HashMap<String, usize>,
}

impl Recording {
    pub fn new(flow_log: bool) -> Self {
        Self(Arc::new(Mutex::new(State {
            flow_log,
            learners: HashMap::new(),
        })))
    }

    /// The `record` bits of `policy`'s instances.
    pub fn bits(&self, policy: &str) -> u32 {
        let state = self.0.lock().expect("recording lock");
        let mut bits = 0;
        if state.flow_log {
            bits |= record::FLOWS;
        }
        if state.learners.get(policy).is_some_and(|count| *count > 0) {
            bits |= record::FLOWS | record::DNS;
        }
        bits
    }

    /// One more learner of `policy`; returns the policy's bits now.
    pub fn add_learner(&self, policy: &str) -> u32 {
        *self
            .0
            .lock()
            .expect("recording lock")
            .learners
            .entry(policy.to_string())
            .or_default() += 1;
        self.bits(policy)
    }

    /// One learner of `policy` fewer; returns the policy's bits now.
    pub fn remove_learner(&self, policy: &str) -> u32 {
        {
            let mut state = self.0.lock().expect("recording lock");
            if let Some(count) = state.learners.get_mut(policy) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.learners.remove(policy);
                }
            }
        }
        self.bits(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learners_record_everything_until_the_last_leaves() {
        let recording = Recording::new(false);
        assert_eq!(recording.bits("agent"), 0);
        assert_eq!(recording.add_learner("agent"), record::FLOWS | record::DNS);
        recording.add_learner("agent");
        assert_eq!(recording.bits("other"), 0);
        assert_eq!(
            recording.remove_learner("agent"),
            record::FLOWS | record::DNS
        );
        assert_eq!(recording.remove_learner("agent"), 0);
    }

    #[test]
    fn the_flow_log_records_allowed_flows_of_every_policy() {
        let recording = Recording::new(true);
        assert_eq!(recording.bits("agent"), record::FLOWS);
        recording.add_learner("agent");
        assert_eq!(recording.remove_learner("agent"), record::FLOWS);
    }
}
