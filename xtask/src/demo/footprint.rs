//! What a sandbox leaves on the machine, to check that teardown removed all of it.

use std::path::{Path, PathBuf};

use openclaw_egress_e2e::Sandbox;

use crate::cmd;

/// What a sandbox puts on the machine, to check after teardown that none of
/// it is left.
pub(super) struct Footprint {
    pub(super) id: String,
    netns: [String; 2],
    paths: Vec<PathBuf>,
}

impl Footprint {
    pub(super) fn of(sandbox: &Sandbox) -> Self {
        Self {
            id: sandbox.id().to_owned(),
            netns: [
                sandbox.agent_netns().to_owned(),
                sandbox.world_netns().to_owned(),
            ],
            paths: vec![
                sandbox.cgroup_path().to_owned(),
                Path::new("/etc/netns").join(sandbox.agent_netns()),
                sandbox.scratch_dir().to_owned(),
                sandbox.pins_dir().to_owned(),
            ],
        }
    }

    /// Whatever of the footprint still exists.
    pub(super) fn leftovers(&self) -> Vec<String> {
        let listed = cmd::probe(cmd::new("ip").args(["netns", "list"])).unwrap_or_default();
        let listed: Vec<&str> = listed
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        let netns = self
            .netns
            .iter()
            .filter(|name| listed.contains(&name.as_str()))
            .map(|name| format!("netns {name}"));
        let paths = self
            .paths
            .iter()
            .filter(|path| path.exists())
            .map(|path| path.display().to_string());
        netns.chain(paths).collect()
    }
}
