//! The example policies in `policies/`.

use super::*;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn policy_every_example_parses() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.len() >= 3,
        "expected the example policies, found {names:?}"
    );
    for file in &files {
        if let Err(error) = load_file(file) {
            panic!("{error}");
        }
    }
}

#[test]
fn policy_demo_example_has_what_the_demo_relies_on() {
    let policy = load_file(&examples_dir().join("openclaw.yaml")).unwrap();
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(
        policy.selector.cgroup_path,
        Some(PathBuf::from("openclaw-demo"))
    );
    assert_eq!(policy.dns.resolvers, vec![ip("10.77.0.1"), ip("fd77::1")]);
    let tcp = |port| PortSpec {
        port,
        protocol: Protocol::Tcp,
    };
    assert_eq!(
        policy.egress,
        vec![
            EgressRule::new(
                Target::Fqdn(Fqdn("api.trusted.test".into())),
                vec![tcp(443), tcp(80)]
            ),
            EgressRule::new(
                Target::Pattern(FqdnPattern {
                    depth: WildcardDepth::OneLabel,
                    suffix: "pkg.test".into()
                }),
                vec![tcp(443)]
            ),
            EgressRule::new(
                Target::Cidr(Cidr {
                    addr: ip("203.0.113.128"),
                    prefix_len: 25
                }),
                vec![tcp(8443)]
            ),
        ]
    );
    let audit = load_file(&examples_dir().join("audit.yaml")).unwrap();
    assert_eq!(audit.mode, Mode::Audit);
}
