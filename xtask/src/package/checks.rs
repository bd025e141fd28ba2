//! Checking the built package: the files it must hold, its fields, and lintian.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Lintian tags we accept, and why (each one seen, none speculative).
const LINTIAN_EXPLAINED: &[(&str, &str)] = &[(
    "embedded-library",
    "libyaml: serde_yaml's unsafe-libyaml, a Rust translation of libyaml compiled in as \
     Rust links its dependencies; there is no shared library to use instead",
)];

/// Checks the package: its files, its fields, lintian.
pub(super) fn check(deb: &Path) -> Result<()> {
    let listing = cmd::stdout(cmd::new("dpkg-deb").arg("--contents").arg(deb))?;
    for expected in [
        "./usr/bin/openclaw-egress",
        "./usr/lib/systemd/system/openclaw-egress.service",
        "./etc/openclaw-egress/policies/",
        "./usr/share/doc/openclaw-egress/copyright",
        "./usr/share/doc/openclaw-egress/changelog.gz",
        "./usr/share/doc/openclaw-egress/examples/openclaw.yaml",
        "./usr/share/man/man1/openclaw-egress.1.gz",
        "./usr/share/bash-completion/completions/openclaw-egress",
        "./usr/share/zsh/vendor-completions/_openclaw-egress",
        "./usr/share/fish/vendor_completions.d/openclaw-egress.fish",
    ] {
        if !listing
            .lines()
            .any(|line| line.split_whitespace().last() == Some(expected))
        {
            bail!("{} lacks {expected}:\n{listing}", deb.display());
        }
    }
    if let Some(line) = listing.lines().find(|l| !l.contains(" root/root ")) {
        bail!("not owned by root in {}: {line}", deb.display());
    }
    let depends = cmd::stdout(
        cmd::new("dpkg-deb")
            .args(["--field"])
            .arg(deb)
            .arg("Depends"),
    )?;
    if !depends.contains("libc6 (>= ") {
        bail!("Depends lacks libc6: {depends}");
    }
    lintian(deb)
}

/// Runs lintian; every tag it reports must be explained in
/// [`LINTIAN_EXPLAINED`].
fn lintian(deb: &Path) -> Result<()> {
    let out = cmd::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .context("running lintian (`cargo xtask setup` installs it)")?;
    let report = String::from_utf8_lossy(&out.stdout);
    let mut unexplained = Vec::new();
    for line in report.lines() {
        // "W: openclaw-egress: tag-name [details]"
        let mut fields = line.splitn(3, ": ");
        let (Some(level), Some(_), Some(rest)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !matches!(level, "E" | "W" | "I") {
            continue;
        }
        let tag = rest.split_whitespace().next().unwrap_or_default();
        match LINTIAN_EXPLAINED.iter().find(|(known, _)| *known == tag) {
            Some((_, why)) => println!("lintian {level}: {tag} (accepted: {why})"),
            None if level == "I" => println!("lintian {line}"),
            None => unexplained.push(line.to_owned()),
        }
    }
    if !unexplained.is_empty() {
        bail!(
            "lintian reports what is neither fixed nor explained:\n{}",
            unexplained.join("\n")
        );
    }
    Ok(())
}
