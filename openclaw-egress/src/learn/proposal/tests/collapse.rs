//! Siblings into patterns: only past the threshold, never at or above a
//! public suffix.

use super::*;

/// A run that connected to each of `names` on 443/tcp, each at its own
/// address.
fn connected(names: &[&str]) -> Run {
    names.iter().enumerate().fold(Run::new(), |run, (i, name)| {
        run.connect(&format!("198.51.100.{}", i + 1), "443/tcp", &[name])
    })
}

fn siblings(count: usize, parent: &str) -> Vec<String> {
    (0..count).map(|i| format!("n{i}.{parent}")).collect()
}

#[test]
fn siblings_collapse_at_the_threshold_and_not_below() {
    // (siblings, threshold, the pattern proposed)
    let cases = [
        (4, 5, None),
        (5, 5, Some("*.x.example.com")),
        (6, 5, Some("*.x.example.com")),
        (2, 3, None),
        (3, 3, Some("*.x.example.com")),
        // Below 2 counts as 2: one name never becomes a pattern.
        (1, 0, None),
        (1, 1, None),
        (2, 1, Some("*.x.example.com")),
    ];
    for (count, threshold, pattern) in cases {
        let names = siblings(count, "x.example.com");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let proposal = connected(&names).propose_with(threshold);
        let expected: Vec<String> = match pattern {
            Some(pattern) => vec![format!("fqdnPattern {pattern} 443/tcp")],
            None => names
                .iter()
                .map(|name| format!("fqdn {name} 443/tcp"))
                .collect(),
        };
        assert_eq!(
            summary(&proposal),
            expected,
            "{count} names, threshold {threshold}"
        );
    }
}

#[test]
fn no_pattern_at_or_above_a_public_suffix() {
    // (names, the patterns proposed)
    let cases: [(Vec<String>, Vec<&str>); 7] = [
        (siblings(5, "com"), vec![]),
        (siblings(5, "co.uk"), vec![]),
        (siblings(5, "github.io"), vec![]),
        (siblings(5, "s3.amazonaws.com"), vec![]),
        // Names under .test, which the list does not know: its default rule
        // makes the top label the suffix.
        (siblings(5, "test"), vec![]),
        (siblings(5, "user.github.io"), vec!["*.user.github.io"]),
        (siblings(5, "example.co.uk"), vec!["*.example.co.uk"]),
    ];
    for (names, patterns) in cases {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let proposal = connected(&names).propose();
        let proposed: Vec<String> = proposal
            .rules
            .iter()
            .filter_map(|proposed| match &proposed.rule.target {
                Target::Pattern(pattern) => Some(pattern.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(proposed, patterns, "{names:?}");
        if patterns.is_empty() {
            assert_eq!(proposal.rules.len(), names.len());
        }
    }
}

#[test]
fn no_any_depth_pattern_across_registrable_domains() {
    // Five names at several depths, but under five registrable domains of
    // .com, or each one a bucket under a suffix below amazonaws.com.
    for names in [
        [
            "a.one.com",
            "b.c.two.com",
            "d.three.com",
            "e.f.four.com",
            "g.five.com",
        ],
        [
            "x.b1.s3.amazonaws.com",
            "b2.s3.amazonaws.com",
            "y.z.b3.s3.amazonaws.com",
            "b4.s3.amazonaws.com",
            "b5.s3.amazonaws.com",
        ],
    ] {
        let proposal = connected(&names).propose();
        assert_eq!(proposal.rules.len(), 5, "{:?}", summary(&proposal));
        assert!(
            proposal
                .rules
                .iter()
                .all(|proposed| matches!(proposed.rule.target, Target::Fqdn(_)))
        );
    }
}

#[test]
fn names_at_several_depths_become_an_any_depth_pattern() {
    let names = [
        "example.com",
        "a.example.com",
        "b.example.com",
        "c.d.example.com",
        "e.f.g.example.com",
        "h.i.example.com",
    ];
    let proposal = connected(&names).propose();
    // `example.com` itself is no name below it.
    assert_eq!(
        summary(&proposal),
        [
            "fqdn example.com 443/tcp",
            "fqdnPattern **.example.com 443/tcp"
        ]
    );
    let text = yaml(&proposal);
    let comments = comments_above(&text, "fqdnPattern: \"**.example.com\"");
    assert_eq!(
        comments[..2],
        [
            "5 names collapsed into this pattern: a.example.com, b.example.com,",
            "c.d.example.com, e.f.g.example.com, h.i.example.com",
        ]
    );
    assert_eq!(
        comments[2],
        "matches names at any depth below example.com: review"
    );

    // Four in all is below the threshold.
    let proposal = connected(&names[..5]).propose();
    assert_eq!(proposal.rules.len(), 5);
}

#[test]
fn the_deepest_domain_collapses_first_and_covered_patterns_join_it() {
    // Five children of api.example.com (`*.api.example.com`), and five
    // more names at several depths below example.com: `**.example.com`
    // takes those and the `*.` pattern it covers.
    let mut names = siblings(5, "api.example.com");
    names.extend(
        [
            "a.example.com",
            "b.c.example.com",
            "d.example.com",
            "e.f.example.com",
            "g.example.com",
        ]
        .map(String::from),
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let proposal = connected(&names).propose();
    assert_eq!(summary(&proposal), ["fqdnPattern **.example.com 443/tcp"]);
    let Reason::Collapsed {
        names: collapsed, ..
    } = &proposal.rules[0].reason
    else {
        panic!("{:?}", proposal.rules[0].reason);
    };
    assert_eq!(collapsed.len(), 10);

    // Only the deeper domain has enough: `**.x.example.com`, and the
    // names elsewhere below example.com stay names.
    let names = [
        "a.x.example.com",
        "b.x.example.com",
        "c.d.x.example.com",
        "e.f.x.example.com",
        "g.x.example.com",
        "other.example.com",
    ];
    let proposal = connected(&names).propose();
    assert_eq!(
        summary(&proposal),
        [
            "fqdn other.example.com 443/tcp",
            "fqdnPattern **.x.example.com 443/tcp"
        ]
    );
}

#[test]
fn a_pattern_allows_the_union_of_its_names_ports() {
    let names = siblings(5, "pkg.example.com");
    let run = names.iter().enumerate().fold(Run::new(), |run, (i, name)| {
        let port = if i == 0 { "8443/tcp" } else { "443/tcp" };
        run.connect(&format!("198.51.100.{}", i + 1), port, &[name])
    });
    assert_eq!(
        summary(&run.propose()),
        ["fqdnPattern *.pkg.example.com 443/tcp 8443/tcp"]
    );
}

#[test]
fn asked_only_names_join_a_pattern_or_collapse_among_themselves() {
    let mut run = connected(&[
        "a.pkg.example.com",
        "b.pkg.example.com",
        "c.pkg.example.com",
        "d.pkg.example.com",
        "e.pkg.example.com",
    ]);
    // Matched by `*.pkg.example.com`: no rule of its own.
    run = run.ask("nx.pkg.example.com");
    // Five asked-only siblings: one DNS-only pattern.
    for name in siblings(5, "probe.example.net") {
        run = run.ask(&name);
    }
    run = run.ask("single.example.org");
    let proposal = run.propose();
    assert_eq!(
        summary(&proposal),
        [
            "fqdnPattern *.pkg.example.com 443/tcp",
            "fqdnPattern *.probe.example.net dnsOnly",
            "fqdn single.example.org dnsOnly",
        ]
    );
    let text = yaml(&proposal);
    let comments = comments_above(&text, "fqdnPattern: \"*.pkg.example.com\"");
    assert!(
        comments.contains(
            &"it also matches these, asked and never connected to: nx.pkg.example.com".to_owned()
        ),
        "{comments:?}"
    );
}
