//! Headless output: trace events as JSON lines or as one readable line each.

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::trace::{Stage, TraceEvent, TraceReceiver};

/// Writes every event until the stream ends or `stop` fires; on `stop` it first writes what
/// is already buffered. Flushes whenever it has caught up, so a reader on a pipe sees events
/// promptly without a syscall per line under load.
pub async fn write_events(
    mut rx: TraceReceiver,
    json: bool,
    mut out: impl Write,
    stop: CancellationToken,
) {
    let result = async {
        loop {
            let event = tokio::select! {
                event = rx.recv() => event,
                () = stop.cancelled() => None,
            };
            let Some(event) = event else { break };
            write_one(&mut out, &event, json)?;
            while let Some(event) = rx.try_recv() {
                write_one(&mut out, &event, json)?;
            }
            out.flush()?;
        }
        while let Some(event) = rx.try_recv() {
            write_one(&mut out, &event, json)?;
        }
        out.flush()
    }
    .await;
    if let Err(e) = result {
        // A closed pipe or a full disk: the pipeline goes on, but this output ends here.
        tracing::error!(error = %e, "trace output stopped");
    }
}

fn write_one(out: &mut impl Write, event: &TraceEvent, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", event.to_json())
    } else {
        writeln!(out, "{}", human_line(event))
    }
}

/// One line for people: time, stage, message id, then what matters for that stage.
pub fn human_line(event: &TraceEvent) -> String {
    let time = event.at.format("%H:%M:%S%.3f");
    let id = event
        .message_id
        .map(|id| id.to_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "{time} {:<15} {id:<19} {}",
        event.stage.name(),
        detail_text(event)
    )
}

/// What matters about the event for its stage, as `key=value` words.
pub fn detail_text(event: &TraceEvent) -> String {
    match &event.stage {
        Stage::Received {
            channel_id,
            author_name,
            content_bytes,
            synthetic,
            ..
        } => format!(
            "channel={channel_id} author={author_name} bytes={content_bytes}{}",
            if *synthetic { " synthetic" } else { "" }
        ),
        Stage::Skipped {
            reason,
            author_name,
            channel_id,
        } => format!(
            "reason={} author={author_name} channel={channel_id}",
            reason.as_str()
        ),
        Stage::Published {
            outbox_id,
            channel,
            bytes,
            by_ref,
            ..
        } => format!(
            "channel={channel} outbox_id={outbox_id} bytes={bytes}{}",
            if *by_ref { " by_ref" } else { "" }
        ),
        Stage::PublishFailed { channel, error, .. } => format!("channel={channel} error={error}"),
        Stage::Notified {
            channel,
            sender_pid,
            outbox_id,
            bytes,
            by_ref,
            ..
        } => format!(
            "channel={channel} pid={sender_pid} outbox_id={} bytes={bytes}{}",
            outbox_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            if *by_ref { " by_ref" } else { "" }
        ),
        Stage::NotifyRejected {
            channel,
            sender_pid,
            error,
            ..
        } => format!("channel={channel} pid={sender_pid} error={error}"),
        Stage::Ingested {
            outbox_id,
            outcome,
            latency_ms,
        } => format!("outbox_id={outbox_id} {outcome:?} latency={latency_ms:.1}ms").to_lowercase(),
        Stage::IngestFailed {
            outbox_id,
            error,
            attempts,
            permanent,
        } => format!(
            "outbox_id={outbox_id} attempts={attempts}{} error={error}",
            if *permanent { " permanent" } else { "" }
        ),
        Stage::DatabaseUp { url, embedded } => {
            format!("{url}{}", if *embedded { " (embedded)" } else { "" })
        }
        Stage::DatabaseDown { error } => format!("error={error}"),
        Stage::ListenerUp {
            channel,
            pid,
            probe_ms,
        } => format!("channel={channel} pid={pid} probe={probe_ms:.1}ms"),
        Stage::ListenerDown { channel, cause } => format!("channel={channel} cause={cause}"),
        Stage::ContentIntentSuspected { channel_id, count } => format!(
            "channel={channel_id} count={count}: guild message without content; enable the MESSAGE_CONTENT intent"
        ),
        Stage::GatewayWaiting { waiting_for } => format!("waiting for {waiting_for}"),
        Stage::GatewayReady {
            user_id,
            user_name,
            session_id,
            shard,
            shards,
        } => format!("user={user_name} ({user_id}) session={session_id} shard={shard}/{shards}"),
        Stage::GatewayResumed { shard } => format!("shard={shard}"),
        Stage::GatewayStage { shard, old, new } => format!("shard={shard} {old} -> {new}"),
        Stage::GatewayDown {
            shard,
            code,
            reason,
        } => format!(
            "shard={} code={} {reason}",
            shard.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            code.map(|c| c.to_string()).unwrap_or_else(|| "-".into())
        ),
        Stage::GatewayMalformed { kind, error, count } => {
            format!("kind={kind} count={count} error={error}")
        }
        Stage::NeighbourNotified {
            channel,
            sender_pid,
            bytes,
            ..
        } => format!("channel={channel} pid={sender_pid} bytes={bytes}: not the listened channel"),
        Stage::RowObserved { table, latency_ms } => match latency_ms {
            Some(ms) => format!("table={table} latency={ms:.1}ms"),
            None => format!("table={table}"),
        },
        Stage::HealthChanged {
            check,
            status,
            summary,
        } => format!("{} {check}: {summary}", status.symbol()),
        Stage::Backpressure { queued, capacity } => format!("queued={queued}/{capacity}"),
        Stage::Lagged { missed } => format!("output fell behind and missed {missed} events"),
    }
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
