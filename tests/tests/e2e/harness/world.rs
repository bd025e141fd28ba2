//! oce-world's servers, as the agent reaches them: TCP and UDP echo, DNS
//! (records, CNAME chains, NODATA, NXDOMAIN, fresh addresses), HTTP
//! through curl, and how a failed start is reported.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    process::Command,
    time::Duration,
};

use openclaw_egress_e2e::{
    AGENT_IPV4, AGENT_IPV6, Sandbox, WorldConfig, probe_error, skip_unless_root,
};

use super::{basic_world, probe};

#[test]
fn agent_reaches_world_tcp_over_ipv4_and_ipv6() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();

    // Without --send, the detail is the server's greeting; with it, the
    // echoed line.
    for (args, detail, local) in [
        (
            &["tcp", "203.0.113.10:7"][..],
            "hello from 203.0.113.10:7",
            IpAddr::V4(AGENT_IPV4),
        ),
        (
            &["tcp", "[2001:db8:1::10]:7", "--send", "ping"][..],
            "ping",
            IpAddr::V6(AGENT_IPV6),
        ),
    ] {
        let outcome = probe(&sandbox, args);
        outcome.assert_ok();
        assert_eq!(outcome.detail.as_deref(), Some(detail), "{args:?}");
        assert_eq!(outcome.local.map(|a| a.ip()), Some(local), "{args:?}");
    }
}

#[test]
fn dns_answers_records_nodata_and_nxdomain() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let world = sandbox.start_world(&basic_world()).unwrap();

    // An answer of any rcode is a probe that worked.
    for (args, rcode, answers) in [
        (
            &["dns", "10.77.0.1", "api.example.com"][..],
            "NOERROR",
            &["203.0.113.10", "203.0.113.11"][..],
        ),
        // Case-insensitive, over TCP, from the IPv6 server.
        (
            &[
                "dns",
                "[fd77::1]:53",
                "API.Example.COM.",
                "--type",
                "AAAA",
                "--tcp",
            ][..],
            "NOERROR",
            &["2001:db8:1::10"][..],
        ),
        // A known name without records of that type: NOERROR, no answers.
        (
            &["dns", "10.77.0.1", "v4only.example.com", "--type", "AAAA"][..],
            "NOERROR",
            &[][..],
        ),
        (
            &["dns", "10.77.0.1", "nope.example.com"][..],
            "NXDOMAIN",
            &[][..],
        ),
    ] {
        let answer = probe(&sandbox, args);
        answer.assert_ok();
        assert_eq!(answer.rcode.as_deref(), Some(rcode), "{args:?}: {answer:?}");
        assert_eq!(answer.answers, answers, "{args:?}: {answer:?}");
        assert!(answer.local.is_some(), "{args:?}: {answer:?}");
    }

    // The world logs every query, so tests can tell whether one got through.
    let logged = world
        .wait_for_dns_query("nope.example.com", Duration::from_secs(2))
        .expect("the NXDOMAIN query was logged");
    assert_eq!(logged.rcode, "NXDOMAIN");
    assert_eq!(logged.client.ip(), IpAddr::V4(AGENT_IPV4));
    let protos: HashSet<_> = world.dns_queries().into_iter().map(|q| q.proto).collect();
    assert_eq!(protos, HashSet::from(["udp".to_owned(), "tcp".to_owned()]));
}

#[test]
fn cname_answer_carries_the_chain() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let config = basic_world()
        .cname("www.example.com", "edge.example.net")
        .cname("edge.example.net", "api.example.com");
    let _world = sandbox.start_world(&config).unwrap();

    let chain = probe(&sandbox, &["dns", "10.77.0.1", "www.example.com"]);
    chain.assert_ok();
    assert_eq!(chain.cnames, ["edge.example.net.", "api.example.com."]);
    assert_eq!(chain.answers, ["203.0.113.10", "203.0.113.11"]);

    // A CNAME to nothing: the CNAME, then NXDOMAIN (as real servers do).
    let config = WorldConfig::new()
        .dns("10.77.0.1:5353")
        .cname("dangling.example.com", "gone.example.com");
    let _other = sandbox.start_world(&config).unwrap();
    let dangling = probe(&sandbox, &["dns", "10.77.0.1:5353", "dangling.example.com"]);
    assert_eq!(dangling.rcode.as_deref(), Some("NXDOMAIN"), "{dangling:?}");
    assert_eq!(dangling.cnames, ["gone.example.com."]);
}

#[test]
fn udp_echo() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();

    let echo = probe(
        &sandbox,
        &["udp", "203.0.113.10:7", "--payload", "hello udp"],
    );
    echo.assert_ok();
    assert_eq!(echo.detail.as_deref(), Some("hello udp"));
    assert_eq!(echo.local.map(|a| a.ip()), Some(IpAddr::V4(AGENT_IPV4)));

    // Nothing listens on UDP port 9: ICMP port unreachable -> refused.
    let closed = probe(
        &sandbox,
        &[
            "udp",
            "203.0.113.10:9",
            "--payload",
            "x",
            "--timeout-ms",
            "1000",
        ],
    );
    closed.assert_error(probe_error::REFUSED);
}

#[test]
fn fresh_ips_are_distinct_and_connectable() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let config = WorldConfig::new()
        .dns("10.77.0.1:53")
        .fresh_ips("fresh.example.com", "198.51.100.0/24")
        .fresh_ips("fresh.example.com", "2001:db8:99::/64")
        .fresh_tcp_port(443)
        .fresh_http_port(80)
        .ttl(5);
    let _world = sandbox.start_world(&config).unwrap();

    let mut seen = HashSet::new();
    for _ in 0..5 {
        let answer = probe(&sandbox, &["dns", "10.77.0.1", "FRESH.example.com"]);
        let [ip] = answer.answer_ips()[..] else {
            panic!("expected one address, got {answer:?}");
        };
        assert!(seen.insert(ip), "{ip} was handed out twice");
        // The address must be connectable right after the answer.
        let target = SocketAddr::new(ip, 443).to_string();
        let greeting = probe(&sandbox, &["tcp", &target]);
        greeting.assert_ok();
        assert_eq!(greeting.detail, Some(format!("hello from {target}")));
    }

    let answer = probe(
        &sandbox,
        &["dns", "10.77.0.1", "fresh.example.com", "--type", "AAAA"],
    );
    let [ip @ IpAddr::V6(_)] = answer.answer_ips()[..] else {
        panic!("expected one IPv6 address, got {answer:?}");
    };
    let target = SocketAddr::new(ip, 443).to_string();
    probe(&sandbox, &["tcp", &target]).assert_ok();
}

#[test]
fn host_without_server_refuses() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();
    sandbox
        .add_world_host("203.0.113.200".parse().unwrap())
        .unwrap();
    // Adding a host twice is harmless.
    sandbox
        .add_world_host("203.0.113.200".parse().unwrap())
        .unwrap();

    let refused = probe(&sandbox, &["tcp", "203.0.113.200:80"]);
    refused.assert_error(probe_error::REFUSED);
    // The local port is known even though the connection failed, so a test
    // can match drop events by source port.
    assert!(refused.local_port().is_some(), "{refused:?}");
}

#[test]
fn start_world_reports_why_it_failed() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let config = WorldConfig::new()
        .tcp("203.0.113.10:7")
        .tcp("203.0.113.10:7");
    let err = sandbox.start_world(&config).err().expect("a bind conflict");
    let text = format!("{err:#}");
    assert!(text.contains("binding TCP 203.0.113.10:7"), "{text}");
}

#[test]
fn curl_in_agent_resolves_through_the_world() {
    if skip_unless_root() {
        return;
    }
    // Not a skip: `cargo xtask setup` installs curl, and a test that passes
    // without running hides a broken machine.
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is not installed (`cargo xtask setup` installs it)"
    );
    let sandbox = Sandbox::new().unwrap();
    let config = basic_world()
        .http("203.0.113.10:80")
        .http("[2001:db8:1::10]:80");
    let _world = sandbox.start_world(&config).unwrap();

    // The name resolves through /etc/netns/<agent>/resolv.conf -> 10.77.0.1.
    for family in ["-4", "-6"] {
        let output = sandbox
            .command_in_agent(
                "curl",
                [family, "-sS", "--max-time", "5", "http://api.example.com/"],
            )
            .unwrap()
            .output()
            .unwrap();
        assert!(output.status.success(), "curl {family}: {output:?}");
        let body = String::from_utf8(output.stdout).unwrap();
        let expected = if family == "-4" {
            "hello from 203.0.113.10:80\n"
        } else {
            "hello from [2001:db8:1::10]:80\n"
        };
        assert_eq!(body, expected);
    }
}
