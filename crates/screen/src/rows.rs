//! The short row of each trace event in its stage pane, and how the row is drawn.

use notifyscope_model::present::{flag, or_dash, tail4};
use notifyscope_model::trace::{IngestOutcome, TraceEvent, TraceKind};
use notifyscope_widgets::RowKind;

/// The row of an event in its stage pane.
pub fn pane_row(event: &TraceEvent) -> (String, RowKind) {
    match &event.kind {
        TraceKind::Received {
            channel_id,
            author_name,
            content_bytes,
            source,
            guild_id,
            ..
        } => (
            format!(
                "{author_name} #{} {content_bytes}B{}{}",
                tail4(*channel_id),
                flag(guild_id.is_none(), " dm"),
                source.mark()
            ),
            RowKind::Normal,
        ),
        TraceKind::Skipped {
            reason,
            author_name,
            channel_id,
            source,
        } => (
            format!(
                "{reason} · {author_name} #{}{}",
                tail4(*channel_id),
                source.mark()
            ),
            RowKind::Warn,
        ),
        TraceKind::ContentIntentSuspected { count, .. } => (
            format!("no content: MESSAGE_CONTENT intent off? ({count})"),
            RowKind::Error,
        ),
        TraceKind::Published {
            outbox_id,
            bytes,
            by_ref,
            ..
        } => (
            format!("outbox {outbox_id} {bytes}B{}", flag(*by_ref, " by ref")),
            RowKind::Normal,
        ),
        TraceKind::PublishFailed { error, .. } => (format!("FAILED {error}"), RowKind::Error),
        TraceKind::Backpressure { queued, capacity } => {
            (format!("queue full {queued}/{capacity}"), RowKind::Warn)
        }
        other => notify_or_ingest_row(other),
    }
}

/// Rows of the NOTIFY and ingestion panes.
fn notify_or_ingest_row(kind: &TraceKind) -> (String, RowKind) {
    match kind {
        TraceKind::Notified {
            channel,
            sender_pid,
            outbox_id,
            bytes,
            by_ref,
            ..
        } => (
            format!(
                "{channel} pid {sender_pid} outbox {} {bytes}B{}",
                or_dash(*outbox_id),
                flag(*by_ref, " ref")
            ),
            RowKind::Normal,
        ),
        TraceKind::NotifyRejected { channel, error, .. } => {
            (format!("REJECTED on {channel}: {error}"), RowKind::Error)
        }
        TraceKind::NeighbourNotified {
            channel,
            sender_pid,
            ..
        } => (
            format!("WRONG CHANNEL {channel:?} pid {sender_pid}"),
            RowKind::Error,
        ),
        TraceKind::RowObserved { table, latency_ms } => (
            match latency_ms {
                Some(ms) => format!("row in {table} {ms:.1}ms"),
                None => format!("row in {table}"),
            },
            RowKind::Ok,
        ),
        TraceKind::Ingested {
            outcome,
            latency_ms,
            outbox_id,
        } => match outcome {
            IngestOutcome::Inserted => (
                format!("inserted {latency_ms:.1}ms outbox {outbox_id}"),
                RowKind::Ok,
            ),
            IngestOutcome::Duplicate => (format!("duplicate outbox {outbox_id}"), RowKind::Warn),
        },
        TraceKind::IngestFailed {
            error,
            attempts,
            permanent,
            next_attempt_at,
            ..
        } => (
            format!(
                "FAILED try {attempts}{} {error}",
                match next_attempt_at {
                    _ if *permanent => " (gave up)".to_owned(),
                    Some(at) => format!(" (next {})", at.format("%H:%M:%S")),
                    None => String::new(),
                }
            ),
            RowKind::Error,
        ),
        TraceKind::DatabaseRefused { part, error, .. } => {
            (format!("REFUSED {part}: {error}"), RowKind::Error)
        }
        other => (other.name().to_owned(), RowKind::Normal),
    }
}
