//! The long-running daemon: owns the datapath and every applied policy's
//! instances on it, keeps names resolved, forwards drop events, and serves
//! the API and /metrics.
//!
//! The datapath is pinned in bpffs and the policies recorded in the state
//! directory, so enforcement outlives the daemon (stopped or killed) and a
//! restarted daemon adopts it (see `restore`). Only `remove` and
//! `uninstall` detach.

mod active;
mod api_policies;
mod apply;
mod counts;
mod error;
mod events;
mod flow_log;
mod heap;
mod host_cgroup;
mod http;
mod instance;
mod learning;
mod metrics;
mod name_refresher;
mod node_pods;
mod peer;
mod pod_start;
mod pods;
mod policy_dir;
mod recording;
mod restore;
mod server;
mod state;
mod targets;
mod trace;
mod workload;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use anyhow::Context as _;
use tokio::sync::{Notify, broadcast};

use active::ActivePolicy;
pub use counts::Counts;
pub use error::{ApplyError, DaemonError};
pub use learning::Learner;
use state::StateDir;
pub use workload::Workload;

use crate::{
    api::{FlowRecord, StatusReport},
    bpffs,
    datapath::{Build, Datapath},
};
use events::SlotNames;

/// How many events a slow `monitor` client may fall behind before it misses some.
const MONITOR_BACKLOG: usize = 4096;

/// Default directory for policy records and the API socket.
pub const DEFAULT_STATE_DIR: &str = "/run/openclaw-egress";
/// Default bpffs directory for pins.
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/openclaw-egress";

pub struct DaemonConfig {
    pub socket: PathBuf,
    /// `None` disables the HTTP /metrics endpoint (metrics stay available over the API).
    pub metrics_addr: Option<SocketAddr>,
    /// Policy records (a normal filesystem; /run is a good place).
    pub state_dir: PathBuf,
    /// Pins (on bpffs).
    pub bpffs_dir: PathBuf,
    /// Follow this node's pods (DaemonSet mode) for `podLabels` selectors.
    pub kubernetes: bool,
    /// Apply the policy files of this directory, following its changes.
    pub policy_dir: Option<PathBuf>,
    /// Where the kubelet makes pod cgroups, when not where its cgroup
    /// driver puts them by default (`kubepods.slice`, `kubepods`).
    pub kubepods_cgroup: Option<PathBuf>,
    /// How often EgressPolicy statuses are written again.
    pub status_interval: std::time::Duration,
    /// Run the build of the programs that logs each verdict.
    pub trace_datapath: bool,
    /// Enforce ClusterNetworkPolicy objects, with these cluster DNS
    /// addresses as their resolvers.
    pub cluster_network_policy: Option<Vec<std::net::IpAddr>>,
    /// Let policies select the cgroup2 root, the daemon's own cgroup or its
    /// ancestors (refused otherwise: they hold the host).
    pub allow_host_cgroup: bool,
    /// Log allowed connections, at most this many per second.
    pub flow_log: Option<u32>,
}

pub struct Daemon {
    policies: RwLock<BTreeMap<String, Arc<ActivePolicy>>>,
    /// Final counters of replaced instances, per policy name.
    retired: Mutex<BTreeMap<String, Counts>>,
    /// Serialises applies and removals.
    apply_lock: tokio::sync::Mutex<()>,
    events: broadcast::Sender<FlowRecord>,
    metrics_addr: Mutex<Option<SocketAddr>>,
    registry: prometheus::Registry,
    state: StateDir,
    /// `--state-dir`, for `status`.
    state_root: PathBuf,
    pins_root: PathBuf,
    /// The programs and maps every policy's instances share.
    datapath: Arc<Datapath>,
    /// The policy of each slot, for naming drop events.
    slot_names: SlotNames,
    /// What each policy's instances report beyond drops.
    recording: recording::Recording,
    /// `--flow-log`'s rate limit (and what it held back).
    flow_log: Option<Arc<flow_log::FlowLog>>,
    /// Signalled by `uninstall`: the daemon exits once it is done.
    exit: Notify,
    pods: node_pods::Pods,
    pod_start: Mutex<pod_start::PodStart>,
    /// Itself, for the tasks an apply starts.
    this: std::sync::Weak<Daemon>,
}

impl Daemon {
    fn new(
        state: StateDir,
        state_root: PathBuf,
        pins_root: PathBuf,
        datapath: Arc<Datapath>,
        flow_log: Option<u32>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(MONITOR_BACKLOG);
        Arc::new_cyclic(|daemon| {
            let registry = prometheus::Registry::new();
            registry
                .register(Box::new(metrics::DaemonCollector::new(daemon.clone())))
                .expect("collector descriptors are valid and unique");
            Self {
                policies: RwLock::default(),
                retired: Mutex::default(),
                apply_lock: tokio::sync::Mutex::new(()),
                events,
                metrics_addr: Mutex::new(None),
                registry,
                state,
                state_root,
                pins_root,
                datapath,
                slot_names: SlotNames::default(),
                recording: recording::Recording::new(flow_log.is_some()),
                flow_log: flow_log.map(|rate| Arc::new(flow_log::FlowLog::new(rate))),
                exit: Notify::new(),
                pods: RwLock::new(None),
                pod_start: Mutex::default(),
                this: daemon.clone(),
            }
        })
    }

    /// Ends a policy's instances (see `Instance::retire`) and keeps their counters.
    fn retire(&self, active: &ActivePolicy, detach: bool) {
        self.keep_counts(&active.policy.name, &active.retire(detach));
    }

    /// Adds a retired instance's final counters to its policy's, so the
    /// exported counters never go backwards.
    fn keep_counts(&self, policy: &str, counts: &Counts) {
        self.retired
            .lock()
            .expect("retired lock")
            .entry(policy.to_string())
            .or_default()
            .add(counts);
    }

    /// Detaches and forgets a policy.
    pub async fn remove(&self, name: &str) -> Result<(), DaemonError> {
        let _serialized = self.apply_lock.lock().await;
        let removed = self.policies.write().expect("policies lock").remove(name);
        let Some(active) = removed else {
            return Err(DaemonError::NotApplied { name: name.into() });
        };
        // Forget the record first: should the daemon die half way, a restart
        // must not resurrect a policy the user removed (its leftover pins are
        // reported and removed by `uninstall`).
        if let Err(error) = self.state.delete(name) {
            tracing::error!(policy = name, "deleting the policy record: {error}");
        }
        self.retire(&active, true);
        drop(active);
        self.update_gate();
        heap::give_back_freed();
        tracing::info!(policy = name, "policy removed");
        Ok(())
    }

    /// Removes every policy and every pin (the caller then lets the daemon
    /// exit with [`Self::request_exit`], once it has answered).
    pub async fn uninstall(&self) -> Vec<String> {
        let names: Vec<String> = self
            .policies
            .read()
            .expect("policies lock")
            .keys()
            .cloned()
            .collect();
        for name in &names {
            if let Err(error) = self.remove(name).await {
                tracing::error!("uninstall: {error}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.pins_root);
        names
    }

    pub fn request_exit(&self) {
        self.exit.notify_one();
    }

    pub fn status(&self) -> StatusReport {
        let retired = self.retired.lock().expect("retired lock").clone();
        let policies = self.policies.read().expect("policies lock");
        StatusReport {
            version: env!("CARGO_PKG_VERSION").into(),
            metrics_addr: self
                .metrics_addr
                .lock()
                .expect("metrics addr lock")
                .map(|addr| addr.to_string()),
            state_dir: Some(self.state_root.clone()),
            policies: policies
                .values()
                .map(|active| {
                    active.status(
                        retired
                            .get(&active.policy.name)
                            .unwrap_or(&Counts::default()),
                    )
                })
                .collect(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FlowRecord> {
        self.events.subscribe()
    }

    /// The Prometheus text exposition of every metric.
    pub fn metrics_text(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| format!("# encoding metrics failed: {error}\n"))
    }
}

/// Runs the daemon until SIGINT, SIGTERM or `uninstall`; SIGHUP re-reads
/// the policy directory.
///
/// Stopping the daemon leaves every policy enforcing (pinned); a restarted
/// daemon adopts them.
pub async fn run(config: DaemonConfig) -> anyhow::Result<()> {
    // SIGHUP (`systemctl reload`) re-reads the policy directory. Handled
    // from the start, so that one sent while the datapath loads does not
    // kill the daemon (SIGHUP's default action).
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    heap::limit_arenas();
    host_cgroup::allow(config.allow_host_cgroup);
    bpffs::prepare(&config.bpffs_dir)?;
    let state = StateDir::open(&config.state_dir)
        .with_context(|| format!("opening the state directory {}", config.state_dir.display()))?;
    let state_root = std::path::absolute(&config.state_dir)?;
    // Verified once here (or re-opened from an earlier daemon's pins), then
    // shared by every workload.
    let build = if config.trace_datapath {
        Build::Trace
    } else {
        Build::Plain
    };
    let datapath_dir = config
        .bpffs_dir
        .join(format!("datapath-{}", Datapath::version_of(build)));
    let datapath = Arc::new(Datapath::open(&datapath_dir, build).with_context(|| {
        format!(
            "loading the datapath (pinned in {})",
            datapath_dir.display()
        )
    })?);
    if build == Build::Trace {
        trace::forward(&datapath)?;
    }
    let daemon = Daemon::new(
        state,
        state_root,
        config.bpffs_dir.clone(),
        datapath,
        config.flow_log,
    );
    // Adopt before serving: no request may see (or change) a half-restored state.
    restore::adopt_all(&daemon);
    heap::give_back_freed();
    if let Some(ring) = daemon.datapath.take_events() {
        let forwarding = events::forward(
            ring,
            daemon.slot_names.clone(),
            daemon.flow_log.clone(),
            daemon.events.clone(),
        );
        tokio::spawn(async move {
            if let Err(error) = forwarding.await {
                tracing::error!("reading drop events stopped: {error}");
            }
        });
    }

    let api = server::bind(&config.socket)?;
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
        let bound = listener.local_addr()?;
        *daemon.metrics_addr.lock().expect("metrics addr lock") = Some(bound);
        tokio::spawn(http::serve(listener, Arc::clone(&daemon)));
        tracing::info!(addr = %bound, "serving Prometheus metrics on /metrics");
    }
    if config.kubernetes {
        // Pod selectors are valid from now on (the pod list fills in as the
        // watcher connects): a podLabels policy applied before must not be
        // refused as if pods were not followed.
        *daemon.pods.write().expect("pods lock") = Some(BTreeMap::new());
        let kubepods = config.kubepods_cgroup.clone();
        let pods = Arc::clone(&daemon);
        tokio::spawn(async move {
            if let Err(error) = pods.watch_pods(kubepods).await {
                tracing::error!("the pod watcher stopped: {error:#}");
            }
        });
        let policies = Arc::clone(&daemon);
        let every = config.status_interval;
        tokio::spawn(async move {
            let followed = match crate::k8s::node_name_from_env() {
                Ok(node) => policies.follow_egress_policies(node, every).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = followed {
                tracing::error!("the EgressPolicy watcher stopped: {error:#}");
            }
        });
        if let Some(resolvers) = config.cluster_network_policy.clone() {
            let policies = Arc::clone(&daemon);
            tokio::spawn(async move {
                if let Err(error) = policies.follow_cluster_network_policies(resolvers).await {
                    tracing::error!("the ClusterNetworkPolicy watcher stopped: {error:#}");
                }
            });
        }
    }
    if let Some(dir) = config.policy_dir.clone() {
        tokio::spawn(Arc::clone(&daemon).follow_policy_dir(dir, hangup));
    } else {
        tokio::spawn(Daemon::ignore_hangups(hangup));
    }
    tracing::info!(socket = %config.socket.display(), "daemon ready");
    tokio::spawn(server::serve(api, Arc::clone(&daemon)));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let uninstalled = tokio::select! {
        _ = tokio::signal::ctrl_c() => false,
        _ = terminate.recv() => false,
        () = daemon.exit.notified() => true,
    };
    let _ = std::fs::remove_file(&config.socket);
    if uninstalled {
        tracing::info!("uninstalled: every policy detached and unpinned");
        return Ok(());
    }
    let policies = std::mem::take(&mut *daemon.policies.write().expect("policies lock"));
    for active in policies.values() {
        daemon.retire(active, false);
    }
    tracing::info!(
        policies = policies.len(),
        "stopped; every policy stays enforced (pinned in {}); a restarted daemon adopts them, \
         `openclaw-egress uninstall` removes them",
        config.bpffs_dir.display()
    );
    Ok(())
}
