//! The classes of the database driver's errors: [`ErrorClass`] is the vocabulary (in the
//! model), this is where an error of `tokio-postgres` or the store gets its class.

pub use notifyscope_model::error_class::{table_named, ErrorClass};

use crate::StoreError;

/// A closed connection, or an error the server did not send (I/O, timeout), is a connection
/// error.
pub fn class_of(e: &tokio_postgres::Error) -> ErrorClass {
    if e.is_closed() {
        return ErrorClass::Connection;
    }
    match e.code() {
        Some(code) => ErrorClass::of_sqlstate(code.code()),
        None => ErrorClass::Connection,
    }
}

pub fn class_of_store(e: &StoreError) -> ErrorClass {
    match e {
        StoreError::Connect { error, .. } => match class_of(error) {
            // A login refused is what the person must fix, so it keeps its class.
            ErrorClass::Login => ErrorClass::Login,
            _ => ErrorClass::Connection,
        },
        StoreError::Pool(_) => ErrorClass::Connection,
        StoreError::Db(e) => class_of(e),
        StoreError::BadUrl(_) | StoreError::BadIdentifier(_) | StoreError::Migration(_) => {
            ErrorClass::Other
        }
    }
}
