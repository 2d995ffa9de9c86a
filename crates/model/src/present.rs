//! The text of every trace event, in one place: the `key=value` line of headless output and
//! of the detail view, the short row of a stage pane, message ids cut for narrow columns, the
//! one way long text is shortened and the one way a count is said. It reads trace events and
//! writes nothing.

use std::sync::Arc;

use crate::contract::Snowflake;
use crate::text::duration_ms;
use crate::trace::{Source, Status, TraceEvent, TraceKind, Verdict};

/// `text` cut to at most `max` terminal columns, with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    crate::text::fit(text, max)
}

/// `n` and the noun, plural when `n` is not 1: `1 message`, `3 messages`.
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
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
        event.kind.name(),
        detail_text(event)
    )
}

/// What matters about the event for its stage, as `key=value` words.
pub fn detail_text(event: &TraceEvent) -> String {
    message_detail(&event.kind).unwrap_or_else(|| system_detail(&event.kind))
}

pub fn flag(on: bool, text: &str) -> &str {
    if on {
        text
    } else {
        ""
    }
}

pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// ` source=…` for a message that neither Discord nor our simulated source delivered: a
/// control request, or what a foreign bot reported. The usual two say nothing, as before
/// sources were named.
fn source_note(source: Source) -> String {
    match source {
        Source::Gateway | Source::Simulated => String::new(),
        other => format!(" source={other}"),
    }
}

/// The stages a message goes through; `None` for the events around them.
fn message_detail(kind: &TraceKind) -> Option<String> {
    Some(match kind {
        TraceKind::Received {
            channel_id,
            author_name,
            content_bytes,
            source,
            ..
        } => format!(
            "channel={channel_id} author={author_name} bytes={content_bytes}{}{}",
            flag(source.is_synthetic(), " synthetic"),
            source_note(*source)
        ),
        TraceKind::Skipped {
            reason,
            author_name,
            channel_id,
            source,
        } => format!(
            "reason={} author={author_name} channel={channel_id}{}",
            reason.as_str(),
            source_note(*source)
        ),
        TraceKind::Published {
            outbox_id,
            channel,
            bytes,
            by_ref,
            source,
            ..
        } => format!(
            "channel={channel} outbox_id={outbox_id} bytes={bytes}{}{}",
            flag(*by_ref, " by_ref"),
            source_note(*source)
        ),
        TraceKind::PublishReported { channel_id, source } => format!(
            "published, says their bot{}{}",
            channel_id
                .map(|c| format!(" channel={c}"))
                .unwrap_or_default(),
            source_note(*source)
        ),
        TraceKind::PublishFailed {
            channel,
            error,
            source,
            ..
        } => {
            format!("channel={channel} error={error}{}", source_note(*source))
        }
        TraceKind::Notified {
            channel,
            sender_pid,
            outbox_id,
            bytes,
            by_ref,
            ..
        } => format!(
            "channel={channel} pid={sender_pid} outbox_id={} bytes={bytes}{}",
            or_dash(*outbox_id),
            flag(*by_ref, " by_ref")
        ),
        TraceKind::NotifyRejected {
            channel,
            sender_pid,
            error,
            ..
        } => format!("channel={channel} pid={sender_pid} error={error}"),
        TraceKind::Ingested {
            outbox_id,
            outcome,
            latency_ms,
        } => format!("outbox_id={outbox_id} {outcome:?} latency={latency_ms:.1}ms").to_lowercase(),
        TraceKind::IngestFailed {
            outbox_id,
            error,
            attempts,
            permanent,
            class,
            next_attempt_at,
        } => format!(
            "outbox_id={outbox_id} attempts={attempts}{}{}{} error={error}",
            flag(*permanent, " permanent"),
            class.map(|c| format!(" class={c}")).unwrap_or_default(),
            next_attempt_at
                .map(|at| format!(" next_attempt={}", at.format("%H:%M:%S%.3f")))
                .unwrap_or_default(),
        ),
        _ => return None,
    })
}

/// Connections, gateway, diagnosis and the stream itself.
fn system_detail(kind: &TraceKind) -> String {
    match kind {
        TraceKind::DatabaseUp { url, embedded } => format!("{url}{}", flag(*embedded, " (embedded)")),
        TraceKind::DatabaseDown { error } => format!("error={error}"),
        TraceKind::Pruned {
            table,
            what,
            rows,
            older_than_s,
        } => format!("table={table} rows={rows} older_than={older_than_s}s ({what})"),
        TraceKind::DatabaseRefused {
            part,
            class,
            error,
            retry_in_ms,
        } => format!(
            "part={part} class={class}{} error={error}",
            retry_in_ms
                .map(|ms| format!(" retry_in={ms}ms"))
                .unwrap_or_default()
        ),
        TraceKind::ListenerUp {
            channel,
            pid,
            probe_ms,
        } => format!("channel={channel} pid={pid} probe={probe_ms:.1}ms"),
        TraceKind::ListenerDown { channel, cause } => format!("channel={channel} cause={cause}"),
        TraceKind::ContentIntentSuspected { channel_id, count } => format!(
            "channel={channel_id} count={count}: guild message without content; enable the MESSAGE_CONTENT intent"
        ),
        TraceKind::GatewayWaiting { waiting_for } => format!("waiting for {waiting_for}"),
        TraceKind::GatewayReady {
            user_id,
            user_name,
            session_id,
            shard,
            shards,
        } => format!("user={user_name} ({user_id}) session={session_id} shard={shard}/{shards}"),
        TraceKind::GatewayResumed { shard } => format!("shard={shard}"),
        TraceKind::GatewayStage { shard, old, new } => format!("shard={shard} {old} -> {new}"),
        TraceKind::GatewayDown {
            shard,
            code,
            reason,
        } => format!("shard={} code={} {reason}", or_dash(*shard), or_dash(*code)),
        TraceKind::GatewayMalformed { kind, error, count } => {
            format!("kind={kind} count={count} error={error}")
        }
        TraceKind::NeighbourNotified {
            channel,
            sender_pid,
            bytes,
            ..
        } => format!("channel={channel} pid={sender_pid} bytes={bytes}: not the listened channel"),
        TraceKind::RowObserved { table, latency_ms } => match latency_ms {
            Some(ms) => format!("table={table} latency={ms:.1}ms"),
            None => format!("table={table}"),
        },
        TraceKind::HealthChanged {
            check,
            status,
            summary,
        } => format!("{} {check}: {summary}", status.symbol()),
        TraceKind::HealthReport { checks } => {
            // Healthy only when every check was judged and holds: one left unknown for lack
            // of evidence is counted, and named with those that warn or fail.
            let verdict = Verdict::of(checks.iter().map(|c| c.status));
            let not_ok: Vec<String> = checks
                .iter()
                .filter(|c| c.status != Status::Ok)
                .map(|c| format!("{} {}", c.status.symbol(), c.check))
                .collect();
            if checks.is_empty() {
                verdict.words()
            } else if not_ok.is_empty() {
                format!("{}, {}", counted(checks.len(), "check"), verdict.words())
            } else {
                format!(
                    "{}, {}: {}",
                    counted(checks.len(), "check"),
                    verdict.words(),
                    not_ok.join(", ")
                )
            }
        }
        TraceKind::Backpressure { queued, capacity } => format!("queued={queued}/{capacity}"),
        TraceKind::BotSourceRead {
            source,
            understood,
            not_understood,
        } => format!("source={source} understood={understood} not_understood={not_understood}"),
        TraceKind::ControlRefused { reason } => format!(
            "reason={}: {reason}; a test message requested on the control channel was not sent",
            reason.as_str()
        ),
        TraceKind::Lagged { missed } => format!("output fell behind and missed {missed} events"),
        // The message stages are written by `message_detail`.
        other => other.name().to_owned(),
    }
}

/// A message id by its last eight digits, for narrow columns.
pub fn short_id(id: Option<Snowflake>) -> String {
    match id {
        Some(id) => {
            let s = id.to_string();
            let tail = s.len().saturating_sub(8);
            format!("…{}", &s[tail..])
        }
        None => "-".into(),
    }
}

/// The last four digits of an id (channels in a pane row).
pub fn tail4(id: Snowflake) -> String {
    let s = id.to_string();
    s[s.len().saturating_sub(4)..].to_owned()
}

/// The detail of one event: its fields, its payload (pretty when it is JSON), and the
/// `timeline` of its message (every event about it, oldest first) with the time of each step.
pub fn event_lines(event: &TraceEvent, timeline: &[&Arc<TraceEvent>]) -> Vec<String> {
    let mut lines = vec![
        format!(
            "{} at {}",
            event.kind.name(),
            event
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
        String::new(),
        "Fields".into(),
    ];
    let fields = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj.iter().filter(|(k, _)| *k != "payload") {
            let value = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            lines.push(format!("  {k}: {value}"));
        }
    }
    if let TraceKind::Notified { payload, .. } | TraceKind::NotifyRejected { payload, .. } =
        &event.kind
    {
        lines.push(String::new());
        lines.push("Payload".into());
        match serde_json::from_str::<serde_json::Value>(payload) {
            Ok(v) => lines.extend(
                serde_json::to_string_pretty(&v)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| format!("  {l}")),
            ),
            Err(_) => lines.push(format!("  {payload}")),
        }
    }
    if let Some(id) = event.message_id {
        lines.push(String::new());
        lines.push(format!("Timeline of message {id}"));
        lines.extend(timeline_lines(timeline));
    }
    lines
}

fn timeline_lines(timeline: &[&Arc<TraceEvent>]) -> Vec<String> {
    let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let start = timeline.first().map(|e| e.at);
    let mut previous = None;
    let mut lines = Vec::with_capacity(timeline.len());
    for e in timeline {
        let since_start = start.map(|s| ms(e.at - s)).unwrap_or(0.0);
        let step = previous
            .map(|p| format!("(+{})", duration_ms(ms(e.at - p))))
            .unwrap_or_default();
        lines.push(format!(
            "  {:>8}  {:<16} {:<11} {}",
            duration_ms(since_start),
            e.kind.name(),
            step,
            detail_text(e)
        ));
        previous = Some(e.at);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::CheckState;

    fn state(check: &str, status: Status) -> CheckState {
        CheckState {
            check: check.into(),
            name: check.into(),
            status,
            summary: String::new(),
            evidence: vec![],
            hint: String::new(),
            since: chrono::DateTime::UNIX_EPOCH,
            message_ids: vec![],
        }
    }

    #[test]
    fn a_health_report_counts_unknown_checks_and_is_healthy_only_when_all_hold() {
        let report = |checks| {
            detail_text(&TraceEvent {
                at: chrono::DateTime::UNIX_EPOCH,
                message_id: None,
                kind: TraceKind::HealthReport { checks },
            })
        };
        assert_eq!(
            report(vec![
                state("listener", Status::Unknown),
                state("backlog", Status::Ok),
            ]),
            "2 checks, ? 1 unknown · ✓ 1 ok: ? listener"
        );
        assert_eq!(
            report(vec![state("backlog", Status::Ok)]),
            "1 check, ✓ healthy"
        );
        assert_eq!(report(vec![]), "no checks");
    }
}
