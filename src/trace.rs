//! The stage-event stream: every stage of the pipeline reports here, and every consumer (TUI,
//! JSON lines, recorder, diagnosis) reads from here.
//!
//! JSON field names are part of the interface (`--headless --json`, recordings): `at`,
//! `message_id` and `stage` on every event, plus the fields of that stage listed on [`Stage`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::event::Snowflake;
use crate::filter::SkipReason;

/// Events a slow consumer may fall behind by before it starts missing some (and is told so).
pub const TRACE_CAPACITY: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Snowflake>,
    #[serde(flatten)]
    pub stage: Stage,
}

/// Outcome of inserting a message into `discord_messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestOutcome {
    Inserted,
    /// The message id was already there: the row is unchanged.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// A message reached the bot path.
    Received {
        channel_id: Snowflake,
        guild_id: Option<Snowflake>,
        author_id: Snowflake,
        author_name: String,
        content_bytes: usize,
        synthetic: bool,
    },
    /// The filter did not publish it.
    Skipped {
        reason: SkipReason,
        author_name: String,
        channel_id: Snowflake,
    },
    /// Committed to the outbox and NOTIFY sent in the same transaction. Its `at` is when the
    /// COMMIT was sent, so it sorts before the `notified` that the commit caused even though
    /// the publisher learns of its success at about the same time as the listener.
    Published {
        event_id: uuid::Uuid,
        outbox_id: i64,
        channel: String,
        /// Size of the NOTIFY payload actually sent.
        bytes: usize,
        /// The envelope was too large for NOTIFY and went by reference.
        by_ref: bool,
    },
    PublishFailed {
        event_type: String,
        channel: String,
        error: String,
    },
    /// A NOTIFY on the listened channel that satisfies the contract.
    Notified {
        channel: String,
        sender_pid: i32,
        outbox_id: Option<i64>,
        by_ref: bool,
        bytes: usize,
        payload: String,
    },
    /// A NOTIFY whose payload breaks the contract; kept as a dead letter.
    NotifyRejected {
        channel: String,
        sender_pid: i32,
        error: String,
        payload: String,
    },
    Ingested {
        outbox_id: i64,
        outcome: IngestOutcome,
        /// From the outbox commit to the ingestion commit.
        latency_ms: f64,
    },
    /// The outbox row stays for retry until `attempts` reaches the limit (`permanent`).
    IngestFailed {
        outbox_id: i64,
        error: String,
        attempts: i32,
        permanent: bool,
    },
    /// The database answered; `url` has no password.
    DatabaseUp {
        url: String,
        embedded: bool,
    },
    DatabaseDown {
        error: String,
    },
    /// LISTEN is active and the self-probe came back.
    ListenerUp {
        channel: String,
        pid: i32,
        probe_ms: f64,
    },
    ListenerDown {
        channel: String,
        cause: String,
    },
    /// A guild message arrived without text and without mentioning the bot: the
    /// MESSAGE_CONTENT intent is probably missing. `count` is the total so far.
    ContentIntentSuspected {
        channel_id: Snowflake,
        count: u64,
    },
    /// The bot waits for something before connecting to Discord.
    GatewayWaiting {
        waiting_for: String,
    },
    GatewayReady {
        user_id: Snowflake,
        user_name: String,
        session_id: String,
        shard: u32,
        shards: u32,
    },
    GatewayResumed {
        shard: u32,
    },
    /// A shard's connection stage changed (`Connecting`, `Handshake`, `Identifying`,
    /// `Connected`, `Resuming`, `Disconnected`).
    GatewayStage {
        shard: u32,
        old: String,
        new: String,
    },
    /// The gateway connection was lost or closed; `code` is the WebSocket close code when
    /// Discord sent one.
    GatewayDown {
        shard: Option<u32>,
        code: Option<u16>,
        reason: String,
    },
    /// A gateway event that Discord sent but the client could not parse; serenity drops these
    /// with only a debug log, so they are counted here. `count` is the total so far.
    GatewayMalformed {
        kind: String,
        error: String,
        count: u64,
    },
    /// A NOTIFY on a neighbouring channel (another case, or a usual name such as `events` or
    /// `discord`): somebody publishes where this listener does not listen.
    NeighbourNotified {
        channel: String,
        sender_pid: i32,
        bytes: usize,
        payload: String,
    },
    /// Watch mode: a new row appeared in the watched table.
    RowObserved {
        table: String,
        /// From the NOTIFY with the same message id, when there was one.
        latency_ms: Option<f64>,
    },
    /// A diagnosis check changed status.
    HealthChanged {
        check: String,
        status: crate::diagnose::Status,
        summary: String,
    },
    /// The publish queue is full: publishers wait.
    Backpressure {
        queued: usize,
        capacity: usize,
    },
    /// This consumer fell behind the stream and missed events.
    Lagged {
        missed: u64,
    },
}

impl Stage {
    /// What the bot path reports when a message reaches it.
    pub fn received(msg: &crate::filter::IncomingMessage) -> Stage {
        Stage::Received {
            channel_id: msg.channel_id,
            guild_id: msg.guild_id,
            author_id: msg.author_id,
            author_name: msg.author_name.clone(),
            content_bytes: msg.content.len(),
            synthetic: msg.synthetic,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Stage::Received { .. } => "received",
            Stage::Skipped { .. } => "skipped",
            Stage::Published { .. } => "published",
            Stage::PublishFailed { .. } => "publish_failed",
            Stage::Notified { .. } => "notified",
            Stage::NotifyRejected { .. } => "notify_rejected",
            Stage::Ingested { .. } => "ingested",
            Stage::IngestFailed { .. } => "ingest_failed",
            Stage::DatabaseUp { .. } => "database_up",
            Stage::DatabaseDown { .. } => "database_down",
            Stage::ListenerUp { .. } => "listener_up",
            Stage::ListenerDown { .. } => "listener_down",
            Stage::ContentIntentSuspected { .. } => "content_intent_suspected",
            Stage::GatewayWaiting { .. } => "gateway_waiting",
            Stage::GatewayReady { .. } => "gateway_ready",
            Stage::GatewayResumed { .. } => "gateway_resumed",
            Stage::GatewayStage { .. } => "gateway_stage",
            Stage::GatewayDown { .. } => "gateway_down",
            Stage::GatewayMalformed { .. } => "gateway_malformed",
            Stage::NeighbourNotified { .. } => "neighbour_notified",
            Stage::RowObserved { .. } => "row_observed",
            Stage::HealthChanged { .. } => "health_changed",
            Stage::Backpressure { .. } => "backpressure",
            Stage::Lagged { .. } => "lagged",
        }
    }

    /// Error paths, counted so that none is only logged.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            Stage::PublishFailed { .. }
                | Stage::NotifyRejected { .. }
                | Stage::IngestFailed { .. }
                | Stage::DatabaseDown { .. }
                | Stage::ListenerDown { .. }
                | Stage::GatewayDown { .. }
                | Stage::GatewayMalformed { .. }
        )
    }
}

impl TraceEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The sending side of the stream; cheap to clone.
#[derive(Clone)]
pub struct Trace {
    tx: broadcast::Sender<Arc<TraceEvent>>,
    errors: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(TRACE_CAPACITY);
        Trace {
            tx,
            errors: Arc::default(),
        }
    }

    pub fn emit(&self, message_id: Option<Snowflake>, stage: Stage) {
        self.emit_at(Utc::now(), message_id, stage);
    }

    /// Emits an event that happened at `at` rather than now (see `Published`).
    pub fn emit_at(&self, at: DateTime<Utc>, message_id: Option<Snowflake>, stage: Stage) {
        if stage.is_error() {
            if let Ok(mut errors) = self.errors.lock() {
                *errors.entry(stage.name()).or_default() += 1;
            }
        }
        let event = TraceEvent {
            at,
            message_id,
            stage,
        };
        // No subscriber is fine: the pipeline runs the same whether or not anyone watches.
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> TraceReceiver {
        TraceReceiver {
            rx: self.tx.subscribe(),
        }
    }

    /// Errors seen so far, by stage name.
    pub fn error_counts(&self) -> BTreeMap<&'static str, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// A consumer's end of the stream. Falling behind yields a [`Stage::Lagged`] event instead of
/// silently skipping.
pub struct TraceReceiver {
    rx: broadcast::Receiver<Arc<TraceEvent>>,
}

impl TraceReceiver {
    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Arc<TraceEvent>> {
        match self.rx.recv().await {
            Ok(ev) => Some(ev),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Arc::new(TraceEvent {
                at: Utc::now(),
                message_id: None,
                stage: Stage::Lagged { missed },
            })),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// An event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<TraceEvent>> {
        match self.rx.try_recv() {
            Ok(ev) => Some(ev),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Some(Arc::new(TraceEvent {
                at: Utc::now(),
                message_id: None,
                stage: Stage::Lagged { missed },
            })),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_stable() {
        let ev = TraceEvent {
            at: DateTime::from_timestamp_millis(0).expect("epoch"),
            message_id: Some(Snowflake(12)),
            stage: Stage::Skipped {
                reason: SkipReason::OwnMessage,
                author_name: "bot".into(),
                channel_id: Snowflake(3),
            },
        };
        let json = ev.to_json();
        assert_eq!(
            json,
            r#"{"at":"1970-01-01T00:00:00Z","message_id":"12","stage":"skipped","reason":"own_message","author_name":"bot","channel_id":"3"}"#
        );
        let back: TraceEvent = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, ev);
    }

    #[test]
    fn errors_are_counted() {
        let trace = Trace::new();
        trace.emit(
            None,
            Stage::DatabaseDown {
                error: "gone".into(),
            },
        );
        trace.emit(
            None,
            Stage::Backpressure {
                queued: 1,
                capacity: 1,
            },
        );
        assert_eq!(trace.error_counts().get("database_down"), Some(&1));
        assert_eq!(trace.error_counts().len(), 1);
    }
}
