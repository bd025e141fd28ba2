//! What the daemon writes down so that a restarted daemon can adopt the
//! policies it left enforcing: per policy, its text and the number under
//! which each of its workloads is attached (its links are pinned under that
//! number; `ACTIVE` says which slot is in force). Records live on a normal filesystem (usually the
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
    pub instances: Vec<InstanceRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub workload: Workload,
    /// The workload's number in the datapath.
    pub number: u32,
    /// The slot of the policy version in force on it, and its epoch.
    pub slot: u32,
    pub epoch: u32,
}

impl PolicyRecord {
    pub fn applied_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.applied_at_ms)
    }
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
            instances: vec![InstanceRecord {
                workload: Workload::Interface {
                    name: "veth1".into(),
                },
                number: 7,
                slot: 3,
                epoch: 12,
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
