//! Mutual TLS between node processes: nodes with certificates from the cluster's CA form a
//! cluster (peers of peers included, which ractor_cluster alone would dial in plaintext); a
//! plaintext node and a node with another CA's certificate are refused, and the cluster keeps
//! serving and admitting its own nodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_cluster::testkit::{NodeProcess, free_port};

mod support;

use support::{json, seen, start_node_with_env, wait};

fn cert(file: &str) -> String {
    format!("{}/tests/certs/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn tls_node(name: &str, port: u16, seeds: &[u16], prefix: &str) -> NodeProcess {
    let (cert_file, key_file, ca_file) =
        (cert(&format!("{prefix}.pem")), cert(&format!("{prefix}.key")), cert("cluster-ca.pem"));
    let ca_file = if prefix == "rogue-node" { cert("rogue-ca.pem") } else { ca_file };
    let env = [
        ("FOUNDATION_CLUSTER__TLS__CERT", cert_file.as_str()),
        ("FOUNDATION_CLUSTER__TLS__KEY", key_file.as_str()),
        ("FOUNDATION_CLUSTER__TLS__CA", ca_file.as_str()),
    ];
    start_node_with_env(name, port, seeds, &[], &env)
}

#[test]
fn tls_nodes_form_a_cluster_and_outsiders_are_refused() {
    let ports = [free_port(), free_port(), free_port(), free_port(), free_port(), free_port()];
    let n1 = tls_node("n1", ports[0], &[], "node");
    let n2 = tls_node("n2", ports[1], &[ports[0]], "node");
    let n3 = tls_node("n3", ports[2], &[ports[0]], "node");
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
    let rogue = tls_node("rogue", ports[4], &[ports[0]], "rogue-node");
    wait(&rogue, json!({"event": "refused", "peer_addr": seed}));

    // The cluster still admits its own, and never admitted the outsiders.
    let n4 = tls_node("n4", ports[5], &[ports[0]], "node");
    for me in [&n1, &n2, &n3] {
        wait(me, json!({"event": "member_up", "name": "n4"}));
    }
    wait(&n4, json!({"event": "member_up", "name": "n3"}));
    // Nothing they printed (any event, any field) names an outsider.
    for me in [&n1, &n2, &n3, &n4] {
        let lines = me.output();
        assert!(!lines.iter().any(|l| l.contains("plain") || l.contains("rogue")), "{:#?}", lines);
    }
    for outsider in [&plain, &rogue] {
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
    let stderr = start_fails("/nonexistent/node.pem", &cert("node.key"), &cert("cluster-ca.pem"));
    assert!(stderr.contains("cluster.tls.cert") && stderr.contains("/nonexistent/node.pem"), "{stderr}");
    // A file that is not a key: named at start, not at the first connection.
    let stderr = start_fails(&cert("node.pem"), &cert("cluster-ca.pem"), &cert("cluster-ca.pem"));
    assert!(stderr.contains("cluster.tls.key"), "{stderr}");
}
