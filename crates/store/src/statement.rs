//! Statements that work through a transaction pooler. There, consecutive transactions of one
//! connection may run in different server sessions, shared with other clients: a statement
//! prepared by name in one is unknown in the next (or, worse, another client's of the same
//! name), and a `SET` stays with a session someone else gets. So where sessions are shared,
//! every transaction sets its search path and settings with `SET LOCAL`, and statements go
//! unnamed, parsed with their parameter types in the round trip that runs them.

use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use crate::deadline::DEFAULT_DEADLINE;

/// Whether a URL's connections keep their server sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    /// The server itself, or a session pooler: each connection keeps its session.
    Kept,
    /// A transaction pooler: each transaction may run in another session.
    Shared,
}

/// How work on one URL's pool opens its transactions and prepares its statements, and how
/// long each may go unanswered.
#[derive(Debug, Clone)]
pub struct Transactions {
    begin: String,
    sessions: Sessions,
    deadline: Duration,
    /// Host and port, for naming a connection that went silent.
    target: String,
}

impl Transactions {
    pub(crate) fn new(
        begin: String,
        sessions: Sessions,
        deadline: Duration,
        target: String,
    ) -> Self {
        Transactions {
            begin,
            sessions,
            deadline,
            target,
        }
    }

    /// For connections whose sessions last, set up once connected, with the default deadline.
    pub fn kept() -> Self {
        Transactions::new(
            "BEGIN".to_owned(),
            Sessions::Kept,
            DEFAULT_DEADLINE,
            "the database".to_owned(),
        )
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Opens a transaction (simple protocol, one round trip): `BEGIN`, followed behind a
    /// transaction pooler by the session's search path and settings as `SET LOCAL`.
    pub fn begin(&self) -> &str {
        &self.begin
    }

    pub fn sessions(&self) -> Sessions {
        self.sessions
    }
}

/// A statement with the types of its parameters.
#[derive(Debug, Clone)]
pub struct Sql {
    text: String,
    types: Vec<Type>,
}

impl Sql {
    pub fn new(text: impl Into<String>, types: &[Type]) -> Self {
        Sql {
            text: text.into(),
            types: types.to_vec(),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Prepared once per connection where sessions last; otherwise nothing to prepare.
    pub async fn prepare(
        &self,
        client: &ClientWrapper,
        transactions: &Transactions,
    ) -> Result<Prepared<'_>, tokio_postgres::Error> {
        Ok(match transactions.sessions {
            Sessions::Kept => Prepared::Named(client.prepare_cached(&self.text).await?),
            Sessions::Shared => Prepared::Unnamed(self),
        })
    }
}

/// A [`Sql`] ready to run on one connection.
pub enum Prepared<'a> {
    Named(Statement),
    Unnamed(&'a Sql),
}

impl Prepared<'_> {
    pub async fn query(
        &self,
        client: &Client,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match self {
            Prepared::Named(statement) => client.query(statement, params).await,
            Prepared::Unnamed(sql) => client.query_typed(&sql.text, &typed(sql, params)).await,
        }
    }

    pub async fn execute(
        &self,
        client: &Client,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        match self {
            Prepared::Named(statement) => client.execute(statement, params).await,
            Prepared::Unnamed(sql) => client.execute_typed(&sql.text, &typed(sql, params)).await,
        }
    }
}

fn typed<'p>(sql: &Sql, params: &[&'p (dyn ToSql + Sync)]) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .copied()
        .zip(sql.types.iter().cloned())
        .collect()
}
