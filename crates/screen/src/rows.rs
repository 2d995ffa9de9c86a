//! The short row of each trace event in its stage pane, and how the row is drawn.

use notifyscope_model::contract::Snowflake;
use notifyscope_model::present::{flag, or_dash, tail4};
use notifyscope_model::text::duration_ms;
use notifyscope_model::trace::{IngestOutcome, Source, TraceEvent, TraceKind};
use notifyscope_widgets::RowKind;

/// The row of an event in its stage pane; `repeats`, when the row stands for that many
/// events of its kind (the newest is `event`).
pub fn pane_row(event: &TraceEvent, repeats: Option<u64>) -> (String, RowKind) {
    if let (
        TraceKind::NeighbourNotified {
            channel,
            sender_pid,
            ..
        },
        Some(n),
    ) = (&event.kind, repeats)
    {
        // Its time and sender are the newest one's; the count says how many came.
        return (
            format!("WRONG CHANNEL {channel:?} ×{n} pid {sender_pid}"),
            RowKind::Error,
        );
    }
    if let Some(row) = their_bot_row(&event.kind) {
        return row;
    }
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

/// What a foreign bot's log or telemetry reported rarely names the author or the channel
/// (0 when unnamed), and has no outbox row: its rows say whose word it is and where it was
/// said; the pane says what happened.
fn their_bot_row(kind: &TraceKind) -> Option<(String, RowKind)> {
    let channel = |id: Snowflake| {
        if id.0 == 0 {
            String::new()
        } else {
            format!(" #{}", tail4(id))
        }
    };
    Some(match kind {
        TraceKind::Received {
            channel_id, source, ..
        } if is_theirs(*source) => (
            format!("their bot{}{}", channel(*channel_id), source.mark()),
            RowKind::Normal,
        ),
        TraceKind::Skipped {
            reason,
            channel_id,
            source,
            ..
        } if is_theirs(*source) => (
            format!("{reason}{}{}", channel(*channel_id), source.mark()),
            RowKind::Warn,
        ),
        TraceKind::PublishFailed { error, source, .. } if is_theirs(*source) => {
            (format!("FAILED {error}{}", source.mark()), RowKind::Error)
        }
        TraceKind::PublishReported { channel_id, source } => (
            format!(
                "their bot{}{}",
                channel_id.map(channel).unwrap_or_default(),
                source.mark()
            ),
            RowKind::Ok,
        ),
        _ => return None,
    })
}

fn is_theirs(source: Source) -> bool {
    matches!(source, Source::BotLog | Source::Otlp)
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
                Some(ms) => format!("row in {table} {}", duration_ms(*ms)),
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
                format!("inserted {} outbox {outbox_id}", duration_ms(*latency_ms)),
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
            // The cause before the schedule: in a narrow pane it is what must show.
            format!(
                "FAILED try {attempts}: {error}{}",
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
