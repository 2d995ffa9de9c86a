//! TLS on every connection, with rustls and libpq's settings: `sslmode` says whether TLS is
//! tried or required and how much of the server's certificate is checked, `sslrootcert` which
//! authorities are trusted (a file, or `system`), `sslcert` and `sslkey` the client
//! certificate. As libpq does, certificates and keys are read when a handshake needs them, so
//! a renewed file serves the next connection without a restart.
//!
//! A refused handshake is a [`TlsError`] that says what failed in words a person can act on
//! (the names the server's certificate carries, the file of roots that did not sign it), and
//! whose [`TlsFailure`] gives its error class.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;
use tokio_postgres_rustls::MakeRustlsConnect;

mod failure;
use failure::setup;
pub use failure::{failure_of, TlsError, TlsFailure};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Without TLS first; with TLS only when the server refuses that.
    Allow,
    /// TLS when the server offers it, without checking its certificate (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked as with `VerifyCa` only when root
    /// certificates are given.
    Require,
    /// TLS, and the server's certificate signed by a trusted authority; its name unchecked.
    VerifyCa,
    /// TLS, the certificate signed by a trusted authority and issued for the host connected
    /// to.
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The value of `sslmode` that names it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub fn parse(text: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authorities trusted to sign the server's certificate (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file of certificates.
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`), as OpenSSL finds it, including
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR`.
    System,
}

/// The TLS settings of a database, as libpq's keys and variables gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_certs: Option<RootCerts>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `~/.postgresql`, where libpq looks for `root.crt`, `postgresql.crt` and
    /// `postgresql.key` when the settings above do not name them.
    pub default_dir: Option<PathBuf>,
}

impl TlsSettings {
    /// libpq's default: TLS when offered, nothing checked, nothing named.
    pub fn prefer() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_certs: None,
            client_cert: None,
            client_key: None,
            default_dir: None,
        }
    }

    /// The authorities to trust: as named, else `~/.postgresql/root.crt` when it exists.
    fn roots(&self) -> Option<RootCerts> {
        if let Some(roots) = &self.root_certs {
            return Some(roots.clone());
        }
        let default = self.default_dir.as_ref()?.join("root.crt");
        default.is_file().then_some(RootCerts::File(default))
    }

    /// How much of the server's certificate a handshake checks, and against which roots.
    fn check(&self) -> Result<(Check, Option<RootCerts>), TlsError> {
        let roots = self.roots();
        let check = match self.mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Check::Nothing,
            // libpq: with root certificates at hand, `require` checks the chain too.
            SslMode::Require if roots.is_some() => Check::Chain,
            SslMode::Require => Check::Nothing,
            SslMode::VerifyCa => Check::Chain,
            SslMode::VerifyFull => Check::ChainAndName,
        };
        if check != Check::Nothing && roots.is_none() {
            let default = self
                .default_dir
                .as_ref()
                .map(|d| d.join("root.crt").display().to_string())
                .unwrap_or_else(|| "~/.postgresql/root.crt".into());
            return Err(TlsError::new(
                TlsFailure::Authority,
                format!(
                    "sslmode={} checks the server's certificate, but no root certificate is \
                     given and \"{default}\" does not exist",
                    self.mode
                ),
            ));
        }
        Ok((check, roots.filter(|_| check != Check::Nothing)))
    }

    /// The client certificate and its key, when one is named or libpq's default files exist.
    fn client_identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        let default = |name: &str| self.default_dir.as_ref().map(|d| d.join(name));
        let cert = match (&self.client_cert, default("postgresql.crt")) {
            (Some(named), _) => named.clone(),
            (None, Some(default)) if default.is_file() => default,
            (None, _) => return Ok(None),
        };
        let Some(key) = self
            .client_key
            .clone()
            .or_else(|| default("postgresql.key"))
        else {
            return Err(setup(format!(
                "certificate present, but no private key file for \"{}\" (sslkey)",
                cert.display()
            )));
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| {
                setup(format!(
                    "could not read certificate file \"{}\" (sslcert): {}",
                    cert.display(),
                    pem_error(&e)
                ))
            })?;
        if chain.is_empty() {
            return Err(setup(format!(
                "no certificate in \"{}\" (sslcert)",
                cert.display()
            )));
        }
        private_key_permissions(&key)?;
        let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
            setup(format!(
                "could not load private key file \"{}\" (sslkey): {}",
                key.display(),
                pem_error(&e)
            ))
        })?;
        Ok(Some((chain, key_der)))
    }

    /// rustls's settings for one handshake.
    fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (check, roots) = self.check()?;
        let verifier = match roots {
            Some(roots) => {
                let (store, source) = root_store(&roots)?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                        .build()
                        .map_err(|e| setup(format!("the roots in {source} are unusable: {e}")))?;
                ServerCertificate {
                    check,
                    webpki: Some(webpki),
                    roots: source,
                    provider: provider.clone(),
                }
            }
            None => ServerCertificate {
                check: Check::Nothing,
                webpki: None,
                roots: String::new(),
                provider: provider.clone(),
            },
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match self.client_identity()? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                setup(format!(
                    "the client certificate and key do not go together: {e}"
                ))
            })?,
            None => builder.with_no_client_auth(),
        };
        // PostgreSQL 17 checks the protocol a TLS client names, and older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(config)
    }
}

/// libpq refuses a private key that others may read: 0600 for the owner, 0640 when root owns
/// it (a key shared with a group of services).
fn private_key_permissions(key: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|e| {
        setup(format!(
            "could not read private key file \"{}\" (sslkey): {e}",
            key.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(setup(format!(
            "private key file \"{}\" (sslkey) is not a plain file",
            key.display()
        )));
    }
    let mode = meta.mode();
    let loose = if meta.uid() == nix::unistd::geteuid().as_raw() {
        mode & 0o077 != 0
    } else {
        mode & 0o037 != 0
    };
    if loose {
        return Err(setup(format!(
            "private key file \"{}\" has group or world access; file must have permissions \
             u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) \
             or less if owned by root",
            key.display()
        )));
    }
    Ok(())
}

/// The trusted roots, and how to name where they came from in a message.
fn root_store(roots: &RootCerts) -> Result<(RootCertStore, String), TlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            let source = format!("\"{}\" (sslrootcert)", path.display());
            if !path.exists() {
                return Err(TlsError::new(
                    TlsFailure::Authority,
                    format!(
                        "root certificate file \"{}\" does not exist",
                        path.display()
                    ),
                ));
            }
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| {
                    setup(format!(
                        "could not read root certificate file \"{}\": {}",
                        path.display(),
                        pem_error(&e)
                    ))
                })?;
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::new(
                    TlsFailure::Authority,
                    format!("no usable certificate in root certificate file {source}"),
                ));
            }
            Ok((store, source))
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(TlsError::new(
                    TlsFailure::Authority,
                    format!(
                        "no trusted root found in the system's store (sslrootcert=system){why}"
                    ),
                ));
            }
            Ok((store, "the system's store (sslrootcert=system)".into()))
        }
    }
}

/// A PEM file that cannot be read: a missing file says so in libpq's words.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "no such file".into()
        }
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// Checks the server's certificate as far as `sslmode` asks, and words a refusal.
#[derive(Debug)]
struct ServerCertificate {
    check: Check,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// Where the trusted roots came from, for the message when none signed the certificate.
    roots: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = self
            .webpki
            .as_ref()
            .filter(|_| self.check != Check::Nothing)
        else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(verified) => Ok(verified),
            // webpki checks the name only once the chain holds: a wrong name means a good chain.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::Chain => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Err(refused(TlsError::new(
                TlsFailure::Name,
                not_for_host(end_entity, server_name),
            ))),
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                Err(refused(TlsError::new(
                    TlsFailure::Authority,
                    format!(
                        "the server's certificate is signed by an unknown authority: not by \
                         one of the roots in {}",
                        self.roots
                    ),
                )))
            }
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// "the server's certificate is for localhost, not 127.0.0.1", from the DNS names the
/// certificate carries.
fn not_for_host(end_entity: &CertificateDer<'_>, server_name: &ServerName<'_>) -> String {
    let expected = server_name.to_str();
    let names: Vec<String> = webpki::EndEntityCert::try_from(end_entity)
        .map(|cert| cert.valid_dns_names().map(str::to_owned).collect())
        .unwrap_or_default();
    match names.as_slice() {
        [] => format!(
            "the server's certificate names no host (no DNS name in its subjectAltName), so it \
             is not for {expected}"
        ),
        [one] => format!("the server's certificate is for {one}, not {expected}"),
        [all_but_last @ .., last] => format!(
            "the server's certificate is for {} and {last}, not {expected}",
            all_but_last.join(", ")
        ),
    }
}

fn refused(error: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// The stream of a connection: TLS, or the bare socket when the session has none.
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Makes the TLS side of each connection from the database's settings.
#[derive(Debug, Clone)]
pub struct MakeTls {
    settings: Arc<TlsSettings>,
}

impl MakeTls {
    pub fn new(settings: Arc<TlsSettings>) -> Self {
        MakeTls { settings }
    }
}

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = TlsStream;
    type TlsConnect = ConnectTls;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<ConnectTls, Self::Error> {
        Ok(ConnectTls {
            settings: self.settings.clone(),
            hostname: hostname.to_owned(),
        })
    }
}

/// One handshake with the host `hostname`.
pub struct ConnectTls {
    settings: Arc<TlsSettings>,
    hostname: String,
}

impl TlsConnect<Socket> for ConnectTls {
    type Stream = TlsStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream, TlsError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self.settings.client_config()?;
            let mut make = MakeRustlsConnect::new(config);
            let Ok(connect) = MakeTlsConnect::<Socket>::make_tls_connect(&mut make, &self.hostname);
            connect
                .connect(stream)
                .await
                .map_err(TlsError::from_handshake)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_reads_back() {
        for mode in SslMode::ALL {
            assert_eq!(SslMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::parse("REQUIRE"), None);
    }

    fn settings(mode: SslMode, roots: Option<RootCerts>, dir: Option<PathBuf>) -> TlsSettings {
        TlsSettings {
            mode,
            root_certs: roots,
            default_dir: dir,
            ..TlsSettings::prefer()
        }
    }

    #[test]
    fn how_much_each_mode_checks() {
        let file = || Some(RootCerts::File("/x/root.pem".into()));
        let check = |s: TlsSettings| s.check().map(|(check, _)| check).ok();
        assert_eq!(
            check(settings(SslMode::Prefer, file(), None)),
            Some(Check::Nothing)
        );
        assert_eq!(
            check(settings(SslMode::Allow, file(), None)),
            Some(Check::Nothing)
        );
        assert_eq!(
            check(settings(SslMode::Require, None, None)),
            Some(Check::Nothing)
        );
        assert_eq!(
            check(settings(SslMode::Require, file(), None)),
            Some(Check::Chain)
        );
        assert_eq!(
            check(settings(SslMode::VerifyCa, file(), None)),
            Some(Check::Chain)
        );
        assert_eq!(
            check(settings(SslMode::VerifyFull, file(), None)),
            Some(Check::ChainAndName)
        );
        let Err(e) = settings(SslMode::VerifyFull, None, None).check() else {
            panic!("verify-full without roots");
        };
        assert_eq!(e.failure(), TlsFailure::Authority);
        assert!(e.to_string().contains("root.crt"), "{e}");
    }

    #[test]
    fn the_default_root_file_makes_require_check_the_chain() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let with_dir = || settings(SslMode::Require, None, Some(dir.path().to_owned()));
        assert_eq!(with_dir().check().expect("checks").0, Check::Nothing);
        std::fs::write(dir.path().join("root.crt"), "").expect("written");
        let (check, roots) = with_dir().check().expect("checks");
        assert_eq!(check, Check::Chain);
        assert_eq!(roots, Some(RootCerts::File(dir.path().join("root.crt"))));
    }

    #[test]
    fn a_private_key_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = dir.path().join("client.key");
        std::fs::write(&key, "not read").expect("written");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = private_key_permissions(&key).expect_err("0644 refused");
        assert!(e.to_string().contains("group or world access"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        private_key_permissions(&key).expect("0600 taken");
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let e =
            root_store(&RootCerts::File("/nonexistent/root.pem".into())).expect_err("missing file");
        assert_eq!(e.failure(), TlsFailure::Authority);
        assert_eq!(
            e.to_string(),
            "root certificate file \"/nonexistent/root.pem\" does not exist"
        );
    }
}
