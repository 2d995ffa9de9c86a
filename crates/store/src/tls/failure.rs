//! A TLS handshake that did not happen, in words a person can act on, and the kind of
//! failure behind a driver's error, which gives its error class.

use std::fmt;

use rustls::{AlertDescription, CertificateError};

/// A failure of the set-up or of a kind not named otherwise, in `text`.
pub(super) fn setup(text: String) -> TlsError {
    TlsError::new(TlsFailure::Other, text)
}

/// What kind of TLS failure an error is, for its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server answered that it does not do TLS, and `sslmode` requires it.
    NotOffered,
    /// The server's certificate is not for the host name connected to.
    Name,
    /// No trusted authority signed the server's certificate, or none is given.
    Authority,
    /// Anything else: a certificate or key file, an expired certificate, a handshake the
    /// server broke off.
    Other,
}

/// A TLS handshake that did not happen, in words that say what to change.
#[derive(Debug, Clone)]
pub struct TlsError {
    failure: TlsFailure,
    text: String,
}

impl TlsError {
    pub(super) fn new(failure: TlsFailure, text: String) -> Self {
        TlsError { failure, text }
    }

    pub fn failure(&self) -> TlsFailure {
        self.failure
    }

    /// What rustls or the socket said, reworded where it can be.
    pub(super) fn from_handshake(error: std::io::Error) -> Self {
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match rustls_error {
            Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
                match other.0.downcast_ref::<TlsError>() {
                    Some(ours) => ours.clone(),
                    None => setup(format!("the server's certificate is refused: {other:?}")),
                }
            }
            Some(rustls::Error::InvalidCertificate(reason)) => {
                setup(format!("the server's certificate is refused: {reason}"))
            }
            Some(rustls::Error::AlertReceived(AlertDescription::CertificateRequired)) => setup(
                "the server asks for a client certificate: give one with sslcert and sslkey".into(),
            ),
            Some(rustls::Error::AlertReceived(alert)) => setup(format!(
                "the server broke off the TLS handshake ({alert:?}); a client certificate \
                 (sslcert) it does not trust, or a TLS version or cipher it does not allow"
            )),
            Some(other) => setup(format!("TLS handshake failed: {other}")),
            None => setup(format!("TLS handshake failed: {error}")),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for TlsError {}

/// tokio-postgres's words when the server answers a TLS request with "no".
const NOT_OFFERED: &str = "server does not support TLS";

/// The kind of TLS failure behind a driver's error, if it is one.
pub fn failure_of(error: &tokio_postgres::Error) -> Option<TlsFailure> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(ours) = e.downcast_ref::<TlsError>() {
            return Some(ours.failure);
        }
        if e.to_string() == NOT_OFFERED {
            return Some(TlsFailure::NotOffered);
        }
        source = e.source();
    }
    // The driver's own TLS errors carry no type of ours.
    error
        .to_string()
        .starts_with("error performing TLS handshake")
        .then_some(TlsFailure::Other)
}
