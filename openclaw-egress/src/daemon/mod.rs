//! The long-running daemon: owns every applied policy's datapath, keeps names
//! resolved, forwards drop events, and serves the API and /metrics.

mod active;
mod apply;
mod http;
mod learned;
mod metrics;
mod names;
mod server;
mod targets;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use anyhow::Context as _;
use tokio::sync::broadcast;

use active::ActivePolicy;
pub use active::Counts;
pub use apply::ApplyError;

use crate::api::{DropRecord, StatusReport};

/// How many events a slow `monitor` client may fall behind before it misses some.
const MONITOR_BACKLOG: usize = 4096;

pub struct DaemonConfig {
    pub socket: PathBuf,
    /// `None` disables the HTTP /metrics endpoint (metrics stay available over the API).
    pub metrics_addr: Option<SocketAddr>,
}

pub struct Daemon {
    policies: RwLock<BTreeMap<String, Arc<ActivePolicy>>>,
    /// Final counters of replaced instances, per policy name.
    retired: Mutex<BTreeMap<String, Counts>>,
    /// Serialises applies and removals.
    apply_lock: tokio::sync::Mutex<()>,
    events: broadcast::Sender<DropRecord>,
    metrics_addr: Mutex<Option<SocketAddr>>,
    registry: prometheus::Registry,
}

impl Daemon {
    pub fn new() -> Arc<Self> {
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
            }
        })
    }

    fn retire(&self, active: &ActivePolicy) {
        let counts = active.retire();
        self.retired
            .lock()
            .expect("retired lock")
            .entry(active.policy.name.clone())
            .or_default()
            .add(&counts);
    }

    /// Detaches and forgets a policy.
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        let _serialized = self.apply_lock.lock().await;
        let removed = self.policies.write().expect("policies lock").remove(name);
        match removed {
            Some(active) => {
                self.retire(&active);
                tracing::info!(policy = name, "policy removed");
                Ok(())
            }
            None => Err(format!("no policy named {name} is applied")),
        }
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

    pub fn subscribe(&self) -> broadcast::Receiver<DropRecord> {
        self.events.subscribe()
    }

    /// The Prometheus text exposition of every metric.
    pub fn metrics_text(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| format!("# encoding metrics failed: {error}\n"))
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
///
/// Stopping the daemon detaches every policy it applied.
pub async fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let daemon = Daemon::new();
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
    tracing::info!(socket = %config.socket.display(), "daemon ready");
    tokio::spawn(server::serve(api, Arc::clone(&daemon)));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: detaching all policies");
    let _ = std::fs::remove_file(&config.socket);
    let policies = std::mem::take(&mut *daemon.policies.write().expect("policies lock"));
    for active in policies.values() {
        daemon.retire(active);
    }
    Ok(())
}
