//! The publisher: one task owns the writes to the outbox. Callers queue events through a
//! cloneable [`PublisherHandle`]; the task commits whatever is queued as one batch (rows in
//! `event_outbox` plus a NOTIFY per event, one transaction), so a lone event goes out at once
//! and a burst shares a commit. [`write`] is the transaction of one batch.

mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use notifyscope_model::contract::{ContractError, Envelope, EventType, MessageRecord, Snowflake};
use notifyscope_model::trace::{Source, Trace, TraceKind, WriteStage};
use notifyscope_store::{error_chain, ErrorClass, Identifier, Transactions};
use write::{write_batch, WriteError};

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
    source: Source,
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

    /// Queues the message and waits until its outbox row and NOTIFY are committed; its
    /// source is what its contract flag implies (simulated or the gateway).
    pub async fn publish(&self, message: MessageRecord) -> Result<PublishReceipt, PublishError> {
        let source = Source::of_synthetic(message.synthetic);
        self.publish_from(message, source).await
    }

    /// [`publish`](Self::publish) for a message whose source the caller knows.
    pub async fn publish_from(
        &self,
        message: MessageRecord,
        source: Source,
    ) -> Result<PublishReceipt, PublishError> {
        let id = message.message_id;
        let (request, reply) = self.request(message, source)?;
        let request = match self.tx.try_send(request) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(request)) => Some(request),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(self.failed(id, source, PublishError::Closed))
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
                return Err(self.failed(id, source, PublishError::Closed));
            }
        }
        reply.await.unwrap_or(Err(PublishError::Closed))
    }

    /// The same as [`publish`](Self::publish) for code that is not async. Returns
    /// [`PublishError::InsideRuntime`] instead of panicking when called on a runtime thread.
    pub fn publish_blocking(&self, message: MessageRecord) -> Result<PublishReceipt, PublishError> {
        let id = message.message_id;
        let source = Source::of_synthetic(message.synthetic);
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(self.failed(id, source, PublishError::InsideRuntime));
        }
        let (request, reply) = self.request(message, source)?;
        if self.tx.blocking_send(request).is_err() {
            return Err(self.failed(id, source, PublishError::Closed));
        }
        reply.blocking_recv().unwrap_or(Err(PublishError::Closed))
    }

    fn request(
        &self,
        message: MessageRecord,
        source: Source,
    ) -> Result<
        (
            PublishRequest,
            oneshot::Receiver<Result<PublishReceipt, PublishError>>,
        ),
        PublishError,
    > {
        if let Err(e) = message.validate() {
            return Err(self.failed(message.message_id, source, PublishError::Invalid(e)));
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        Ok((
            PublishRequest {
                envelope: Envelope::new(message),
                source,
                reply: reply_tx,
            },
            reply_rx,
        ))
    }

    /// Errors found before the publisher task sees the event are traced here; the task traces
    /// its own, so each failure is on the trace exactly once.
    fn failed(&self, message_id: Snowflake, source: Source, error: PublishError) -> PublishError {
        self.trace.emit(
            Some(message_id),
            TraceKind::PublishFailed {
                event_type: EventType::MessageCreated.as_str().into(),
                channel: self.channel.to_string(),
                error: error.to_string(),
                source,
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
    source: Source,
) -> Result<PublishReceipt, PublishError> {
    let message_id = message.message_id;
    let event_type = EventType::MessageCreated.as_str();
    let channel = publisher.channel().to_string();
    tracing::debug!(%event_type, %channel, %message_id, content_bytes = message.content.len(), "publishing");
    match publisher.publish_from(message, source).await {
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

/// Starts the publisher task on a pool whose connections keep their sessions. It stops when
/// `shutdown` fires, after committing what is already queued.
pub fn spawn_publisher(
    pool: Pool,
    channel: Identifier,
    trace: Trace,
    capacity: usize,
    shutdown: CancellationToken,
) -> (PublisherHandle, tokio::task::JoinHandle<()>) {
    spawn_publisher_with(
        pool,
        Transactions::kept(),
        channel,
        trace,
        capacity,
        NotifyMode::default(),
        shutdown,
    )
}

/// [`spawn_publisher`] on any pool (see [`Transactions`]), with a choice of how batches are
/// announced.
pub fn spawn_publisher_with(
    pool: Pool,
    transactions: Transactions,
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
    let task = tokio::spawn(run_publisher(
        pool,
        transactions,
        channel,
        trace,
        notify,
        rx,
        shutdown,
    ));
    (handle, task)
}

async fn run_publisher(
    pool: Pool,
    transactions: Transactions,
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
        commit_batch(&pool, &transactions, &channel, &trace, notify, &mut batch).await;
    }
    tracing::debug!("publisher stopped");
}

/// Commits the batch, retrying connection failures with backoff; a statement error (one bad
/// event) is isolated by committing the events one at a time.
async fn commit_batch(
    pool: &Pool,
    transactions: &Transactions,
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
        match write_batch(
            pool,
            transactions,
            channel,
            notify,
            batch.iter().map(|r| &r.envelope),
        )
        .await
        {
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
                report(trace, channel, &request, &Ok(receipt.clone()));
                let _ = request.reply.send(Ok(receipt));
            }
        }
        Err(e) if !e.class.is_transient() && batch.len() > 1 => {
            tracing::warn!(error = %e, events = batch.len(), "batch rejected, publishing its events one by one");
            for request in batch.drain(..) {
                let once = std::iter::once(&request.envelope);
                let result = write_batch(pool, transactions, channel, notify, once)
                    .await
                    .map(|mut r| r.remove(0))
                    .map_err(|e| e.into_publish_error());
                report(trace, channel, &request, &result);
                let _ = request.reply.send(result);
            }
        }
        Err(e) => {
            let error = e.into_publish_error();
            for request in batch.drain(..) {
                report(trace, channel, &request, &Err(error.clone()));
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}

/// The database did not take a batch that will be tried again: a lost connection is only
/// logged (the listener and ingestion report it as `database_down`), anything else (a lock,
/// a grant, a missing table) is traced too, so that the diagnosis names it while it lasts.
fn refused(trace: &Trace, e: &WriteError, attempt: u32, delay: Duration) {
    if let Some(silence) = &e.silence {
        crate::silence::report(trace, "publisher", silence, true);
    }
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
    request: &PublishRequest,
    result: &Result<PublishReceipt, PublishError>,
) {
    let (envelope, source) = (&request.envelope, request.source);
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
                source,
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
                    source,
                },
            );
        }
    }
}
