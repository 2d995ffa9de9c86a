//! The status bar's view: the connections, the backlog, the rate of each stage pane, the
//! latency of each stage, the rate of log records, and the toasts that say what came of an
//! action.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::logs::{self, LogRate};
use crate::pane::{PaneId, PANE_COUNT};
use notifyscope_model::trace::latency::{RecentLatency, StageClock};
use notifyscope_model::trace::{TraceEvent, TraceKind};

/// Seconds of per-stage rates kept for the sparklines.
pub const RATE_HISTORY: usize = 60;
const TOAST_FOR: Duration = Duration::from_secs(5);
/// Toasts shown at once.
const TOASTS_SHOWN: usize = 3;
/// The span of the live latency percentiles.
pub const LATENCY_SPAN: Duration = Duration::from_secs(10);

/// Per-pane counts for the last [`RATE_HISTORY`] seconds.
#[derive(Debug, Default)]
pub struct Rates {
    current: [u64; PANE_COUNT],
    history: [VecDeque<u64>; PANE_COUNT],
}

impl Rates {
    fn count(&mut self, pane: PaneId) {
        self.current[pane.index()] += 1;
    }

    fn tick(&mut self) {
        for (h, c) in self.history.iter_mut().zip(self.current.iter_mut()) {
            if h.len() >= RATE_HISTORY {
                h.pop_front();
            }
            h.push_back(*c);
            *c = 0;
        }
    }

    /// Messages a second over the last full second.
    pub fn last(&self, pane: PaneId) -> u64 {
        self.history[pane.index()].back().copied().unwrap_or(0)
    }

    /// Messages a second, a value per second, oldest first.
    pub fn history(&self, pane: PaneId) -> &VecDeque<u64> {
        &self.history[pane.index()]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connection {
    pub up: Option<bool>,
    pub text: String,
}

/// What the status bar shows of the connections and queues.
#[derive(Debug, Clone, Default)]
pub struct StatusInfo {
    pub database: Connection,
    pub listener: Connection,
    pub gateway: Connection,
    pub backlog: Option<i64>,
    pub backpressure: u64,
    pub lagged: u64,
    /// Shown when there is no gateway: the simulated source feeds the bot path.
    pub simulated: bool,
}

pub struct StatusView {
    pub info: StatusInfo,
    pub rates: Rates,
    /// Latency per stage over the last [`LATENCY_SPAN`].
    pub latency: RecentLatency,
    clock: StageClock,
    toasts: VecDeque<(Instant, String)>,
    /// The `notifyscope send` command that reaches this instance, when there is one.
    pub send_command: Option<String>,
    /// Log records a second of late, for the Logs pane's title.
    pub log_rate: LogRate,
}

impl Default for StatusView {
    fn default() -> Self {
        StatusView {
            info: StatusInfo::default(),
            rates: Rates::default(),
            latency: RecentLatency::new(LATENCY_SPAN),
            clock: StageClock::default(),
            toasts: VecDeque::new(),
            send_command: None,
            log_rate: LogRate::from(logs::records()),
        }
    }
}

impl StatusView {
    pub fn toast(&mut self, text: impl Into<String>) {
        self.toasts.push_back((Instant::now(), text.into()));
        while self.toasts.len() > TOASTS_SHOWN {
            self.toasts.pop_front();
        }
    }

    /// The toasts shown now, oldest first.
    pub fn toasts(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.toasts.iter().map(|(_, text)| text.as_str())
    }

    /// A second passed: the rates move on, old latency and toasts go. A recording's events
    /// keep their own times, so `replay` keeps its latency as recorded.
    pub fn tick(&mut self, replay: bool) {
        self.rates.tick();
        self.log_rate.sample(logs::records());
        if !replay {
            self.latency.prune(chrono::Utc::now());
        }
        self.toasts.retain(|(at, _)| at.elapsed() < TOAST_FOR);
    }

    /// Counts an event of a stage pane.
    pub fn count(&mut self, pane: PaneId) {
        self.rates.count(pane);
    }

    /// What `event` says of the stage latencies and the connections; whether the status bar
    /// changed.
    pub fn observe(&mut self, event: &TraceEvent) -> bool {
        for (stage, seconds) in self.clock.observe(event) {
            self.latency.record(stage, event.at, seconds);
        }
        let status = &mut self.info;
        match &event.kind {
            TraceKind::DatabaseUp { url, embedded } => {
                status.database = Connection {
                    up: Some(true),
                    text: format!("{url}{}", if *embedded { " embedded" } else { "" }),
                }
            }
            TraceKind::DatabaseDown { error } => {
                status.database.up = Some(false);
                status.database.text = error.clone();
            }
            TraceKind::ListenerUp { channel, pid, .. } => {
                status.listener = Connection {
                    up: Some(true),
                    text: format!("pid {pid} on {channel}"),
                }
            }
            TraceKind::ListenerDown { cause, .. } => {
                status.listener = Connection {
                    up: Some(false),
                    text: cause.clone(),
                }
            }
            TraceKind::GatewayWaiting { waiting_for } => {
                status.gateway = Connection {
                    up: None,
                    text: format!("waiting for {waiting_for}"),
                }
            }
            TraceKind::GatewayReady {
                user_name,
                shard,
                shards,
                ..
            } => {
                status.simulated = false;
                status.gateway = Connection {
                    up: Some(true),
                    text: format!("{user_name} shard {shard}/{shards}"),
                }
            }
            TraceKind::GatewayResumed { .. } => status.gateway.up = Some(true),
            TraceKind::GatewayDown { code, reason, .. } => {
                status.gateway = Connection {
                    up: Some(false),
                    text: match code {
                        Some(c) => format!("close {c}: {reason}"),
                        None => reason.clone(),
                    },
                }
            }
            TraceKind::Backpressure { .. } => status.backpressure += 1,
            TraceKind::Lagged { missed } => status.lagged = status.lagged.saturating_add(*missed),
            _ => return false,
        }
        true
    }
}
