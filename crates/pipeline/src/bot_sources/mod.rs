//! Their bot, seen from inside, for `notifyscope watch`: its own log (`--bot-log`, a file
//! followed through rotation or standard input) and OpenTelemetry (`--otlp`, an OTLP/HTTP
//! receiver). Both say, by message id, what their code did with a message: received,
//! skipped with a reason, published, publish failed with an error. They become the trace
//! events of our own bot's stages, with the source named, so that the panes and the
//! diagnosis correlate them with the NOTIFY and the row like any other.

pub mod log_file;
pub mod otlp;
mod parse;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use notifyscope_model::contract::{EventType, Snowflake};
use notifyscope_model::present::shorten;
use notifyscope_model::trace::{SkipReason, Source, Trace, TraceKind};

pub use parse::{Line, LogParser};

/// The tracing target of what their bot's log or telemetry said that was not understood:
/// it goes to the Logs pane as it was written (shortened). Under `notifyscope`, so that the
/// default log filter (`notifyscope=info`) lets it through.
pub const NOT_UNDERSTOOD_TARGET: &str = "notifyscope::their_bot";

/// Longest text of a line not understood that the Logs pane is given.
const SHOWN: usize = 300;

/// Lines not understood shown in the Logs pane in one second, at most: a log of some other
/// shape must not bury everything else there. The rest are counted, and how many were not
/// shown is said.
const SHOWN_PER_SECOND: u32 = 20;

/// How often the counts of lines understood are put on the trace, at most.
const COUNTS_EVERY: Duration = Duration::from_secs(1);

/// What their code did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Received,
    Skipped,
    Published,
    PublishFailed,
}

impl Stage {
    /// By the names of the documented line and of `notifyscope.stage`.
    pub fn named(name: &str) -> Option<Stage> {
        Some(match name.trim() {
            "received" => Stage::Received,
            "skipped" => Stage::Skipped,
            "published" => Stage::Published,
            "publish_failed" => Stage::PublishFailed,
            _ => return None,
        })
    }
}

/// One thing their bot said about one message (or, for an error, about no message it named).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub stage: Stage,
    pub message_id: Option<Snowflake>,
    pub channel_id: Option<Snowflake>,
    pub author_name: Option<String>,
    /// Why their filter skipped it, in their words.
    pub reason: Option<String>,
    /// What went wrong, usually `Class: message`.
    pub error: Option<String>,
}

impl Report {
    pub fn new(stage: Stage) -> Self {
        Report {
            stage,
            message_id: None,
            channel_id: None,
            author_name: None,
            reason: None,
            error: None,
        }
    }
}

/// Puts what one source of their bot said on the trace, and counts what it understood.
#[derive(Clone)]
pub struct Reporter {
    trace: Trace,
    source: Source,
    /// The channel their bot is to publish on: where a failed publish was headed.
    channel: String,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug)]
struct Counts {
    understood: u64,
    not_understood: u64,
    /// What was last put on the trace, and when.
    traced: (u64, u64),
    traced_at: Option<Instant>,
    /// Lines not understood shown since `second` began, and those held back.
    shown: u32,
    second: Option<Instant>,
    held_back: u64,
}

impl Counts {
    /// A new second of showing lines not understood, when the last one is over: how many
    /// were held back in it.
    fn next_second(&mut self) -> u64 {
        if self
            .second
            .is_some_and(|s| s.elapsed() < Duration::from_secs(1))
        {
            return 0;
        }
        self.second = Some(Instant::now());
        self.shown = 0;
        std::mem::take(&mut self.held_back)
    }
}

impl Reporter {
    pub fn new(trace: &Trace, source: Source, channel: &str) -> Self {
        Reporter {
            trace: trace.clone(),
            source,
            channel: channel.to_owned(),
            counts: Arc::new(Mutex::new(Counts {
                understood: 0,
                not_understood: 0,
                traced: (0, 0),
                traced_at: None,
                shown: 0,
                second: None,
                held_back: 0,
            })),
        }
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// The trace event of `report`, as of `at`; nothing for a stage that needs a message
    /// id and has none.
    pub fn report(&self, report: Report, at: DateTime<Utc>) {
        if report.message_id.is_none() && report.stage != Stage::PublishFailed {
            return;
        }
        let source = self.source;
        // Their log and telemetry rarely name the author or channel: 0 stands for unnamed.
        let channel_id = report.channel_id.unwrap_or(Snowflake(0));
        let author_name = report.author_name.unwrap_or_default();
        let kind = match report.stage {
            Stage::Received => TraceKind::Received {
                channel_id,
                guild_id: None,
                author_id: Snowflake(0),
                author_name,
                content_bytes: 0,
                source,
            },
            Stage::Skipped => TraceKind::Skipped {
                reason: SkipReason::named(report.reason.as_deref().unwrap_or("no reason given")),
                author_name,
                channel_id,
                source,
            },
            Stage::Published => TraceKind::PublishReported {
                channel_id: report.channel_id,
                source,
            },
            Stage::PublishFailed => TraceKind::PublishFailed {
                event_type: EventType::MessageCreated.as_str().to_owned(),
                channel: self.channel.clone(),
                error: report.error.unwrap_or_else(|| "no error given".to_owned()),
                source,
            },
        };
        self.trace.emit_at(at, report.message_id, kind);
    }

    /// `n` more lines or records understood.
    pub fn understood(&self, n: u64) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.understood += n;
        }
    }

    /// A line or record not understood: counted, and shown in the Logs pane unless
    /// [`SHOWN_PER_SECOND`] were this second; whether it was shown.
    pub fn not_understood(&self, text: &str) -> bool {
        let Ok(mut counts) = self.counts.lock() else {
            return false;
        };
        counts.not_understood += 1;
        let held_back = counts.next_second();
        let show = counts.shown < SHOWN_PER_SECOND;
        if show {
            counts.shown += 1;
        } else {
            counts.held_back += 1;
        }
        drop(counts);
        self.say_held_back(held_back);
        if !show {
            return false;
        }
        tracing::info!(
            target: NOT_UNDERSTOOD_TARGET,
            source = %self.source,
            "not understood: {}",
            shorten(text.trim_end(), SHOWN)
        );
        true
    }

    fn say_held_back(&self, lines: u64) {
        if lines > 0 {
            tracing::info!(
                target: NOT_UNDERSTOOD_TARGET,
                source = %self.source,
                "{lines} more not understood in the last second: counted, not shown"
            );
        }
    }

    /// Puts the counts on the trace when they changed, at most every [`COUNTS_EVERY`];
    /// `now`, at once and even unchanged (the source is ready).
    pub fn trace_counts(&self, now: bool) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        // A burst that ended is said to have been held back even if nothing follows it.
        let held_back = counts.next_second();
        if held_back > 0 {
            self.say_held_back(held_back);
        }
        let current = (counts.understood, counts.not_understood);
        let due = counts
            .traced_at
            .is_none_or(|at| at.elapsed() >= COUNTS_EVERY);
        if !now && (current == counts.traced || !due) {
            return;
        }
        counts.traced = current;
        counts.traced_at = Some(Instant::now());
        self.trace.emit(
            None,
            TraceKind::BotSourceRead {
                source: self.source,
                understood: current.0,
                not_understood: current.1,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_not_understood_is_all_counted_and_partly_shown() {
        let trace = Trace::new();
        let mut rx = trace.subscribe();
        let reporter = Reporter::new(&trace, Source::BotLog, "events");
        let shown = (0..100)
            .filter(|n| reporter.not_understood(&format!("line {n}")))
            .count();
        assert_eq!(shown, SHOWN_PER_SECOND as usize);
        reporter.trace_counts(true);
        let counts = rx.try_recv().expect("the counts").kind.clone();
        assert!(
            matches!(
                counts,
                TraceKind::BotSourceRead {
                    not_understood: 100,
                    ..
                }
            ),
            "{counts:?}"
        );
    }
}
