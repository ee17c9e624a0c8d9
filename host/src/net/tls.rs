//! TLS settings (`--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`)
//! made into the one rustls `ServerConfig` every connection of a worker
//! shares.
//!
//! The master builds it (at start, and again on HUP) before it forks the
//! workers that use it: a missing file, a key that is not the
//! certificate's, or a certificate without a key is a one-line error then,
//! never a worker that cannot boot. A HUP that finds bad files keeps the
//! settings in force, so the old certificate keeps serving; one that finds
//! good ones gives them to the next generation of workers (the rolling
//! reload), while connections open on the old workers keep theirs.
//!
//! What is offered: TLS 1.3 and 1.2 (rustls has nothing older), ALPN
//! `http/1.1`, the aws-lc-rs provider's suites, and session resumption by
//! tickets whose key the master makes, so a client resumes on any worker.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Whether clients must show a certificate (`--cert-reqs`, gunicorn's
/// values: 0/none, 1/optional, 2/required, as Python's `ssl.CERT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertReqs {
    /// None is asked for.
    #[default]
    None,
    /// One is asked for; a client without one is served, one with a
    /// certificate that does not verify against `--ca-certs` is refused.
    Optional,
    /// A client without a certificate that verifies is refused in the
    /// handshake.
    Required,
}

impl CertReqs {
    /// gunicorn's spellings: the number of Python's `ssl.CERT_*` or its
    /// name.
    pub fn parse(s: &str) -> Result<CertReqs, String> {
        match s.to_ascii_lowercase().as_str() {
            "0" | "none" | "cert_none" => Ok(CertReqs::None),
            "1" | "optional" | "cert_optional" => Ok(CertReqs::Optional),
            "2" | "required" | "cert_required" => Ok(CertReqs::Required),
            _ => Err(format!("'{s}' is not 0/none, 1/optional or 2/required")),
        }
    }
}

/// The TLS settings as given.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub certfile: PathBuf,
    /// Its private key (PEM); None: it is in `certfile`, after the chain.
    pub keyfile: Option<PathBuf>,
    /// The CAs client certificates must chain to (PEM).
    pub ca_certs: Option<PathBuf>,
    pub cert_reqs: CertReqs,
}

/// Reads the files and builds the config; Err is one line naming the
/// file and what is wrong with it.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = read(&files.certfile, "--certfile")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--certfile {}: {e}", files.certfile.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--certfile {}: no certificate (PEM \"CERTIFICATE\") in it",
            files.certfile.display()
        ));
    }
    let key = match &files.keyfile {
        Some(path) => {
            let pem = read(path, "--keyfile")?;
            PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => format!(
                    "--keyfile {}: no private key (PEM \"PRIVATE KEY\") in it",
                    path.display()
                ),
                e => format!("--keyfile {}: {e}", path.display()),
            })?
        }
        None => PrivateKeyDer::from_pem_slice(&cert_pem).map_err(|_| {
            format!(
                "--certfile {} has no private key in it and no --keyfile was given",
                files.certfile.display()
            )
        })?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let builder =
        match (&files.ca_certs, files.cert_reqs) {
            (None, CertReqs::None) => builder.with_no_client_auth(),
            (None, reqs) => {
                return Err(format!(
                "--cert-reqs {} needs --ca-certs (the CAs client certificates are checked against)",
                if reqs == CertReqs::Required { "required" } else { "optional" }
            ))
            }
            // Given but not asked for: as gunicorn, client certificates are
            // then not requested.
            (Some(_), CertReqs::None) => builder.with_no_client_auth(),
            (Some(path), reqs) => {
                let pem = read(path, "--ca-certs")?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "--ca-certs {}: no certificate (PEM \"CERTIFICATE\") in it",
                        path.display()
                    ));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                );
                let verifier = match reqs {
                    CertReqs::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
    let keyfile = files.keyfile.as_deref().unwrap_or(&files.certfile);
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "--keyfile {} does not go with --certfile {}: {e}",
            keyfile.display(),
            files.certfile.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless resumption: the key is made here, in the master, so every
    // worker forked from it takes the others' tickets. One ticket per
    // handshake (OpenSSL sends two): a browser resumes with one, and each
    // costs an encryption on every full handshake.
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_reqs_take_gunicorns_values() {
        assert_eq!(CertReqs::parse("0").unwrap(), CertReqs::None);
        assert_eq!(CertReqs::parse("none").unwrap(), CertReqs::None);
        assert_eq!(CertReqs::parse("1").unwrap(), CertReqs::Optional);
        assert_eq!(CertReqs::parse("OPTIONAL").unwrap(), CertReqs::Optional);
        assert_eq!(CertReqs::parse("2").unwrap(), CertReqs::Required);
        assert_eq!(
            CertReqs::parse("CERT_REQUIRED").unwrap(),
            CertReqs::Required
        );
        assert!(CertReqs::parse("3").is_err());
        assert!(CertReqs::parse("yes").is_err());
    }

    #[test]
    fn missing_files_are_one_line_errors() {
        let e = load(&TlsFiles {
            certfile: "/nonexistent/cert.pem".into(),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(
            e.starts_with("cannot read --certfile /nonexistent/cert.pem"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }
}
