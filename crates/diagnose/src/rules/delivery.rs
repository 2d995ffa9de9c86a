//! The rules of delivery: payloads that follow the contract, the channel, and a listener
//! that hears the NOTIFYs and gets the rows into the table.

use chrono::{DateTime, Utc};

use super::{found, ok, unknown, Finding};
use crate::evidence::{delta, Evidence};
use crate::window::ago;
use notifyscope_model::check::CheckTarget;
use notifyscope_model::present::{counted, shorten};
use notifyscope_model::trace::Status;
use notifyscope_store::snapshot::listens_on;

pub(crate) fn malformed(e: &mut Evidence, _now: DateTime<Utc>) -> Finding {
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

pub(crate) fn channel(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
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

pub(crate) fn listener(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
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
    let lost = e.notified.overdue(now - delta(e.config.deadline));
    if listen_query {
        // A LISTEN in pg_stat_activity proves a session asked, not that anyone hears: the
        // rows of notified messages decide.
        if lost.is_empty() {
            return found(
                Status::Ok,
                format!("a backend's last query is LISTEN {channel}"),
                backends,
                vec![],
            );
        }
        let mut finding = found(
            Status::Fail,
            format!(
                "a backend's last query is LISTEN {channel}, but {} never reached the table:                  the session that listens does not hear them or does not ingest",
                counted(lost.len(), "notified message")
            ),
            backends,
            lost.iter().map(|(_, id)| *id).take(20).collect(),
        );
        finding.hint = Some(
            "a listener behind a transaction pooler (PgBouncer's pool_mode = transaction, a \
             managed database's pooled port) LISTENs on a server session the pooler hands to \
             others, and hears nothing: connect the listener to the server itself or to a \
             session-mode port; else look in its log for the error that stopped ingestion"
                .to_owned(),
        );
        return finding;
    }
    let mut evidence = backends;
    evidence.push(
        "a listener that ran other queries after LISTEN is not visible by its query text; \
         rows appearing for notified messages are the proof"
            .into(),
    );
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
