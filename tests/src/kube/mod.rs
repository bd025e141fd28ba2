//! A fake Kubernetes API server, for `openclaw-egress daemon --kubernetes`
//! without a cluster.
//!
//! It serves what the daemon asks for: the pods of the core API
//! (`GET /api/v1/pods`), `EgressPolicy` objects
//! (`GET /apis/openclaw.io/v1/egresspolicies`, and server-side apply
//! `PATCH`es of their `status`) and `ClusterNetworkPolicy` objects, over plain HTTP/1.1 on a listener the test
//! provides (e.g. [`crate::Sandbox::bind_tcp_in_agent`], so that the daemon
//! reaches it on the agent netns's loopback). Like a real API server it
//! keeps a resource version, answers a list with the current objects (pods
//! only on the node named by a `spec.nodeName=` field selector) and a watch
//! (`watch=true`) with a chunked stream of `ADDED`/`MODIFIED`/`DELETED`
//! events newer than the watch's `resourceVersion`, held open until
//! `timeoutSeconds` (then ended, as a real server does, so the client
//! watches again). A policy's `metadata.generation` grows when its spec
//! changes, not when its status does.
//!
//! Tests change the objects with [`FakeKubeApi::apply_pod`],
//! [`FakeKubeApi::delete_pod`], [`FakeKubeApi::apply_egress_policy`] and
//! [`FakeKubeApi::delete_egress_policy`]; every request is recorded
//! ([`FakeKubeApi::requests`]) so a test can show what the daemon asked.

use std::{
    collections::BTreeMap,
    fmt,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// One request as the fake API server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, percent-decoded.
    pub query: BTreeMap<String, String>,
    /// The request target exactly as sent (path and query).
    pub target: String,
    /// The body, as text (empty for a GET).
    pub body: String,
}

impl ApiRequest {
    /// True for a watch (`watch=true` or `watch=1`).
    pub fn is_watch(&self) -> bool {
        matches!(
            self.query.get("watch").map(String::as_str),
            Some("true" | "1")
        )
    }

    /// The node of a `spec.nodeName=<node>` field selector, if any.
    pub fn node_selector(&self) -> Option<&str> {
        self.query
            .get("fieldSelector")?
            .split(',')
            .find_map(|term| term.strip_prefix("spec.nodeName="))
    }
}

impl fmt::Display for ApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.target)
    }
}

/// A pod object as the API server would return it: in `namespace` with
/// `name` and `uid`, scheduled on `node`, Running, QoS class BestEffort,
/// with `labels`. (The daemon finds its cgroup by the UID.)
pub fn running_pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    labels: &[(&str, &str)],
) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "labels": labels,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "agent", "image": "openclaw/agent:e2e"}],
        },
        "status": {"phase": "Running", "qosClass": "BestEffort"},
    })
}

/// [`running_pod`], but Pending: bound to `node` by the scheduler, its
/// containers not started yet (the kubelet has not made its cgroup).
pub fn pending_pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    labels: &[(&str, &str)],
) -> Value {
    let mut pod = running_pod(namespace, name, uid, node, labels);
    pod["status"]["phase"] = json!("Pending");
    pod
}

/// A running fake API server; stopped (every connection closed) on drop.
pub struct FakeKubeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<ApiState>,
    changed: Condvar,
    shutdown: AtomicBool,
}

/// The collections served, by path.
pub const PODS: &str = "/api/v1/pods";
pub const EGRESS_POLICIES: &str = "/apis/openclaw.io/v1/egresspolicies";
pub const CLUSTER_NETWORK_POLICIES: &str =
    "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies";

#[derive(Default)]
struct ApiState {
    resource_version: u64,
    /// (collection, namespace, name) -> the object as stored (namespace
    /// empty for cluster-scoped objects).
    objects: BTreeMap<(&'static str, String, String), Value>,
    /// Every change so far: (resource version, type, collection, object).
    events: Vec<(u64, &'static str, &'static str, Value)>,
    requests: Vec<ApiRequest>,
    /// Clones of the open connections, to close them on drop.
    connections: Vec<TcpStream>,
    /// Watch streams currently open.
    open_watches: usize,
}

impl Shared {
    fn store(&self, key: (&'static str, String, String), mut object: Value) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let version = state.resource_version;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        let kind = if state.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let collection = key.0;
        state.objects.insert(key, object.clone());
        state.events.push((version, kind, collection, object));
        self.changed.notify_all();
    }

    fn delete(&self, key: &(&'static str, String, String)) -> bool {
        let mut state = self.state.lock().unwrap();
        let Some(mut object) = state.objects.remove(key) else {
            return false;
        };
        state.resource_version += 1;
        let version = state.resource_version;
        object["metadata"]["resourceVersion"] = version.to_string().into();
        state.events.push((version, "DELETED", key.0, object));
        self.changed.notify_all();
        true
    }

    /// A status `PATCH` (server-side apply): the entries of `status.nodes`
    /// in the body replace those of the same node.
    fn patch_status(&self, name: &str, body: &str) -> Option<Value> {
        let patch: Value = serde_json::from_str(body).ok()?;
        let key = (EGRESS_POLICIES, String::new(), name.to_owned());
        let mut object = self.state.lock().unwrap().objects.get(&key)?.clone();
        let mut nodes: Vec<Value> = object["status"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for entry in patch["status"]["nodes"].as_array()? {
            nodes.retain(|old| old["node"] != entry["node"]);
            nodes.push(entry.clone());
        }
        object["status"] = json!({ "nodes": nodes });
        self.store(key, object.clone());
        Some(object)
    }
}

impl FakeKubeApi {
    /// How long a watch is held open when the client asks for no
    /// `timeoutSeconds`.
    const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(300);

    /// Serves on `listener` (on threads) until dropped.
    pub fn serve(listener: TcpListener) -> Result<Self> {
        let addr = listener.local_addr().context("the listener's address")?;
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let shared = Arc::new(Shared::default());
        shared.state.lock().unwrap().resource_version = 100;
        let accept = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || accept_loop(&listener, &shared))
        };
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig pointing at this server over plain HTTP, with no
    /// credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n\
             users:\n\
             - name: fake\n  user: {{}}\n",
            self.addr
        )
    }

    /// Writes [`FakeKubeApi::kubeconfig`] to `dir/kubeconfig` and returns
    /// its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Creates or replaces a pod (an `ADDED` or `MODIFIED` event for
    /// watchers); its `metadata.resourceVersion` is set here.
    pub fn apply_pod(&self, pod: Value) {
        let key = object_key(PODS, &pod);
        self.shared.store(key, pod);
    }

    /// Deletes a pod (a `DELETED` event for watchers); false if there was
    /// no such pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.shared
            .delete(&(PODS, namespace.to_owned(), name.to_owned()))
    }

    /// Creates or replaces an `EgressPolicy` (cluster-scoped): its
    /// `generation` starts at 1 and grows with each change of its spec,
    /// and the status written so far is kept.
    pub fn apply_egress_policy(&self, policy: Value) {
        self.apply_cluster_scoped(EGRESS_POLICIES, policy);
    }

    /// Deletes an `EgressPolicy`; false if there was none.
    pub fn delete_egress_policy(&self, name: &str) -> bool {
        self.shared
            .delete(&(EGRESS_POLICIES, String::new(), name.to_owned()))
    }

    /// Creates or replaces a `ClusterNetworkPolicy` (as for policies).
    pub fn apply_cluster_network_policy(&self, policy: Value) {
        self.apply_cluster_scoped(CLUSTER_NETWORK_POLICIES, policy);
    }

    /// Deletes a `ClusterNetworkPolicy`; false if there was none.
    pub fn delete_cluster_network_policy(&self, name: &str) -> bool {
        self.shared
            .delete(&(CLUSTER_NETWORK_POLICIES, String::new(), name.to_owned()))
    }

    fn apply_cluster_scoped(&self, collection: &'static str, mut object: Value) {
        let key = object_key(collection, &object);
        let old = self.shared.state.lock().unwrap().objects.get(&key).cloned();
        let generation = match &old {
            Some(old) if old["spec"] == object["spec"] => old["metadata"]["generation"].clone(),
            Some(old) => (old["metadata"]["generation"].as_u64().unwrap_or(0) + 1).into(),
            None => 1.into(),
        };
        object["metadata"]["generation"] = generation;
        if let Some(status) = old.and_then(|old| old.get("status").cloned()) {
            object["status"] = status;
        }
        self.shared.store(key, object);
    }

    /// The `EgressPolicy` named `name` as stored (with the status the
    /// daemons wrote).
    pub fn egress_policy(&self, name: &str) -> Option<Value> {
        let state = self.shared.state.lock().unwrap();
        state
            .objects
            .get(&(EGRESS_POLICIES, String::new(), name.to_owned()))
            .cloned()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// Watch streams open right now.
    pub fn open_watches(&self) -> usize {
        self.shared.state.lock().unwrap().open_watches
    }

    /// The first request (from the start) for which `predicate` holds,
    /// waiting up to `timeout`.
    pub fn wait_for_request(
        &self,
        mut predicate: impl FnMut(&ApiRequest) -> bool,
        timeout: Duration,
    ) -> Option<ApiRequest> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if let Some(found) = state.requests.iter().find(|r| predicate(r)) {
                return Some(found.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap()
                .0;
        }
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        for connection in self.shared.state.lock().unwrap().connections.drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn object_key(collection: &'static str, object: &Value) -> (&'static str, String, String) {
    let field = |name: &str| object["metadata"][name].as_str().map(str::to_owned);
    let name = field("name").unwrap_or_else(|| panic!("an object needs metadata.name: {object}"));
    let namespace = if collection == PODS {
        field("namespace").unwrap_or_else(|| panic!("a pod needs metadata.namespace: {object}"))
    } else {
        String::new()
    };
    (collection, namespace, name)
}

mod server;

use server::accept_loop;
