//! The outbox for people: the rows of a channel that are not ingested yet, with their
//! attempts, next attempt and last error, and those given up (dead letters); putting stuck
//! rows back in the queue and deleting given-up ones; and the pruner's deletes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, Transaction};

use crate::action::{begin, finish, Apply, NotHandled, Selection, Why};
use crate::notify::notify;
pub use crate::RowState;
use crate::{Identifier, StoreError, ROW_STATE};
use notifyscope_model::contract;

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
    unprocessed_where(client, channel, "TRUE", limit).await
}

/// Rows of `channel` given up (dead letters), oldest first, at most `limit`.
pub async fn given_up(
    client: &Client,
    channel: &Identifier,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    unprocessed_where(client, channel, "dead_at IS NOT NULL", limit).await
}

/// How many rows of `channel` are given up.
pub async fn given_up_count(client: &Client, channel: &Identifier) -> Result<i64, StoreError> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM event_outbox \
             WHERE channel = $1 AND processed_at IS NULL AND dead_at IS NOT NULL",
            &[&channel.as_str()],
        )
        .await?
        .get(0))
}

/// Unprocessed rows of `channel` for which `condition` (fixed SQL) holds.
async fn unprocessed_where(
    client: &Client,
    channel: &Identifier,
    condition: &str,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT id, message_id, event_type, published_at, attempts, next_attempt_at, \
                        error_class, last_error, dead_at, {ROW_STATE} \
                 FROM event_outbox WHERE channel = $1 AND processed_at IS NULL AND {condition} \
                 ORDER BY id LIMIT $2"
            ),
            &[&channel.as_str(), &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OutboxRow {
            id: r.get(0),
            message_id: r.get::<_, Option<i64>>(1).map(|id| id.to_string()),
            event_type: r.get(2),
            published_at: r.get(3),
            state: RowState::of_sql(r.get(9)),
            attempts: r.get(4),
            next_attempt_at: r.get(5),
            error_class: r.get(6),
            last_error: r.get(7),
            dead_at: r.get(8),
        })
        .collect())
}

/// Which stuck rows [`requeue`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// Rows retrying (waiting for a later attempt) or given up.
    RetryingOrGivenUp,
    /// Rows given up only (dead letters).
    GivenUp,
}

/// A row put back in the queue, as it was before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requeued {
    pub id: i64,
    pub message_id: Option<String>,
    pub was: RowState,
    pub attempts: i32,
    pub error_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequeueOutcome {
    /// Oldest first.
    pub requeued: Vec<Requeued>,
    pub not_handled: Vec<NotHandled>,
    /// The NOTIFY that wakes ingestion for them was sent (committed, and something was
    /// requeued).
    pub woke_ingestion: bool,
}

/// Puts the stuck rows of `channel` in `selection` back in the queue: no attempts, due now,
/// neither given up nor classed, then one NOTIFY on the channel so that running ingestion
/// takes them at once. Rows ingested, of another channel, or not stuck are never changed;
/// those named by id are reported as not handled.
///
/// `last_error` stays: until the row fails again, the error it failed with last is the best
/// clue to what to look at if it does, and `outbox list` shows it next to `attempts` 0.
pub async fn requeue(
    client: &mut Client,
    channel: &Identifier,
    selection: &Selection,
    stuck: Stuck,
    apply: Apply,
) -> Result<RequeueOutcome, StoreError> {
    let retrying = stuck == Stuck::RetryingOrGivenUp;
    let tx = begin(client).await?;
    // The rows are locked as they are chosen, so a row ingestion works on right now is taken
    // once that batch has committed, and then only if still stuck.
    let rows = tx
        .query(
            &format!(
                "WITH target AS ( \
                   SELECT id, message_id, attempts, error_class, {ROW_STATE} AS state \
                   FROM event_outbox \
                   WHERE channel = $1 AND processed_at IS NULL \
                     AND (dead_at IS NOT NULL OR ($3 AND next_attempt_at > now())) \
                     AND ($2::int8[] IS NULL OR id = ANY($2)) \
                   FOR UPDATE) \
                 UPDATE event_outbox o \
                 SET attempts = 0, next_attempt_at = NULL, dead_at = NULL, error_class = NULL \
                 FROM target t WHERE o.id = t.id \
                 RETURNING o.id, t.message_id, t.state, t.attempts, t.error_class"
            ),
            &[&channel.as_str(), &selection.named(), &retrying],
        )
        .await?;
    let mut requeued: Vec<Requeued> = rows
        .iter()
        .map(|r| Requeued {
            id: r.get(0),
            message_id: r.get::<_, Option<i64>>(1).map(|id| id.to_string()),
            was: RowState::of_sql(r.get(2)),
            attempts: r.get(3),
            error_class: r.get(4),
        })
        .collect();
    requeued.sort_by_key(|r| r.id);
    let handled: Vec<i64> = requeued.iter().map(|r| r.id).collect();
    let not_handled = left_alone(&tx, channel, &selection.missing(&handled)).await?;
    // One wake-up for them all: ingestion claims every due row of the channel, oldest first.
    let newest = requeued.last().map(|r| r.id);
    if let Some(newest) = newest {
        notify(&tx, channel.as_str(), &contract::wake_up_payload(newest)).await?;
    }
    finish(tx, apply).await?;
    let woke_ingestion = apply == Apply::Commit && newest.is_some();
    Ok(RequeueOutcome {
        requeued,
        not_handled,
        woke_ingestion,
    })
}

/// A given-up (or, forced, undelivered) row deleted, as it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Purged {
    pub id: i64,
    pub message_id: Option<String>,
    pub was: RowState,
    pub attempts: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurgeOutcome {
    /// Oldest first.
    pub purged: Vec<Purged>,
    pub not_handled: Vec<NotHandled>,
}

/// Deletes the given-up rows of `channel` in `selection`. Rows still waiting or retrying are
/// messages not delivered yet: they are deleted only when named by id with `force`, and
/// otherwise reported as not handled, as are rows ingested or of another channel.
/// `discord_messages` is never touched.
pub async fn purge(
    client: &mut Client,
    channel: &Identifier,
    selection: &Selection,
    force: bool,
    apply: Apply,
) -> Result<PurgeOutcome, StoreError> {
    // Never every undelivered row of a channel at once: only rows named one by one.
    let force = force && selection.named().is_some();
    let tx = begin(client).await?;
    let rows = tx
        .query(
            &format!(
                "DELETE FROM event_outbox WHERE id IN ( \
                   SELECT id FROM event_outbox \
                   WHERE channel = $1 AND processed_at IS NULL \
                     AND (dead_at IS NOT NULL OR $3) \
                     AND ($2::int8[] IS NULL OR id = ANY($2)) \
                   FOR UPDATE) \
                 RETURNING id, message_id, {ROW_STATE}, attempts"
            ),
            &[&channel.as_str(), &selection.named(), &force],
        )
        .await?;
    let mut purged: Vec<Purged> = rows
        .iter()
        .map(|r| Purged {
            id: r.get(0),
            message_id: r.get::<_, Option<i64>>(1).map(|id| id.to_string()),
            was: RowState::of_sql(r.get(2)),
            attempts: r.get(3),
        })
        .collect();
    purged.sort_by_key(|r| r.id);
    let handled: Vec<i64> = purged.iter().map(|r| r.id).collect();
    let not_handled = left_alone(&tx, channel, &selection.missing(&handled)).await?;
    finish(tx, apply).await?;
    Ok(PurgeOutcome {
        purged,
        not_handled,
    })
}

/// Why each of `ids` was left alone: no such row, another channel's, ingested, or its state.
async fn left_alone(
    tx: &Transaction<'_>,
    channel: &Identifier,
    ids: &[i64],
) -> Result<Vec<NotHandled>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            &format!(
                "SELECT id, channel, processed_at IS NOT NULL, {ROW_STATE} \
                 FROM event_outbox WHERE id = ANY($1)"
            ),
            &[&ids],
        )
        .await?;
    Ok(ids
        .iter()
        .map(|&id| {
            let row = rows.iter().find(|r| r.get::<_, i64>(0) == id);
            let why = match row {
                None => Why::NotFound,
                Some(r) if r.get::<_, &str>(1) != channel.as_str() => {
                    Why::OtherChannel { channel: r.get(1) }
                }
                Some(r) if r.get::<_, bool>(2) => Why::Ingested,
                Some(r) => Why::State {
                    state: RowState::of_sql(r.get(3)),
                },
            };
            NotHandled { id, why }
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
