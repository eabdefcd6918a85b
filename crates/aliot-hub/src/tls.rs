//! MQTT over TLS: the server's rustls configuration, and a local CA for when the user brings
//! no certificate.
//!
//! rustls runs with the ring provider only (no aws-lc), and PEM files are read with
//! `rustls-pki-types`' `PemObject` (not the unmaintained `rustls-pemfile`).
//!
//! # The local CA
//!
//! With MQTT over TLS enabled and no certificate configured, the hub creates, once, in
//! `{data_dir}/tls/`:
//!
//! - `ca.pem`: a CA certificate ("aliot hub local CA") for devices to trust (`mosquitto_sub
//!   --cafile`, the SDKs' root CA option);
//! - `server.pem` and `server-key.pem` (mode 0600): a server certificate signed by that CA, for
//!   `localhost`, `127.0.0.1` and `::1`.
//!
//! They are reused on every later start. The CA's private key is **not** kept: it exists only
//! long enough to sign the server certificate, so a CA a user installed in a trust store can
//! never be used to sign anything else. To get new certificates, delete the `tls` directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::write_private_file;
use crate::error::{Error, Result};

/// Names the local server certificate is valid for.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Where the certificate files of a TLS listener are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// The server private key (PEM).
    pub key: PathBuf,
    /// The CA devices should trust, when the hub made it.
    pub ca: Option<PathBuf>,
    /// Whether the files were created by this call.
    pub created: bool,
}

/// The directory of the local CA inside the data directory.
pub fn local_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// Returns the local CA and server certificate of `data_dir`, creating them if any file is
/// missing (see the module docs). Blocking file IO: call it from a blocking context.
///
/// # Errors
/// [`Error::Tls`] when the certificates cannot be generated, [`Error::Io`] when they cannot be
/// written.
pub fn ensure_local_certificate(data_dir: &Path) -> Result<CertificateFiles> {
    let dir = local_dir(data_dir);
    let files = CertificateFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        ca: Some(dir.join("ca.pem")),
        created: false,
    };
    let ca_path = dir.join("ca.pem");
    if files.cert.is_file() && files.key.is_file() && ca_path.is_file() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let (ca_pem, cert_pem, key_pem) = generate_local()?;
    let write = |path: &Path, pem: &str| {
        write_private_file(path, pem.as_bytes())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    };
    // The key first and the CA last: the presence of all three means a complete set.
    write(&files.key, &key_pem)?;
    write(&files.cert, &cert_pem)?;
    write(&ca_path, &ca_pem)?;
    // Certificates are public: let other local users (a device simulator's account) read them.
    #[cfg(unix)]
    for public in [&files.cert, &ca_path] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(public, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", public.display()), e))?;
    }
    tracing::info!(ca = %ca_path.display(), "created a local CA and server certificate");
    Ok(CertificateFiles {
        created: true,
        ..files
    })
}

fn tls_err(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::tls(what, e)
}

/// Generates (CA certificate PEM, server certificate PEM, server key PEM).
fn generate_local() -> Result<(String, String, String)> {
    let year = current_year();
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "aliot hub local CA");
    dn.push(DnType::OrganizationName, "aliot");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(year + 20, 1, 1);
    let ca_key = KeyPair::generate().map_err(tls_err("cannot generate the CA key"))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(tls_err("cannot sign the CA"))?;

    let names: Vec<String> = LOCAL_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).map_err(tls_err("bad certificate names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let key = KeyPair::generate().map_err(tls_err("cannot generate the server key"))?;
    let cert = params
        .signed_by(&key, &*ca)
        .map_err(tls_err("cannot sign the server certificate"))?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

/// The current year (UTC), for certificate validity; 2025 if the clock is before 1970.
fn current_year() -> i32 {
    let days = crate::clock::now_ms() / 86_400_000;
    // 365.2425 days per Gregorian year; an off-by-one near New Year only shifts the validity
    // window's edges, which start a year back anyway.
    let years = (days * 10_000 / 3_652_425) as i32;
    if years == 0 { 2025 } else { 1970 + years }
}

/// Builds the rustls server configuration from PEM files (ring provider, TLS 1.2 and 1.3).
///
/// # Errors
/// [`Error::Tls`] naming the file that cannot be read or the key that does not fit.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::tls(format!("cannot read {}", cert.display()), e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::tls(format!("cannot read {}", cert.display()), e))?;
    if chain.is_empty() {
        return Err(Error::Tls {
            context: format!("{} holds no certificate", cert.display()),
            source: None,
        });
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::tls(format!("cannot read a private key from {}", key.display()), e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::tls("no usable TLS protocol version", e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::tls("the certificate and key do not make a usable pair", e))?;
    Ok(Arc::new(config))
}

/// A TLS acceptor for the MQTT listener.
///
/// # Errors
/// As [`server_config`].
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    Ok(tokio_rustls::TlsAcceptor::from(server_config(cert, key)?))
}

/// The same acceptor without TLS 1.3 session tickets after the handshake.
///
/// For the STOMP listener: stomp.py reads its TLS socket on one thread while it writes its
/// CONNECT on another, and Python's TLS object is not safe for that; tickets arriving while it
/// writes corrupt its stream now and then (the server then reads garbage or nothing). Without
/// tickets nothing arrives before the server's `CONNECTED`. Consumers lose only resumption.
pub(crate) fn without_tickets(acceptor: &tokio_rustls::TlsAcceptor) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::clone(acceptor.config());
    config.send_tls13_tickets = 0;
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_certificate_is_created_once_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure_local_certificate(dir.path()).expect("created");
        assert!(first.created);
        let ca = std::fs::read(first.ca.as_ref().expect("ca")).expect("ca readable");
        let again = ensure_local_certificate(dir.path()).expect("reused");
        assert!(!again.created);
        assert_eq!(
            std::fs::read(again.ca.as_ref().expect("ca")).expect("ca readable"),
            ca
        );
        server_config(&again.cert, &again.key).expect("usable by rustls");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&again.key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ensure_local_certificate(dir.path()).expect("created");
        let err = server_config(&files.cert, &dir.path().join("nope.pem")).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }

    #[test]
    fn the_year_is_plausible() {
        let y = current_year();
        assert!((2024..2200).contains(&y), "{y}");
    }
}
