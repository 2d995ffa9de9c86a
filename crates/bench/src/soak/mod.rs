//! The soak run (`bench --duration D --rate R`): messages at a steady pace for a long time,
//! reported window by window — throughput, latency, the process's memory and CPU, the
//! outbox's size — and judged for drift: a process that leaks or a pipeline that slows down
//! as its tables grow fails, however good its first minute was.
//!
//! Unlike the throughput run it keeps nothing per message once the message is done, so its
//! own memory stays flat and what the RSS shows is the pipeline's. [`verdict`] holds the
//! report, its lines and the drift judgement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod verdict;

pub use verdict::{
    judge_drift, window_header, window_line, Drift, SoakReport, SoakWindow, P99_DRIFT_MAX_RATIO,
    P99_DRIFT_SLACK_MS, RSS_GROWTH_MAX_MIB, RSS_GROWTH_MAX_SHARE,
};

use crate::report::Percentiles;
use crate::seen::millis;
use notifyscope_model::trace::{IngestOutcome, Trace, TraceKind, TraceReceiver};
use notifyscope_pipeline::bot_path::{BotPath, Handled};
use notifyscope_pipeline::retention::Retention;
use notifyscope_pipeline::synthetic;
use notifyscope_pipeline::{Pipeline, PipelineConfig};
use notifyscope_store::{Database, StoreError};

/// What one soak run does.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub duration: Duration,
    pub rate: f64,
    pub window: Duration,
    pub publishers: usize,
    pub workers: usize,
    pub outbox_retention: Retention,
    pub stall_timeout: Duration,
}

/// The process's resident memory, from `/proc/self/status` (Linux).
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// CPU time the process has used so far (user + system).
fn cpu_time() -> Option<Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let to = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Some(to(usage.user_time()) + to(usage.system_time()))
}

async fn outbox_size(pipeline: &Pipeline) -> (Option<i64>, Option<f64>) {
    let Ok(client) = pipeline.pool().get().await else {
        return (None, None);
    };
    match client
        .query_one(
            "SELECT count(*), pg_total_relation_size('event_outbox')::float8 FROM event_outbox",
            &[],
        )
        .await
    {
        Ok(row) => (
            Some(row.get(0)),
            Some(row.get::<_, f64>(1) / (1024.0 * 1024.0)),
        ),
        Err(_) => (None, None),
    }
}

/// Latencies of the whole run in constant memory: buckets 1 % wide from 10 µs up, so a
/// percentile read from it is within 1 % of the exact one.
struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    max_ms: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; Self::BUCKETS],
            count: 0,
            max_ms: 0.0,
        }
    }
}

impl LatencyHistogram {
    const LOWEST_MS: f64 = 0.01;
    const GROWTH: f64 = 1.01;
    /// Up to 0.01 ms × 1.01^1900, over an hour.
    const BUCKETS: usize = 1900;

    fn record(&mut self, ms: f64) {
        let ms = ms.max(0.0);
        let i = if ms <= Self::LOWEST_MS {
            0
        } else {
            ((ms / Self::LOWEST_MS).ln() / Self::GROWTH.ln()).ceil() as usize
        };
        self.counts[i.min(Self::BUCKETS - 1)] += 1;
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
    }

    /// The upper bound of the bucket holding the nearest-rank percentile `p`.
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (Self::LOWEST_MS * Self::GROWTH.powi(i as i32)).min(self.max_ms);
            }
        }
        self.max_ms
    }

    fn percentiles(&self) -> Percentiles {
        if self.count == 0 {
            return Percentiles::default();
        }
        Percentiles {
            count: usize::try_from(self.count).unwrap_or(usize::MAX),
            p50_ms: self.percentile(50.0),
            p95_ms: self.percentile(95.0),
            p99_ms: self.percentile(99.0),
            max_ms: self.max_ms,
        }
    }
}

/// What the trace showed in the current window, and in all.
#[derive(Default)]
struct Tally {
    /// Messages received and not yet ingested: when the bot path took each.
    open: HashMap<notifyscope_model::contract::Snowflake, DateTime<Utc>>,
    window_ms: Vec<f64>,
    window_ingested: u64,
    all: LatencyHistogram,
    ingested: u64,
    duplicates: u64,
    missed: u64,
}

impl Tally {
    fn note(&mut self, event: &notifyscope_model::trace::TraceEvent) {
        match (&event.kind, event.message_id) {
            (TraceKind::Received { .. }, Some(id)) => {
                self.open.insert(id, event.at);
            }
            // A second delivery of a message finds its row there: `duplicate`, whatever this
            // reader saw before (it may have missed the message's `received` when it lagged).
            (TraceKind::Ingested { outcome, .. }, Some(id)) => {
                let received = self.open.remove(&id);
                if *outcome == IngestOutcome::Duplicate {
                    self.duplicates += 1;
                    return;
                }
                self.window_ingested += 1;
                self.ingested += 1;
                if let Some(received) = received {
                    self.window_ms.push(millis(received, event.at));
                }
            }
            (TraceKind::Skipped { .. }, Some(id)) => {
                self.open.remove(&id);
            }
            (TraceKind::Lagged { missed }, _) => self.missed += missed,
            _ => {}
        }
    }
}

/// Runs the soak in `database`'s schema (made fresh by the caller, who drops it).
/// `on_window` sees each window as it ends.
pub async fn run_in_schema(
    database: Database,
    channel: notifyscope_store::Identifier,
    options: SoakOptions,
    cancel: CancellationToken,
    on_window: impl Fn(&SoakWindow),
) -> Result<SoakReport, super::BenchError> {
    let trace = Trace::new();
    let events = trace.subscribe();
    let mut config = PipelineConfig::new(database, channel);
    config.workers = options.workers.max(1);
    config.control = false;
    config.retention.outbox = options.outbox_retention;
    let mut pipeline = Pipeline::start(config, trace.clone()).await?;
    let result = drive(&mut pipeline, events, &options, cancel, on_window).await;
    pipeline.shutdown(Duration::from_secs(5)).await;
    result
}

async fn drive(
    pipeline: &mut Pipeline,
    mut events: TraceReceiver,
    options: &SoakOptions,
    cancel: CancellationToken,
    on_window: impl Fn(&SoakWindow),
) -> Result<SoakReport, super::BenchError> {
    pipeline
        .wait_listening(Duration::from_secs(60))
        .await
        .map_err(super::BenchError::from)?;
    pipeline.filter().set_bot_user_id(synthetic::SIM_BOT);
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop_sending = CancellationToken::new();
    let sender = tokio::spawn(send_paced(
        pipeline.bot_path().clone(),
        options.clone(),
        sent.clone(),
        failed.clone(),
        stop_sending.clone(),
    ));

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut windows = Vec::new();
    let mut window_start = Instant::now();
    let mut cpu_at_start = cpu_time();
    let mut sent_before = 0;
    let end = tokio::time::Instant::now() + options.duration;
    // Windows of `window`; the last one ends with the duration, shorter if it must be.
    let mut window_end = (tokio::time::Instant::now() + options.window).min(end);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => tally.note(&event),
                None => break,
            },
            () = tokio::time::sleep_until(window_end) => {
                let window = close_window(pipeline, &mut tally, started, window_start, cpu_at_start, &sent, sent_before).await;
                on_window(&window);
                sent_before = sent.load(Ordering::Relaxed);
                windows.push(window);
                window_start = Instant::now();
                cpu_at_start = cpu_time();
                if window_end >= end {
                    break;
                }
                window_end = (window_end + options.window).min(end);
            }
            () = cancel.cancelled() => break,
        }
    }
    stop_sending.cancel();
    let _ = sender.await;
    let total_sent = sent.load(Ordering::Relaxed);

    // The backlog of the last moments: ingested, but outside the windows.
    let mut last_progress = Instant::now();
    while tally.ingested + tally.duplicates < total_sent
        && last_progress.elapsed() < options.stall_timeout
        && !cancel.is_cancelled()
    {
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(200), events.recv()).await
        {
            tally.note(&event);
            last_progress = Instant::now();
        }
    }
    let rows: i64 = pipeline
        .pool()
        .get()
        .await
        .map_err(StoreError::from)?
        .query_one("SELECT count(*) FROM discord_messages", &[])
        .await
        .map_err(StoreError::from)?
        .get(0);
    let rows = u64::try_from(rows).unwrap_or(0);
    let drift = judge_drift(&windows);
    Ok(SoakReport {
        mode: "soak",
        rate: options.rate,
        seconds: started.elapsed().as_secs_f64(),
        window_s: options.window.as_secs_f64(),
        sent: total_sent,
        rows,
        lost: total_sent.saturating_sub(rows),
        duplicates: tally.duplicates,
        publish_failed: failed.load(Ordering::Relaxed),
        trace_missed: tally.missed,
        outbox_retention: options.outbox_retention.to_string(),
        total: tally.all.percentiles(),
        windows,
        drift,
        schema: String::new(),
    })
}

async fn close_window(
    pipeline: &Pipeline,
    tally: &mut Tally,
    started: Instant,
    window_start: Instant,
    cpu_at_start: Option<Duration>,
    sent: &AtomicU64,
    sent_before: u64,
) -> SoakWindow {
    let elapsed = window_start.elapsed().as_secs_f64().max(0.001);
    let latencies = std::mem::take(&mut tally.window_ms);
    for ms in &latencies {
        tally.all.record(*ms);
    }
    let p = Percentiles::of(latencies);
    let ingested = std::mem::take(&mut tally.window_ingested);
    let cpu_percent = match (cpu_at_start, cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / elapsed * 100.0),
        _ => None,
    };
    let (outbox_rows, outbox_mib) = outbox_size(pipeline).await;
    let now_sent = sent.load(Ordering::Relaxed);
    SoakWindow {
        end_s: started.elapsed().as_secs_f64(),
        sent: now_sent - sent_before,
        ingested,
        per_s: ingested as f64 / elapsed,
        p50_ms: p.p50_ms,
        p99_ms: p.p99_ms,
        max_ms: p.max_ms,
        rss_mib: rss_mib(),
        cpu_percent,
        outbox_rows,
        outbox_mib,
    }
}

/// Open loop at `rate` until stopped: message i is due at start + i / rate, up to
/// `publishers` in flight; nothing is kept per message.
async fn send_paced(
    bot_path: Arc<BotPath>,
    options: SoakOptions,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let publishers = options.publishers.max(1);
    let in_flight = Arc::new(Semaphore::new(publishers));
    let start = tokio::time::Instant::now();
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / options.rate);
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = stop.cancelled() => break,
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (bot_path, sent, failed) = (bot_path.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let msg = synthetic::message(format!("soak message {}", i + 1));
            match bot_path.handle(msg).await {
                Ok(Handled::Published(_)) => sent.fetch_add(1, Ordering::Relaxed),
                Ok(Handled::Skipped(_) | Handled::Observed) | Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
            drop(permit);
        });
    }
    // Every sender done before the count is read.
    let _ = in_flight
        .acquire_many(u32::try_from(publishers).unwrap_or(u32::MAX))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ingested: u64, p99_ms: f64, rss_mib: f64) -> SoakWindow {
        SoakWindow {
            end_s: 0.0,
            sent: ingested,
            ingested,
            per_s: ingested as f64,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms,
            rss_mib: Some(rss_mib),
            cpu_percent: Some(10.0),
            outbox_rows: Some(0),
            outbox_mib: Some(1.0),
        }
    }

    #[test]
    fn a_flat_run_passes() {
        let windows: Vec<_> = (0..10)
            .map(|i| window(1000, 3.0 + f64::from(i % 2), 20.0))
            .collect();
        let drift = judge_drift(&windows);
        assert!(drift.failures.is_empty(), "{drift:?}");
        assert_eq!(drift.p99_first_half_ms, 3.0);
    }

    #[test]
    fn growing_memory_fails() {
        let windows: Vec<_> = (0..10)
            .map(|i| window(1000, 3.0, 20.0 + 5.0 * f64::from(i)))
            .collect();
        let drift = judge_drift(&windows);
        assert_eq!(drift.failures.len(), 1, "{drift:?}");
        assert!(
            drift.failures[0].contains("RSS grew to 65.0 MiB"),
            "{drift:?}"
        );
    }

    #[test]
    fn a_p99_that_climbs_fails_but_one_spike_does_not() {
        let climbing: Vec<_> = (0..10)
            .map(|i| window(1000, 3.0 * f64::from(i + 1), 20.0))
            .collect();
        let drift = judge_drift(&climbing);
        assert!(
            drift.failures.iter().any(|f| f.contains("p99 drifted")),
            "{drift:?}"
        );
        let mut spike: Vec<_> = (0..10).map(|_| window(1000, 3.0, 20.0)).collect();
        spike[8].p99_ms = 400.0;
        assert!(judge_drift(&spike).failures.is_empty());
    }

    #[test]
    fn the_run_histogram_is_within_a_percent() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=1000 {
            h.record(f64::from(ms) / 10.0);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 50.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99_ms - 99.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p.max_ms, 100.0);
        h.record(1e9);
        assert_eq!(
            h.percentiles().max_ms,
            1e9,
            "beyond the last bucket still counts"
        );
    }

    #[test]
    fn tally_times_messages_and_counts_second_deliveries() {
        use notifyscope_model::contract::Snowflake;
        use notifyscope_model::trace::TraceEvent;
        let t0 = Utc::now();
        let ev = |ms: i64, kind: TraceKind| TraceEvent {
            at: t0 + chrono::TimeDelta::milliseconds(ms),
            message_id: Some(Snowflake(5)),
            kind,
        };
        let ingested = TraceKind::Ingested {
            outbox_id: 1,
            outcome: IngestOutcome::Inserted,
            latency_ms: 1.0,
        };
        let again = TraceKind::Ingested {
            outbox_id: 1,
            outcome: IngestOutcome::Duplicate,
            latency_ms: 1.0,
        };
        let mut tally = Tally::default();
        tally.note(&ev(
            0,
            TraceKind::Received {
                channel_id: Snowflake(1),
                guild_id: None,
                author_id: Snowflake(2),
                author_name: "a".into(),
                content_bytes: 1,
                source: notifyscope_model::trace::Source::Simulated,
            },
        ));
        tally.note(&ev(7, ingested.clone()));
        tally.note(&ev(9, again));
        // Ingested without a `received` this reader saw: counted, not timed, no duplicate.
        tally.note(&TraceEvent {
            message_id: Some(Snowflake(6)),
            ..ev(10, ingested)
        });
        assert_eq!(tally.window_ms, vec![7.0]);
        assert_eq!((tally.ingested, tally.duplicates), (2, 1));
        assert!(tally.open.is_empty(), "nothing kept once done");
    }
}
