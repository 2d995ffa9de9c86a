//! The rules of the bot's side: the runtime it publishes from, every received message
//! handled, the listener up before publishing, errors reported, the filter, the content intent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{found, ok, Finding};
use crate::evidence::{delta, Evidence};
use crate::window::{ago, SAMPLE};
use notifyscope_model::contract::Snowflake;
use notifyscope_model::present::counted;
use notifyscope_model::trace::{SkipReason, Source, Status, WriteStage};

pub(crate) fn runtime(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let seen = e
        .runtime_errors
        .last_seen("publish attempt", "from inside the async runtime", now);
    match seen {
        Some(summary) => found(Status::Fail, summary, e.runtime_errors.samples(), vec![]),
        None => ok(format!(
            "no wrong-runtime publish ({} ever)",
            e.runtime_errors.total
        )),
    }
}

pub(crate) fn async_context(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let overdue = e.received.overdue(now - delta(e.config.deadline));
    if overdue.is_empty() {
        ok(format!(
            "every received message skipped or published within {} s",
            e.config.deadline.as_secs()
        ))
    } else {
        let ids: Vec<Snowflake> = overdue.iter().map(|(_, id)| *id).collect();
        if e.config.watch_only && e.config.bot_reports {
            // Their own log or telemetry says nothing more of them, and no NOTIFY came:
            // on_message stopped before its end, or the publish was never awaited.
            return found(
                Status::Fail,
                format!(
                    "{} their bot received, neither skipped, published nor failed within {} s (first: message {})",
                    counted(ids.len(), "message"),
                    e.config.deadline.as_secs(),
                    ids[0]
                ),
                overdue
                    .iter()
                    .take(SAMPLE)
                    .map(|(at, id)| {
                        format!(
                            "message {id} received {}; no outcome in their log and no NOTIFY since",
                            ago(now, *at)
                        )
                    })
                    .collect(),
                ids.into_iter().take(20).collect(),
            );
        }
        if e.config.watch_only {
            // Someone else's bot: a message without NOTIFY may be one their filter skips,
            // or one whose publish was never awaited; which, only their code knows.
            return found(
                Status::Warn,
                format!(
                    "{} their bot received, not published within {} s (first: message {}): skipped by their filter, or the publish never awaited",
                    counted(ids.len(), "message"),
                    e.config.deadline.as_secs(),
                    ids[0]
                ),
                overdue
                    .iter()
                    .take(SAMPLE)
                    .map(|(at, id)| format!("message {id} received {}, no NOTIFY since", ago(now, *at)))
                    .collect(),
                ids.into_iter().take(20).collect(),
            );
        }
        // While the database is away, refuses the outbox or the queue is full, publishing
        // is slow, not forgotten.
        let slowed = e.database_down.is_some()
            || !e.publish_errors.items.is_empty()
            || e.refused_now(now)
                .iter()
                .any(|(_, r)| r.part == WriteStage::Publish);
        found(
            if slowed { Status::Warn } else { Status::Fail },
            format!(
                "{} neither skipped nor published after {} s{}",
                counted(ids.len(), "received message"),
                e.config.deadline.as_secs(),
                if slowed {
                    " (the database is failing, so they may still be on their way)"
                } else {
                    ""
                }
            ),
            overdue
                .iter()
                .take(SAMPLE)
                .map(|(at, id)| format!("message {id} received {}", ago(now, *at)))
                .collect(),
            ids.into_iter().take(20).collect(),
        )
    }
}

pub(crate) fn publish_before_listener(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let seen = e
        .published_while_down
        .last_seen("event", "published while no listener was up", now);
    match seen {
        Some(summary) => found(
            Status::Warn,
            summary,
            vec![format!(
                "listener: {}",
                match &e.listener_down {
                    Some((_, cause)) => format!("down ({cause})"),
                    None => "not started yet".into(),
                }
            )],
            e.published_while_down.samples(),
        ),
        None => ok("nothing published while the listener was down".into()),
    }
}

pub(crate) fn silent_errors(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let lost = e.notified.overdue(now - delta(e.config.deadline));
    let counts: Vec<String> = e.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if lost.is_empty() && !e.their_failures.items.is_empty() {
        return their_failures(e, now);
    }
    if !lost.is_empty() {
        let ids: Vec<Snowflake> = lost.iter().map(|(_, id)| *id).collect();
        // Ingestion refused as a whole, or the database gone, is reported: the messages wait
        // in the outbox, they are not lost in silence.
        let reported = e.database_down.is_some()
            || e.refused_now(now)
                .iter()
                .any(|(_, r)| r.part == WriteStage::Ingest);
        return found(
            if reported { Status::Warn } else { Status::Fail },
            format!(
                "{} neither ingested nor reported failed after {} s",
                counted(ids.len(), "notified message"),
                e.config.deadline.as_secs()
            ),
            lost.iter()
                .take(SAMPLE)
                .map(|(at, id)| {
                    format!(
                        "message {id} notified {}, no row and no error since",
                        ago(now, *at)
                    )
                })
                .chain(std::iter::once(format!(
                    "errors counted: {}",
                    if counts.is_empty() {
                        "none".into()
                    } else {
                        counts.join(", ")
                    }
                )))
                .collect(),
            ids.into_iter().take(20).collect(),
        );
    }
    let summary = if counts.is_empty() {
        "no error on any path".to_owned()
    } else {
        format!("every error reported: {}", counts.join(", "))
    };
    found(
        Status::Ok,
        format!("{summary}{}", their_lines_note(e)),
        their_lines(e),
        vec![],
    )
}

/// Their bot's publish failed, said only in its log or telemetry: the exception was caught
/// and the message is gone, with no outbox to try it again.
fn their_failures(e: &Evidence, now: DateTime<Utc>) -> Finding {
    let failures = &e.their_failures;
    let named: Vec<Snowflake> = failures
        .items
        .iter()
        .filter_map(|(_, (id, _))| *id)
        .collect();
    let summary = failures
        .last_seen(
            "message",
            "their bot failed to publish, said only in its log or telemetry",
            now,
        )
        .unwrap_or_default()
        + &their_lines_note(e);
    let evidence = failures
        .samples()
        .into_iter()
        .map(|(id, error)| match id {
            Some(id) if e.received_recent.items.iter().any(|(_, r)| *r == id) => {
                format!("message {id} received; publish failed: {error}")
            }
            Some(id) => format!("message {id}: publish failed: {error}"),
            None => format!("publish failed: {error}"),
        })
        .chain(their_lines(e))
        .collect();
    let mut finding = found(
        Status::Fail,
        summary,
        evidence,
        named.into_iter().rev().take(20).collect(),
    );
    finding.hint = Some(
        "their publish caught the exception and went on: retry it, or keep the event in an outbox and NOTIFY in the same transaction, so that a lost connection delays a message instead of losing it"
            .into(),
    );
    finding
}

/// The counts of [`their_lines`] in a few words, for the summary that the health pane shows.
fn their_lines_note(e: &Evidence) -> String {
    e.their_lines
        .iter()
        .map(|(source, (understood, not_understood))| {
            format!("; {source}: {understood} understood, {not_understood} not")
        })
        .collect()
}

/// What their bot's log and telemetry gave that was understood, and what was not (those
/// lines are in the Logs pane).
fn their_lines(e: &Evidence) -> Vec<String> {
    e.their_lines
        .iter()
        .map(|(source, (understood, not_understood))| {
            let what = match source {
                Source::Otlp => "their OpenTelemetry",
                _ => "their bot's log",
            };
            format!(
                "{what}: {understood} understood, {not_understood} not understood{}",
                if *not_understood > 0 {
                    " (in the Logs pane)"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// Someone else's bot, seen by the observer: everything received and nothing published is
/// a filter that drops everything.
fn foreign_filter(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let received = e.received_recent.len();
    let published = e.handled.len();
    let unpublished = e.received.overdue(now - delta(e.config.deadline));
    let summary = format!(
        "{published} of {} their bot received in the last {} s published",
        counted(received, "message"),
        e.config.window.as_secs()
    );
    if published == 0 && unpublished.len() >= 3 {
        found(
            Status::Fail,
            format!(
                "their bot received {} and published none: its filter drops everything (an over-eager self-message rule?)",
                counted(received, "message")
            ),
            vec![summary],
            unpublished.iter().map(|(_, id)| *id).take(20).collect(),
        )
    } else {
        ok(summary)
    }
}

pub(crate) fn self_filter(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    // Their log or telemetry that names skips is judged as our own filter is.
    let skips_seen = e.handled.items.iter().any(|(_, r)| r.is_some());
    if e.config.watch_only && !(e.config.bot_reports && skips_seen) {
        return foreign_filter(e, now);
    }
    let total = e.handled.len();
    let skipped: Vec<&SkipReason> = e
        .handled
        .items
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .collect();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &skipped {
        *by_reason.entry(r.as_str()).or_default() += 1;
    }
    let reasons: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let summary = format!(
        "{} of {} skipped in the last {} s{}",
        skipped.len(),
        counted(total, "message"),
        e.config.window.as_secs(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    let ids = e.skipped_ids.samples();
    // Channels left out on purpose (--allow-channel) are not a broken filter.
    let deliberate = by_reason.contains_key(SkipReason::ChannelNotAllowed.as_str());
    if total >= 3 && skipped.len() == total && by_reason.len() == 1 && !deliberate {
        found(
            Status::Fail,
            format!("every message skipped for one reason: {summary}"),
            reasons,
            ids,
        )
    } else if total >= 10 && skipped.len() * 10 >= total * 9 {
        found(Status::Warn, summary, reasons, ids)
    } else {
        ok(summary)
    }
}

pub(crate) fn content_intent(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if e.config.watch_only && e.config.bot_reports && e.content_missing.total == 0 {
        // Their log and telemetry say nothing of content; only the observer's copy does.
        return super::unknown("their bot's log and telemetry do not show message content");
    }
    let what = format!(
        "without content in the last {} s",
        e.config.window.as_secs()
    );
    match e.content_missing.last_seen("guild message", &what, now) {
        Some(summary) => found(
            Status::Fail,
            summary,
            vec![
                "guild messages that do not mention the bot arrive empty without the \
                 MESSAGE_CONTENT intent"
                    .into(),
            ],
            e.content_missing.samples(),
        ),
        None => ok("messages arrive with their content".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate;
    use crate::evidence::DiagnoseConfig;
    use notifyscope_model::check::CheckId;
    use notifyscope_model::trace::{TraceEvent, TraceKind};
    use notifyscope_store::Identifier;

    /// Evidence of `watch` with their bot's log, after `events` (stage, message number,
    /// text), each a millisecond after the one before, starting 30 s ago.
    fn watched(bot_reports: bool, events: &[(&str, u64, &str)]) -> Evidence {
        let mut config = DiagnoseConfig::new(Identifier::fixed("events"));
        config.watch_only = true;
        config.observer = true;
        config.bot_reports = bot_reports;
        let mut e = Evidence::new(config);
        let start = Utc::now() - chrono::TimeDelta::seconds(30);
        let source = Source::BotLog;
        for (i, (stage, n, text)) in events.iter().enumerate() {
            let kind = match *stage {
                "received" => TraceKind::Received {
                    channel_id: Snowflake(1),
                    guild_id: None,
                    author_id: Snowflake(0),
                    author_name: String::new(),
                    content_bytes: 0,
                    source,
                },
                "skipped" => TraceKind::Skipped {
                    reason: SkipReason::named(text),
                    author_name: String::new(),
                    channel_id: Snowflake(1),
                    source,
                },
                "published" => TraceKind::PublishReported {
                    channel_id: None,
                    source,
                },
                _ => TraceKind::PublishFailed {
                    event_type: "discord.message_created".into(),
                    channel: "events".into(),
                    error: (*text).into(),
                    source,
                },
            };
            e.observe(&TraceEvent {
                at: start + chrono::TimeDelta::milliseconds(i as i64),
                message_id: Some(Snowflake(*n)),
                kind,
            });
        }
        e
    }

    /// The bot of the issue: every 5th message from a bot, every 7th publish failing.
    fn their_bot() -> Vec<(&'static str, u64, &'static str)> {
        let mut events = Vec::new();
        for n in 1..=35 {
            events.push(("received", n, ""));
            events.push(if n % 5 == 0 {
                ("skipped", n, "author is a bot")
            } else if n % 7 == 0 {
                (
                    "publish_failed",
                    n,
                    "ConnectionDoesNotExistError: connection was closed",
                )
            } else {
                ("published", n, "")
            });
        }
        events
    }

    fn judge(e: &mut Evidence, id: CheckId) -> Finding {
        evaluate(id, e, Utc::now()).expect("a live check")
    }

    #[test]
    fn their_failed_publishes_are_named_by_message() {
        let mut e = watched(true, &their_bot());
        let silent = judge(&mut e, CheckId::SilentErrors);
        assert_eq!(silent.status, Status::Fail, "{silent:?}");
        assert!(
            silent.evidence.contains(
                &"message 28 received; publish failed: ConnectionDoesNotExistError: connection was closed"
                    .to_owned()
            ),
            "{silent:?}"
        );
        assert_eq!(silent.message_ids.len(), 4);
        let handled = judge(&mut e, CheckId::AsyncContext);
        assert_eq!(handled.status, Status::Ok, "{handled:?}");
        let filter = judge(&mut e, CheckId::SelfFilter);
        assert_eq!(filter.status, Status::Ok, "{filter:?}");
        assert!(filter.summary.contains("author is a bot 7"), "{filter:?}");
    }

    #[test]
    fn a_message_their_log_never_finished_fails_the_handled_check() {
        let mut e = watched(
            true,
            &[
                ("received", 1, ""),
                ("received", 2, ""),
                ("published", 2, ""),
            ],
        );
        let handled = judge(&mut e, CheckId::AsyncContext);
        assert_eq!(handled.status, Status::Fail, "{handled:?}");
        assert_eq!(handled.message_ids, vec![Snowflake(1)]);
    }

    #[test]
    fn their_filter_that_skips_everything_fails_by_its_own_reason() {
        let events: Vec<_> = (1..=5)
            .flat_map(|n| [("received", n, ""), ("skipped", n, "own message filter")])
            .collect();
        let mut e = watched(true, &events);
        let filter = judge(&mut e, CheckId::SelfFilter);
        assert_eq!(filter.status, Status::Fail, "{filter:?}");
        assert!(filter.summary.contains("own message filter"), "{filter:?}");
    }
}
