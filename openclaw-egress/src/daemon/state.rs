//! What the daemon writes down so that a restarted daemon can adopt the
//! policies it left enforcing: per policy, its text and where each workload's
//! instance is pinned. Records live on a normal filesystem (usually the
//! tmpfs /run, which like bpffs does not survive a reboot) and are replaced
//! atomically (write to a temporary file, then rename).

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use super::workload::Workload;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: String,
    pub source: String,
    pub yaml: String,
    /// Milliseconds since the Unix epoch.
    pub applied_at_ms: u64,
    /// The apply's pin directory name (instances added later go there too).
    pub generation: String,
    pub instances: Vec<InstanceRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub workload: Workload,
    pub pin_dir: PathBuf,
}

impl PolicyRecord {
    pub fn applied_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.applied_at_ms)
    }
}

pub fn unix_seconds(time: SystemTime) -> u64 {
    unix_millis(time) / 1000
}

pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The directory of policy records.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join("policies");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn save(&self, record: &PolicyRecord) -> io::Result<()> {
        let path = self.path(&record.name);
        let temporary = self.dir.join(format!(".{}.json.tmp", record.name));
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        std::fs::write(&temporary, json)?;
        std::fs::rename(&temporary, &path)
    }

    pub fn delete(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Every record, with the ones that cannot be read reported apart.
    pub fn load_all(&self) -> (Vec<PolicyRecord>, Vec<(PathBuf, String)>) {
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) => {
                unreadable.push((self.dir.clone(), error.to_string()));
                return (records, unreadable);
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let record = std::fs::read(&path)
                .map_err(|error| error.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<PolicyRecord>(&bytes).map_err(|e| e.to_string())
                });
            match record {
                Ok(record) => records.push(record),
                Err(error) => unreadable.push((path, error)),
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        (records, unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_replace_atomically() {
        let root = std::env::temp_dir().join(format!("oce-state-test-{}", std::process::id()));
        let state = StateDir::open(&root).unwrap();
        let mut record = PolicyRecord {
            name: "agent".into(),
            source: "p.yaml".into(),
            yaml: "kind: EgressPolicy\n".into(),
            applied_at_ms: 1_700_000_000_123,
            generation: "1700000000-0".into(),
            instances: vec![InstanceRecord {
                workload: Workload::Interface {
                    name: "veth1".into(),
                },
                pin_dir: "/sys/fs/bpf/openclaw-egress/agent/1/if-veth1".into(),
            }],
        };
        state.save(&record).unwrap();
        record.source = "q.yaml".into();
        state.save(&record).unwrap();
        std::fs::write(root.join("policies/broken.json"), b"{").unwrap();
        let (records, unreadable) = state.load_all();
        assert_eq!(records, vec![record]);
        assert_eq!(unreadable.len(), 1);
        state.delete("agent").unwrap();
        state.delete("agent").unwrap();
        assert!(state.load_all().0.is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }
}
