//! The classes of the database driver's errors: [`ErrorClass`] is the vocabulary (in the
//! model), this is where an error of `tokio-postgres` or the store gets its class.

pub use notifyscope_model::error_class::{table_named, ErrorClass};

use crate::tls::{self, TlsFailure};
use crate::StoreError;

/// A closed connection, or an error the server did not send (I/O, timeout), is a connection
/// error; a failed TLS handshake is a TLS error (the server answered: the network is fine),
/// and a password the server asks for and nobody gave is a login error.
pub fn class_of(e: &tokio_postgres::Error) -> ErrorClass {
    if e.is_closed() {
        return ErrorClass::Connection;
    }
    if let Some(code) = e.code() {
        return ErrorClass::of_sqlstate(code.code());
    }
    if let Some(failure) = tls::failure_of(e) {
        return match failure {
            TlsFailure::NotOffered => ErrorClass::TlsNotOffered,
            TlsFailure::Name => ErrorClass::TlsName,
            TlsFailure::Authority => ErrorClass::TlsAuthority,
            TlsFailure::Other => ErrorClass::Tls,
        };
    }
    if password_missing(e) {
        return ErrorClass::Login;
    }
    ErrorClass::Connection
}

/// The driver's words when the server asks for a password and none was given (in the URL,
/// `PGPASSWORD` or the password file).
fn password_missing(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|source| source.to_string() == "password missing")
}

pub fn class_of_store(e: &StoreError) -> ErrorClass {
    match e {
        StoreError::Connect { error, .. } => match class_of(error) {
            // What the person must fix keeps its class: a login refused, a TLS failure.
            class if class == ErrorClass::Login || class.is_tls() => class,
            _ => ErrorClass::Connection,
        },
        StoreError::Pool(_) | StoreError::Silent(_) => ErrorClass::Connection,
        StoreError::Db(e) => class_of(e),
        StoreError::BadUrl(_)
        | StoreError::BadIdentifier(_)
        | StoreError::Migration(_)
        | StoreError::TransactionPooler { .. } => ErrorClass::Other,
    }
}
