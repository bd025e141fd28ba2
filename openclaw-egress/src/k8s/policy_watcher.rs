//! API objects that become policies (`EgressPolicy`, and optionally the
//! upstream `ClusterNetworkPolicy`), as policies to apply and remove:
//! kube-rs list+watch, fed through a [`PolicyTracker`] (pure: the watcher's
//! events in, changes out), tested with recorded responses.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
};

use futures::{Stream, StreamExt};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

use super::{
    cluster_network_policy::{self, ClusterNetworkPolicy},
    egress_policy::{EgressPolicy, NodeStatus, field_manager, policy_document, status_patch},
};

/// What an object amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// The policy's name (`metadata.name` of an `EgressPolicy`).
    pub name: String,
    /// The policy file it amounts to, parsed by the daemon as any file; or
    /// why there is none.
    pub yaml: Result<String, String>,
}

/// A kind of API object that becomes a policy.
pub trait PolicyObject:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
    /// Sources are `<SOURCE>/<object name>` (what `status` and logs say).
    const SOURCE: &'static str;
}

impl PolicyObject for EgressPolicy {
    const SOURCE: &'static str = "egresspolicy";
}

/// The policy of an `EgressPolicy`: itself.
/// An object may select pods only: `cgroupPath` and `interfaces` name
/// things of one host.
pub fn egress_policy(policy: &EgressPolicy) -> Translated {
    let selector = &policy.spec.selector;
    let yaml = if selector.cgroup_path.is_some() || !selector.interfaces.is_empty() {
        Err(
            "spec.selector: a policy object selects pods by podLabels only (cgroupPath and \
             interfaces name things of one host: put such a policy in a policy file on that \
             host)"
                .to_owned(),
        )
    } else {
        policy_document(policy).map_err(|error| error.to_string())
    };
    Translated {
        name: policy.metadata.name.clone().unwrap_or_default(),
        yaml,
    }
}

impl PolicyObject for ClusterNetworkPolicy {
    const SOURCE: &'static str = "clusternetworkpolicy";
}

/// The policy of a `ClusterNetworkPolicy`, whose name rules ask the cluster
/// DNS service (`resolvers`).
pub fn cluster_network_policy(
    resolvers: Vec<std::net::IpAddr>,
) -> impl Fn(&ClusterNetworkPolicy) -> Translated + Send + 'static {
    move |object| Translated {
        name: cluster_network_policy::policy_name(
            object.metadata.name.as_deref().unwrap_or_default(),
        ),
        yaml: cluster_network_policy::translate(object, &resolvers)
            .map_err(|error| error.to_string()),
    }
}

/// What the daemon has to do about the API server's policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPolicyChange {
    /// A new object, or a new version of one (its spec changed).
    Apply {
        /// The policy's name.
        name: String,
        /// `<kind>/<object name>`.
        source: String,
        yaml: Result<String, String>,
        generation: Option<i64>,
    },
    /// The object is gone.
    Remove { name: String, source: String },
}

/// The objects seen, by object name, with the generation last reported and
/// the policy name they became. A status update (the daemons' own) leaves
/// the generation alone, so it changes nothing here: no re-apply, no loop.
pub struct PolicyTracker<K> {
    translate: Box<dyn Fn(&K) -> Translated + Send>,
    known: BTreeMap<String, (Option<i64>, String)>,
    /// Between `Init` and `InitDone` (a (re)list): the names listed so far.
    relisted: Option<BTreeSet<String>>,
}

impl<K: PolicyObject> PolicyTracker<K> {
    pub fn new(translate: impl Fn(&K) -> Translated + Send + 'static) -> Self {
        PolicyTracker {
            translate: Box::new(translate),
            known: BTreeMap::new(),
            relisted: None,
        }
    }

    pub fn handle(&mut self, event: watcher::Event<K>) -> Vec<ApiPolicyChange> {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(BTreeSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                if let (Some(relisted), Some(name)) = (&mut self.relisted, &object.meta().name) {
                    relisted.insert(name.clone());
                }
                self.update(&object)
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
                gone.into_iter()
                    .filter_map(|name| self.forget(&name))
                    .collect()
            }
            watcher::Event::Apply(object) => self.update(&object),
            watcher::Event::Delete(object) => match &object.meta().name {
                Some(name) => self.forget(name).into_iter().collect(),
                None => Vec::new(),
            },
        }
    }

    fn update(&mut self, object: &K) -> Vec<ApiPolicyChange> {
        let Some(object_name) = object.meta().name.clone() else {
            return Vec::new();
        };
        let generation = object.meta().generation;
        if generation.is_some()
            && self.known.get(&object_name).map(|(known, _)| *known) == Some(generation)
        {
            return Vec::new();
        }
        let translated = (self.translate)(object);
        self.known
            .insert(object_name.clone(), (generation, translated.name.clone()));
        vec![ApiPolicyChange::Apply {
            name: translated.name,
            source: format!("{}/{object_name}", K::SOURCE),
            yaml: translated.yaml,
            generation,
        }]
    }

    fn forget(&mut self, object_name: &str) -> Option<ApiPolicyChange> {
        let (_, name) = self.known.remove(object_name)?;
        Some(ApiPolicyChange::Remove {
            name,
            source: format!("{}/{object_name}", K::SOURCE),
        })
    }
}

/// The changes, forever; errors are transient (the watch is re-established
/// with a backoff), worth a log line.
pub fn changes<K: PolicyObject>(
    client: Client,
    translate: impl Fn(&K) -> Translated + Send + 'static,
) -> impl Stream<Item = Result<ApiPolicyChange, watcher::Error>> + Send {
    let api: Api<K> = Api::all(client);
    // From the API server's watch cache, as for pods: every node lists.
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    watcher(api, config)
        .default_backoff()
        .scan(PolicyTracker::new(translate), |tracker, event| {
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
