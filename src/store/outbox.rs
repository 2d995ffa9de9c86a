//! Reading the outbox for people: the rows of a channel that are not ingested yet, with
//! their attempts, next attempt and last error, and those given up (dead letters).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::store::{Identifier, StoreError};

/// Where an unprocessed row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// Waiting for ingestion to claim it.
    Waiting,
    /// Failed; claimed again at `next_attempt_at`.
    Retrying,
    /// Given up: a dead letter.
    Dead,
}

impl RowState {
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Waiting => "waiting",
            RowState::Retrying => "retrying",
            RowState::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: Option<String>,
    pub event_type: String,
    pub published_at: DateTime<Utc>,
    pub state: RowState,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error_class: Option<String>,
    pub last_error: Option<String>,
    pub dead_at: Option<DateTime<Utc>>,
}

/// Unprocessed rows of `channel`, oldest first, at most `limit`.
pub async fn unprocessed(
    client: &Client,
    channel: &Identifier,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let rows = client
        .query(
            "SELECT id, message_id, event_type, published_at, attempts, next_attempt_at, \
                    error_class, last_error, dead_at, \
                    next_attempt_at IS NOT NULL AND next_attempt_at > now() \
             FROM event_outbox WHERE channel = $1 AND processed_at IS NULL \
             ORDER BY id LIMIT $2",
            &[&channel.as_str(), &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let dead_at: Option<DateTime<Utc>> = r.get(8);
            let later: bool = r.get(9);
            OutboxRow {
                id: r.get(0),
                message_id: r.get::<_, Option<i64>>(1).map(|id| id.to_string()),
                event_type: r.get(2),
                published_at: r.get(3),
                state: match (dead_at.is_some(), later) {
                    (true, _) => RowState::Dead,
                    (false, true) => RowState::Retrying,
                    (false, false) => RowState::Waiting,
                },
                attempts: r.get(4),
                next_attempt_at: r.get(5),
                error_class: r.get(6),
                last_error: r.get(7),
                dead_at,
            }
        })
        .collect())
}

/// What the pruner deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneTarget {
    /// Outbox rows ingested (`processed_at`).
    ProcessedOutbox,
    /// Outbox rows given up (`dead_at`).
    DeadOutbox,
    /// Rejected notifications (`received_at`).
    DeadLetters,
}

impl PruneTarget {
    pub fn table(self) -> &'static str {
        match self {
            PruneTarget::ProcessedOutbox | PruneTarget::DeadOutbox => "event_outbox",
            PruneTarget::DeadLetters => "dead_letters",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            PruneTarget::ProcessedOutbox => "processed outbox rows",
            PruneTarget::DeadOutbox => "outbox rows given up",
            PruneTarget::DeadLetters => "dead letters",
        }
    }
}

/// Deletes at most `batch` rows of `target` older than `older_than` (of `channel` for the
/// outbox), oldest first; how many. A row still waiting for ingestion is never one of them.
pub async fn prune(
    client: &Client,
    channel: &Identifier,
    target: PruneTarget,
    older_than: std::time::Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    let seconds = older_than.as_secs_f64();
    let sql = match target {
        PruneTarget::ProcessedOutbox => {
            "DELETE FROM event_outbox WHERE id IN (SELECT id FROM event_outbox \
               WHERE channel = $1 AND processed_at < now() - make_interval(secs => $2) \
               ORDER BY processed_at LIMIT $3)"
        }
        PruneTarget::DeadOutbox => {
            "DELETE FROM event_outbox WHERE id IN (SELECT id FROM event_outbox \
               WHERE channel = $1 AND processed_at IS NULL AND dead_at < now() - make_interval(secs => $2) \
               ORDER BY dead_at LIMIT $3)"
        }
        PruneTarget::DeadLetters => {
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters \
               WHERE channel = $1 AND received_at < now() - make_interval(secs => $2) \
               ORDER BY received_at LIMIT $3)"
        }
    };
    Ok(client
        .execute(sql, &[&channel.as_str(), &seconds, &batch])
        .await?)
}
