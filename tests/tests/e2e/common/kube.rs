//! One pod on a node of a fake cluster: a world, the pod `agents/agent`
//! (labels app=openclaw) as a cgroup inside the sandbox, a fake API server
//! that knows it, and a daemon with `--kubernetes` following them.

use std::{path::PathBuf, time::Duration};

use openclaw_egress_e2e::{
    Daemon, Sandbox, World, WorldConfig, binary_path,
    kube::{FakeKubeApi, running_pod},
};

use super::poll_until;

/// The node the daemon runs on.
pub const NODE: &str = "e2e-node";

/// Fields drop in declaration order: the daemon first, the sandbox last.
pub struct OnePod {
    pub daemon: Daemon,
    pub api: FakeKubeApi,
    _world: World,
    /// The pod's cgroup.
    pub cgroup: PathBuf,
    pub sandbox: Sandbox,
}

impl OnePod {
    /// Starts it all; `prepare` adds objects to the API server before the
    /// daemon starts, `args` go to `openclaw-egress daemon --kubernetes`.
    pub fn start(world: &WorldConfig, args: &[&str], prepare: impl FnOnce(&FakeKubeApi)) -> Self {
        let sandbox = Sandbox::new().expect("creating the sandbox");
        let world = sandbox
            .start_world(world)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let uid = format!("{}-agent", sandbox.id());
        let cgroup = sandbox.create_cgroup(&format!("pod{uid}")).unwrap();
        let listener = sandbox
            .bind_tcp_in_agent("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let api = FakeKubeApi::serve(listener).unwrap();
        api.apply_pod(running_pod(
            "agents",
            "agent",
            &uid,
            NODE,
            &[("app", "openclaw")],
        ));
        prepare(&api);
        let kubeconfig = api.write_kubeconfig(sandbox.scratch_dir()).unwrap();
        let args: Vec<&str> = std::iter::once("--kubernetes")
            .chain(args.iter().copied())
            .collect();
        let daemon = sandbox
            .spawn_daemon_with_env(
                &binary_path("openclaw-egress"),
                &args,
                &[
                    ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                    ("NODE_NAME", NODE),
                ],
            )
            .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
        Self {
            daemon,
            api,
            _world: world,
            cgroup,
            sandbox,
        }
    }

    /// The workloads of the applied policy `policy` (none when it is not).
    pub fn workloads(&self, policy: &str) -> Vec<String> {
        let status = self.daemon.status_json().unwrap();
        status["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == policy)
            .flat_map(|p| p["workloads"].as_array().cloned().unwrap_or_default())
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until the workloads of `policy` are exactly `expected`.
    #[track_caller]
    pub fn wait_for_workloads(&self, what: &str, policy: &str, expected: &[&str]) {
        poll_until(what, Duration::from_secs(30), || {
            match self.workloads(policy) {
                w if w == expected => Ok(()),
                w => Err(format!("workloads {w:?}")),
            }
        });
    }
}
