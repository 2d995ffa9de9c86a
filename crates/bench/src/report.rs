//! What a bench run measured: per-stage latency percentiles, throughput, and what was lost
//! or delivered twice, as text or as one JSON object.

use std::collections::BTreeMap;

use serde::Serialize;

/// Latency percentiles of one stage, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Messages measured.
    pub count: usize,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p50_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p95_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p99_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
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
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub seconds: f64,
    /// Messages ingested a second.
    #[serde(serialize_with = "notifyscope_model::round::tenth")]
    pub per_s: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p50_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p95_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p99_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
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
