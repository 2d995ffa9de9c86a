//! The trace stream: every stage of the pipeline reports here, and every consumer (screen,
//! JSON lines, recorder, diagnosis) reads from here. It imports nothing of the pipeline or
//! of its consumers, so data can only flow one way through it.
//!
//! JSON field names are part of the interface (`--headless --json`, recordings): `at`,
//! `message_id` and `stage` on every event, plus the fields of that stage listed on
//! [`TraceKind`].

mod health;
mod kind;
pub mod latency;
mod source;

pub use health::{CheckState, Status, Verdict};
pub use kind::{ControlRefusal, IngestOutcome, SkipReason, TraceKind, WriteStage};
pub use source::Source;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::contract::Snowflake;

/// Events a slow consumer may fall behind by before it starts missing some (and is told so).
pub const TRACE_CAPACITY: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Snowflake>,
    #[serde(flatten)]
    pub kind: TraceKind,
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
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(TRACE_CAPACITY);
        Trace { tx }
    }

    pub fn emit(&self, message_id: Option<Snowflake>, kind: TraceKind) {
        self.emit_at(Utc::now(), message_id, kind);
    }

    /// Emits an event that happened at `at` rather than now (see `Published`).
    pub fn emit_at(&self, at: DateTime<Utc>, message_id: Option<Snowflake>, kind: TraceKind) {
        let event = TraceEvent {
            at,
            message_id,
            kind,
        };
        // No subscriber is fine: the pipeline runs the same whether or not anyone watches.
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> TraceReceiver {
        TraceReceiver {
            rx: self.tx.subscribe(),
        }
    }
}

/// A consumer's end of the stream. Falling behind yields a [`TraceKind::Lagged`] event instead of
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
                kind: TraceKind::Lagged { missed },
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
                kind: TraceKind::Lagged { missed },
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
            kind: TraceKind::Skipped {
                source: crate::trace::Source::Simulated,
                reason: SkipReason::OwnMessage,
                author_name: "bot".into(),
                channel_id: Snowflake(3),
            },
        };
        let json = ev.to_json();
        assert_eq!(
            json,
            r#"{"at":"1970-01-01T00:00:00Z","message_id":"12","stage":"skipped","reason":"own_message","author_name":"bot","channel_id":"3","source":"simulated"}"#
        );
        let back: TraceEvent = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, ev);
    }
}
