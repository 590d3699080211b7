//! Built-in HTTPS: a rustls acceptor from PEM files, plugged into the
//! accept loop as its handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::listener::{Handshake, Stream};

/// Reads the certificate chain and private key (PEM) and makes the
/// handshake the accept loop runs on every new connection.
pub fn handshake(cert: &Path, key: &Path) -> anyhow::Result<Handshake> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS private key {}", key.display()))?;
    // The one crypto provider compiled in (ring, as reqwest's) is the
    // process default.
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    Ok(Arc::new(move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            let stream = acceptor.accept(tcp).await?;
            Ok(Box::new(stream) as Stream)
        })
    }))
}
