//! TLS material and QUIC configurations for storage traffic.
//!
//! A cluster has one private CA (`ca.pem`, `ca.key`) and one node
//! certificate signed by it (`node.pem`, `node.key`, valid for localhost,
//! 127.0.0.1 and ::1) that every process presents. Both sides of a storage
//! connection present it and verify the peer against the CA (mutual TLS,
//! TLS 1.3 only, ALPN `proto::ALPN`). `ensure_cluster_certs` creates missing
//! files on first start and keeps existing ones.

use crate::proto::ALPN;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The CA certificate.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// The node certificate, signed by the CA.
pub const NODE_CERT_FILE: &str = "node.pem";
/// The node private key.
pub const NODE_KEY_FILE: &str = "node.key";

/// A connection with no packet for this long is dead: short enough that a
/// stopped daemon is noticed well within a commit timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive period: well below `IDLE_TIMEOUT`, so idle but healthy
/// connections survive.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Concurrent requests per connection (one stream each).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1024;

const CA_COMMON_NAME: &str = "Borealis cluster CA";

/// TLS material that cannot be created, read or used.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no usable {what} in {path}")]
    Missing { what: &'static str, path: PathBuf },
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// Creates the CA and the node certificate in `dir` unless they exist.
pub fn ensure_cluster_certs(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let (ca_cert, ca_key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    if !ca_cert.exists() || !ca_key.exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_file(&ca_key, key.serialize_pem().as_bytes(), true)?;
        write_file(&ca_cert, cert.pem().as_bytes(), false)?;
    }
    let (node_cert, node_key) = (dir.join(NODE_CERT_FILE), dir.join(NODE_KEY_FILE));
    if node_cert.exists() && node_key.exists() {
        return Ok(());
    }
    let ca_key_pem = std::fs::read_to_string(&ca_key).map_err(io_error(&ca_key))?;
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&ca_key_pem)?);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, "Borealis node");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&node_key, key.serialize_pem().as_bytes(), true)?;
    write_file(&node_cert, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// The CA's parameters; deterministic, so an existing CA key can sign again.
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Writes a new file (mode 0600 for secrets) through a temporary name, so a
/// crash never leaves a half-written certificate behind.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut bytes.as_slice()).collect::<Result<_, _>>().map_err(io_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::Missing { what: "certificate", path: path.to_path_buf() });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(io_error(path))?
        .ok_or_else(|| TlsError::Missing { what: "private key", path: path.to_path_buf() })
}

fn roots(dir: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&dir.join(CA_CERT_FILE))? {
        roots.add(cert).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    Ok(Arc::new(roots))
}

/// Installs ring as rustls' process-wide provider (once; later calls are no-ops).
fn install_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("10 s fits a QUIC idle timeout");
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_concurrent_bidi_streams(STREAMS_PER_CONNECTION_MAX.into())
        // The commit stream's one stream from the writer to a reader.
        .max_concurrent_uni_streams(1u32.into());
    Arc::new(transport)
}

/// The daemon's QUIC configuration: presents the node certificate and
/// requires a client certificate signed by the cluster CA.
pub fn quic_server_config(dir: &Path) -> Result<quinn::ServerConfig, TlsError> {
    quic_server_config_for(dir, ALPN)
}

/// `quic_server_config` for another protocol of the cluster (`alpn`).
pub fn quic_server_config_for(dir: &Path, alpn: &[u8]) -> Result<quinn::ServerConfig, TlsError> {
    install_provider();
    let verifier = WebPkiClientVerifier::builder(roots(dir)?).build().map_err(|e| TlsError::Config(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&dir.join(NODE_CERT_FILE))?, read_key(&dir.join(NODE_KEY_FILE))?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// The client's QUIC configuration: trusts only the cluster CA and presents
/// the node certificate.
pub fn quic_client_config(dir: &Path) -> Result<quinn::ClientConfig, TlsError> {
    quic_client_config_for(dir, ALPN)
}

/// `quic_client_config` for another protocol of the cluster (`alpn`).
pub fn quic_client_config_for(dir: &Path, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    install_provider();
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots(dir)?)
        .with_client_auth_cert(read_certs(&dir.join(NODE_CERT_FILE))?, read_key(&dir.join(NODE_KEY_FILE))?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_created_once_and_configs_build() {
        let dir = tempfile::tempdir().unwrap();
        ensure_cluster_certs(dir.path()).unwrap();
        let ca_before = std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(NODE_CERT_FILE)).unwrap();
        ensure_cluster_certs(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap(), ca_before, "the CA is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(NODE_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        quic_server_config(dir.path()).unwrap();
        quic_client_config(dir.path()).unwrap();
    }
}
