//! One batch of the publisher in one transaction: the outbox rows, then the NOTIFYs that
//! announce them (per event, or one per batch), and the receipt of each event.

use std::collections::HashMap;
use std::time::Instant;

use std::sync::LazyLock;

use deadpool_postgres::Pool;
use futures_util::future::join;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{NotifyMode, PublishError, PublishReceipt};
use notifyscope_model::contract::{self, Envelope};
use notifyscope_store::deadline::{on_pooled, Silence};
use notifyscope_store::notify;
use notifyscope_store::{error_chain, ErrorClass, Identifier, Sql, StoreError, Transactions};

/// The outbox rows of a batch; the outbox id of each event it inserted.
static INSERT: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        "INSERT INTO event_outbox (event_id, event_type, channel, message_id, payload) \
         SELECT e, t, $3, m, p::jsonb \
         FROM UNNEST($1::uuid[], $2::text[], $4::int8[], $5::text[]) AS u(e, t, m, p) \
         ON CONFLICT (event_id) DO NOTHING \
         RETURNING event_id, id",
        &[
            Type::UUID_ARRAY,
            Type::TEXT_ARRAY,
            Type::TEXT,
            Type::INT8_ARRAY,
            Type::TEXT_ARRAY,
        ],
    )
});

/// A batch the database did not take, with the kind of error: transient ones are retried,
/// the others isolate the event that caused them.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub(super) struct WriteError {
    pub(super) class: ErrorClass,
    pub(super) text: String,
    /// The connection went silent and was dropped.
    pub(super) silence: Option<Silence>,
}

impl WriteError {
    pub(super) fn into_publish_error(self) -> PublishError {
        PublishError::Database(format!("{}: {}", self.class.describe(), self.text))
    }
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError {
            class: e.class(),
            text: error_chain(&e),
            silence: match e {
                StoreError::Silent(silence) => Some(silence),
                _ => None,
            },
        }
    }
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Db(e).into()
    }
}

/// One transaction: insert the events into the outbox, then NOTIFY each with its outbox id
/// (or a reference when the envelope is too large for NOTIFY), or, per batch, only the last.
pub(super) async fn write_batch<'a>(
    pool: &Pool,
    transactions: &Transactions,
    channel: &Identifier,
    notify_mode: NotifyMode,
    envelopes: impl Iterator<Item = &'a Envelope>,
) -> Result<Vec<PublishReceipt>, WriteError> {
    let envelopes: Vec<&Envelope> = envelopes.collect();
    let started = Instant::now();
    let client = pool.get().await.map_err(StoreError::from)?;
    // A commit whose answer never comes is retried on another connection: the rows keep
    // their event ids, so a retry inserts nothing twice and announces them again. The
    // server ends the silent session's open transaction itself
    // (idle_in_transaction_session_timeout), which frees the rows a retry would wait for.
    let receipts = on_pooled(
        pool,
        client,
        transactions.deadline(),
        transactions.target(),
        "outbox write",
        async |client| {
            let result =
                write_in_transaction(client, transactions, channel, notify_mode, &envelopes).await;
            if result.is_err() {
                // Never hand a connection back to the pool inside a transaction: one left
                // aborted would fail every later batch. Harmless when none is open.
                let _ = client.batch_execute("ROLLBACK").await;
            }
            result
        },
    )
    .await?;
    tracing::trace!(
        events = envelopes.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "outbox batch committed"
    );
    Ok(receipts)
}

/// The statements of [`write_batch`], two round trips in all: BEGIN goes out with the
/// INSERT, and COMMIT with the NOTIFY (tokio-postgres pipelines requests that are awaited
/// together, and sends them in order).
async fn write_in_transaction(
    client: &deadpool_postgres::Client,
    transactions: &Transactions,
    channel: &Identifier,
    notify_mode: NotifyMode,
    envelopes: &[&Envelope],
) -> Result<Vec<PublishReceipt>, WriteError> {
    let notify = notify::NOTIFY_EACH.prepare(client, transactions).await?;
    let outbox_ids = insert_rows(client, transactions, channel, envelopes).await?;
    let (mut receipts, notifications) = announcements(notify_mode, envelopes, &outbox_ids)?;
    let notify_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&channel.as_str(), &notifications];
    let committed_at = chrono::Utc::now();
    let (notified, committed) = join(
        notify.query(client, &notify_params),
        client.batch_execute("COMMIT"),
    )
    .await;
    // When the NOTIFY failed, PostgreSQL turned the COMMIT into a rollback.
    notified?;
    committed?;
    for receipt in &mut receipts {
        receipt.committed_at = committed_at;
    }
    Ok(receipts)
}

/// BEGIN and the outbox INSERT; the outbox id of every envelope, by event id.
async fn insert_rows(
    client: &deadpool_postgres::Client,
    transactions: &Transactions,
    channel: &Identifier,
    envelopes: &[&Envelope],
) -> Result<HashMap<Uuid, i64>, WriteError> {
    let insert = INSERT.prepare(client, transactions).await?;
    let event_ids: Vec<Uuid> = envelopes.iter().map(|e| e.event_id).collect();
    let event_types: Vec<&str> = envelopes.iter().map(|e| e.event_type.as_str()).collect();
    let message_ids: Vec<i64> = envelopes
        .iter()
        .map(|e| e.message.message_id.as_i64())
        .collect();
    let payloads: Vec<String> = envelopes.iter().map(|e| e.to_json()).collect();
    let channel_name = channel.as_str();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &event_ids,
        &event_types,
        &channel_name,
        &message_ids,
        &payloads,
    ];
    let (began, inserted) = join(
        client.batch_execute(transactions.begin()),
        insert.query(client, &params),
    )
    .await;
    began?;
    let rows = inserted?;
    let mut outbox_ids: HashMap<Uuid, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    if outbox_ids.len() < envelopes.len() {
        // A retry after a commit whose outcome was lost with the connection: the rows that
        // made it keep their ids, and their NOTIFY is sent again (ingestion is idempotent).
        let missing: Vec<Uuid> = event_ids
            .iter()
            .filter(|id| !outbox_ids.contains_key(id))
            .copied()
            .collect();
        let existing = client
            .query_typed(
                "SELECT event_id, id FROM event_outbox WHERE event_id = ANY($1)",
                &[(&missing, Type::UUID_ARRAY)],
            )
            .await?;
        outbox_ids.extend(
            existing
                .iter()
                .map(|r| (r.get::<_, Uuid>(0), r.get::<_, i64>(1))),
        );
    }
    Ok(outbox_ids)
}

/// The receipt of every envelope and the NOTIFY payloads that announce the batch: one per
/// event (by reference when too large), or one reference to the newest row per batch.
fn announcements(
    notify_mode: NotifyMode,
    envelopes: &[&Envelope],
    outbox_ids: &HashMap<Uuid, i64>,
) -> Result<(Vec<PublishReceipt>, Vec<String>), WriteError> {
    let mut receipts = Vec::with_capacity(envelopes.len());
    let mut notifications = Vec::with_capacity(match notify_mode {
        NotifyMode::PerEvent => envelopes.len(),
        NotifyMode::PerBatch => 1,
    });
    for &envelope in envelopes {
        let outbox_id = outbox_ids
            .get(&envelope.event_id)
            .copied()
            .ok_or_else(|| WriteError {
                class: ErrorClass::Other,
                text: "outbox insert returned no id".into(),
                silence: None,
            })?;
        let (notify_bytes, by_ref) = match notify_mode {
            NotifyMode::PerEvent => {
                let mut with_id = envelope.clone();
                with_id.outbox_id = Some(outbox_id);
                let mut payload = with_id.to_json();
                let by_ref = payload.len() > contract::NOTIFY_PAYLOAD_LIMIT;
                if by_ref {
                    payload = contract::reference_payload(
                        outbox_id,
                        envelope.event_type,
                        envelope.message.message_id,
                    );
                }
                let bytes = payload.len();
                notifications.push(payload);
                (bytes, by_ref)
            }
            // Announced below, once for the whole batch.
            NotifyMode::PerBatch => (0, false),
        };
        receipts.push(PublishReceipt {
            event_id: envelope.event_id,
            outbox_id,
            message_id: envelope.message.message_id,
            notify_bytes,
            by_ref,
            committed_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        });
    }
    if notify_mode == NotifyMode::PerBatch {
        // The wake-up names the batch's newest row; ingestion claims every row up to it anyway.
        if let Some((receipt, envelope)) = receipts
            .iter_mut()
            .zip(envelopes)
            .max_by_key(|(receipt, _)| receipt.outbox_id)
        {
            let payload = contract::reference_payload(
                receipt.outbox_id,
                envelope.event_type,
                envelope.message.message_id,
            );
            receipt.notify_bytes = payload.len();
            receipt.by_ref = true;
            notifications.push(payload);
        }
    }
    Ok((receipts, notifications))
}
