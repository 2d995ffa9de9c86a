//! The bench itself: a fresh schema, the real pipeline, messages through the bot path at a
//! pace or as fast as it takes them, then the database's count of what arrived.
//!
//! Latencies come from the trace stream, the same events every other consumer reads: a
//! message's `received` (the bot path took it), `published` (its outbox commit), `notified`
//! and its first `ingested` (the ingestion commit). Rows, losses and duplicates come from the
//! database, which is the truth.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use indicatif::ProgressBar;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::report::BenchReport;
use crate::seen::{collect, millis, Counts, Workload};
use notifyscope_model::trace::Trace;
use notifyscope_pipeline::bot_path::Handled;
use notifyscope_pipeline::filter::IncomingMessage;
use notifyscope_pipeline::listen::ListenerError;
use notifyscope_pipeline::publish::NotifyMode;
use notifyscope_pipeline::synthetic;
use notifyscope_pipeline::{Pipeline, PipelineConfig};
use notifyscope_store::{error_chain, Database, Identifier, StoreError, APP_NAME};

/// How long the listener may take to come up before the bench gives up.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(60);

/// What one bench run does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub messages: u64,
    /// Messages a second; `None` for as fast as the pipeline takes them.
    pub rate: Option<f64>,
    pub publishers: usize,
    pub workers: usize,
    pub notify: NotifyMode,
    pub stall_timeout: Duration,
}

impl BenchOptions {
    pub fn new(messages: u64) -> Self {
        BenchOptions {
            messages,
            rate: None,
            publishers: 512,
            workers: 2,
            notify: NotifyMode::PerEvent,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the listener did not come up")]
    Listener(#[from] ListenerError),
    #[error("invalid option: {0}")]
    Invalid(String),
    #[error("could not drop the bench schema {schema}: {error}")]
    Cleanup { schema: String, error: String },
}

/// Runs the bench in a fresh schema on the server at `url` (with `direct`, the server itself
/// beside a transaction pooler at `url`) and drops the schema afterwards, whatever happened.
/// `cancel` stops sending early (the report then counts what was not sent as lost).
pub async fn run(
    url: &str,
    direct: Option<&str>,
    options: BenchOptions,
    progress: ProgressBar,
    cancel: CancellationToken,
) -> Result<BenchReport, BenchError> {
    if let Some(rate) = options.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(BenchError::Invalid(format!(
                "--rate must be a positive number of messages a second, not {rate}"
            )));
        }
    }
    let (mut report, name) = in_fresh_schema(url, direct, |database, channel| {
        run_in_schema(database, channel, options, progress, cancel)
    })
    .await?;
    report.schema = name;
    Ok(report)
}

/// Runs `body` on a schema made for it (its name is the channel too) on the server at
/// `url` (and `direct`, see [`run`]), and drops the schema afterwards, whatever happened; the
/// result and the name.
pub async fn in_fresh_schema<T, F, Fut>(
    url: &str,
    direct: Option<&str>,
    body: F,
) -> Result<(T, String), BenchError>
where
    F: FnOnce(Database, Identifier) -> Fut,
    Fut: std::future::Future<Output = Result<T, BenchError>>,
{
    let name = format!("notifyscope_bench_{:016x}", rand::random::<u64>());
    let schema = Identifier::schema(&name).map_err(StoreError::from)?;
    // The schema's name is the channel too: NOTIFY is database-wide, and nobody else listens
    // on this one.
    let channel = Identifier::channel(&name).map_err(StoreError::from)?;
    let mut database = Database::new(url, schema)?;
    if let Some(direct) = direct {
        database = database.with_direct(direct)?;
    }
    let result = body(database.clone(), channel).await;
    let cleanup = drop_schema(&database).await;
    let value = result?;
    cleanup?;
    Ok((value, name))
}

async fn drop_schema(database: &Database) -> Result<(), BenchError> {
    let schema = database.schema().clone();
    let failed = |e: StoreError| BenchError::Cleanup {
        schema: schema.to_string(),
        error: error_chain(&e),
    };
    let client = database
        .direct()
        .connect_plain(APP_NAME)
        .await
        .map_err(failed)?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schema.quoted()
        ))
        .await
        .map_err(|e| failed(StoreError::Db(e)))
}

async fn run_in_schema(
    database: Database,
    channel: Identifier,
    options: BenchOptions,
    progress: ProgressBar,
    cancel: CancellationToken,
) -> Result<BenchReport, BenchError> {
    let trace = Trace::new();
    let mut config = PipelineConfig::new(database.clone(), channel);
    config.workers = options.workers.max(1);
    config.notify = options.notify;
    config.control = false;
    let mut pipeline = Pipeline::start(config, trace.clone()).await?;
    let result = drive(&mut pipeline, &trace, &options, progress, cancel).await;
    pipeline.shutdown(Duration::from_secs(5)).await;
    result
}

/// What the senders saw.
#[derive(Default)]
struct SendCounts {
    published: AtomicU64,
    not_published: AtomicU64,
}

async fn drive(
    pipeline: &mut Pipeline,
    trace: &Trace,
    options: &BenchOptions,
    progress: ProgressBar,
    cancel: CancellationToken,
) -> Result<BenchReport, BenchError> {
    let n = usize::try_from(options.messages)
        .map_err(|_| BenchError::Invalid("--messages is too large".into()))?;
    pipeline.wait_listening(LISTENER_TIMEOUT).await?;
    // As `run` without a token: the simulated bot's own id, so the own-message rule is live.
    pipeline.filter().set_bot_user_id(synthetic::SIM_BOT);

    let workload = Arc::new(Workload::new(n));
    let (counts_tx, mut counts_rx) = watch::channel(Counts::default());
    let stop_collector = CancellationToken::new();
    let collector = tokio::spawn(collect(
        trace.subscribe(),
        workload.clone(),
        counts_tx,
        progress,
        stop_collector.clone(),
    ));

    let started = Utc::now();
    let counts = Arc::new(SendCounts::default());
    send_all(pipeline, &workload, options, &counts, &cancel).await;
    let published = usize::try_from(counts.published.load(Ordering::Relaxed)).unwrap_or(n);

    wait_for_arrivals(&mut counts_rx, published, options, &cancel).await;
    stop_collector.cancel();
    let seen = collector.await.unwrap_or_default();
    let (rows, outbox_rows, outbox_messages) = count_in_database(pipeline, &workload).await?;

    let rows = u64::try_from(rows).unwrap_or(0);
    let outbox_duplicates = u64::try_from(outbox_rows - outbox_messages).unwrap_or(0);
    let end = seen.last_ingested.unwrap_or_else(Utc::now);
    let seconds = millis(started, end).max(0.001) / 1e3;
    let stages = seen.stages();
    let total = stages.get("total").cloned().unwrap_or_default();
    Ok(BenchReport {
        messages: options.messages,
        seconds,
        per_s: rows as f64 / seconds,
        p50_ms: total.p50_ms,
        p95_ms: total.p95_ms,
        p99_ms: total.p99_ms,
        max_ms: total.max_ms,
        rows,
        lost: options.messages.saturating_sub(rows),
        duplicates: seen.duplicate_deliveries.max(outbox_duplicates),
        publish_failed: counts.not_published.load(Ordering::Relaxed),
        backpressure: seen.backpressure,
        trace_missed: seen.missed,
        rate: options.rate,
        publishers: options.publishers,
        workers: options.workers,
        notify: options.notify.as_str(),
        schema: String::new(),
        stages,
    })
}

/// Waits for the rows, and with a NOTIFY per event for every notification too (a row can be
/// ingested before its own NOTIFY arrives, woken by an earlier one; leaving the late ones
/// out would flatter the notify percentiles). Gives up after `stall_timeout` without
/// progress.
async fn wait_for_arrivals(
    counts: &mut watch::Receiver<Counts>,
    published: usize,
    options: &BenchOptions,
    cancel: &CancellationToken,
) {
    let complete = |c: &Counts| {
        c.ingested >= published
            && (options.notify == NotifyMode::PerBatch || c.notified >= published)
    };
    loop {
        if complete(&counts.borrow_and_update()) || cancel.is_cancelled() {
            return;
        }
        tokio::select! {
            changed = tokio::time::timeout(options.stall_timeout, counts.changed()) => {
                match changed {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return,
                }
            }
            () = cancel.cancelled() => return,
        }
    }
}

/// The workload's rows in `discord_messages`, its outbox rows, and the distinct messages among
/// those: the database's own count of what arrived.
async fn count_in_database(
    pipeline: &Pipeline,
    workload: &Workload,
) -> Result<(i64, i64, i64), StoreError> {
    let client = pipeline.pool().get().await?;
    let ids: Vec<i64> = workload
        .messages
        .iter()
        .map(|m| m.message.message_id.as_i64())
        .collect();
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM discord_messages WHERE message_id = ANY($1)",
            &[&ids],
        )
        .await?
        .get(0);
    let outbox = client
        .query_one(
            "SELECT count(*), count(DISTINCT message_id) FROM event_outbox \
             WHERE message_id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok((rows, outbox.get(0), outbox.get(1)))
}

/// Puts every message through the bot path: `publishers` senders at once, either as fast as
/// the pipeline takes them or paced at `rate`.
async fn send_all(
    pipeline: &Pipeline,
    workload: &Arc<Workload>,
    options: &BenchOptions,
    counts: &Arc<SendCounts>,
    cancel: &CancellationToken,
) {
    let bot_path = pipeline.bot_path().clone();
    let n = workload.messages.len();
    let publishers = options.publishers.max(1);
    match options.rate {
        None => {
            let next = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..publishers.min(n))
                .map(|_| {
                    let (bot_path, workload, counts, next, cancel) = (
                        bot_path.clone(),
                        workload.clone(),
                        counts.clone(),
                        next.clone(),
                        cancel.clone(),
                    );
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= n || cancel.is_cancelled() {
                                break;
                            }
                            send_one(&bot_path, &workload.messages[i], &counts).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        }
        Some(rate) => {
            // Open loop: message i is due at start + i / rate, whether or not earlier ones
            // are done, up to `publishers` in flight.
            let in_flight = Arc::new(Semaphore::new(publishers));
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::with_capacity(n);
            for i in 0..n {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = cancel.cancelled() => break,
                }
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let (bot_path, workload, counts) =
                    (bot_path.clone(), workload.clone(), counts.clone());
                tasks.push(tokio::spawn(async move {
                    send_one(&bot_path, &workload.messages[i], &counts).await;
                    drop(permit);
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        }
    }
}

async fn send_one(
    bot_path: &notifyscope_pipeline::bot_path::BotPath,
    template: &IncomingMessage,
    counts: &SendCounts,
) {
    let mut msg = template.clone();
    msg.message.created_at = Utc::now();
    match bot_path.handle(msg).await {
        Ok(Handled::Published(_)) => counts.published.fetch_add(1, Ordering::Relaxed),
        Ok(Handled::Skipped(_) | Handled::Observed) | Err(_) => {
            counts.not_published.fetch_add(1, Ordering::Relaxed)
        }
    };
}
