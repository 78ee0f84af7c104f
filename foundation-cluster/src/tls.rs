//! Mutual TLS between nodes (`[cluster.tls]`), on the rustls that ractor_cluster uses, and the
//! rule that binds a certificate to a node name.
//!
//! Every node is both server and client: it presents its certificate in both roles and admits
//! only peers whose certificate chains to the configured CA and names `server_name`. The
//! cookie handshake then runs inside the encrypted connection.
//!
//! Certificates name their node. As soon as a peer says which node it is, its certificate must
//! be valid for that name ([`identity_check`], the rule in [`expected_dns_name`]): node `n1`
//! presents a certificate for `n1.<server_name>`, an observer (`cluster status` and the other
//! command-line tools) one for `NAME.tools.<server_name>` (the tools certificate carries
//! `*.tools.<server_name>`). A node holding a valid certificate of the cluster can therefore
//! not join under another node's name. *Cost*: one certificate per node (`foundation certs`
//! makes them), and renaming a node means a new certificate.
//!
//! ractor_cluster dials the peers of its peers in plaintext (its transitive mode), so a TLS node
//! runs in isolated mode and meets its peers' peers itself: heartbeats carry the addresses of
//! the sender's members, and a node dials, with TLS, those it is not connected to.

use std::sync::Arc;

use foundation_core::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What a TLS node needs to accept and to dial.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

/// Reads the certificate files and builds both sides; every error names the file or setting.
pub(crate) fn load(config: &TlsConfig) -> Result<Tls, String> {
    let read_certs = |key: &str, path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{key} ({}): {e}", path.display()))?
            .collect();
        let certs = certs.map_err(|e| format!("{key} ({}): {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{key} ({}): no PEM certificate in the file", path.display()));
        }
        Ok(certs)
    };
    let chain = read_certs("cluster.tls.cert", &config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| format!("cluster.tls.key ({}): {e}", config.key.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in read_certs("cluster.tls.ca", &config.ca)? {
        roots.add(ca).map_err(|e| format!("cluster.tls.ca ({}): {e}", config.ca.display()))?;
    }
    let roots = Arc::new(roots);
    let server_name = ServerName::try_from(config.server_name.clone())
        .map_err(|e| format!("cluster.tls.server_name ({:?}): {e}", config.server_name))?;
    // Node certificates are named `NODE.<server_name>`: an IP address cannot be a suffix.
    if !matches!(server_name, ServerName::DnsName(_)) {
        return Err(format!(
            "cluster.tls.server_name ({:?}): expected a DNS name (node certificates are for \
             NODE.{0}), not an IP address",
            config.server_name
        ));
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| format!("cluster.tls.ca ({}): {e}", config.ca.display()))?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| format!("cluster.tls.cert/key: {e}"))?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("cluster.tls.cert/key: {e}"))?;
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        server_name,
    })
}

/// The label under `server_name` whose subdomains are the observers' names
/// (`NAME.tools.<server_name>`).
const TOOLS_LABEL: &str = "tools";

/// Whether `name` is one DNS label: 1 to 63 characters from `A-Z`, `a-z`, `0-9` and `-`, not
/// starting or ending with `-`. No dot, so no name can reach into another name's subdomain.
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        // Lowercase only: certificates match names without regard to case, but membership
        // and majorities compare names exactly, so `N1` and `n1` would be two members on one
        // certificate.
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The identity rule: the DNS name a peer called `node` (the node name, without `@host`) must
/// present a certificate for, or `None` if no certificate can name it (the peer is refused).
///
/// - A node named `N` needs a certificate valid for `N.<server_name>` (`n1.foundation-node`).
/// - An observer (a name starting with [`OBSERVER_PREFIX`](crate::singleton::OBSERVER_PREFIX):
///   `cluster status` and the other command-line tools) needs one valid for
///   `N.tools.<server_name>`, which the tools certificate's wildcard `*.tools.<server_name>`
///   covers; a node certificate never does, nor does the tools certificate name a node.
/// - `N` must be a single DNS label (see [`is_dns_label`]), so a name with dots cannot make
///   itself a suffix or prefix of another name's certificate.
///
/// Names are lowercase: certificates match names without regard to case while membership
/// compares them exactly, so an uppercase name is refused rather than let one certificate speak
/// for `n1`, `N1`, `nN`… as many members.
pub(crate) fn expected_dns_name(node: &str, server_name: &str) -> Option<String> {
    if !is_dns_label(node) {
        return None;
    }
    Some(match node.starts_with(crate::singleton::OBSERVER_PREFIX) {
        true => format!("{node}.{TOOLS_LABEL}.{server_name}"),
        false => format!("{node}.{server_name}"),
    })
}

/// The DNS name the certificate of the node (a member, not an observer) called `node` must
/// carry in a cluster whose `cluster.tls.server_name` is `server_name`: `node.server_name`.
/// An error, saying why, if `node` cannot have one: not a single DNS label (1 to 63 lowercase letters,
/// digits and `-`, no dot, not starting or ending with `-`), an observer's name (those share
/// the tools certificate, [`tools_certificate_name`]), or a `server_name` that does not make a
/// valid DNS name with it. `foundation certs` checks node names with it.
pub fn node_certificate_name(node: &str, server_name: &str) -> Result<String, String> {
    if node.starts_with(crate::singleton::OBSERVER_PREFIX) {
        return Err(format!(
            "`{node}` starts with `{}`, the prefix of observers (command-line tools), which share the tools \
             certificate: choose another node name",
            crate::singleton::OBSERVER_PREFIX
        ));
    }
    let name = expected_dns_name(node, server_name).ok_or_else(|| {
        format!(
            "`{node}` cannot be named by a certificate: a node name must be one DNS label (1 to 63 lowercase letters, \
             digits and `-`, no dot, not starting or ending with `-`)"
        )
    })?;
    DnsName::try_from(name.as_str()).map_err(|e| format!("`{name}` is not a valid DNS name: {e}"))?;
    Ok(name)
}

/// The DNS name the tools certificate carries in a cluster whose `cluster.tls.server_name` is
/// `server_name`: `*.tools.<server_name>`, valid for every observer's name
/// (`NAME.tools.<server_name>`) and for no node's.
pub fn tools_certificate_name(server_name: &str) -> String {
    format!("*.{TOOLS_LABEL}.{server_name}")
}

/// Whether `certs` (a peer's chain, end-entity first) may speak for the node `claimed_name`
/// (`node@host`, as ractor_cluster's handshake carries it): `Err` says why not.
fn admits(claimed_name: &str, server_name: &str, certs: &[CertificateDer<'_>]) -> Result<(), String> {
    let node = crate::membership::node_name(claimed_name);
    let expected = expected_dns_name(&node, server_name)
        .ok_or_else(|| format!("`{node}` is not a single DNS label, so no certificate can name it"))?;
    let end_entity = certs.first().ok_or("no certificate presented")?;
    let dns_name =
        DnsName::try_from(expected.as_str()).map_err(|e| format!("`{expected}` is not a DNS name: {e}"))?;
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| format!("its certificate does not parse: {e}"))?;
    cert.verify_is_valid_for_subject_name(&ServerName::DnsName(dns_name))
        .map_err(|e| format!("its certificate is not valid for `{expected}`: {e}"))
}

/// The check given to ractor_cluster's node server when TLS is configured: a peer is admitted
/// under the name it claims only if its certificate (already verified against the CA by the
/// TLS handshake) is valid for [`expected_dns_name`] of that name, in both directions (a
/// listener checks the dialling node, a dialling node the listener). Any other peer is refused
/// (`peer_identity`) before the cookie handshake goes further.
pub(crate) fn identity_check(server_name: &str) -> ractor_cluster::PeerIdentityCheck {
    let server_name = server_name.to_string();
    ractor_cluster::PeerIdentityCheck::new(move |claimed_name, certs| {
        match admits(claimed_name, &server_name, certs) {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(peer = %claimed_name, "peer refused: {why}");
                false
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "foundation-node";

    #[test]
    fn node_names_map_to_their_own_subdomain_and_observers_to_tools() {
        assert_eq!(expected_dns_name("n1", SERVER).unwrap(), "n1.foundation-node");
        assert_eq!(expected_dns_name("ext-2", SERVER).unwrap(), "ext-2.foundation-node");
        assert_eq!(expected_dns_name("status-123", SERVER).unwrap(), "status-123.tools.foundation-node");
        assert_eq!(expected_dns_name("n1", "cluster.example.com").unwrap(), "n1.cluster.example.com");
        assert_eq!(tools_certificate_name(SERVER), "*.tools.foundation-node");
    }

    #[test]
    fn only_single_dns_labels_have_a_name() {
        let (longest, too_long) = ("a".repeat(63), "a".repeat(64));
        assert!(expected_dns_name(&longest, SERVER).is_some());
        for bad in
            ["", "a.b", "n1.foundation-node", "-n1", "n1-", "n_1", "n 1", "né", "a@b", "*", too_long.as_str()]
        {
            assert_eq!(expected_dns_name(bad, SERVER), None, "{bad:?}");
        }
        // A dotted name cannot reach another node's or the tools' names.
        assert_eq!(expected_dns_name("x.tools", SERVER), None);
        assert_eq!(expected_dns_name("status-1.n1", SERVER), None);
    }

    #[test]
    fn node_certificate_names_refuse_observers_and_bad_labels_with_the_reason() {
        assert_eq!(node_certificate_name("n1", SERVER).unwrap(), "n1.foundation-node");
        let e = node_certificate_name("a.b", SERVER).unwrap_err();
        assert!(e.contains("`a.b`") && e.contains("DNS label"), "{e}");
        let e = node_certificate_name("status-1", SERVER).unwrap_err();
        assert!(e.contains("observers"), "{e}");
        assert!(node_certificate_name("n1", "bad..name").is_err());
    }

    /// A CA and a certificate it signs for `names`, as `foundation certs` makes them.
    fn certificate(names: &[&str]) -> CertificateDer<'static> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }

    #[test]
    fn a_certificate_speaks_only_for_the_name_it_carries() {
        let n1 = [certificate(&["foundation-node", "n1.foundation-node"])];
        assert!(admits("n1@10.0.0.1", SERVER, &n1).is_ok());
        assert!(admits("N1@10.0.0.1", SERVER, &n1).is_err(), "one certificate, one member");
        for other in ["n2@10.0.0.1", "n1.foundation-node@h", "n10@h", "status-1@h", "foundation-node@h", "@h"]
        {
            let e = admits(other, SERVER, &n1).unwrap_err();
            assert!(!e.is_empty(), "{other}");
        }
        let e = admits("n2@h", SERVER, &n1).unwrap_err();
        assert!(e.contains("n2.foundation-node"), "{e}");
        // No certificate (plaintext): nobody.
        assert!(admits("n1@h", SERVER, &[]).is_err());
        // Another server name: not this cluster's name.
        assert!(admits("n1@h", "other-cluster", &n1).is_err());

        let tools = [certificate(&["foundation-node", "*.tools.foundation-node"])];
        assert!(admits("status-4242@127.0.0.1", SERVER, &tools).is_ok());
        assert!(admits("status-demo-7@h", SERVER, &tools).is_ok());
        for node in ["n1@h", "tools@h", "x@h"] {
            assert!(admits(node, SERVER, &tools).is_err(), "{node}");
        }
    }
}
