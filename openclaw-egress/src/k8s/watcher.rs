//! The Kubernetes side of the watcher: kube-rs list+watch of this node's
//! pods, fed through a [`PodTracker`]. Everything that decides something is
//! in the tracker; this module only moves bytes and time.

use std::{env, time::Duration};

use futures::{Stream, StreamExt, future, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};

use super::{cgroup_path::CgroupLayout, tracker::PodTracker, workload::WorkloadEvent};

/// The environment variable the DaemonSet fills with `spec.nodeName`
/// through the downward API.
pub const NODE_NAME_ENV: &str = "NODE_NAME";

/// How often running pods whose cgroup was missing are looked up again.
pub const DEFAULT_CGROUP_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "{NODE_NAME_ENV} is not set; in the DaemonSet it comes from the downward API \
         (env: NODE_NAME valueFrom fieldRef spec.nodeName)"
    )]
    NoNodeName,
    #[error(
        "connecting to the Kubernetes API server (in-cluster service account or kubeconfig): {0}"
    )]
    Client(#[source] kube::Error),
    /// The watch failed; the stream retries by itself (with a backoff), so
    /// this is worth a log line, not a restart.
    #[error("watching the pods of node {node}: {source}")]
    Watch {
        node: String,
        #[source]
        source: watcher::Error,
    },
}

/// This node's name, from [`NODE_NAME_ENV`].
pub fn node_name_from_env() -> Result<String, WatchError> {
    env::var(NODE_NAME_ENV)
        .ok()
        .filter(|name| !name.is_empty())
        .ok_or(WatchError::NoNodeName)
}

/// A client from the pod's service account (or a kubeconfig, outside a
/// cluster).
pub async fn default_client() -> Result<Client, WatchError> {
    Client::try_default().await.map_err(WatchError::Client)
}

/// Watches the pods of one node.
pub struct PodWatcher {
    client: Client,
    tracker: PodTracker,
    cgroup_retry: Duration,
}

impl PodWatcher {
    /// `node` is this node's name ([`node_name_from_env`]), `cgroups` where
    /// its pod cgroups are ([`CgroupLayout::detect`]).
    pub fn new(client: Client, node: impl Into<String>, cgroups: CgroupLayout) -> PodWatcher {
        PodWatcher {
            client,
            tracker: PodTracker::new(node, cgroups),
            cgroup_retry: DEFAULT_CGROUP_RETRY,
        }
    }

    /// How often to look again for the cgroups of running pods that had
    /// none ([`DEFAULT_CGROUP_RETRY`]; at least 100 ms).
    pub fn cgroup_retry(mut self, every: Duration) -> PodWatcher {
        self.cgroup_retry = every.max(Duration::from_millis(100));
        self
    }

    /// The events, forever. Errors are transient: the underlying watch is
    /// re-established (relisting if it has to, with an exponential backoff),
    /// so log them and keep polling. A relist never repeats a `Running`
    /// for an unchanged pod and reports `Gone` for pods deleted while the
    /// watch was down.
    pub fn events(self) -> impl Stream<Item = Result<WorkloadEvent, WatchError>> + Send {
        let node = self.tracker.node().to_owned();
        let api: Api<Pod> = Api::all(self.client);
        // The field selector makes the API server send this node's pods
        // only (it indexes pods by node, so this is cheap even in a large
        // cluster). `any_semantic` lists from the API server's watch cache
        // (resourceVersion=0) rather than a quorum read from etcd, as the
        // kubelet itself does: every node of the cluster lists when the
        // DaemonSet rolls out. The cache does not page, and kube leaves out
        // resourceVersion=0 from paged requests, so no page size: one node
        // has a few hundred pods at most.
        let mut config = watcher::Config::default()
            .fields(&format!("spec.nodeName={node}"))
            .any_semantic();
        config.page_size = None;
        let pods = watcher(api, config).default_backoff().map(move |event| {
            Input::Watch(Box::new(event.map_err(|source| WatchError::Watch {
                node: node.clone(),
                source,
            })))
        });

        // Made on first poll, so that `events()` itself needs no runtime.
        let every = self.cgroup_retry;
        let ticks = stream::unfold(
            None,
            move |interval: Option<tokio::time::Interval>| async move {
                let mut interval = interval.unwrap_or_else(|| {
                    let mut interval = tokio::time::interval(every);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    interval
                });
                interval.tick().await;
                Some((Input::RetryCgroups, Some(interval)))
            },
        );

        stream::select(pods, ticks)
            .scan(self.tracker, |tracker, input| {
                let out: Vec<Result<WorkloadEvent, WatchError>> = match input {
                    Input::Watch(event) => match *event {
                        Ok(event) => tracker.handle(event).into_iter().map(Ok).collect(),
                        Err(error) => vec![Err(error)],
                    },
                    Input::RetryCgroups if tracker.missing_cgroups() > 0 => tracker
                        .retry_missing_cgroups()
                        .into_iter()
                        .map(Ok)
                        .collect(),
                    Input::RetryCgroups => Vec::new(),
                };
                future::ready(Some(stream::iter(out)))
            })
            .flatten()
    }
}

/// What the stream reacts to. (Boxed: a pod is kilobytes, a tick nothing.)
enum Input {
    Watch(Box<Result<watcher::Event<Pod>, WatchError>>),
    RetryCgroups,
}
