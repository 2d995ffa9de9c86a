//! The soak run (`bench --duration D --rate R`): messages at a steady pace for a long time,
//! reported window by window — throughput, latency, the process's memory and CPU, the
//! outbox's size — and judged for drift: a process that leaks or a pipeline that slows down
//! as its tables grow fails, however good its first minute was.
//!
//! Unlike the throughput run it keeps nothing per message once the message is done, so its
//! own memory stays flat and what the RSS shows is the pipeline's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::commands::bench::report::Percentiles;
use crate::commands::bench::seen::millis;
use crate::pipeline::bot_path::{BotPath, Handled};
use crate::pipeline::retention::Retention;
use crate::pipeline::synthetic;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::store::{Database, StoreError};
use crate::trace::{IngestOutcome, Trace, TraceKind, TraceReceiver};

/// RSS may grow by this much from the end of the first window to the end of the run…
pub const RSS_GROWTH_MAX_MIB: f64 = 16.0;
/// …plus this share of what it was then.
pub const RSS_GROWTH_MAX_SHARE: f64 = 0.25;
/// The median p99 of the second half of the windows may be at most this many times that of
/// the first half…
pub const P99_DRIFT_MAX_RATIO: f64 = 2.0;
/// …plus this many milliseconds (a p99 of 2 ms that becomes 6 ms is noise, not drift).
pub const P99_DRIFT_SLACK_MS: f64 = 5.0;

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

/// One window of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SoakWindow {
    /// Seconds from the start to the end of the window.
    pub end_s: f64,
    /// Messages sent and ingested in the window.
    pub sent: u64,
    pub ingested: u64,
    /// Ingested a second.
    pub per_s: f64,
    /// Bot path → row commit, of the messages ingested in the window.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The process's resident memory at the end of the window.
    pub rss_mib: Option<f64>,
    /// The process's CPU (user + system) over the window, in % of one core.
    pub cpu_percent: Option<f64>,
    /// Rows in `event_outbox` and its size on disk with indexes.
    pub outbox_rows: Option<i64>,
    pub outbox_mib: Option<f64>,
}

/// The verdict on drift, with the figures it was judged from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Drift {
    pub rss_first_mib: Option<f64>,
    pub rss_last_mib: Option<f64>,
    pub rss_allowed_mib: Option<f64>,
    pub p99_first_half_ms: f64,
    pub p99_second_half_ms: f64,
    pub p99_allowed_ms: f64,
    /// Why the run failed, in words; empty when it passed.
    pub failures: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub mode: &'static str,
    pub rate: f64,
    pub seconds: f64,
    pub window_s: f64,
    pub sent: u64,
    pub rows: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub publish_failed: u64,
    pub trace_missed: u64,
    pub outbox_retention: String,
    pub total: Percentiles,
    pub windows: Vec<SoakWindow>,
    pub drift: Drift,
    pub schema: String,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.drift.failures.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "soak: {:.0} s at {} msg/s, outbox retention {}\n\n{}",
            self.seconds,
            self.rate,
            self.outbox_retention,
            window_header()
        );
        for w in &self.windows {
            out.push_str(&window_line(w));
        }
        out.push('\n');
        out.push_str(&self.summary_text());
        out
    }

    /// What follows the windows: counts, latency of the run, and the drift verdict.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "sent {}   rows {}   lost {}   duplicates {}   not published {}\n\
             total latency p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms\n",
            self.sent,
            self.rows,
            self.lost,
            self.duplicates,
            self.publish_failed,
            self.total.p50_ms,
            self.total.p99_ms,
            self.total.max_ms
        ));
        let d = &self.drift;
        out.push_str(&format!(
            "drift: RSS {} → {} MiB (allowed {}), p99 median {:.2} → {:.2} ms (allowed {:.2})\n",
            opt(d.rss_first_mib),
            opt(d.rss_last_mib),
            opt(d.rss_allowed_mib),
            d.p99_first_half_ms,
            d.p99_second_half_ms,
            d.p99_allowed_ms
        ));
        if d.failures.is_empty() {
            out.push_str("no drift\n");
        }
        for f in &d.failures {
            out.push_str(&format!("FAILED: {f}\n"));
        }
        if self.trace_missed > 0 {
            out.push_str(&format!(
                "the trace reader missed {} events; latencies cover fewer messages\n",
                self.trace_missed
            ));
        }
        out
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "?".into())
}

pub fn window_header() -> String {
    format!(
        "{:>7}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>8}{:>10}{:>11}\n",
        "end s",
        "sent",
        "ingested",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "CPU %",
        "outbox",
        "outbox MiB"
    )
}

pub fn window_line(w: &SoakWindow) -> String {
    format!(
        "{:>7.0}{:>9}{:>9}{:>9.0}{:>9.2}{:>9.2}{:>9}{:>8}{:>10}{:>11}\n",
        w.end_s,
        w.sent,
        w.ingested,
        w.per_s,
        w.p50_ms,
        w.p99_ms,
        opt(w.rss_mib),
        opt(w.cpu_percent),
        w.outbox_rows
            .map(|r| r.to_string())
            .unwrap_or_else(|| "?".into()),
        opt(w.outbox_mib)
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// Judges the windows: RSS from the end of the first window to the end of the last, and
/// the median p99 of the first half of the windows against the second half's. A single
/// window cannot drift.
pub fn judge_drift(windows: &[SoakWindow]) -> Drift {
    let mut failures = Vec::new();
    let rss_first = windows.first().and_then(|w| w.rss_mib);
    let rss_last = windows.last().and_then(|w| w.rss_mib);
    let rss_allowed = rss_first.map(|f| f * (1.0 + RSS_GROWTH_MAX_SHARE) + RSS_GROWTH_MAX_MIB);
    if let (Some(last), Some(allowed), true) = (rss_last, rss_allowed, windows.len() > 1) {
        if last > allowed {
            failures.push(format!(
                "RSS grew to {last:.1} MiB, over the {allowed:.1} MiB allowed (the first \
                 window's {:.1} MiB + {:.0} % + {RSS_GROWTH_MAX_MIB:.0} MiB)",
                rss_first.unwrap_or_default(),
                RSS_GROWTH_MAX_SHARE * 100.0
            ));
        }
    }
    let measured: Vec<&SoakWindow> = windows.iter().filter(|w| w.ingested > 0).collect();
    let half = measured.len() / 2;
    let first_half = median(measured[..half].iter().map(|w| w.p99_ms).collect());
    let second_half = median(measured[half..].iter().map(|w| w.p99_ms).collect());
    let p99_allowed = first_half * P99_DRIFT_MAX_RATIO + P99_DRIFT_SLACK_MS;
    if half > 0 && second_half > p99_allowed {
        failures.push(format!(
            "p99 drifted: median {second_half:.2} ms in the second half against \
             {first_half:.2} ms in the first (allowed {p99_allowed:.2} ms)"
        ));
    }
    Drift {
        rss_first_mib: rss_first,
        rss_last_mib: rss_last,
        rss_allowed_mib: rss_allowed,
        p99_first_half_ms: first_half,
        p99_second_half_ms: second_half,
        p99_allowed_ms: p99_allowed,
        failures,
    }
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
    open: HashMap<crate::contract::Snowflake, DateTime<Utc>>,
    window_ms: Vec<f64>,
    window_ingested: u64,
    all: LatencyHistogram,
    ingested: u64,
    duplicates: u64,
    missed: u64,
}

impl Tally {
    fn note(&mut self, event: &crate::trace::TraceEvent) {
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
    channel: crate::store::Identifier,
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
        use crate::contract::Snowflake;
        use crate::trace::TraceEvent;
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
                synthetic: true,
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
