//! `EgressPolicy` objects from the API server, as policies to apply and
//! remove: kube-rs list+watch, fed through a [`PolicyTracker`] (pure: the
//! watcher's events in, changes out), tested with recorded responses.

use std::collections::{BTreeMap, BTreeSet};

use futures::{Stream, StreamExt};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};

use super::egress_policy::{
    EgressPolicy, NodeStatus, field_manager, policy_document, source_of, status_patch,
};

/// What the daemon has to do about the API server's policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPolicyChange {
    /// A new policy, or a new version of one (its spec changed).
    Apply {
        name: String,
        /// `egresspolicy/<name>`: what `status` and logs call it.
        source: String,
        /// The policy file it amounts to, parsed by the daemon as any file.
        yaml: String,
        generation: Option<i64>,
    },
    /// The object is gone.
    Remove { name: String, source: String },
}

/// The policies seen, by name, with the generation last reported. A
/// status update (the daemons' own) leaves the generation alone, so it
/// changes nothing here: no re-apply, no loop.
#[derive(Debug, Default)]
pub struct PolicyTracker {
    known: BTreeMap<String, Option<i64>>,
    /// Between `Init` and `InitDone` (a (re)list): the names listed so far.
    relisted: Option<BTreeSet<String>>,
}

impl PolicyTracker {
    pub fn handle(&mut self, event: watcher::Event<EgressPolicy>) -> Vec<ApiPolicyChange> {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(BTreeSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(policy) => {
                if let (Some(relisted), Some(name)) = (&mut self.relisted, &policy.metadata.name) {
                    relisted.insert(name.clone());
                }
                self.update(&policy)
            }
            // Objects known before the relist but not in it were deleted
            // while the watch was down.
            watcher::Event::InitDone => {
                let Some(relisted) = self.relisted.take() else {
                    return Vec::new();
                };
                let gone: Vec<String> = self
                    .known
                    .keys()
                    .filter(|name| !relisted.contains(*name))
                    .cloned()
                    .collect();
                gone.into_iter().map(|name| self.forget(name)).collect()
            }
            watcher::Event::Apply(policy) => self.update(&policy),
            watcher::Event::Delete(policy) => match &policy.metadata.name {
                Some(name) if self.known.contains_key(name) => vec![self.forget(name.clone())],
                _ => Vec::new(),
            },
        }
    }

    fn update(&mut self, policy: &EgressPolicy) -> Vec<ApiPolicyChange> {
        let Some(name) = policy.metadata.name.clone() else {
            return Vec::new();
        };
        let generation = policy.metadata.generation;
        if self.known.get(&name) == Some(&generation) && generation.is_some() {
            return Vec::new();
        }
        self.known.insert(name.clone(), generation);
        let yaml = match policy_document(policy) {
            Ok(yaml) => yaml,
            // A spec that deserialised always serialises; keep the old one.
            Err(error) => {
                tracing::error!(policy = name, "turning the object into a policy: {error}");
                return Vec::new();
            }
        };
        vec![ApiPolicyChange::Apply {
            source: source_of(&name),
            name,
            yaml,
            generation,
        }]
    }

    fn forget(&mut self, name: String) -> ApiPolicyChange {
        self.known.remove(&name);
        ApiPolicyChange::Remove {
            source: source_of(&name),
            name,
        }
    }
}

/// The changes, forever; errors are transient (the watch is re-established
/// with a backoff), worth a log line.
pub fn changes(
    client: Client,
) -> impl Stream<Item = Result<ApiPolicyChange, watcher::Error>> + Send {
    let api: Api<EgressPolicy> = Api::all(client);
    // From the API server's watch cache, as for pods: every node lists.
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    watcher(api, config)
        .default_backoff()
        .scan(PolicyTracker::default(), |tracker, event| {
            let out: Vec<Result<ApiPolicyChange, watcher::Error>> = match event {
                Ok(event) => tracker.handle(event).into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

/// Writes this node's entry of a policy's status (server-side apply on the
/// status subresource: the daemon may write nothing else).
pub async fn write_status(client: &Client, name: &str, status: &NodeStatus) -> kube::Result<()> {
    let api: Api<EgressPolicy> = Api::all(client.clone());
    let params = PatchParams::apply(&field_manager(&status.node)).force();
    api.patch_status(name, &params, &Patch::Apply(status_patch(status)))
        .await
        .map(drop)
}
