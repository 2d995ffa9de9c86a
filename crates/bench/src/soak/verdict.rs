//! What a soak run found: a line per window, the summary, and the drift judgement (memory
//! that keeps growing, a p99 that climbs) that fails a run however good its first minute was.

use serde::Serialize;

use crate::report::Percentiles;

/// RSS may grow by this much from the end of the first window to the end of the run…
pub const RSS_GROWTH_MAX_MIB: f64 = 16.0;
/// …plus this share of what it was then.
pub const RSS_GROWTH_MAX_SHARE: f64 = 0.25;
/// The median p99 of the second half of the windows may be at most this many times that of
/// the first half…
pub const P99_DRIFT_MAX_RATIO: f64 = 2.0;
/// …plus this many milliseconds (a p99 of 2 ms that becomes 6 ms is noise, not drift).
pub const P99_DRIFT_SLACK_MS: f64 = 5.0;

/// One window of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SoakWindow {
    /// Seconds from the start to the end of the window.
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub end_s: f64,
    /// Messages sent and ingested in the window.
    pub sent: u64,
    pub ingested: u64,
    /// Ingested a second.
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub per_s: f64,
    /// Bot path → row commit, of the messages ingested in the window.
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p50_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p99_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub max_ms: f64,
    /// The process's resident memory at the end of the window.
    #[serde(serialize_with = "notifyscope_model::round::thousandth_opt")]
    pub rss_mib: Option<f64>,
    /// The process's CPU (user + system) over the window, in % of one core.
    #[serde(serialize_with = "notifyscope_model::round::thousandth_opt")]
    pub cpu_percent: Option<f64>,
    /// Rows in `event_outbox` and its size on disk with indexes.
    pub outbox_rows: Option<i64>,
    #[serde(serialize_with = "notifyscope_model::round::thousandth_opt")]
    pub outbox_mib: Option<f64>,
}

/// The verdict on drift, with the figures it was judged from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Drift {
    #[serde(serialize_with = "notifyscope_model::round::thousandth_opt")]
    pub rss_first_mib: Option<f64>,
    #[serde(serialize_with = "notifyscope_model::round::thousandth_opt")]
    pub rss_last_mib: Option<f64>,
    #[serde(serialize_with = "notifyscope_model::round::thousandth_opt")]
    pub rss_allowed_mib: Option<f64>,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p99_first_half_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p99_second_half_ms: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub p99_allowed_ms: f64,
    /// Why the run failed, in words; empty when it passed.
    pub failures: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub mode: &'static str,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub rate: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub seconds: f64,
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
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
