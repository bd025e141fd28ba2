//! Policies from API objects (DaemonSet mode): `EgressPolicy` objects, with
//! each node's daemon writing its own entry of their status, and
//! optionally the upstream `ClusterNetworkPolicy` (translated, no status).
//! Applied and removed as the API server reports them, beside (not instead
//! of) the policy directory: a name is owned by whichever source applied it
//! first.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt as _;
use kube::Client;

use super::Daemon;
use crate::{
    error_text::full_message,
    k8s::{
        ApiPolicyChange, EgressPolicy, NodeStatus,
        cluster_network_policy::ClusterNetworkPolicy,
        policy_watcher::{self, PolicyObject, Translated},
    },
};

/// What the daemon last made of each object, by policy name.
#[derive(Default)]
struct Outcomes(BTreeMap<String, Outcome>);

struct Outcome {
    /// `<kind>/<object name>`.
    source: String,
    generation: Option<i64>,
    /// Why that generation is not applied.
    error: Option<String>,
}

impl Daemon {
    /// Follows the API server's `EgressPolicy` objects until the daemon
    /// stops, writing this node's entry of each one's status after each
    /// change and `every` so often (drop counts move).
    pub async fn follow_egress_policies(
        self: Arc<Self>,
        node: String,
        every: Duration,
    ) -> anyhow::Result<()> {
        let client = crate::k8s::default_client().await?;
        self.follow_api_policies::<EgressPolicy>(
            client,
            Some((node, every)),
            policy_watcher::egress_policy,
        )
        .await
    }

    /// Follows the upstream `ClusterNetworkPolicy` objects until the daemon
    /// stops (no status: that API's status is not ours to write).
    pub async fn follow_cluster_network_policies(
        self: Arc<Self>,
        resolvers: Vec<std::net::IpAddr>,
    ) -> anyhow::Result<()> {
        let client = crate::k8s::default_client().await?;
        self.follow_api_policies::<ClusterNetworkPolicy>(
            client,
            None,
            policy_watcher::cluster_network_policy(resolvers),
        )
        .await
    }

    /// Follows objects of kind `K`, each turned into a policy by
    /// `translate`. With `status` (this node's name, how often), writes
    /// this node's entry of each object's status.
    pub(super) async fn follow_api_policies<K: PolicyObject>(
        self: Arc<Self>,
        client: Client,
        status: Option<(String, Duration)>,
        translate: impl Fn(&K) -> Translated + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut changes = Box::pin(policy_watcher::changes::<K>(client.clone(), translate));
        let mut outcomes = Outcomes::default();
        let every = status
            .as_ref()
            .map_or(Duration::from_secs(3600), |(_, every)| *every);
        let mut every = tokio::time::interval(every.max(Duration::from_millis(100)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None;
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(change)) => {
                        last_error = None;
                        let changed = self.api_policy_change(change, &mut outcomes).await;
                        if let (Some(name), Some((node, _))) = (changed, &status) {
                            self.report_status(&client, node, &name, &outcomes).await;
                        }
                    }
                    Some(Err(error)) => {
                        // The watch retries by itself; say so once per cause
                        // (a CRD not installed would otherwise log forever).
                        let message = full_message(&error);
                        if last_error.as_ref() != Some(&message) {
                            tracing::warn!(
                                kind = K::SOURCE,
                                "watching policy objects (is the CRD installed, and may the \
                                 daemon list and watch them?): {message}"
                            );
                            last_error = Some(message);
                        }
                    }
                    None => return Ok(()),
                },
                _ = every.tick() => {
                    let Some((node, _)) = &status else { continue };
                    let names: Vec<String> = outcomes.0.keys().cloned().collect();
                    for name in names {
                        self.report_status(&client, node, &name, &outcomes).await;
                    }
                }
            }
        }
    }

    /// Carries out one change; the name whose status changed, if any.
    async fn api_policy_change(
        &self,
        change: ApiPolicyChange,
        outcomes: &mut Outcomes,
    ) -> Option<String> {
        match change {
            ApiPolicyChange::Apply {
                name,
                source,
                yaml,
                generation,
            } => {
                let result = match (self.source_of_applied(&name), yaml) {
                    (Some(other), _) if other != source => Err(format!(
                        "a policy named {name} is already applied from {other}; this object is \
                         not applied while it is"
                    )),
                    (_, Err(error)) => Err(error),
                    (_, Ok(yaml)) => self
                        .apply(&source, &yaml, &Default::default())
                        .await
                        .map(drop)
                        .map_err(|error| full_message(&error)),
                };
                if let Err(error) = &result {
                    tracing::error!(
                        policy = name,
                        source,
                        "policy refused (the version applied before, if any, stays): {error}"
                    );
                }
                outcomes.0.insert(
                    name.clone(),
                    Outcome {
                        source,
                        generation,
                        error: result.err(),
                    },
                );
                Some(name)
            }
            ApiPolicyChange::Remove { name, source } => {
                outcomes.0.remove(&name);
                if self.source_of_applied(&name) == Some(source)
                    && let Err(error) = self.remove(&name).await
                {
                    tracing::warn!(policy = name, "{error}");
                }
                None
            }
        }
    }

    fn source_of_applied(&self, name: &str) -> Option<String> {
        self.policies
            .read()
            .expect("policies lock")
            .get(name)
            .map(|active| active.source.clone())
    }

    /// This node's view of the policy `name`.
    fn node_status(&self, node: &str, name: &str, outcome: &Outcome) -> NodeStatus {
        let mut status = NodeStatus {
            node: node.to_owned(),
            last_error: outcome.error.clone(),
            observed_generation: outcome.generation,
            ..NodeStatus::default()
        };
        let active = self
            .policies
            .read()
            .expect("policies lock")
            .get(name)
            .filter(|active| active.source == outcome.source)
            .cloned();
        let Some(active) = active else {
            return status;
        };
        status.selected_pods = i64::from(self.pods_selected(&active.policy));
        let attached: std::collections::BTreeSet<String> = active
            .instances()
            .iter()
            .filter_map(|instance| instance.workload.pod_uid().map(str::to_owned))
            .collect();
        status.attached_pods = attached.len() as i64;
        let retired = self
            .retired
            .lock()
            .expect("retired lock")
            .get(name)
            .cloned();
        let mut counts = active.counts();
        if let Some(retired) = retired {
            counts.add(&retired);
        }
        status.drops = i64::try_from(counts.drops.iter().sum::<u64>()).unwrap_or(i64::MAX);
        status.ready = status.last_error.is_none() && status.attached_pods >= status.selected_pods;
        status
    }

    /// Writes this node's entry of the status of the object behind policy
    /// `name` (an `EgressPolicy`: the object's name is the policy's).
    async fn report_status(&self, client: &Client, node: &str, name: &str, outcomes: &Outcomes) {
        let Some(outcome) = outcomes.0.get(name) else {
            return;
        };
        let status = self.node_status(node, name, outcome);
        if let Err(error) = policy_watcher::write_status(client, name, &status).await {
            tracing::warn!(
                policy = name,
                "writing its status: {}",
                full_message(&error)
            );
        }
    }
}
