//! The publisher: one task owns the writes to the outbox. Callers queue events through a
//! cloneable [`PublisherHandle`]; the task commits whatever is queued as one batch (rows in
//! `event_outbox` plus a NOTIFY per event, one transaction), so a lone event goes out at once
//! and a burst shares a commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::future::join;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::contract::{self, ContractError, Envelope, EventType, MessageRecord, Snowflake};
use crate::store::notify;
use crate::store::{error_chain, ErrorClass, Identifier, StoreError};
use crate::trace::{Trace, TraceKind, WriteStage};

/// Events one transaction carries at most.
pub const MAX_BATCH: usize = 1000;
/// How long a batch is retried while the database cannot take it (unreachable, a lock, a
/// revoked grant): long enough for a restart, a failover or a migration. Meanwhile the queue
/// fills and senders wait.
const RETRY_FOR: Duration = Duration::from_secs(120);
/// The longest wait between two tries of a batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Default bound of the publish queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// How a committed batch is announced on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// One NOTIFY per event carrying its envelope (or a reference when too large), so that
    /// whoever listens sees every payload.
    #[default]
    PerEvent,
    /// One NOTIFY per committed batch: a reference to the batch's last outbox row. It is only
    /// the wake-up (ingestion reads the rows, which are the truth), so listeners see one
    /// `notified` per batch, and the per-notification work on both sides is gone.
    PerBatch,
}

impl NotifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyMode::PerEvent => "per-event",
            NotifyMode::PerBatch => "per-batch",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// `publish_blocking` was called on a thread that runs async tasks, where blocking would
    /// stall (or deadlock) the runtime: use `publish(..).await` there.
    #[error(
        "publish_blocking called from inside the async runtime; await `publish` instead \
         (blocking here would stall the runtime)"
    )]
    InsideRuntime,
    #[error("the publisher has stopped and accepts no more events")]
    Closed,
    #[error("event rejected before publishing: {0}")]
    Invalid(#[from] ContractError),
    #[error("database: {0}")]
    Database(String),
}

/// What a committed event got.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishReceipt {
    pub event_id: Uuid,
    pub outbox_id: i64,
    pub message_id: Snowflake,
    /// Bytes of the NOTIFY payload; 0 for an event of a [`NotifyMode::PerBatch`] batch that
    /// another event's NOTIFY announced.
    pub notify_bytes: usize,
    pub by_ref: bool,
    /// When COMMIT was sent.
    pub committed_at: chrono::DateTime<chrono::Utc>,
}

struct PublishRequest {
    envelope: Envelope,
    reply: oneshot::Sender<Result<PublishReceipt, PublishError>>,
}

/// A cloneable way in to the publisher, usable from async code, plain threads and other
/// runtimes.
#[derive(Clone)]
pub struct PublisherHandle {
    tx: mpsc::Sender<PublishRequest>,
    channel: Arc<Identifier>,
    trace: Trace,
    capacity: usize,
}

impl PublisherHandle {
    pub fn channel(&self) -> &Identifier {
        &self.channel
    }

    /// Queues the message and waits until its outbox row and NOTIFY are committed.
    pub async fn publish(&self, message: MessageRecord) -> Result<PublishReceipt, PublishError> {
        let id = message.message_id;
        let (request, reply) = self.request(message)?;
        let request = match self.tx.try_send(request) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(request)) => Some(request),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(self.failed(id, PublishError::Closed))
            }
        };
        if let Some(request) = request {
            // Full queue: say so on the trace, then wait for room (backpressure).
            self.trace.emit(
                None,
                TraceKind::Backpressure {
                    queued: self.capacity,
                    capacity: self.capacity,
                },
            );
            if self.tx.send(request).await.is_err() {
                return Err(self.failed(id, PublishError::Closed));
            }
        }
        reply.await.unwrap_or(Err(PublishError::Closed))
    }

    /// The same as [`publish`](Self::publish) for code that is not async. Returns
    /// [`PublishError::InsideRuntime`] instead of panicking when called on a runtime thread.
    pub fn publish_blocking(&self, message: MessageRecord) -> Result<PublishReceipt, PublishError> {
        let id = message.message_id;
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(self.failed(id, PublishError::InsideRuntime));
        }
        let (request, reply) = self.request(message)?;
        if self.tx.blocking_send(request).is_err() {
            return Err(self.failed(id, PublishError::Closed));
        }
        reply.blocking_recv().unwrap_or(Err(PublishError::Closed))
    }

    fn request(
        &self,
        message: MessageRecord,
    ) -> Result<
        (
            PublishRequest,
            oneshot::Receiver<Result<PublishReceipt, PublishError>>,
        ),
        PublishError,
    > {
        if let Err(e) = message.validate() {
            return Err(self.failed(message.message_id, PublishError::Invalid(e)));
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        Ok((
            PublishRequest {
                envelope: Envelope::new(message),
                reply: reply_tx,
            },
            reply_rx,
        ))
    }

    /// Errors found before the publisher task sees the event are traced here; the task traces
    /// its own, so each failure is on the trace exactly once.
    fn failed(&self, message_id: Snowflake, error: PublishError) -> PublishError {
        self.trace.emit(
            Some(message_id),
            TraceKind::PublishFailed {
                event_type: EventType::MessageCreated.as_str().into(),
                channel: self.channel.to_string(),
                error: error.to_string(),
            },
        );
        error
    }
}

/// Publishes with a log line before and after, and every failure logged with its context.
/// Never panics; the error is returned to the caller as well as logged and traced.
pub async fn publish_event_safe(
    publisher: &PublisherHandle,
    message: MessageRecord,
) -> Result<PublishReceipt, PublishError> {
    let message_id = message.message_id;
    let event_type = EventType::MessageCreated.as_str();
    let channel = publisher.channel().to_string();
    tracing::debug!(%event_type, %channel, %message_id, content_bytes = message.content.len(), "publishing");
    match publisher.publish(message).await {
        Ok(receipt) => {
            tracing::debug!(
                %event_type, %channel, %message_id,
                outbox_id = receipt.outbox_id, bytes = receipt.notify_bytes, by_ref = receipt.by_ref,
                "published"
            );
            Ok(receipt)
        }
        Err(e) => {
            tracing::error!(%event_type, %channel, %message_id, error = %error_chain(&e), "publish failed");
            Err(e)
        }
    }
}

/// Starts the publisher task. It stops when `shutdown` fires, after committing what is
/// already queued.
pub fn spawn_publisher(
    pool: Pool,
    channel: Identifier,
    trace: Trace,
    capacity: usize,
    shutdown: CancellationToken,
) -> (PublisherHandle, tokio::task::JoinHandle<()>) {
    spawn_publisher_with(
        pool,
        channel,
        trace,
        capacity,
        NotifyMode::default(),
        shutdown,
    )
}

/// [`spawn_publisher`] with a choice of how batches are announced.
pub fn spawn_publisher_with(
    pool: Pool,
    channel: Identifier,
    trace: Trace,
    capacity: usize,
    notify: NotifyMode,
    shutdown: CancellationToken,
) -> (PublisherHandle, tokio::task::JoinHandle<()>) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let channel = Arc::new(channel);
    let handle = PublisherHandle {
        tx,
        channel: channel.clone(),
        trace: trace.clone(),
        capacity,
    };
    let task = tokio::spawn(run_publisher(pool, channel, trace, notify, rx, shutdown));
    (handle, task)
}

async fn run_publisher(
    pool: Pool,
    channel: Arc<Identifier>,
    trace: Trace,
    notify: NotifyMode,
    mut rx: mpsc::Receiver<PublishRequest>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            request = rx.recv() => request,
            () = shutdown.cancelled() => {
                // Refuse new events, keep the queued ones.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(&pool, &channel, &trace, notify, &mut batch).await;
    }
    tracing::debug!("publisher stopped");
}

/// Commits the batch, retrying connection failures with backoff; a statement error (one bad
/// event) is isolated by committing the events one at a time.
async fn commit_batch(
    pool: &Pool,
    channel: &Identifier,
    trace: &Trace,
    notify: NotifyMode,
    batch: &mut Vec<PublishRequest>,
) {
    // A database restart or failover of a few seconds must not lose what the bot handed
    // over: keep trying for a while (the bounded queue makes senders wait meanwhile), then
    // fail loudly.
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        match write_batch(pool, channel, notify, batch.iter().map(|r| &r.envelope)).await {
            Err(e) if e.class.is_transient() && started.elapsed() < RETRY_FOR => {
                refused(trace, &e, attempts, delay);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            other => break other,
        }
    };
    match result {
        Ok(receipts) => {
            for (request, receipt) in batch.drain(..).zip(receipts) {
                report(trace, channel, &request.envelope, &Ok(receipt.clone()));
                let _ = request.reply.send(Ok(receipt));
            }
        }
        Err(e) if !e.class.is_transient() && batch.len() > 1 => {
            tracing::warn!(error = %e, events = batch.len(), "batch rejected, publishing its events one by one");
            for request in batch.drain(..) {
                let result = write_batch(pool, channel, notify, std::iter::once(&request.envelope))
                    .await
                    .map(|mut r| r.remove(0))
                    .map_err(|e| e.into_publish_error());
                report(trace, channel, &request.envelope, &result);
                let _ = request.reply.send(result);
            }
        }
        Err(e) => {
            let error = e.into_publish_error();
            for request in batch.drain(..) {
                report(trace, channel, &request.envelope, &Err(error.clone()));
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}

/// The database did not take a batch that will be tried again: a lost connection is only
/// logged (the listener and ingestion report it as `database_down`), anything else (a lock,
/// a grant, a missing table) is traced too, so that the diagnosis names it while it lasts.
fn refused(trace: &Trace, e: &WriteError, attempt: u32, delay: Duration) {
    let retry_in_ms = delay.as_millis() as u64;
    tracing::warn!(error = %e.text, class = %e.class, attempt, retry_in_ms, "outbox write failed, retrying");
    if e.class != ErrorClass::Connection {
        trace.emit(
            None,
            TraceKind::DatabaseRefused {
                part: WriteStage::Publish,
                class: e.class,
                error: e.text.clone(),
                retry_in_ms: Some(retry_in_ms),
            },
        );
    }
}

fn report(
    trace: &Trace,
    channel: &Identifier,
    envelope: &Envelope,
    result: &Result<PublishReceipt, PublishError>,
) {
    let message_id = Some(envelope.message.message_id);
    match result {
        Ok(receipt) => trace.emit_at(
            receipt.committed_at,
            message_id,
            TraceKind::Published {
                event_id: receipt.event_id,
                outbox_id: receipt.outbox_id,
                channel: channel.to_string(),
                bytes: receipt.notify_bytes,
                by_ref: receipt.by_ref,
            },
        ),
        Err(e) => {
            tracing::error!(
                event_type = %envelope.event_type, %channel,
                message_id = %envelope.message.message_id, error = %error_chain(e),
                "publish failed"
            );
            trace.emit(
                message_id,
                TraceKind::PublishFailed {
                    event_type: envelope.event_type.as_str().into(),
                    channel: channel.to_string(),
                    error: e.to_string(),
                },
            );
        }
    }
}

/// A batch the database did not take, with the kind of error: transient ones are retried,
/// the others isolate the event that caused them.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
struct WriteError {
    class: ErrorClass,
    text: String,
}

impl WriteError {
    fn into_publish_error(self) -> PublishError {
        PublishError::Database(format!("{}: {}", self.class.describe(), self.text))
    }
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError {
            class: e.class(),
            text: error_chain(&e),
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
async fn write_batch<'a>(
    pool: &Pool,
    channel: &Identifier,
    notify_mode: NotifyMode,
    envelopes: impl Iterator<Item = &'a Envelope>,
) -> Result<Vec<PublishReceipt>, WriteError> {
    let envelopes: Vec<&Envelope> = envelopes.collect();
    let started = Instant::now();
    let client = pool.get().await.map_err(StoreError::from)?;
    let result = write_in_transaction(&client, channel, notify_mode, &envelopes).await;
    if result.is_err() {
        // Never hand a connection back to the pool inside a transaction: one left aborted
        // would fail every later batch. Harmless when no transaction is open.
        let _ = client.batch_execute("ROLLBACK").await;
        return result;
    }
    tracing::trace!(
        events = envelopes.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "outbox batch committed"
    );
    result
}

/// The statements of [`write_batch`], two round trips in all: BEGIN goes out with the
/// INSERT, and COMMIT with the NOTIFY (tokio-postgres pipelines requests that are awaited
/// together, and sends them in order).
async fn write_in_transaction(
    client: &deadpool_postgres::Client,
    channel: &Identifier,
    notify_mode: NotifyMode,
    envelopes: &[&Envelope],
) -> Result<Vec<PublishReceipt>, WriteError> {
    let notify = notify::prepare_notify_each(client).await?;
    let outbox_ids = insert_rows(client, channel, envelopes).await?;
    let (mut receipts, notifications) = announcements(notify_mode, envelopes, &outbox_ids)?;
    let notify_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&channel.as_str(), &notifications];
    let committed_at = chrono::Utc::now();
    let (notified, committed) = join(
        client.query_one(&notify, &notify_params),
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
    channel: &Identifier,
    envelopes: &[&Envelope],
) -> Result<HashMap<Uuid, i64>, WriteError> {
    let insert = client
        .prepare_cached(
            "INSERT INTO event_outbox (event_id, event_type, channel, message_id, payload) \
             SELECT e, t, $3, m, p::jsonb \
             FROM UNNEST($1::uuid[], $2::text[], $4::int8[], $5::text[]) AS u(e, t, m, p) \
             ON CONFLICT (event_id) DO NOTHING \
             RETURNING event_id, id",
        )
        .await?;
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
        client.batch_execute("BEGIN"),
        client.query(&insert, &params),
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
            .query(
                "SELECT event_id, id FROM event_outbox WHERE event_id = ANY($1)",
                &[&missing],
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
