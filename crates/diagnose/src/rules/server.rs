//! The rules of the database's side: the connection, our writes, the NOTIFY queue, the
//! outbox backlog and the sessions that hold the pipeline up with a lock.

use chrono::{DateTime, Utc};

use super::{found, ok, sessions_unread, unknown, Finding};
use crate::evidence::{delta, Evidence};
use crate::window::{ago, SAMPLE};
use notifyscope_model::check::CheckTarget;
use notifyscope_model::present::{counted, shorten};
use notifyscope_model::trace::Status;
use notifyscope_store::errors::table_named;
use notifyscope_store::ErrorClass;

pub(crate) fn database(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
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
pub(crate) fn writes(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
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

pub(crate) fn notify_queue(e: &mut Evidence, _now: DateTime<Utc>) -> Finding {
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

pub(crate) fn backlog(e: &mut Evidence, _now: DateTime<Utc>) -> Finding {
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

/// Messages given up stay a failure until someone retries or deletes them: no window ages
/// them out, since each is a message that did not arrive.
pub(crate) fn given_up(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if !e.snapshot_ok() {
        return unknown("not queried yet");
    }
    if let Some(failed) = &e.snapshot.given_up_error {
        return unknown(&format!(
            "the given-up rows could not be read: {}",
            shorten(&failed.describe(), 160)
        ));
    }
    let Some(given_up) = &e.snapshot.given_up else {
        return unknown("no event_outbox to look at");
    };
    if given_up.total() == 0 {
        return ok("no outbox row given up, no dead letter".into());
    }
    let count = |n: i64, what| counted(usize::try_from(n).unwrap_or(0), what);
    let mut parts = Vec::new();
    if given_up.outbox_rows > 0 {
        parts.push(format!(
            "{} given up",
            count(given_up.outbox_rows, "outbox row")
        ));
    }
    if given_up.dead_letters > 0 {
        parts.push(count(given_up.dead_letters, "dead letter"));
    }
    let oldest = given_up
        .oldest_age_s
        .map(|s| {
            let at = now - delta(std::time::Duration::from_secs_f64(s.max(0.0)));
            format!(", the oldest given up {}", ago(now, at))
        })
        .unwrap_or_default();
    let evidence = given_up
        .last_error
        .iter()
        .map(|error| format!("last error: {error}"))
        .collect();
    found(
        Status::Fail,
        format!("{}{oldest}; retry or delete them", parts.join(" and ")),
        evidence,
        vec![],
    )
    .acting_on(CheckTarget::DeadLetters)
}

/// Backends of the pipeline waiting for a lock on its tables, named with the session that
/// holds the lock: warn after `lock_wait`, fail after five times that.
pub(crate) fn lock_waits(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if let Some(unread) = sessions_unread(e) {
        return unread;
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
    let describe = |b: &crate::evidence::Blocked| {
        let w = &b.wait;
        format!(
            "pid {} ({}) waits for {} on {} for {:.0} s, blocked by {}",
            w.pid,
            or_none(&w.application_name),
            w.mode,
            w.relation,
            (now - b.since).num_milliseconds() as f64 / 1e3,
            w.blocker,
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
