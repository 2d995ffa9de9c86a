//! Acting on another session of the database, such as the one holding a lock the pipeline
//! waits for or sitting idle in a transaction while the NOTIFY queue fills: cancel its
//! statement or end it. Only sessions of the same database: a pid of another database's
//! session cannot be what blocks this pipeline, and is refused.

use serde::Serialize;
use tokio_postgres::Client;

use crate::{error_chain, ErrorClass, StoreError};

/// What is done to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendSignal {
    /// `pg_cancel_backend`: its running statement fails; the session stays, and so does an
    /// open transaction's lock unless that statement ran outside a transaction block.
    Cancel,
    /// `pg_terminate_backend`: the session ends; its transaction is rolled back and every
    /// lock it held is released.
    Terminate,
}

impl BackendSignal {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendSignal::Cancel => "cancel",
            BackendSignal::Terminate => "terminate",
        }
    }

    fn function(self) -> &'static str {
        match self {
            BackendSignal::Cancel => "pg_cancel_backend",
            BackendSignal::Terminate => "pg_terminate_backend",
        }
    }
}

/// What came of a [`signal_backend`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SignalOutcome {
    /// The server signalled the backend.
    Sent,
    /// No session has this pid.
    NoSuchBackend,
    /// The session is on another database (`None`: a background process of the server).
    OtherDatabase { database: Option<String> },
    /// The pid is the session asking.
    OwnSession,
    /// The server found no backend to signal any more (it ended meanwhile).
    NotSignalled,
    /// The server refused: typically `permission` (42501), when the role is neither a
    /// superuser, nor the session's role, nor a member of `pg_signal_backend`.
    Refused { class: ErrorClass, error: String },
}

impl SignalOutcome {
    pub fn worked(&self) -> bool {
        *self == SignalOutcome::Sent
    }

    /// The class of the server's refusal, when it refused.
    pub fn error_class(&self) -> Option<ErrorClass> {
        match self {
            SignalOutcome::Refused { class, .. } => Some(*class),
            _ => None,
        }
    }
}

/// Cancels the running statement of backend `pid` of this database.
pub async fn cancel_backend(client: &Client, pid: i32) -> Result<SignalOutcome, StoreError> {
    signal_backend(client, pid, BackendSignal::Cancel).await
}

/// Ends backend `pid` of this database.
pub async fn terminate_backend(client: &Client, pid: i32) -> Result<SignalOutcome, StoreError> {
    signal_backend(client, pid, BackendSignal::Terminate).await
}

/// Sends `signal` to backend `pid`, if it is a session of the database `client` is
/// connected to and not `client`'s own. Errors are those of the connection only; a refusal
/// of the server is an outcome.
pub async fn signal_backend(
    client: &Client,
    pid: i32,
    signal: BackendSignal,
) -> Result<SignalOutcome, StoreError> {
    // One statement looks the pid up and signals it, so that the pid checked is the one
    // signalled; CASE evaluates the signal only for a session of this database.
    let sql = format!(
        "SELECT a.datname, a.datname IS NOT DISTINCT FROM current_database(), \
                a.pid = pg_backend_pid(), \
                CASE WHEN a.datname = current_database() AND a.pid <> pg_backend_pid() \
                     THEN {}(a.pid) END \
         FROM pg_stat_activity a WHERE a.pid = $1",
        signal.function()
    );
    let row = match client.query_opt(&sql, &[&pid]).await {
        Ok(row) => row,
        Err(e) if crate::errors::class_of(&e) == ErrorClass::Connection => return Err(e.into()),
        Err(e) => {
            return Ok(SignalOutcome::Refused {
                class: crate::errors::class_of(&e),
                error: error_chain(&e),
            })
        }
    };
    let Some(row) = row else {
        return Ok(SignalOutcome::NoSuchBackend);
    };
    let database: Option<String> = row.get(0);
    let same_database: bool = row.get(1);
    let own: bool = row.get(2);
    let signalled: Option<bool> = row.get(3);
    Ok(
        match (same_database && database.is_some(), own, signalled) {
            (false, _, _) => SignalOutcome::OtherDatabase { database },
            (true, true, _) => SignalOutcome::OwnSession,
            (true, false, Some(true)) => SignalOutcome::Sent,
            (true, false, _) => SignalOutcome::NotSignalled,
        },
    )
}

/// A session of the server, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub pid: i32,
    /// `None` for a background process of the server.
    pub database: Option<String>,
    /// On the database the asking client is connected to.
    pub same_database: bool,
    /// The asking client's own session.
    pub own: bool,
    pub user: Option<String>,
    pub application_name: String,
    pub state: Option<String>,
    pub seconds_in_state: Option<f64>,
    /// Its last statement in full: may hold secrets, show it with care.
    pub query: String,
}

/// The session with process id `pid`, if there is one.
pub async fn session(client: &Client, pid: i32) -> Result<Option<Session>, StoreError> {
    let row = client
        .query_opt(
            "SELECT pid, datname, datname IS NOT DISTINCT FROM current_database(), \
                    pid = pg_backend_pid(), usename, coalesce(application_name, ''), state, \
                    extract(epoch FROM clock_timestamp() - state_change)::float8, \
                    coalesce(query, '') \
             FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await?;
    Ok(row.map(|r| Session {
        pid: r.get(0),
        database: r.get(1),
        same_database: r.get(2),
        own: r.get(3),
        user: r.get(4),
        application_name: r.get(5),
        state: r.get(6),
        seconds_in_state: r.get(7),
        query: r.get(8),
    }))
}
