//! How long messages take between the stages, read from the trace alone: a message's
//! `received`, `published`, `notified` and `ingested` events carry the same message id, so
//! the time between two of them is the time the message spent in between. Every consumer
//! that shows latency (the screen's status bar and stats, the metrics) times it here.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};

use crate::contract::Snowflake;
use crate::trace::{TraceEvent, TraceKind};

/// A stretch of the pipeline a message's latency is measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Bot path → outbox commit.
    Publish,
    /// Outbox commit → NOTIFY received.
    Notify,
    /// Outbox commit → row committed (by the database's clock for the start).
    Ingest,
    /// Bot path → row committed.
    Total,
    /// `watch`: NOTIFY → row seen in their table.
    Row,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Publish,
        Stage::Notify,
        Stage::Ingest,
        Stage::Total,
        Stage::Row,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Publish => "publish",
            Stage::Notify => "notify",
            Stage::Ingest => "ingest",
            Stage::Total => "total",
            Stage::Row => "row",
        }
    }

    /// What it runs from and to, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Publish => "bot path → outbox commit",
            Stage::Notify => "outbox commit → NOTIFY received",
            Stage::Ingest => "outbox commit → row commit",
            Stage::Total => "bot path → row commit",
            Stage::Row => "NOTIFY → row seen (watch)",
        }
    }
}

/// Messages timed at once; past this the oldest are forgotten, so a message that never
/// arrives cannot hold memory for ever.
pub const TIMED_MAX: usize = 100_000;

/// When each message in flight reached the stages a later stage is measured from.
#[derive(Debug, Default)]
pub struct StageClock {
    received: HashMap<Snowflake, DateTime<Utc>>,
    published: HashMap<Snowflake, DateTime<Utc>>,
    /// NOTIFYs heard before their message's `published` event: the listener can hear a
    /// commit's NOTIFY before the publisher has said it committed.
    notified_early: HashMap<Snowflake, DateTime<Utc>>,
    order: VecDeque<Snowflake>,
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6
}

impl StageClock {
    /// Notes `event`; the stages it ends, with the seconds each took.
    pub fn observe(&mut self, event: &TraceEvent) -> Vec<(Stage, f64)> {
        let mut ended = Vec::new();
        let id = event.message_id;
        match &event.kind {
            TraceKind::Received { .. } => {
                if let Some(id) = id {
                    self.remember(id);
                    self.received.insert(id, event.at);
                }
            }
            TraceKind::Skipped { .. } => {
                if let Some(id) = id {
                    self.forget(id);
                }
            }
            TraceKind::Published { .. } => {
                if let Some(id) = id {
                    if let Some(at) = self.received.get(&id) {
                        ended.push((Stage::Publish, seconds(*at, event.at)));
                    }
                    self.remember(id);
                    match self.notified_early.remove(&id) {
                        // Heard before the publisher spoke: no later than the commit's report.
                        Some(heard) => ended.push((Stage::Notify, seconds(event.at, heard))),
                        None => {
                            self.published.insert(id, event.at);
                        }
                    }
                }
            }
            TraceKind::Notified { .. } => {
                if let Some(id) = id {
                    match self.published.remove(&id) {
                        Some(at) => ended.push((Stage::Notify, seconds(at, event.at))),
                        None if self.received.contains_key(&id) => {
                            self.notified_early.insert(id, event.at);
                        }
                        None => {}
                    }
                }
            }
            TraceKind::Ingested { latency_ms, .. } => {
                ended.push((Stage::Ingest, latency_ms.max(0.0) / 1e3));
                // The publish time stays for the NOTIFY: ingestion woken by an earlier one
                // often commits a row before its own NOTIFY arrives.
                if let Some(at) = id.and_then(|id| self.received.remove(&id)) {
                    ended.push((Stage::Total, seconds(at, event.at)));
                }
            }
            TraceKind::RowObserved {
                latency_ms: Some(ms),
                ..
            } => ended.push((Stage::Row, ms.max(0.0) / 1e3)),
            _ => {}
        }
        ended
    }

    fn remember(&mut self, id: Snowflake) {
        if self.received.contains_key(&id) || self.published.contains_key(&id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > TIMED_MAX {
            if let Some(old) = self.order.pop_front() {
                self.forget(old);
            }
        }
    }

    fn forget(&mut self, id: Snowflake) {
        self.received.remove(&id);
        self.published.remove(&id);
        self.notified_early.remove(&id);
    }

    /// Messages being timed.
    pub fn len(&self) -> usize {
        self.received.len().max(self.published.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Latencies of the last `span` per stage, for p50/p99 "now".
#[derive(Debug)]
pub struct RecentLatency {
    span: chrono::TimeDelta,
    samples: HashMap<Stage, VecDeque<(DateTime<Utc>, f64)>>,
}

/// Samples kept per stage at most; at thousands of messages a second the percentiles of the
/// newest ones are as good as of all.
const RECENT_MAX: usize = 20_000;

impl RecentLatency {
    pub fn new(span: std::time::Duration) -> Self {
        RecentLatency {
            span: chrono::TimeDelta::from_std(span).unwrap_or(chrono::TimeDelta::seconds(10)),
            samples: HashMap::new(),
        }
    }

    pub fn record(&mut self, stage: Stage, at: DateTime<Utc>, seconds: f64) {
        let q = self.samples.entry(stage).or_default();
        q.push_back((at, seconds));
        if q.len() > RECENT_MAX {
            q.pop_front();
        }
    }

    /// Forgets what is older than the span before `now`.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let oldest = now - self.span;
        for q in self.samples.values_mut() {
            while q.front().is_some_and(|(at, _)| *at < oldest) {
                q.pop_front();
            }
        }
    }

    /// p50 and p99 of the stage in milliseconds, and how many samples; `None` without any.
    pub fn percentiles(&self, stage: Stage) -> Option<(f64, f64, usize)> {
        let q = self.samples.get(&stage).filter(|q| !q.is_empty())?;
        let mut ms: Vec<f64> = q.iter().map(|(_, s)| s * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * ms.len() as f64).ceil() as usize;
            ms[i.clamp(1, ms.len()) - 1]
        };
        Some((rank(50.0), rank(99.0), ms.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{IngestOutcome, SkipReason};
    use chrono::TimeDelta;

    fn event(ms: i64, id: u64, kind: TraceKind) -> TraceEvent {
        TraceEvent {
            at: DateTime::UNIX_EPOCH + TimeDelta::milliseconds(ms),
            message_id: Some(Snowflake(id)),
            kind,
        }
    }

    fn received() -> TraceKind {
        TraceKind::Received {
            channel_id: Snowflake(2),
            guild_id: None,
            author_id: Snowflake(3),
            author_name: "ada".into(),
            content_bytes: 5,
            source: crate::trace::Source::Simulated,
        }
    }

    #[test]
    fn a_notify_heard_before_the_publisher_spoke_is_timed() {
        let mut clock = StageClock::default();
        clock.observe(&event(0, 1, received()));
        let notified = TraceKind::Notified {
            channel: "events".into(),
            sender_pid: 1,
            outbox_id: Some(1),
            by_ref: false,
            bytes: 10,
            payload: "{}".into(),
        };
        assert!(clock.observe(&event(2, 1, notified)).is_empty());
        let published = TraceKind::Published {
            source: crate::trace::Source::Simulated,
            event_id: uuid::Uuid::nil(),
            outbox_id: 1,
            channel: "events".into(),
            bytes: 10,
            by_ref: false,
        };
        assert_eq!(
            clock.observe(&event(3, 1, published)),
            vec![(Stage::Publish, 0.003), (Stage::Notify, 0.0)]
        );
    }

    #[test]
    fn a_message_is_timed_stage_by_stage_and_then_forgotten() {
        let mut clock = StageClock::default();
        assert!(clock.observe(&event(0, 1, received())).is_empty());
        let published = TraceKind::Published {
            source: crate::trace::Source::Simulated,
            event_id: uuid::Uuid::nil(),
            outbox_id: 1,
            channel: "events".into(),
            bytes: 10,
            by_ref: false,
        };
        assert_eq!(
            clock.observe(&event(3, 1, published)),
            vec![(Stage::Publish, 0.003)]
        );
        let notified = TraceKind::Notified {
            channel: "events".into(),
            sender_pid: 1,
            outbox_id: Some(1),
            by_ref: false,
            bytes: 10,
            payload: "{}".into(),
        };
        assert_eq!(
            clock.observe(&event(5, 1, notified)),
            vec![(Stage::Notify, 0.002)]
        );
        let ingested = TraceKind::Ingested {
            outbox_id: 1,
            outcome: IngestOutcome::Inserted,
            latency_ms: 6.0,
        };
        assert_eq!(
            clock.observe(&event(9, 1, ingested)),
            vec![(Stage::Ingest, 0.006), (Stage::Total, 0.009)]
        );
        assert!(clock.is_empty());
        // Ingested before its NOTIFY arrived: the NOTIFY is still timed.
        clock.observe(&event(20, 3, received()));
        clock.observe(&event(
            22,
            3,
            TraceKind::Published {
                source: crate::trace::Source::Simulated,
                event_id: uuid::Uuid::nil(),
                outbox_id: 3,
                channel: "events".into(),
                bytes: 10,
                by_ref: false,
            },
        ));
        clock.observe(&event(
            25,
            3,
            TraceKind::Ingested {
                outbox_id: 3,
                outcome: IngestOutcome::Inserted,
                latency_ms: 3.0,
            },
        ));
        let late = TraceKind::Notified {
            channel: "events".into(),
            sender_pid: 1,
            outbox_id: Some(3),
            by_ref: false,
            bytes: 10,
            payload: "{}".into(),
        };
        assert_eq!(
            clock.observe(&event(30, 3, late)),
            vec![(Stage::Notify, 0.008)]
        );
        assert!(clock.is_empty());
        clock.observe(&event(10, 2, received()));
        clock.observe(&event(
            11,
            2,
            TraceKind::Skipped {
                source: crate::trace::Source::Simulated,
                reason: SkipReason::OwnMessage,
                author_name: "bot".into(),
                channel_id: Snowflake(2),
            },
        ));
        assert!(clock.is_empty(), "a skipped message is done");
    }

    #[test]
    fn the_clock_forgets_the_oldest_past_its_bound() {
        let mut clock = StageClock::default();
        for i in 0..(TIMED_MAX as u64 + 10) {
            clock.observe(&event(0, i + 1, received()));
        }
        assert_eq!(clock.len(), TIMED_MAX);
    }

    #[test]
    fn recent_percentiles_cover_only_the_span() {
        let mut recent = RecentLatency::new(std::time::Duration::from_secs(10));
        let t0 = DateTime::UNIX_EPOCH;
        recent.record(Stage::Total, t0, 1.0);
        for i in 1..=100 {
            recent.record(
                Stage::Total,
                t0 + TimeDelta::seconds(20),
                f64::from(i) / 1e3,
            );
        }
        recent.prune(t0 + TimeDelta::seconds(25));
        assert_eq!(recent.percentiles(Stage::Total), Some((50.0, 99.0, 100)));
        assert_eq!(recent.percentiles(Stage::Publish), None);
    }
}
