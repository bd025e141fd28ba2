//! The fake Kubernetes API server: lists and watches of a node's pods.

use openclaw_egress_e2e::{
    Sandbox,
    kube::{FakeKubeApi, running_pod},
    skip_unless_root,
};

#[test]
fn fake_kube_api_lists_and_watches_the_pods_of_a_node() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let listener = sandbox
        .bind_tcp_in_agent("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let api = FakeKubeApi::serve(listener).unwrap();
    api.apply_pod(running_pod("ns", "a", "uid-a", "n1", &[("app", "x")]));
    api.apply_pod(running_pod("ns", "b", "uid-b", "n2", &[("app", "x")]));
    // curl in the agent netns: the server listens on its loopback only.
    let get = |query: &str| -> serde_json::Value {
        let url = format!("http://{}/api/v1/pods?{query}", api.addr());
        let output = sandbox
            .command_in_agent_outside_cgroup("curl", ["-sS", "--max-time", "10", &url])
            .unwrap()
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        // A watch is one JSON object per line: wrap them in an array.
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        match &lines[..] {
            [one] if one["kind"] == "PodList" => one.clone(),
            _ => serde_json::Value::Array(lines),
        }
    };
    let list = get("fieldSelector=spec.nodeName%3Dn1");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list:#}");
    assert_eq!(items[0]["metadata"]["uid"], "uid-a");
    assert_eq!(items[0]["status"]["phase"], "Running");
    let version: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A watch from the list's version sees what happened since, on n1 only,
    // and ends at its timeout.
    api.apply_pod(running_pod("ns", "a", "uid-a", "n1", &[("app", "y")]));
    assert!(api.delete_pod("ns", "b"));
    assert!(api.delete_pod("ns", "a"));
    assert!(!api.delete_pod("ns", "a"));
    let events = get(&format!(
        "watch=true&fieldSelector=spec.nodeName%3Dn1&resourceVersion={version}&timeoutSeconds=1"
    ));
    let kinds: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["object"]["metadata"]["labels"]["app"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("MODIFIED".to_owned(), "y".to_owned()),
            ("DELETED".to_owned(), "y".to_owned())
        ]
    );
    // Everything asked was recorded; other paths are 404s.
    let output = sandbox
        .command_in_agent_outside_cgroup(
            "curl",
            [
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{}/api/v1/namespaces", api.addr()),
            ],
        )
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "404");
    let requests = api.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert!(!requests[0].is_watch());
    assert_eq!(requests[0].node_selector(), Some("n1"));
    assert!(requests[1].is_watch());
    assert_eq!(api.open_watches(), 0);
    assert!(
        api.kubeconfig()
            .contains(&format!("server: http://{}", api.addr()))
    );
}
