//! The rules: one function per live check, judging the [`Evidence`] as of a moment. Each
//! returns a [`Finding`]; [`super::checks`] names them and adds the fix.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::contract::Snowflake;
use crate::diagnose::evidence::{delta, Evidence};
use crate::diagnose::snapshot::listens_on;
use crate::diagnose::target::CheckTarget;
use crate::diagnose::window::{ago, SAMPLE};
use crate::present::{counted, shorten};
use crate::store::errors::table_named;
use crate::store::ErrorClass;
use crate::trace::{SkipReason, Status, WriteStage};

/// What a rule found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub status: Status,
    pub summary: String,
    pub evidence: Vec<String>,
    pub message_ids: Vec<Snowflake>,
    /// A fix for this finding in particular, instead of the check's own.
    pub hint: Option<String>,
    /// What an action on the check would act on.
    pub target: Option<CheckTarget>,
}

impl Finding {
    fn acting_on(mut self, target: CheckTarget) -> Self {
        self.target = Some(target);
        self
    }
}

fn found(
    status: Status,
    summary: String,
    evidence: Vec<String>,
    message_ids: Vec<Snowflake>,
) -> Finding {
    Finding {
        status,
        summary,
        evidence,
        message_ids,
        hint: None,
        target: None,
    }
}

fn ok(summary: String) -> Finding {
    found(Status::Ok, summary, vec![], vec![])
}

pub(super) fn unknown(summary: &str) -> Finding {
    found(Status::Unknown, summary.into(), vec![], vec![])
}

pub(super) fn runtime(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
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

pub(super) fn async_context(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let overdue = e.received.overdue(now - delta(e.config.deadline));
    if overdue.is_empty() {
        ok(format!(
            "every received message skipped or published within {} s",
            e.config.deadline.as_secs()
        ))
    } else {
        let ids: Vec<Snowflake> = overdue.iter().map(|(_, id)| *id).collect();
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

pub(super) fn malformed(e: &mut Evidence, _now: DateTime<Utc>) -> Finding {
    let count = e.rejected.len() + e.malformed_gateway.len();
    if count == 0 {
        ok(format!(
            "no malformed event in the last {} s ({} ever)",
            e.config.window.as_secs(),
            e.rejected.total + e.malformed_gateway.total
        ))
    } else {
        let mut evidence = e.rejected.samples();
        evidence.extend(e.malformed_gateway.samples());
        found(
            Status::Fail,
            format!(
                "{} rejected, {} unparseable in the last {} s",
                counted(e.rejected.len(), "NOTIFY payload"),
                counted(e.malformed_gateway.len(), "gateway event"),
                e.config.window.as_secs()
            ),
            evidence,
            vec![],
        )
        .acting_on(CheckTarget::DeadLetters)
    }
}

pub(super) fn database(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if let Some(error) = &e.snapshot.error {
        if e.snapshot.error_class == Some(ErrorClass::Timeout) {
            // pg_stat_activity takes no table lock: a timeout there is a slow server.
            return found(
                Status::Warn,
                format!("the database is slow to answer: {}", shorten(error, 120)),
                vec![error.clone()],
                vec![],
            );
        }
        return found(
            Status::Fail,
            format!("the database does not answer: {}", shorten(error, 120)),
            vec![error.clone()],
            vec![],
        );
    }
    if let Some((at, error)) = &e.database_down {
        if !e.snapshot_ok() || e.snapshot.at.is_some_and(|s| s < *at) {
            return found(
                Status::Fail,
                format!("connection lost {}", ago(now, *at)),
                vec![error.clone()],
                vec![],
            );
        }
    }
    if !e.publish_errors.items.is_empty() {
        return found(
            Status::Warn,
            format!(
                "{} in the last {} s",
                counted(e.publish_errors.len(), "publish error"),
                e.config.window.as_secs()
            ),
            e.publish_errors.samples(),
            vec![],
        );
    }
    if e.snapshot_ok() {
        ok("the database answers".into())
    } else {
        unknown("not queried yet")
    }
}

/// Writes the database refused for a reason of its own (a grant, a lock, a missing table, no
/// resources) or of one row (a constraint, a value): named with the class, who wrote what,
/// and the fix for that class.
pub(super) fn writes(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let window = e.config.window.as_secs();
    let role = e.config.role.clone();
    let evidence: Vec<String> = e
        .refusals
        .items
        .iter()
        .rev()
        .take(SAMPLE)
        .map(|(at, r)| format!("{} {}: {}: {}", r.part, ago(now, *at), r.class, r.error))
        .collect();
    let refused_now = e.refused_now(now);
    // What is refused now, a fault of the database before a fault of one row.
    if let Some((at, r)) = refused_now
        .iter()
        .max_by_key(|(at, r)| (r.class.is_transient(), *at))
    {
        let table = table_named(&r.error).unwrap_or(r.part.table());
        let writer = r.part.writer();
        let error = shorten(&r.error, 160);
        let summary = match r.class {
            ErrorClass::Permission => format!("{writer} may not write {table}: {error}"),
            ErrorClass::MissingObject => format!("{writer} finds no {table}: {error}"),
            ErrorClass::Timeout => {
                format!("{writer} waited on a lock on {table} past lock_timeout: {error}")
            }
            class => format!("{writer}: {}: {error}", class.describe()),
        };
        let status = if r.class.is_transient() {
            Status::Fail
        } else {
            // One row's own fault: the rest may flow; it ends as a dead letter.
            Status::Warn
        };
        let mut finding = found(
            status,
            format!("{summary} (since {})", ago(now, *at)),
            evidence,
            vec![],
        );
        finding.hint = Some(r.class.fix(role.as_deref(), Some(table)));
        return finding;
    }
    match e.refusals.last() {
        Some((at, r)) => {
            let class = r.class;
            let table = table_named(&r.error).unwrap_or(r.part.table()).to_owned();
            let mut finding = found(
                Status::Warn,
                format!(
                    "{} refused in the last {window} s ({}), last {}; writes go through again",
                    counted(e.refusals.len(), "write"),
                    class.describe(),
                    ago(now, *at)
                ),
                evidence,
                vec![],
            );
            finding.hint = Some(class.fix(role.as_deref(), Some(&table)));
            finding
        }
        None => ok(format!(
            "the database took every write ({} refused ever)",
            e.refusals.total
        )),
    }
}

pub(super) fn publish_before_listener(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
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

pub(super) fn silent_errors(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let lost = e.notified.overdue(now - delta(e.config.deadline));
    let counts: Vec<String> = e.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
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
    if counts.is_empty() {
        ok("no error on any path".into())
    } else {
        ok(format!("every error reported: {}", counts.join(", ")))
    }
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

pub(super) fn self_filter(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if e.config.watch_only {
        return foreign_filter(e, now);
    }
    let total = e.handled.len();
    let skipped: Vec<SkipReason> = e.handled.items.iter().filter_map(|(_, r)| *r).collect();
    let mut by_reason: BTreeMap<&'static str, usize> = BTreeMap::new();
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

pub(super) fn channel(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let mut evidence = Vec::new();
    let mut status = Status::Ok;
    for (channel, (count, at)) in &e.neighbours {
        if now - *at < delta(e.config.window) {
            // Another spelling of our channel is surely a mistake; a usual name
            // such as `events` may belong to another application.
            let spelling = channel.eq_ignore_ascii_case(e.config.channel.as_str());
            status = status.max(if spelling { Status::Fail } else { Status::Warn });
            evidence.push(format!(
                "{count} NOTIFY on {channel:?} (a neighbour of {:?}), last {}",
                e.config.channel.as_str(),
                ago(now, *at)
            ));
        }
    }
    for (channel, n) in &e.snapshot.other_channels {
        status = Status::Fail;
        evidence.push(format!(
            "{} published to channel {channel:?} waiting in the outbox: nobody ingests that channel",
            counted(usize::try_from(*n).unwrap_or(0), "event")
        ));
    }
    if !e.unknown_event_types.items.is_empty() {
        status = Status::Fail;
        evidence.extend(e.unknown_event_types.samples());
    }
    if status == Status::Ok {
        ok(format!("all traffic on {:?}", e.config.channel.as_str()))
    } else {
        found(
            status,
            evidence.first().cloned().unwrap_or_default(),
            evidence,
            vec![],
        )
    }
}

pub(super) fn content_intent(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
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

pub(super) fn notify_queue(e: &mut Evidence, _now: DateTime<Utc>) -> Finding {
    if !e.snapshot_ok() {
        return unknown("not queried yet");
    }
    let usage = e.snapshot.queue_usage;
    let pct = usage * 100.0;
    let suspects: Vec<String> = e
        .snapshot
        .idle_in_transaction
        .iter()
        .map(|b| {
            format!(
                "pid {} ({}) idle in transaction for {:.0} s, last query {:?}",
                b.pid,
                if b.application_name.is_empty() {
                    "no application_name"
                } else {
                    &b.application_name
                },
                b.seconds_in_state,
                shorten(&b.query, 60)
            )
        })
        .collect();
    let status = if usage > 0.5 {
        Status::Fail
    } else if usage > 0.001 {
        Status::Warn
    } else {
        Status::Ok
    };
    if status == Status::Ok {
        ok(format!("queue {pct:.3} % used"))
    } else {
        let summary = match suspects.first() {
            Some(s) => format!("queue {pct:.2} % used; suspect: {s}"),
            None => format!("queue {pct:.2} % used: a listener is not consuming"),
        };
        let finding = found(status, summary, suspects, vec![]);
        match e.snapshot.idle_in_transaction.first() {
            Some(b) => finding.acting_on(CheckTarget::Backend {
                pid: b.pid,
                application_name: b.application_name.clone(),
                user: String::new(),
            }),
            None => finding,
        }
    }
}

pub(super) fn backlog(e: &mut Evidence, _now: DateTime<Utc>) -> Finding {
    if !e.snapshot_ok() {
        return unknown("not queried yet");
    }
    if let Some(failed) = &e.snapshot.outbox_error {
        return unknown(&format!(
            "the outbox could not be read: {}",
            shorten(&failed.describe(), 160)
        ));
    }
    let Some(count) = e.snapshot.backlog else {
        return unknown("no event_outbox to look at");
    };
    let age = e.snapshot.oldest_age_s.unwrap_or(0.0);
    let limit = e.config.backlog_age.as_secs_f64();
    let summary = format!(
        "{}, oldest {age:.1} s old",
        counted(
            usize::try_from(count).unwrap_or(0),
            "unprocessed outbox row"
        )
    );
    if count == 0 || age < limit {
        ok(summary)
    } else if age < limit * 10.0 {
        found(Status::Warn, summary, vec![], vec![]).acting_on(CheckTarget::StuckRows)
    } else {
        found(Status::Fail, summary, vec![], vec![]).acting_on(CheckTarget::StuckRows)
    }
}

/// Backends of the pipeline waiting for a lock on its tables, named with the session that
/// holds the lock: warn after `lock_wait`, fail after five times that.
pub(super) fn lock_waits(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if let Some(error) = &e.snapshot.error {
        return unknown(&format!(
            "the sessions could not be read: {}",
            shorten(error, 160)
        ));
    }
    if !e.snapshot_ok() {
        return unknown("not queried yet");
    }
    if let Some(failed) = &e.snapshot.lock_error {
        return unknown(&format!(
            "a backend waits on a lock, but who holds it could not be read: {}",
            shorten(&failed.describe(), 160)
        ));
    }
    let limit = delta(e.config.lock_wait);
    let Some(longest) = e.blockers.values().min_by_key(|b| b.since) else {
        return ok("nothing waits on a lock".into());
    };
    let blocked_for = now - longest.since;
    let status = if blocked_for >= limit * 5 {
        Status::Fail
    } else if blocked_for >= limit {
        Status::Warn
    } else {
        Status::Ok
    };
    let describe = |b: &crate::diagnose::evidence::Blocked| {
        let w = &b.wait;
        let k = &w.blocker;
        format!(
            "pid {} ({}) waits for {} on {} for {:.0} s, blocked by pid {} ({}, user {}, {} for {:.0} s, statement {})",
            w.pid,
            or_none(&w.application_name),
            w.mode,
            w.relation,
            (now - b.since).num_milliseconds() as f64 / 1e3,
            k.pid,
            or_none(&k.application_name),
            or_none(&k.user),
            or_none(&k.state),
            k.seconds,
            if k.statement.is_empty() { "unknown" } else { &k.statement },
        )
    };
    let evidence: Vec<String> = e.blockers.values().take(SAMPLE).map(describe).collect();
    let blocker = &longest.wait.blocker;
    found(status, describe(longest), evidence, vec![]).acting_on(CheckTarget::Backend {
        pid: blocker.pid,
        application_name: blocker.application_name.clone(),
        user: blocker.user.clone(),
    })
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "none"
    } else {
        text
    }
}

pub(super) fn listener(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let backends: Vec<String> = e
        .snapshot
        .listeners
        .iter()
        .map(|b| {
            format!(
                "pid {} {} ({}): {:?}",
                b.pid,
                b.application_name,
                b.state,
                shorten(&b.query, 60)
            )
        })
        .collect();
    if e.config.watch_only {
        foreign_listener(e, now, backends)
    } else {
        own_listener(e, now, backends)
    }
}

/// Our listener, known from its own trace events (and seen in the snapshot).
fn own_listener(e: &mut Evidence, now: DateTime<Utc>, backends: Vec<String>) -> Finding {
    let channel = e.config.channel.as_str();
    if let Some((at, cause)) = e.listener_down.clone() {
        if !e.listener_is_up() {
            let mut evidence = vec![format!("listener down {}: {cause}", ago(now, at))];
            evidence.extend(backends);
            return found(
                Status::Fail,
                format!("our listener on {channel:?} is down: {cause}"),
                evidence,
                vec![],
            );
        }
    }
    match e.listener_up {
        Some((at, pid)) if e.listener_is_up() => {
            let seen = e.snapshot.listeners.iter().any(|b| b.pid == pid);
            let mut evidence = vec![format!("probe answered {}", ago(now, at))];
            evidence.extend(backends);
            if e.snapshot_ok() && !seen {
                found(
                    Status::Warn,
                    format!("listener pid {pid} answered its probe but is not in pg_stat_activity"),
                    evidence,
                    vec![],
                )
            } else {
                found(
                    Status::Ok,
                    format!("listener pid {pid} on {channel:?}, probe answered"),
                    evidence,
                    vec![],
                )
            }
        }
        _ if now - e.started > delta(e.config.deadline) => found(
            Status::Fail,
            format!("no listener on {channel:?} has come up"),
            backends,
            vec![],
        ),
        _ => unknown("listener starting"),
    }
}

/// Someone else's listener: a LISTEN in `pg_stat_activity`, or notified messages that
/// reach the table.
fn foreign_listener(e: &mut Evidence, now: DateTime<Utc>, backends: Vec<String>) -> Finding {
    let channel = e.config.channel.as_str();
    if e.snapshot.at.is_none() {
        return unknown("not queried yet");
    }
    let listen_query = e
        .snapshot
        .listeners
        .iter()
        .any(|b| listens_on(&b.query, channel));
    if listen_query {
        return found(
            Status::Ok,
            format!("a backend's last query is LISTEN {channel}"),
            backends,
            vec![],
        );
    }
    let mut evidence = backends;
    evidence.push(
        "a listener that ran other queries after LISTEN is not visible by its query text; \
         rows appearing for notified messages are the proof"
            .into(),
    );
    let lost = e.notified.overdue(now - delta(e.config.deadline));
    if e.notified.order.is_empty() && e.notified_rows == 0 {
        return found(
            Status::Warn,
            format!("no backend in pg_stat_activity shows LISTEN {channel} as its last query"),
            evidence,
            vec![],
        );
    }
    if lost.is_empty() {
        // Ok only with the proof: a notified message whose row appeared.
        if e.notified_rows == 0 {
            return found(
                Status::Unknown,
                format!(
                    "no backend shows LISTEN {channel}; a message was notified, its row is not in the table yet"
                ),
                evidence,
                vec![],
            );
        }
        found(
            Status::Ok,
            format!(
                "{} reached the table, though no backend shows LISTEN {channel}",
                counted(
                    usize::try_from(e.notified_rows).unwrap_or(usize::MAX),
                    "notified message"
                )
            ),
            evidence,
            vec![],
        )
    } else {
        found(
            Status::Fail,
            format!(
                "no backend shows LISTEN {channel} and {} never reached the table",
                counted(lost.len(), "notified message")
            ),
            evidence,
            lost.iter().map(|(_, id)| *id).take(20).collect(),
        )
    }
}
