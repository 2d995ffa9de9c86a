//! Ingestion: workers claim unprocessed outbox rows of their channel, insert the messages into
//! `discord_messages` and mark the rows processed, all in one transaction.
//!
//! `FOR UPDATE SKIP LOCKED` lets any number of workers, in any number of processes, share one
//! outbox without waiting on each other; the message-id primary key with `ON CONFLICT DO
//! NOTHING` makes a second delivery of the same message a no-op, reported as `duplicate`.
//! This file runs the workers and paces them; [`batch`] is one batch's transaction.

mod batch;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::retry::RetrySchedule;
use batch::{ingest_batch, BatchResult, Failure};
use notifyscope_model::trace::{Trace, TraceKind, WriteStage};
use notifyscope_store::{error_chain, ErrorClass, Identifier, StoreError, Transactions};

/// Rows one worker claims per transaction at most.
pub const DEFAULT_BATCH: usize = 500;
/// How often workers look for rows whose NOTIFY never came.
pub const DEFAULT_SWEEP: Duration = Duration::from_secs(1);
/// A worker whose batch failed as a whole (the claim, the commit, or recording the failure
/// refused) waits this long at first, doubling up to [`MAX_PAUSE`], instead of trying again
/// at every NOTIFY.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Wakes ingestion: one idle worker, or, when all are busy, the first to finish. A wake-up
/// that arrives while every worker is busy is kept, so none is lost between "nothing left"
/// and "waiting". Waking one worker rather than all spares the others a claim that would
/// find nothing; a worker that claims a full batch wakes another, so a backlog is shared.
#[derive(Clone, Default)]
pub struct IngestWaker {
    notify: Arc<Notify>,
}

impl IngestWaker {
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub channel: Identifier,
    pub batch: usize,
    /// Workers also look for work this often, for rows whose NOTIFY never came (published
    /// while down, or a retry after a failure).
    pub sweep: Duration,
    /// When a failed row is tried again, and when it is given up.
    pub retry: RetrySchedule,
    /// How the workers' pool opens transactions and prepares statements.
    pub transactions: Transactions,
}

impl IngestConfig {
    pub fn new(channel: Identifier) -> Self {
        IngestConfig {
            channel,
            batch: DEFAULT_BATCH,
            sweep: DEFAULT_SWEEP,
            retry: RetrySchedule::default(),
            transactions: Transactions::kept(),
        }
    }
}

pub fn spawn_workers(
    pool: Pool,
    config: IngestConfig,
    workers: usize,
    trace: Trace,
    shutdown: CancellationToken,
) -> (IngestWaker, Vec<JoinHandle<()>>) {
    let waker = IngestWaker::default();
    let config = Arc::new(config);
    let tasks = (0..workers.max(1))
        .map(|_| {
            tokio::spawn(worker(
                pool.clone(),
                config.clone(),
                trace.clone(),
                waker.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    (waker, tasks)
}

async fn worker(
    pool: Pool,
    config: Arc<IngestConfig>,
    trace: Trace,
    waker: IngestWaker,
    shutdown: CancellationToken,
) {
    let mut database_up = true;
    let mut pace = Pace::new(config.batch);
    let mut pause = None;
    loop {
        if let Some(pause) = pause {
            // The database refused the last batch as a whole: wait it out rather than ask
            // again at every NOTIFY.
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        } else {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = waker.notify.notified() => {}
                () = tokio::time::sleep(config.sweep) => {}
            }
        }
        pace.skip.clear();
        loop {
            let next = match ingest_batch(&pool, &config, &trace, pace.batch, &pace.skip).await {
                Ok(result) => {
                    database_up = true;
                    pause = None;
                    pace.after(result, &waker)
                }
                Err(e) => {
                    let wait = pause.map_or(FIRST_PAUSE, |p: Duration| (p * 2).min(MAX_PAUSE));
                    pause = Some(wait);
                    refused(&config, &trace, &e, wait, &mut database_up);
                    Next::Wait
                }
            };
            match next {
                Next::Retry => continue,
                Next::Wait => break,
                Next::More => {}
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }
}

/// Traces a batch the database refused as a whole: nothing was changed, the rows are
/// claimed again after `wait`. A lost connection is the database check's business, said
/// once; any other refusal (a lock, a grant, a missing table) is said each time.
fn refused(
    config: &IngestConfig,
    trace: &Trace,
    e: &StoreError,
    wait: Duration,
    database_up: &mut bool,
) {
    if let StoreError::Silent(silence) = e {
        crate::silence::report(trace, "ingestion", silence, true);
    }
    let error = error_chain(e);
    let class = e.class();
    if class == ErrorClass::Connection {
        tracing::error!(channel = %config.channel, %error, "ingestion cannot reach the database");
        if *database_up {
            *database_up = false;
            trace.emit(None, TraceKind::DatabaseDown { error });
        }
        return;
    }
    tracing::error!(
        channel = %config.channel, %class, %error, retry_in_ms = wait.as_millis() as u64,
        "the database refused ingestion: {}", class.describe()
    );
    trace.emit(
        None,
        TraceKind::DatabaseRefused {
            part: WriteStage::Ingest,
            class,
            error,
            retry_in_ms: Some(wait.as_millis() as u64),
        },
    );
}

/// How big a worker's next batch is, and which rows it leaves for the next round.
struct Pace {
    full: usize,
    batch: usize,
    /// Rows that failed on their own in this round; retried in the next one (next wake-up
    /// or sweep), so that one bad row neither blocks the rows behind it nor burns its
    /// attempts in a tight loop.
    skip: Vec<i64>,
    /// Rows of a failed batch still to be taken one at a time before full batches resume.
    single_left: usize,
}

/// What a worker does after a batch.
enum Next {
    /// Another batch at once, the new size decided.
    Retry,
    /// Another batch at once, unless shutting down: there is probably more.
    More,
    /// Wait for a wake-up or the sweep.
    Wait,
}

impl Pace {
    fn new(batch: usize) -> Self {
        Pace {
            full: batch.max(1),
            batch: batch.max(1),
            skip: Vec::new(),
            single_left: 0,
        }
    }

    fn after(&mut self, result: BatchResult, waker: &IngestWaker) -> Next {
        let BatchResult { claimed, failure } = result;
        match failure {
            // Some row broke the batch, nobody knows which: go one row at a time so that the
            // others pass and the bad one is found.
            Some(Failure::Batch) => {
                self.batch = 1;
                self.single_left = claimed;
                return Next::Retry;
            }
            // The database refused the batch for a reason of its own; its rows were charged
            // an attempt and wait for their next one. Rows claimed after them are no
            // different, so wait too.
            Some(Failure::Rescheduled) => {
                self.batch = self.full;
                self.single_left = 0;
                return Next::Wait;
            }
            // Found (and charged an attempt): back to full batches without it.
            Some(Failure::Row(outbox_id)) => {
                self.skip.push(outbox_id);
                self.batch = self.full;
                self.single_left = 0;
                return Next::Retry;
            }
            None => {}
        }
        if self.batch == 1 && self.single_left > 0 {
            self.single_left = self.single_left.saturating_sub(claimed);
            if self.single_left == 0 {
                // The failed batch went through row by row: its error was passing.
                self.batch = self.full;
                return Next::Retry;
            }
        }
        if claimed == 0 {
            self.batch = self.full;
            return Next::Wait;
        }
        // A short batch took everything that was committed when it was claimed; rows
        // committed since then have sent their NOTIFY, which is kept as a wake-up. So wait
        // for it instead of asking once more for nothing.
        if claimed < self.batch {
            return Next::Wait;
        }
        // A full batch: there is probably more, enough for another worker too.
        if self.batch > 1 {
            waker.wake();
        }
        Next::More
    }
}
