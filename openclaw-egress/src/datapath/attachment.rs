//! Workloads: where the shared programs are attached, and which slot is in
//! force for each.
//!
//! A workload (a cgroup, or a host-side interface) is attached once: a stub
//! per skb hook, and the shared `connect()`/`sendmsg()` programs on a
//! cgroup. Applying a new version of a policy only changes which slot
//! `ACTIVE` names. Several holders may claim a workload at once (the
//! version in force and the one replacing it, during an apply); the newest
//! is in force, and when it lets go first (an apply that failed half way),
//! the one before it is in force again. The workload is detached when the
//! last holder lets go.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::PathBuf,
    sync::Mutex,
};

use aya::maps::CgroupStorageKey;
use openclaw_egress_common::workload::active_slot;

use super::{DatapathError, Result, pins, shared::Datapath, stub, stub::Entry};
use crate::bpf_sys::{self, LinkTarget};

/// Where a workload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A cgroup v2 directory.
    Cgroup(PathBuf),
    /// A network interface in the daemon's namespace (the host side of a
    /// workload's veth).
    Interface(String),
}

/// A claim on a workload: its number, and the `ACTIVE` entry it put in
/// force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub workload: u32,
    pub entry: u64,
    token: u64,
}

struct Link {
    _fd: OwnedFd,
    pin: Option<PathBuf>,
}

struct Attachment {
    workload: u32,
    links: Vec<Link>,
    /// Oldest first; the last is in force.
    holders: Vec<Holder>,
}

#[derive(Default)]
struct Inner {
    by_key: BTreeMap<String, Attachment>,
    next_token: u64,
}

impl Inner {
    /// Records workload `workload`, attached by `links`, as `key`'s, with
    /// one holder: `entry`, under `token`.
    fn first_holder(
        &mut self,
        key: &str,
        workload: u32,
        links: Vec<Link>,
        entry: u64,
        token: u64,
    ) -> Holder {
        let holder = Holder {
            workload,
            entry,
            token,
        };
        self.by_key.insert(
            key.to_string(),
            Attachment {
                workload,
                links,
                holders: vec![holder],
            },
        );
        holder
    }
}

#[derive(Default)]
pub struct Attachments {
    inner: Mutex<Inner>,
}

impl Attachments {
    /// Puts `entry` in force on the workload `key` (at `place`), attaching
    /// it first if nobody holds it. A new workload's `ACTIVE` entry is
    /// written before its hooks exist, so it filters from its first packet.
    pub fn activate(
        &self,
        datapath: &Datapath,
        key: &str,
        place: &Place,
        entry: u64,
    ) -> Result<Holder> {
        let mut inner = self.inner.lock().expect("attachments lock");
        inner.next_token += 1;
        let token = inner.next_token;
        if let Some(attachment) = inner.by_key.get_mut(key) {
            let holder = Holder {
                workload: attachment.workload,
                entry,
                token,
            };
            attachment.holders.push(holder);
            datapath.active().set(attachment.workload, entry);
            return Ok(holder);
        }
        let workload = datapath.allocate_workload()?;
        datapath.active().set(workload, entry);
        let links = match attach(datapath, workload, place) {
            Ok(links) => links,
            Err(error) => {
                datapath.free_workload(workload);
                if let Some(dir) = datapath.pin_dir() {
                    pins::remove_dir(&pins::workload_dir(dir, workload));
                }
                return Err(error);
            }
        };
        Ok(inner.first_holder(key, workload, links, entry, token))
    }

    /// Takes over workload `workload`, attached by an earlier daemon (its
    /// links are pinned), with `entry` in force.
    pub fn adopt(
        &self,
        datapath: &Datapath,
        key: &str,
        workload: u32,
        entry: u64,
    ) -> Result<Holder> {
        let dir = datapath.pin_dir().ok_or(DatapathError::NotPinned)?;
        let links = pins::workload_links(&pins::workload_dir(dir, workload))?
            .into_iter()
            .map(|(pin, fd)| Link {
                _fd: fd,
                pin: Some(pin),
            })
            .collect();
        let mut inner = self.inner.lock().expect("attachments lock");
        inner.next_token += 1;
        let token = inner.next_token;
        Ok(inner.first_holder(key, workload, links, entry, token))
    }

    /// Lets go of `holder`. If it was in force and others remain, the
    /// newest of them is in force again. If it was the last, the workload
    /// is detached when `detach` says so; otherwise (a daemon shutting
    /// down) it stays attached and pinned, enforcing what is in force.
    pub fn release(&self, datapath: &Datapath, holder: Holder, detach: bool) {
        let mut inner = self.inner.lock().expect("attachments lock");
        let Some(key) = inner
            .by_key
            .iter()
            .find(|(_, attachment)| attachment.workload == holder.workload)
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        let attachment = inner.by_key.get_mut(&key).expect("found above");
        let was_in_force = attachment.holders.last() == Some(&holder);
        attachment.holders.retain(|held| *held != holder);
        if let Some(newest) = attachment.holders.last() {
            if was_in_force {
                datapath.active().set(attachment.workload, newest.entry);
            }
            return;
        }
        let attachment = inner.by_key.remove(&key).expect("found above");
        if !detach {
            return; // The pins keep it attached.
        }
        for link in &attachment.links {
            if let Some(pin) = &link.pin
                && let Err(error) = std::fs::remove_file(pin)
            {
                tracing::error!(pin = %pin.display(), "unpinning a link: {error}");
            }
        }
        drop(attachment.links);
        if let Some(dir) = datapath.pin_dir() {
            pins::remove_dir(&pins::workload_dir(dir, attachment.workload));
        }
        datapath.free_workload(attachment.workload);
    }

    /// The slots some holder put in force.
    pub fn held_slots(&self) -> BTreeSet<u32> {
        let inner = self.inner.lock().expect("attachments lock");
        inner
            .by_key
            .values()
            .flat_map(|attachment| &attachment.holders)
            .map(|holder| active_slot(holder.entry))
            .collect()
    }

    /// The workloads somebody holds.
    pub fn held_workloads(&self) -> BTreeSet<u32> {
        let inner = self.inner.lock().expect("attachments lock");
        inner.by_key.values().map(|a| a.workload).collect()
    }
}

/// Attaches workload `workload` at `place`. On failure, what was attached
/// is detached again (the links are dropped, their pins removed by the
/// caller).
fn attach(datapath: &Datapath, workload: u32, place: &Place) -> Result<Vec<Link>> {
    let pin_dir = match datapath.pin_dir() {
        Some(dir) => Some(pins::create_workload_dir(dir, workload)?),
        None => None,
    };
    let mut links = Vec::new();
    let mut keep = |name: &str, fd: OwnedFd| -> Result<()> {
        let pin = match &pin_dir {
            Some(dir) => Some(pins::pin_link(dir, name, fd.as_fd())?),
            None => None,
        };
        links.push(Link { _fd: fd, pin });
        Ok(())
    };
    match place {
        Place::Cgroup(path) => {
            let cgroup = File::open(path).map_err(|source| DatapathError::Pinned {
                path: path.clone(),
                source,
            })?;
            let cgroup_id = cgroup
                .metadata()
                .map_err(|source| DatapathError::Pinned {
                    path: path.clone(),
                    source,
                })?
                .ino();
            // Ingress first, so answers are learned from the moment queries
            // can leave.
            for entry in Entry::CGROUP {
                let link = attach_stub(
                    datapath,
                    workload,
                    entry,
                    LinkTarget::Cgroup(cgroup.as_fd()),
                )?;
                keep(entry.program(), link)?;
            }
            // The early answers to connect()/sendmsg(), once the
            // packet-level enforcement is in place. Until the storage
            // names the workload they let everything through to the
            // packet hooks.
            for (attach_type, program) in datapath.sock_addr_programs() {
                let link =
                    bpf_sys::create_link(program, LinkTarget::Cgroup(cgroup.as_fd()), attach_type)
                        .map_err(|source| DatapathError::Attach {
                            place: path.display().to_string(),
                            source,
                        })?;
                keep(&format!("sock_addr_{attach_type}"), link)?;
                datapath
                    .cgroup_workloads()
                    .lock()
                    .expect("cgroup storage lock")
                    .insert(CgroupStorageKey::new(cgroup_id, attach_type), workload, 0)
                    .map_err(super::map_error(
                        openclaw_egress_common::maps::CGROUP_WORKLOADS,
                    ))?;
            }
        }
        Place::Interface(name) => {
            let ifindex = interface_index(name)?;
            for entry in Entry::INTERFACE {
                let link = attach_stub(datapath, workload, entry, LinkTarget::Interface(ifindex))
                    .map_err(|error| match error {
                    DatapathError::Attach { source, .. } => DatapathError::Attach {
                        place: format!("interface {name}"),
                        source,
                    },
                    other => other,
                })?;
                keep(entry.program(), link)?;
            }
        }
    }
    Ok(links)
}

fn attach_stub(
    datapath: &Datapath,
    workload: u32,
    entry: Entry,
    target: LinkTarget<'_>,
) -> Result<OwnedFd> {
    let stub = stub::load(entry, workload, datapath.program_array(entry)).map_err(|source| {
        DatapathError::Create {
            name: entry.program(),
            source,
        }
    })?;
    bpf_sys::create_link(stub.as_fd(), target, entry.link_attach_type()).map_err(|source| {
        DatapathError::Attach {
            place: format!("{target:?}"),
            source,
        }
    })
}

fn interface_index(name: &str) -> Result<u32> {
    let c_name = std::ffi::CString::new(name).map_err(|_| DatapathError::Attach {
        place: format!("interface {name}"),
        source: std::io::Error::other("a NUL byte in the name"),
    })?;
    // SAFETY: a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(DatapathError::Attach {
            place: format!("interface {name}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(index)
}
