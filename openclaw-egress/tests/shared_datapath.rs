//! One datapath, many workloads: the programs are verified once and every
//! workload reaches them with its own slot of maps. These tests run the
//! real programs (BPF_PROG_TEST_RUN) and attach to a real cgroup; root only.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use common::*;
use openclaw_egress::{
    bpffs, clock,
    datapath::{Build, Capacities, Datapath, Entry, Hooks, Place, PolicyDatapath, encode, frames},
    policy::{Mode, Policy},
};
use openclaw_egress_common::DropReason;

fn in_ten_minutes() -> u64 {
    clock::monotonic_ns_after(Duration::from_secs(600))
}

fn answer_for_trusted_name(ip: &str) -> Vec<u8> {
    frames::dns::response(
        9,
        "api.trusted.test",
        1,
        &[frames::dns::Record::Address {
            ip: ip.parse().unwrap(),
            ttl: 300,
        }],
    )
}

#[test]
fn workloads_sharing_the_programs_learn_and_are_allowed_apart() {
    let shared = Arc::new(Datapath::load().expect("programs load (root?)"));
    let policy = policy(Mode::Enforce);
    let a = load_on(&shared, &policy, Hooks::CGROUP, in_ten_minutes());
    let b = load_on(&shared, &policy, Hooks::CGROUP, in_ten_minutes());
    let learned = "198.51.7.7".parse().unwrap();
    let syn = frames::tcp_syn(AGENT, 40001, learned, 443);
    assert_eq!(a.run(&syn), DROP);
    assert_eq!(b.run(&syn), DROP);

    // Workload a asks and learns; b learns nothing from a's answer...
    assert_eq!(a.answer(&answer_for_trusted_name("198.51.7.7")), PASS);
    assert_eq!(a.run(&syn), PASS);
    assert_eq!(b.run(&syn), DROP);
    // ...nor from the same answer arriving at its own hook: it never asked.
    assert_eq!(
        b.answer_unsolicited(&answer_for_trusted_name("198.51.7.7")),
        PASS
    );
    assert_eq!(b.run(&syn), DROP);
    // Each counts its own drops.
    assert_eq!(a.dropped(DropReason::NoRule), 1);
    assert_eq!(b.dropped(DropReason::NoRule), 3);
    // What the daemon resolved for one is not the other's either.
    let mut a = a;
    a.datapath
        .upsert_allow(&encode::allow_entries(
            0,
            &policy.egress[0],
            &[OTHER],
            in_ten_minutes(),
        ))
        .unwrap();
    let to_other = frames::tcp_syn(AGENT, 40002, OTHER, 443);
    assert_eq!(a.run(&to_other), PASS);
    assert_eq!(b.run(&to_other), DROP);
}

#[test]
fn a_packet_without_a_policy_in_force_is_dropped() {
    let shared = Arc::new(Datapath::load().expect("programs load (root?)"));
    let loaded = load_on(
        &shared,
        &policy(Mode::Enforce),
        Hooks::CGROUP,
        in_ten_minutes(),
    );
    let syn = frames::tcp_syn(AGENT, 40001, TRUSTED, 443);
    assert_eq!(loaded.run(&syn), PASS);
    let run_as = |workload: u32, entry: Entry, frame: &[u8]| {
        shared
            .test_run(entry, workload, frame, None, 1)
            .unwrap()
            .return_value
    };
    // Workload 0: what the shared program sees when no stub ran.
    assert_eq!(run_as(0, Entry::Egress, &syn), DROP);
    assert_eq!(run_as(0, Entry::TcFromWorkload, &syn), TC_SHOT);
    // A number nobody holds.
    assert_eq!(run_as(4000, Entry::Egress, &syn), DROP);

    // Once the version is removed, its number finds nothing in force.
    let workload = loaded.datapath.unattached_workload().unwrap();
    assert_eq!(shared.slots_in_use(), 1);
    loaded.datapath.remove();
    assert_eq!(shared.slots_in_use(), 0);
    assert_eq!(shared.in_force(workload), None);
    assert_eq!(run_as(workload, Entry::Egress, &syn), DROP);
}

/// A policy of `names` exact names on 443 and 80.
fn policy_of_names(names: usize) -> Policy {
    policy_with(
        Mode::Enforce,
        (0..names)
            .map(|i| fqdn(&format!("api{i}.example.test"), vec![tcp(443), tcp(80)]))
            .collect(),
    )
}

#[test]
fn map_memory_follows_the_policy() {
    let shared = Arc::new(Datapath::load().expect("programs load (root?)"));
    let memory = |policy: &Policy| {
        let entries = encode::static_entries(policy).unwrap();
        let mut version =
            PolicyDatapath::create(&shared, Hooks::CGROUP, &Capacities::for_policy(&entries))
                .unwrap();
        version.install_static(&entries).unwrap();
        let bytes = version.memory();
        version.remove();
        bytes
    };
    let small = memory(&policy_of_names(10));
    let large = memory(&policy_of_names(1000));
    let largest = {
        let version = PolicyDatapath::create(&shared, Hooks::CGROUP, &Capacities::MAX).unwrap();
        let bytes = version.memory();
        version.remove();
        bytes
    };
    assert!(small < 256 * 1024, "a 10-name policy takes {small} bytes");
    assert!(
        small < large,
        "10 names: {small} bytes, 1000 names: {large}"
    );
    assert!(
        large < largest,
        "1000 names: {large} bytes, the most: {largest}"
    );
}

/// A cgroup of the test's own, removed on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(tag: &str) -> Self {
        let mount = openclaw_egress::cgroup::cgroup2_mount().expect("cgroup v2 is mounted");
        let path = mount.join(format!("oce-shared-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A bpffs directory of the test's own, removed on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new(tag: &str) -> Self {
        let root =
            Path::new("/sys/fs/bpf").join(format!("oce-shared-{tag}-{}", std::process::id()));
        bpffs::prepare(&root).expect("bpffs");
        Self(root)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_reopened_datapath_puts_the_recorded_version_back_and_empties_the_others() {
    let pins = PinDir::new("reopen");
    let dir = pins.0.join("datapath");
    let cgroup = TestCgroup::new("reopen");
    let place = Place::Cgroup(cgroup.0.clone());
    let key = format!("cgroup:{}", cgroup.0.display());
    let entries = encode::static_entries(&policy(Mode::Enforce)).unwrap();
    let capacities = Capacities::for_policy(&entries);

    let shared = Arc::new(Datapath::open(&dir, Build::Plain).expect("programs load (root?)"));
    let mut first = PolicyDatapath::create(&shared, Hooks::CGROUP, &capacities).unwrap();
    first.install_static(&entries).unwrap();
    first.attach(&key, &place).unwrap();
    let workload = first.workloads()[0];
    let recorded = (first.slot(), first.epoch());
    assert_eq!(shared.in_force(workload), Some(recorded));
    // An apply that put a second version in force, and stopped there.
    let mut second = PolicyDatapath::create(&shared, Hooks::CGROUP, &capacities).unwrap();
    second.install_static(&entries).unwrap();
    second.attach(&key, &place).unwrap();
    assert_eq!(second.workloads(), [workload], "one workload, one number");
    assert_eq!(
        shared.in_force(workload),
        Some((second.slot(), second.epoch()))
    );
    first.leave_in_place();
    second.leave_in_place();
    drop(shared);

    // Nothing is loaded again: the pins are re-opened.
    let shared = Arc::new(Datapath::open(&dir, Build::Plain).unwrap());
    assert_eq!(shared.slots_in_use(), 2);
    let adopted = PolicyDatapath::adopt(&shared, &key, workload, recorded.0, recorded.1).unwrap();
    assert_eq!(shared.in_force(workload), Some(recorded));
    assert!(shared.sweep_unadopted().is_empty());
    assert_eq!(
        shared.slots_in_use(),
        1,
        "the unrecorded version's slot is emptied"
    );

    // Removing the last version detaches the workload and unpins it.
    adopted.remove();
    assert_eq!(shared.in_force(workload), None);
    let left: Vec<_> = std::fs::read_dir(dir.join("workloads")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
