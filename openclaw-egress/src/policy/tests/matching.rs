//! Matching DNS names against `fqdn` and `fqdnPattern` targets.

use super::*;

fn pattern(text: &str) -> FqdnPattern {
    names::pattern(text).unwrap()
}

#[test]
fn policy_one_label_wildcard() {
    let p = pattern("*.github.com");
    assert!(p.matches("api.github.com"));
    assert!(p.matches("API.GitHub.com."));
    assert!(!p.matches("github.com"));
    assert!(!p.matches(".github.com"));
    assert!(!p.matches("a.b.github.com"));
    assert!(!p.matches("evilgithub.com"));
    assert!(!p.matches("api.github.com.evil.net"));
}

#[test]
fn policy_any_depth_wildcard() {
    let p = pattern("**.github.com");
    assert!(p.matches("a.b.github.com"));
    assert!(p.matches("api.github.com"));
    assert!(p.matches("A.B.GITHUB.COM."));
    assert!(!p.matches("github.com"));
    assert!(!p.matches("evilgithub.com"));
    assert!(!p.matches("a..github.com"));
    // The split before `.github.com` falls inside 'é': no match, no panic.
    assert!(!p.matches("égithub.com"));
}

#[test]
fn policy_exact_names_and_targets() {
    let fqdn = Fqdn("api.trusted.com".into());
    assert!(fqdn.matches("api.trusted.com"));
    assert!(fqdn.matches("Api.Trusted.COM."));
    assert!(!fqdn.matches("x.api.trusted.com"));
    assert!(!fqdn.matches("api.trusted.co"));
    assert!(Target::Fqdn(fqdn).matches_name("API.trusted.com"));
    assert!(Target::Pattern(pattern("*.trusted.com")).matches_name("api.trusted.com"));
    let cidr = Target::Cidr(Cidr {
        addr: ip("10.0.0.0"),
        prefix_len: 8,
    });
    assert!(!cidr.matches_name("10.0.0.1"));
}

#[test]
fn policy_target_covers_the_names_of_another() {
    let target = |text: &str| match text.split_once('/') {
        Some(_) => Target::Cidr(cidr::cidr(text).unwrap()),
        None if text.starts_with('*') => Target::Pattern(pattern(text)),
        None => Target::Fqdn(names::fqdn(text).unwrap()),
    };
    // (covering, covered, whether it covers)
    let cases = [
        ("a.x.com", "a.x.com", true),
        ("a.x.com", "b.x.com", false),
        ("*.x.com", "a.x.com", true),
        ("*.x.com", "x.com", false),
        ("*.x.com", "a.b.x.com", false),
        ("**.x.com", "a.b.x.com", true),
        ("*.x.com", "*.x.com", true),
        ("**.x.com", "*.x.com", true),
        ("*.x.com", "**.x.com", false),
        ("**.x.com", "**.a.x.com", true),
        ("**.x.com", "*.a.x.com", true),
        ("*.x.com", "*.a.x.com", false),
        ("**.x.com", "*.ax.com", false),
        ("**.a.x.com", "**.x.com", false),
        ("a.x.com", "*.x.com", false),
        ("10.0.0.0/8", "10.0.0.0/8", false),
        ("*.x.com", "10.0.0.0/8", false),
    ];
    for (covering, covered, expected) in cases {
        assert_eq!(
            target(covering).covers_names_of(&target(covered)),
            expected,
            "{covering} covers {covered}"
        );
    }
}
