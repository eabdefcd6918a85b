//! TLS client configuration: rustls with the `ring` provider, trusting either the built-in
//! Alibaba Cloud IoT root CAs or a CA file.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::error::{Error, Result};
use crate::options::TrustAnchors;

/// GlobalSign Root CA (R1), valid to 2028-01-28: the platform's certificates on ports 1883/443.
/// SHA-256 fingerprint `EB:D4:10:40:E4:BB:3E:C7:42:C9:E3:81:D3:1E:F2:A4:1A:48:B6:68:5C:96:E7:CE:F3:C1:DF:6C:D4:33:1C:99`.
pub const GLOBALSIGN_ROOT_CA_R1: &str = include_str!("../certs/globalsign-root-ca-r1.pem");

/// Aliyun IoT Root CA (self-signed, 2023-07-04 → 2053-07-04): the platform's certificates on
/// port 8883. SHA-256 fingerprint
/// `7C:A4:38:A3:97:6B:52:42:D2:31:F8:61:49:98:22:DA:85:58:31:38:27:35:83:6B:36:1E:7E:97:15:66:16:76`.
pub const ALIYUN_IOT_ROOT_CA: &str = include_str!("../certs/aliyun-iot-root-ca.pem");

/// Parses every certificate of a PEM text.
fn certificates(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{origin}: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{origin}: no CERTIFICATE block found")));
    }
    Ok(certs)
}

/// The root store for a trust choice.
pub(crate) fn root_store(trust: &TrustAnchors) -> Result<RootCertStore> {
    let certs = match trust {
        TrustAnchors::Aliyun => {
            let mut all = certificates(GLOBALSIGN_ROOT_CA_R1.as_bytes(), "built-in GlobalSign Root CA")?;
            all.extend(certificates(
                ALIYUN_IOT_ROOT_CA.as_bytes(),
                "built-in Aliyun IoT Root CA",
            )?);
            all
        }
        TrustAnchors::File(path) => {
            let origin = path.display().to_string();
            let pem =
                std::fs::read(path).map_err(|e| Error::Tls(format!("cannot read CA file {origin}: {e}")))?;
            certificates(&pem, &origin)?
        }
        TrustAnchors::Pem(pem) => certificates(pem, "CA PEM")?,
    };
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::Tls(format!(
            "none of the {ignored} CA certificate(s) could be used as a trust anchor"
        )));
    }
    Ok(store)
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3, no client certificate).
pub(crate) fn client_config(trust: &TrustAnchors) -> Result<Arc<ClientConfig>> {
    let roots = root_store(trust)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn fingerprint(pem: &str) -> String {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("one certificate");
        let digest = Sha256::digest(der.as_ref());
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    #[test]
    fn built_in_roots_have_the_documented_fingerprints() {
        assert_eq!(
            fingerprint(GLOBALSIGN_ROOT_CA_R1),
            "EB:D4:10:40:E4:BB:3E:C7:42:C9:E3:81:D3:1E:F2:A4:1A:48:B6:68:5C:96:E7:CE:F3:C1:DF:6C:D4:33:1C:99"
        );
        assert_eq!(
            fingerprint(ALIYUN_IOT_ROOT_CA),
            "7C:A4:38:A3:97:6B:52:42:D2:31:F8:61:49:98:22:DA:85:58:31:38:27:35:83:6B:36:1E:7E:97:15:66:16:76"
        );
        assert_eq!(root_store(&TrustAnchors::Aliyun).expect("store").len(), 2);
        assert!(client_config(&TrustAnchors::Aliyun).is_ok());
    }

    #[test]
    fn bad_ca_files_are_reported() {
        assert!(root_store(&TrustAnchors::Pem(b"nothing here".to_vec())).is_err());
        let e = root_store(&TrustAnchors::File("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
