//! The binary tells what it is: `--version` names the release, the commit
//! it was built from and the eBPF object it embeds; the man page and the
//! shell completions come from the same clap definitions as the parser.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_openclaw-egress"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_release_commit_and_ebpf_object() {
    let version = run(&["--version"]);
    let expected = format!(
        "openclaw-egress {} (commit {}, eBPF object {})\n",
        env!("CARGO_PKG_VERSION"),
        env!("OPENCLAW_EGRESS_GIT_COMMIT"),
        openclaw_egress::datapath::Datapath::version()
    );
    assert_eq!(version, expected);
    let commit = env!("OPENCLAW_EGRESS_GIT_COMMIT");
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
}

#[test]
fn man_page_and_completions_cover_every_subcommand() {
    let man = run(&["man"]);
    assert!(man.starts_with(".ie"), "roff");
    assert!(man.contains(".TH openclaw-egress 1"), "{man}");
    let bash = run(&["completions", "bash"]);
    let zsh = run(&["completions", "zsh"]);
    let fish = run(&["completions", "fish"]);
    for subcommand in ["daemon", "apply", "validate", "status", "exec", "crd"] {
        assert!(man.contains(subcommand), "man page lacks {subcommand}");
        for (shell, script) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
}

#[test]
fn only_the_tracing_build_logs() {
    use openclaw_egress::datapath::Build;
    let contains =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    // aya-log's map, and the tracing build's messages.
    for marker in [&b"AYA_LOGS"[..], b"cgroup egress"] {
        assert!(contains(Build::Trace.object(), marker));
        assert!(
            !contains(Build::Plain.object(), marker),
            "the default build logs"
        );
    }
    assert_eq!(openclaw_egress::datapath::object(), Build::Plain.object());
}
