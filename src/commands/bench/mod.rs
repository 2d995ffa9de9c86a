//! `notifyscope bench`: synthetic Discord messages through the real path (bot path → filter
//! → publisher → outbox + NOTIFY → listener → ingestion → row), in a schema of its own that
//! is dropped afterwards, with throughput, latencies per stage, and a count of what was lost
//! or delivered twice.
//!
//! Latencies come from the trace stream, the same events every other consumer reads: a
//! message's `received` (the bot path took it), `published` (its outbox commit), `notified`
//! and its first `ingested` (the ingestion commit). Rows, losses and duplicates come from the
//! database, which is the truth.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::cli::{BenchArgs, SharedArgs};
use crate::contract::Snowflake;
use crate::pipeline::bot_path::Handled;
use crate::pipeline::filter::IncomingMessage;
use crate::pipeline::publish::NotifyMode;
use crate::pipeline::synthetic;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::store::embedded::EmbeddedPostgres;
use crate::store::{error_chain, Database, Identifier, StoreError, APP_NAME};
use crate::trace::{Trace, TraceKind, TraceReceiver};

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
    #[error("the listener did not come up: {0}")]
    Listener(String),
    #[error("invalid option: {0}")]
    Invalid(String),
    #[error("could not drop the bench schema {schema}: {error}")]
    Cleanup { schema: String, error: String },
}

/// Latency percentiles of one stage, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Messages measured.
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (milliseconds).
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let n = samples.len();
            let i = ((p / 100.0) * n as f64).ceil() as usize;
            samples[i.clamp(1, n) - 1]
        };
        Percentiles {
            count: samples.len(),
            p50_ms: rank(50.0),
            p95_ms: rank(95.0),
            p99_ms: rank(99.0),
            max_ms: samples[samples.len() - 1],
        }
    }
}

/// The keys `--json` always prints, as the performance issue names them.
pub const JSON_KEYS: [&str; 9] = [
    "messages",
    "seconds",
    "per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "lost",
    "duplicates",
];

/// The results. The headline latencies (`p50_ms` … `max_ms`) run from the moment the bot
/// path took the message to the commit of its row in `discord_messages`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub messages: u64,
    /// From the first message sent to the last one ingested.
    pub seconds: f64,
    /// Messages ingested a second.
    pub per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Rows of the sent messages in `discord_messages`.
    pub rows: u64,
    /// Messages sent but without a row.
    pub lost: u64,
    /// Deliveries beyond the first: extra `ingested` events for a message, or extra outbox
    /// rows for one message id.
    pub duplicates: u64,
    /// Messages the bot path did not publish (refused, skipped or failed).
    pub publish_failed: u64,
    /// Times a sender found the publish queue full and waited.
    pub backpressure: u64,
    /// Trace events the bench's own reader missed; latencies then cover fewer messages.
    pub trace_missed: u64,
    pub rate: Option<f64>,
    pub publishers: usize,
    pub workers: usize,
    pub notify: &'static str,
    /// The schema (and channel) the run used; dropped when it ended.
    pub schema: String,
    /// `publish`: bot path → outbox commit; `notify`: outbox commit → NOTIFY received;
    /// `ingest`: outbox commit → ingestion commit; `total`: bot path → ingestion commit.
    pub stages: BTreeMap<&'static str, Percentiles>,
}

impl BenchReport {
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mode = match self.rate {
            Some(rate) => format!("paced at {rate} msg/s"),
            None => "as fast as the pipeline takes them".to_owned(),
        };
        let mut out = format!(
            "{} messages, {mode}; {} senders, {} ingestion workers, NOTIFY {}\n\
             \n\
             rows {}   lost {}   duplicates {}   not published {}   backpressure waits {}\n\
             {:.2} s   {:.0} msg/s\n\
             \n\
             {:<40}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
            self.messages,
            self.publishers,
            self.workers,
            self.notify,
            self.rows,
            self.lost,
            self.duplicates,
            self.publish_failed,
            self.backpressure,
            self.seconds,
            self.per_s,
            "latency (ms)",
            "n",
            "p50",
            "p95",
            "p99",
            "max",
        );
        for (key, label) in [
            ("publish", "publish (bot path → outbox commit)"),
            ("notify", "notify (outbox commit → NOTIFY)"),
            ("ingest", "ingest (outbox commit → row commit)"),
            ("total", "total (bot path → row commit)"),
        ] {
            if let Some(p) = self.stages.get(key) {
                out.push_str(&format!(
                    "{label:<40}{:>9}{:>9.2}{:>9.2}{:>9.2}{:>9.2}\n",
                    p.count, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms
                ));
            }
        }
        if self.trace_missed > 0 {
            out.push_str(&format!(
                "\nthe bench's trace reader fell behind and missed {} events; latencies cover \
                 fewer messages (rows, losses and duplicates come from the database)\n",
                self.trace_missed
            ));
        }
        out
    }
}

/// `notifyscope bench`: against --database-url, or a private embedded cluster without one.
pub async fn command(shared: SharedArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        messages: args.messages,
        rate: args.rate,
        publishers: usize::try_from(args.publishers).unwrap_or(1),
        workers: usize::from(args.workers),
        notify: args.notify.into(),
        stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
    };
    let (embedded, url) = match shared.database_url {
        Some(url) => (None, url),
        None => {
            let pg = EmbeddedPostgres::start(None)
                .await
                .context("starting the embedded PostgreSQL")?;
            let url = pg.url().to_owned();
            (Some(pg), url)
        }
    };
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        progress_bar(args.messages)
    };
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let signal_task = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: stopping the bench and dropping its schema");
            on_signal.cancel();
        }
    });
    let result = run(&url, options, progress.clone(), cancel).await;
    signal_task.abort();
    progress.finish_and_clear();
    if let Some(pg) = embedded {
        pg.stop().await;
    }
    let report = result?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn progress_bar(messages: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(messages), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} ingested ({rate} msg/s)",
    ) {
        bar.set_style(
            style
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}", state.per_sec());
                    },
                )
                .progress_chars("=> "),
        );
    }
    bar
}

/// Runs the bench in a fresh schema on the server at `url` and drops the schema afterwards,
/// whatever happened. `cancel` stops sending early (the report then counts what was not
/// sent as lost).
pub async fn run(
    url: &str,
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
    let name = format!("notifyscope_bench_{:016x}", rand::random::<u64>());
    let schema = Identifier::schema(&name).map_err(StoreError::from)?;
    // The schema's name is the channel too: NOTIFY is database-wide, and nobody else listens
    // on this one.
    let channel = Identifier::channel(&name).map_err(StoreError::from)?;
    let database = Database::new(url, schema)?;
    let result = run_in_schema(database.clone(), channel, options, progress, cancel).await;
    let cleanup = drop_schema(&database).await;
    let mut report = result?;
    cleanup?;
    report.schema = name;
    Ok(report)
}

async fn drop_schema(database: &Database) -> Result<(), BenchError> {
    let schema = database.schema().clone();
    let failed = |e: StoreError| BenchError::Cleanup {
        schema: schema.to_string(),
        error: error_chain(&e),
    };
    let client = database.connect_plain(APP_NAME).await.map_err(failed)?;
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

/// The messages of one run, and which index each id has.
struct Workload {
    messages: Vec<IncomingMessage>,
    index: HashMap<Snowflake, usize>,
}

impl Workload {
    fn new(n: usize) -> Self {
        let messages: Vec<IncomingMessage> = (0..n)
            .map(|i| synthetic::message(format!("bench message {} of {n}", i + 1)))
            .collect();
        let index = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.message_id, i))
            .collect();
        Workload { messages, index }
    }
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
    pipeline
        .wait_listening(LISTENER_TIMEOUT)
        .await
        .map_err(BenchError::Listener)?;
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

    // Wait for the rows, and with a NOTIFY per event for every notification too (a row can
    // be ingested before its own NOTIFY arrives, woken by an earlier one; leaving the late
    // ones out would flatter the notify percentiles). Give up after `stall_timeout` without
    // progress.
    let complete = |c: &Counts| {
        c.ingested >= published
            && (options.notify == NotifyMode::PerBatch || c.notified >= published)
    };
    loop {
        if complete(&counts_rx.borrow_and_update()) || cancel.is_cancelled() {
            break;
        }
        tokio::select! {
            changed = tokio::time::timeout(options.stall_timeout, counts_rx.changed()) => {
                match changed {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => break,
                }
            }
            () = cancel.cancelled() => break,
        }
    }
    stop_collector.cancel();
    let seen = collector.await.unwrap_or_default();

    let client = pipeline.pool().get().await.map_err(StoreError::from)?;
    let ids: Vec<i64> = workload
        .messages
        .iter()
        .map(|m| m.message_id.as_i64())
        .collect();
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM discord_messages WHERE message_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(StoreError::from)?
        .get(0);
    let outbox = client
        .query_one(
            "SELECT count(*), count(DISTINCT message_id) FROM event_outbox \
             WHERE message_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(StoreError::from)?;
    let (outbox_rows, outbox_messages): (i64, i64) = (outbox.get(0), outbox.get(1));
    drop(client);

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
    bot_path: &crate::pipeline::bot_path::BotPath,
    template: &IncomingMessage,
    counts: &SendCounts,
) {
    let mut msg = template.clone();
    msg.created_at = Utc::now();
    match bot_path.handle(msg).await {
        Ok(Handled::Published(_)) => counts.published.fetch_add(1, Ordering::Relaxed),
        Ok(Handled::Skipped(_)) | Err(_) => counts.not_published.fetch_add(1, Ordering::Relaxed),
    };
}

/// Times of one message's stages, from the trace.
#[derive(Debug, Clone, Default)]
struct Times {
    received: Option<DateTime<Utc>>,
    published: Option<DateTime<Utc>>,
    notified: Option<DateTime<Utc>>,
    ingested: Option<DateTime<Utc>>,
    deliveries: u32,
}

#[derive(Debug, Default)]
struct Seen {
    times: Vec<Times>,
    counts: Counts,
    last_ingested: Option<DateTime<Utc>>,
    duplicate_deliveries: u64,
    backpressure: u64,
    missed: u64,
}

impl Seen {
    fn stages(&self) -> BTreeMap<&'static str, Percentiles> {
        let span = |from: fn(&Times) -> Option<DateTime<Utc>>,
                    to: fn(&Times) -> Option<DateTime<Utc>>| {
            Percentiles::of(
                self.times
                    .iter()
                    .filter_map(|t| Some(millis(from(t)?, to(t)?)))
                    .collect(),
            )
        };
        let mut stages = BTreeMap::new();
        stages.insert("publish", span(|t| t.received, |t| t.published));
        stages.insert("notify", span(|t| t.published, |t| t.notified));
        stages.insert("ingest", span(|t| t.published, |t| t.ingested));
        stages.insert("total", span(|t| t.received, |t| t.ingested));
        stages
    }
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3
}

/// Messages of the run seen ingested, and seen notified, so far.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    ingested: usize,
    notified: usize,
}

/// Reads the trace until stopped, keeping the stage times of the bench's messages; sends the
/// counts so far on `counts`.
async fn collect(
    mut rx: TraceReceiver,
    workload: Arc<Workload>,
    counts: watch::Sender<Counts>,
    progress: ProgressBar,
    stop: CancellationToken,
) -> Seen {
    let mut seen = Seen {
        times: vec![Times::default(); workload.messages.len()],
        ..Seen::default()
    };
    let mut last_progress = Instant::now();
    loop {
        let event = tokio::select! {
            biased;
            event = rx.recv() => event,
            () = stop.cancelled() => {
                // Everything the pipeline emitted before the stop is already in the stream.
                while let Some(event) = rx.try_recv() {
                    note(&mut seen, &workload, &event);
                }
                break;
            }
        };
        let Some(event) = event else { break };
        if note(&mut seen, &workload, &event) {
            counts.send_replace(seen.counts);
            // Drawing is throttled by indicatif; updating its position is cheap anyway.
            if last_progress.elapsed() >= Duration::from_millis(50) {
                progress.set_position(seen.counts.ingested as u64);
                last_progress = Instant::now();
            }
        }
    }
    progress.set_position(seen.counts.ingested as u64);
    seen
}

/// Records one trace event; true when it was a message's first ingestion or notification.
fn note(seen: &mut Seen, workload: &Workload, event: &crate::trace::TraceEvent) -> bool {
    let slot = event
        .message_id
        .and_then(|id| workload.index.get(&id))
        .copied();
    match (&event.kind, slot) {
        (TraceKind::Received { .. }, Some(i)) => seen.times[i].received = Some(event.at),
        (TraceKind::Published { .. }, Some(i)) => seen.times[i].published = Some(event.at),
        (TraceKind::Notified { .. }, Some(i)) if seen.times[i].notified.is_none() => {
            seen.times[i].notified = Some(event.at);
            seen.counts.notified += 1;
            return true;
        }
        (TraceKind::Ingested { .. }, Some(i)) => {
            let t = &mut seen.times[i];
            t.deliveries += 1;
            if t.deliveries > 1 {
                seen.duplicate_deliveries += 1;
                return false;
            }
            t.ingested = Some(event.at);
            seen.last_ingested = Some(event.at);
            seen.counts.ingested += 1;
            return true;
        }
        (TraceKind::Backpressure { .. }, _) => seen.backpressure += 1,
        (TraceKind::Lagged { missed }, _) => seen.missed += missed,
        _ => {}
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(p.count, 100);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p95_ms, 95.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        let one = Percentiles::of(vec![3.5]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (3.5, 3.5, 3.5));
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }

    #[test]
    fn report_json_has_the_documented_keys() {
        let report = BenchReport {
            messages: 10,
            seconds: 1.0,
            per_s: 10.0,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: 3.0,
            max_ms: 4.0,
            rows: 10,
            lost: 0,
            duplicates: 0,
            publish_failed: 0,
            backpressure: 0,
            trace_missed: 0,
            rate: None,
            publishers: 1,
            workers: 1,
            notify: "per-event",
            schema: "notifyscope_bench_0".into(),
            stages: BTreeMap::new(),
        };
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
        for key in JSON_KEYS {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert!(report.passed());
    }
}
