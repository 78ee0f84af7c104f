//! Mutual TLS between node processes: nodes with certificates from the cluster's CA form a
//! cluster (peers of peers included, which ractor_cluster alone would dial in plaintext); a
//! plaintext node, a node with another CA's certificate and a node presenting another node's
//! (valid) certificate are refused, and the cluster keeps serving and admitting its own nodes;
//! `cluster status` joins with the tools certificate, not with a node's.
//!
//! The certificates in `tests/certs/` are made by `foundation certs` (see its README).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{json, seen, start_node_with_env, wait};

/// A file of `tests/certs/`: `cluster/…` (the cluster's CA, nodes n1–n5 and the
/// tools) or `rogue/…` (another CA and its node `rogue`).
fn cert(file: &str) -> String {
    format!("{}/tests/certs/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// The `FOUNDATION_CLUSTER__TLS__*` variables for the certificate `holder` (a node's name, or
/// `tools`) made by the CA of `set` (`cluster` or `rogue`).
fn tls_env(set: &str, holder: &str) -> [(&'static str, String); 3] {
    [
        ("FOUNDATION_CLUSTER__TLS__CERT", cert(&format!("{set}/{holder}.pem"))),
        ("FOUNDATION_CLUSTER__TLS__KEY", cert(&format!("{set}/{holder}-key.pem"))),
        ("FOUNDATION_CLUSTER__TLS__CA", cert(&format!("{set}/ca.pem"))),
    ]
}

/// A TLS node called `name` presenting the certificate of `holder` from `set`.
fn tls_node_as(name: &str, port: u16, seeds: &[u16], set: &str, holder: &str) -> NodeProcess {
    let env = tls_env(set, holder);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_node_with_env(name, port, seeds, &[], &env)
}

/// A TLS node of the cluster with its own certificate.
fn tls_node(name: &str, port: u16, seeds: &[u16]) -> NodeProcess {
    tls_node_as(name, port, seeds, "cluster", name)
}

/// `foundation cluster status --json` through `seed` with the certificate of `holder`.
fn status_as(holder: &str, seed: u16) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"));
    cmd.args(["cluster", "status", "--json", "--timeout", "3s", "--seeds", &format!("127.0.0.1:{seed}")])
        .env_remove("FOUNDATION_CONFIG")
        .env("FOUNDATION_LOG", "error");
    for (key, value) in tls_env("cluster", holder) {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

#[test]
fn tls_nodes_form_a_cluster_and_outsiders_are_refused() {
    let ports = [free_port(), free_port(), free_port(), free_port(), free_port(), free_port(), free_port()];
    let n1 = tls_node("n1", ports[0], &[]);
    let n2 = tls_node("n2", ports[1], &[ports[0]]);
    let n3 = tls_node("n3", ports[2], &[ports[0]]);
    // n2 and n3 only know n1: they meet through the member lists on heartbeats, over TLS.
    for (me, others) in [(&n1, ["n2", "n3"]), (&n2, ["n1", "n3"]), (&n3, ["n1", "n2"])] {
        for other in others {
            wait(me, json!({"event": "member_up", "name": other}));
        }
    }

    // A plaintext node: its connection is closed before it could authenticate.
    let plain = start_node_with_env("plain", ports[3], &[ports[0]], &[], &[]);
    let seed = format!("127.0.0.1:{}", ports[0]);
    wait(&plain, json!({"event": "refused", "peer_addr": seed}));
    // A node whose certificate another CA signed: the handshake fails.
    let rogue = tls_node_as("rogue", ports[4], &[ports[0]], "rogue", "rogue");
    wait(&rogue, json!({"event": "refused", "peer_addr": seed}));
    // A valid certificate of the cluster's CA, but for another name: n5 presenting n2's
    // certificate and key passes the TLS handshake, and is refused as soon as it says its name.
    let impostor = tls_node_as("n5", ports[6], &[ports[0]], "cluster", "n2");
    wait(&impostor, json!({"event": "refused", "peer_addr": seed}));

    // The cluster still admits its own, and never admitted the outsiders.
    let n4 = tls_node("n4", ports[5], &[ports[0]]);
    for me in [&n1, &n2, &n3] {
        wait(me, json!({"event": "member_up", "name": "n4"}));
    }
    wait(&n4, json!({"event": "member_up", "name": "n3"}));

    // The tools certificate lets `cluster status` in (as an observer), a node's does not.
    let out = status_as("tools", ports[0]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut up: Vec<&str> = health["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "up")
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    up.sort_unstable();
    assert_eq!(up, ["n1", "n2", "n3", "n4"], "{health}");
    let out = status_as("n3", ports[0]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node of the cluster answered"), "{out:?}");

    // Nothing they printed (any event, any field) names an outsider that failed before saying
    // its name, and the impostor never came up anywhere.
    for me in [&n1, &n2, &n3, &n4] {
        let lines = me.output();
        assert!(!lines.iter().any(|l| l.contains("plain") || l.contains("rogue")), "{:#?}", lines);
        assert!(seen(me, json!({"event": "member_up", "name": "n5"})).is_empty(), "{:#?}", lines);
    }
    for outsider in [&plain, &rogue, &impostor] {
        assert!(seen(outsider, json!({"event": "member_up"})).is_empty(), "{:#?}", outsider.output());
    }
}

/// Runs `foundation node` with these TLS files; it must fail to start. Returns its stderr.
fn start_fails(cert_file: &str, key_file: &str, ca_file: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_foundation"))
        .args(["node", "--name", "n1", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("FOUNDATION_CLUSTER__TLS__CERT", cert_file)
        .env("FOUNDATION_CLUSTER__TLS__KEY", key_file)
        .env("FOUNDATION_CLUSTER__TLS__CA", ca_file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_certificate_file_is_a_clear_error_at_start() {
    let stderr = start_fails("/nonexistent/n1.pem", &cert("cluster/n1-key.pem"), &cert("cluster/ca.pem"));
    assert!(stderr.contains("cluster.tls.cert") && stderr.contains("/nonexistent/n1.pem"), "{stderr}");
    // A file that is not a key: named at start, not at the first connection.
    let stderr = start_fails(&cert("cluster/n1.pem"), &cert("cluster/ca.pem"), &cert("cluster/ca.pem"));
    assert!(stderr.contains("cluster.tls.key"), "{stderr}");
}
