//! The bench's messages, and what the trace shows of them: when each reached each stage,
//! and how many were seen twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::report::Percentiles;
use notifyscope_model::contract::Snowflake;
use notifyscope_model::trace::{TraceKind, TraceReceiver};
use notifyscope_pipeline::filter::IncomingMessage;
use notifyscope_pipeline::synthetic;

/// The messages of one run, and which index each id has.
pub(super) struct Workload {
    pub(super) messages: Vec<IncomingMessage>,
    pub(super) index: HashMap<Snowflake, usize>,
}

impl Workload {
    pub(super) fn new(n: usize) -> Self {
        let messages: Vec<IncomingMessage> = (0..n)
            .map(|i| synthetic::message(format!("bench message {} of {n}", i + 1)))
            .collect();
        let index = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.message.message_id, i))
            .collect();
        Workload { messages, index }
    }
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
pub(super) struct Seen {
    times: Vec<Times>,
    counts: Counts,
    pub(super) last_ingested: Option<DateTime<Utc>>,
    pub(super) duplicate_deliveries: u64,
    pub(super) backpressure: u64,
    pub(super) missed: u64,
}

impl Seen {
    pub(super) fn stages(&self) -> BTreeMap<&'static str, Percentiles> {
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

pub(super) fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3
}

/// Messages of the run seen ingested, and seen notified, so far.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    pub(super) ingested: usize,
    pub(super) notified: usize,
}

/// Reads the trace until stopped, keeping the stage times of the bench's messages; sends the
/// counts so far on `counts`.
pub(super) async fn collect(
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
fn note(
    seen: &mut Seen,
    workload: &Workload,
    event: &notifyscope_model::trace::TraceEvent,
) -> bool {
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
