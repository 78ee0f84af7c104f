//! Mutual TLS between nodes (`[cluster.tls]`), on the rustls that ractor_cluster uses.
//!
//! Every node is both server and client: it presents its certificate in both roles and admits
//! only peers whose certificate chains to the configured CA and names `server_name`. The
//! cookie handshake then runs inside the encrypted connection.
//!
//! ractor_cluster dials the peers of its peers in plaintext (its transitive mode), so a TLS node
//! runs in isolated mode and meets its peers' peers itself: heartbeats carry the addresses of
//! the sender's members, and a node dials, with TLS, those it is not connected to.

use std::sync::Arc;

use foundation_core::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
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
