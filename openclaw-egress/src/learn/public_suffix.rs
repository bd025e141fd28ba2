//! The public suffix guard of learn mode: a proposed pattern must stay below
//! a public suffix. `*.com` or `*.co.uk` would allow every domain anyone can
//! register, and `*.github.io` every GitHub Pages site, whoever owns it, so
//! siblings are only ever collapsed under a *registrable* domain (one label
//! below a public suffix, like `example.co.uk` or `user.github.io`) or
//! deeper.
//!
//! The list is Mozilla's Public Suffix List, compiled in by the `psl` crate
//! (no file to ship, no lookup at run time; a release of the crate carries
//! the list of its day). Private-section suffixes (`github.io`,
//! `s3.amazonaws.com`) count: they are exactly the shared hosting names a
//! wildcard must not span. A name under a top-level label the list does not
//! know (`.test`, `.internal`) is treated by the list's default rule: that
//! label is the public suffix.

/// The registrable domain `name` is in or below: the public suffix plus one
/// label (`example.co.uk` for `a.b.example.co.uk`). `None` when `name` is
/// itself a public suffix (`co.uk`, `github.io`, `com`) or not a name.
///
/// `name` is lowercase, as learn mode's names and policy names are; a
/// trailing dot is ignored.
pub fn registrable_domain(name: &str) -> Option<&str> {
    let name = without_root(name);
    let domain = psl::domain(name.as_bytes())?;
    // A suffix of `name` that starts at a label: on a character boundary.
    std::str::from_utf8(domain.as_bytes()).ok()
}

/// Whether `name` is a public suffix: anyone may register names directly
/// below it.
pub fn is_public_suffix(name: &str) -> bool {
    let name = without_root(name);
    !name.is_empty()
        && psl::suffix(name.as_bytes()).is_some_and(|suffix| suffix.as_bytes() == name.as_bytes())
}

/// Whether a pattern over `suffix` (`*.suffix`, `**.suffix`) stays within
/// one registrable domain: `suffix` is a registrable domain or below one.
pub fn may_be_pattern_suffix(suffix: &str) -> bool {
    registrable_domain(suffix).is_some()
}

fn without_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        // (name, its registrable domain)
        let cases = [
            ("a.b.example.com", Some("example.com")),
            ("example.com", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("x.co.uk", Some("x.co.uk")),
            ("a.x.co.uk", Some("x.co.uk")),
            ("a.user.github.io", Some("user.github.io")),
            ("bucket.s3.amazonaws.com", Some("bucket.s3.amazonaws.com")),
            ("mirror.pkg.test", Some("pkg.test")),
            ("com", None),
            ("co.uk", None),
            ("github.io", None),
            ("s3.amazonaws.com", None),
            ("test", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(registrable_domain(name), expected, "{name}");
        }
    }

    #[test]
    fn public_suffixes() {
        for suffix in [
            "com",
            "co.uk",
            "uk",
            "github.io",
            "s3.amazonaws.com",
            "test",
            "com.",
        ] {
            assert!(is_public_suffix(suffix), "{suffix}");
            assert!(!may_be_pattern_suffix(suffix), "{suffix}");
        }
        for name in [
            "example.com",
            "x.co.uk",
            "user.github.io",
            "pkg.test",
            "a.example.com",
            "",
        ] {
            assert!(!is_public_suffix(name), "{name}");
        }
        for suffix in [
            "example.com",
            "x.co.uk",
            "user.github.io",
            "a.b.example.com",
        ] {
            assert!(may_be_pattern_suffix(suffix), "{suffix}");
        }
    }
}
