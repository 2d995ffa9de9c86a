//! The rules of what goes wrong in the field while every part still runs: a listener whose
//! process stopped reading, commits queued for the NOTIFY lock, payloads close to NOTIFY's
//! limit, and connections that went silent on the way to the server.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{found, ok, sessions_unread, unknown, Finding};
use crate::evidence::{delta, Evidence, NotifySample, Silent};
use crate::window::{ago, SAMPLE};
use notifyscope_model::check::CheckTarget;
use notifyscope_model::contract::NOTIFY_PAYLOAD_LIMIT;
use notifyscope_model::present::{counted, shorten};
use notifyscope_model::text::duration_ms;
use notifyscope_model::trace::Status;
use notifyscope_store::snapshot::{listens_on, Unread};

/// A listener of the channel blocked this long is a warning, [`STALL_FAIL`] a failure. A
/// busy listener on a slow link writes for a moment now and then; one that does not read
/// stays blocked.
const STALL_WARN: Duration = Duration::from_secs(2);
const STALL_FAIL: Duration = Duration::from_secs(10);

/// Commits waiting for the NOTIFY lock at once: one waits behind the holder on any busy
/// server; this many queue.
const QUEUE_WAITERS: usize = 2;
/// Snapshots of the last [`crate::evidence::NOTIFY_SAMPLES`] that must see a queue before
/// it counts: a burst comes and goes, a queue that stays is a warning. A look a second sees
/// a queue that turns over in milliseconds only now and then: on a busy healthy server one
/// snapshot in some tens, under contention one in three to every one.
const QUEUEING_SAMPLES: usize = 5;
/// A commit that waited this long for the NOTIFY lock is a failure: every NOTIFYing
/// transaction of the server is that late.
const QUEUE_FAIL_S: f64 = 1.0;
/// Snapshots older than this say nothing of the queue now.
const QUEUE_MEMORY: Duration = Duration::from_secs(25);

/// Payloads above this many bytes warn: the next longer message fails in `pg_notify`.
const NEAR_LIMIT: usize = 7000;

/// Listeners that do not read what they are sent: their backend sits idle, blocked writing
/// notifications to a client that does not take them (a stopped process, a blocked event
/// loop, a peer gone from the network). A listener of the channel warns after
/// [`STALL_WARN`] and fails after [`STALL_FAIL`]; any other backend of the database warns
/// after [`STALL_FAIL`], since the NOTIFY queue, one for the whole server, fills behind it.
pub(crate) fn stalled_listener(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if let Some(unread) = sessions_unread(e) {
        return unread;
    }
    let channel = e.config.channel.as_str();
    let ours = e
        .listener_is_up()
        .then(|| e.listener_up.map(|(_, pid)| pid))
        .flatten();
    let mut stalled: Vec<(Status, f64, &Unread)> = e
        .unread
        .iter()
        .map(|(pid, (since, u))| {
            let seconds = (now - *since).num_milliseconds().max(0) as f64 / 1e3;
            let listens = listens_on(&u.query, channel) || Some(*pid) == ours;
            let status = match seconds {
                s if listens && s >= STALL_FAIL.as_secs_f64() => Status::Fail,
                s if listens && s >= STALL_WARN.as_secs_f64() => Status::Warn,
                s if !listens && s >= STALL_FAIL.as_secs_f64() => Status::Warn,
                _ => Status::Ok,
            };
            (status, seconds, u)
        })
        .filter(|(status, _, _)| *status != Status::Ok)
        .collect();
    stalled.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let Some((status, seconds, worst)) = stalled.first().copied() else {
        return ok("no backend blocked sending notifications".into());
    };
    let usage = e.snapshot.queue_usage * 100.0;
    let evidence: Vec<String> = stalled
        .iter()
        .take(SAMPLE)
        .map(|(_, seconds, u)| {
            format!(
                "{}, user {}, from {}, last statement {:?}, idle {:.0} s",
                blocked(u, *seconds, channel),
                or_none(&u.user),
                u.client,
                u.query,
                u.idle_s
            )
        })
        .chain(std::iter::once(format!(
            "the NOTIFY queue is {usage:.3} % used"
        )))
        .collect();
    found(status, blocked(worst, seconds, channel), evidence, vec![]).acting_on(
        CheckTarget::Backend {
            pid: worst.pid,
            application_name: worst.application_name.clone(),
            user: worst.user.clone(),
        },
    )
}

/// `pid 42 (psql) blocked 12 s: its process does not read the notifications on t_x`: who,
/// for how long and why first, for a row of the health pane cut at its width.
fn blocked(u: &Unread, seconds: f64, channel: &str) -> String {
    let what = if listens_on(&u.query, channel) {
        format!("the notifications on {channel}")
    } else {
        "its notifications".into()
    };
    format!(
        "pid {} ({}) blocked {seconds:.0} s: its process does not read {what}",
        u.pid,
        or_none(&u.application_name),
    )
}

/// Commits queued for the NOTIFY lock, which every NOTIFYing transaction takes at commit
/// and holds to its end (the WAL flush included): with many of them the server commits
/// them one at a time. Judged over the latest snapshots, so that the bursts of a busy
/// healthy server pass: a warning when [`QUEUE_WAITERS`] or more wait in
/// [`QUEUEING_SAMPLES`] of them, a failure when a commit waited [`QUEUE_FAIL_S`] too.
pub(crate) fn notify_lock(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    if let Some(error) = &e.snapshot.error {
        return unknown(&format!(
            "the sessions could not be read: {}",
            shorten(error, 160)
        ));
    }
    let samples: Vec<&NotifySample> = e
        .notify_samples
        .iter()
        .filter(|s| now - s.at < delta(QUEUE_MEMORY))
        .collect();
    if samples.is_empty() || !e.snapshot_ok() {
        return unknown("not queried yet");
    }
    let queueing: Vec<&&NotifySample> = samples
        .iter()
        .filter(|s| s.waiting >= QUEUE_WAITERS)
        .collect();
    let rates = rates(&samples, e.config.channel.as_str());
    if queueing.len() < QUEUEING_SAMPLES {
        return ok(format!(
            "no queue{}",
            rates.map(|r| format!("; {r}")).unwrap_or_default()
        ));
    }
    let most = queueing.iter().map(|s| s.waiting).max().unwrap_or(0);
    let longest = queueing
        .iter()
        .flat_map(|s| s.waiters.iter().map(|w| w.waiting_s))
        .fold(0.0_f64, f64::max);
    let status = if longest >= QUEUE_FAIL_S {
        Status::Fail
    } else {
        Status::Warn
    };
    let waited = if longest > 0.0 {
        format!(", each up to {}", duration_ms(longest * 1e3))
    } else {
        String::new()
    };
    let summary = format!(
        "up to {most} commits waiting for the lock, in {} of the last {} snapshots{waited}; {}",
        queueing.len(),
        samples.len(),
        rates.unwrap_or_else(|| "the rate of commits is not known yet".into())
    );
    let mut evidence = Vec::new();
    if let Some(longest_queue) = queueing.iter().max_by_key(|s| s.waiters.len()) {
        evidence.extend(waiting_applications(longest_queue));
    }
    if let Some(failed) = &e.snapshot.notify_lock_error {
        evidence.push(format!(
            "who waits could not be read from pg_locks: {}",
            shorten(&failed.describe(), 160)
        ));
    }
    found(status, summary, evidence, vec![])
}

/// The rate of NOTIFYing commits as far as it is seen: notifications heard on the channel
/// (each commit sends one at least) and every commit of the database (the NOTIFYing ones
/// among them), between the first and the last of `samples`.
fn rates(samples: &[&NotifySample], channel: &str) -> Option<String> {
    let (first, last) = (samples.first()?, samples.last()?);
    let seconds = (last.at - first.at).num_milliseconds() as f64 / 1e3;
    if seconds < 1.0 {
        return None;
    }
    let heard = last.heard.saturating_sub(first.heard) as f64 / seconds;
    // The server counts a backend's commits when it flushes its statistics, about once a
    // second: a rate over several snapshots, about right.
    let commits = match (first.commits, last.commits) {
        (Some(a), Some(b)) => format!(
            " (about {:.0} commits/s in this database)",
            (b - a).max(0) as f64 / seconds
        ),
        _ => String::new(),
    };
    Some(format!(
        "NOTIFYing commits: {heard:.0}/s heard on {channel}{commits}"
    ))
}

/// `12 × pgbench (database test)`, then the longest waiters by pid.
fn waiting_applications(sample: &NotifySample) -> Vec<String> {
    let mut by_application: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for w in &sample.waiters {
        *by_application
            .entry((w.application_name.as_str(), w.database.as_str()))
            .or_default() += 1;
    }
    let mut lines: Vec<String> = by_application
        .into_iter()
        .map(|((application, database), n)| {
            format!(
                "{n} × {} (database {}) waiting for the NOTIFY lock",
                or_none(application),
                or_none(database)
            )
        })
        .collect();
    lines.extend(sample.waiters.iter().take(SAMPLE).map(|w| {
        format!(
            "pid {} ({}) has waited {}",
            w.pid,
            or_none(&w.application_name),
            duration_ms(w.waiting_s * 1e3)
        )
    }));
    lines
}

/// The sizes of the payloads heard on the channel in the window: a warning when one comes
/// within a thousand bytes of what NOTIFY takes.
pub(crate) fn payload_size(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let window = e.config.window.as_secs();
    let channel = e.config.channel.as_str();
    let limit = NOTIFY_PAYLOAD_LIMIT;
    let mut sizes: Vec<usize> = e.payload_sizes.items.iter().map(|(_, (b, _))| *b).collect();
    let largest_ever = e
        .largest_payload
        .map(|(at, bytes)| format!("the largest ever {bytes} bytes, {}", ago(now, at)));
    if sizes.is_empty() {
        return ok(format!(
            "no NOTIFY payload heard on {channel} in the last {window} s{}",
            largest_ever.map(|l| format!(" ({l})")).unwrap_or_default()
        ));
    }
    sizes.sort_unstable();
    let quantile = |q: f64| {
        let rank = ((sizes.len() as f64 * q).ceil() as usize).clamp(1, sizes.len());
        sizes[rank - 1]
    };
    let (median, p99, max) = (quantile(0.5), quantile(0.99), quantile(1.0));
    let distribution = format!("median {median}, p99 {p99}, max {max} bytes of {limit}");
    let near = sizes.iter().filter(|b| **b > NEAR_LIMIT).count();
    let by_ref = e
        .payload_sizes
        .items
        .iter()
        .filter(|(_, (_, r))| *r)
        .count();
    let mut evidence = vec![
        format!(
            "sizes in the last {window} s: {}; {distribution}",
            counted(sizes.len(), "payload")
        ),
        buckets(&sizes),
    ];
    if by_ref > 0 {
        evidence.push(format!("{} by reference", counted(by_ref, "event")));
    }
    evidence.extend(largest_ever);
    if near == 0 {
        return found(
            Status::Ok,
            format!(
                "largest {max} of {limit} bytes; median {median}, p99 {p99} of {} on {channel} \
                 in the last {window} s",
                counted(sizes.len(), "payload")
            ),
            evidence,
            vec![],
        );
    }
    found(
        Status::Warn,
        format!(
            "{near} of {} on {channel} in the last {window} s above {NEAR_LIMIT} bytes, the \
             largest {max} of {limit}: a longer message fails in pg_notify",
            counted(sizes.len(), "payload")
        ),
        evidence,
        vec![],
    )
}

/// How many payloads fall in each range of size, for the evidence.
fn buckets(sorted: &[usize]) -> String {
    const EDGES: [(usize, &str); 4] = [
        (1000, "under 1000"),
        (4000, "1000–3999"),
        (NEAR_LIMIT + 1, "4000–7000"),
        (usize::MAX, "above 7000"),
    ];
    let mut lower = 0;
    let parts: Vec<String> = EDGES
        .iter()
        .map(|(upper, name)| {
            let n = sorted
                .iter()
                .filter(|b| **b >= lower && **b < *upper)
                .count();
            lower = *upper;
            format!("{name}: {n}")
        })
        .collect();
    format!("bytes {}", parts.join(", "))
}

/// Connections of the pipeline that missed their deadline in the window: a failure while
/// the latest of a role was not replaced (its role has not worked since), a warning once it
/// was.
pub(crate) fn silent_connections(e: &mut Evidence, now: DateTime<Utc>) -> Finding {
    let mut latest: BTreeMap<&str, (DateTime<Utc>, &Silent)> = BTreeMap::new();
    for (at, s) in &e.silent.items {
        latest.insert(s.role.as_str(), (*at, s));
    }
    if latest.is_empty() {
        return ok(match e.silent.total {
            0 => "none missed its deadline".into(),
            n => format!(
                "none in the last {} s ({n} ever)",
                e.config.window.as_secs()
            ),
        });
    }
    let replaced = |at: DateTime<Utc>, s: &Silent| {
        s.replaced
            || e.alive.get(&s.role).is_some_and(|alive| *alive > at)
            || e.database_up.is_some_and(|up| up > at)
    };
    let mut judged: Vec<(Status, DateTime<Utc>, String)> = latest
        .values()
        .map(|(at, s)| {
            let (status, end) = if replaced(*at, s) {
                (Status::Warn, "replaced")
            } else {
                (Status::Fail, "not replaced yet")
            };
            let text = format!(
                "{} connection to {} went silent for {:.1} s during {}, {}; {end}",
                whose(&s.role),
                s.target,
                s.silent_ms / 1e3,
                s.during,
                ago(now, *at)
            );
            (status, *at, text)
        })
        .collect();
    judged.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let (status, _, summary) = judged[0].clone();
    let evidence = judged.into_iter().map(|(_, _, text)| text).collect();
    found(status, summary, evidence, vec![])
}

/// `the publisher's`, `ingestion's`: whose connection, for people.
fn whose(role: &str) -> String {
    match role {
        "ingestion" => "ingestion's".into(),
        "" => "a".into(),
        role => format!("the {role}'s"),
    }
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "none"
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiagnoseConfig;
    use chrono::TimeDelta;
    use notifyscope_model::trace::{TraceEvent, TraceKind};
    use notifyscope_store::snapshot::{NotifyWaiter, Snapshot};
    use notifyscope_store::Identifier;

    fn evidence() -> Evidence {
        Evidence::new(DiagnoseConfig::new(Identifier::fixed("events")))
    }

    fn at(seconds_ago: i64) -> DateTime<Utc> {
        Utc::now() - TimeDelta::seconds(seconds_ago)
    }

    fn event(at: DateTime<Utc>, kind: TraceKind) -> TraceEvent {
        TraceEvent {
            at,
            message_id: None,
            kind,
        }
    }

    fn silent(role: &str, replaced: bool) -> TraceKind {
        TraceKind::ConnectionSilent {
            role: role.into(),
            target: "host=db.internal port=5432".into(),
            silent_ms: 12_000.0,
            during: "commit".into(),
            replaced,
        }
    }

    #[test]
    fn a_silent_connection_fails_until_replaced_then_warns_until_the_window_ends() {
        let mut e = evidence();
        let now = Utc::now();
        assert_eq!(silent_connections(&mut e, now).status, Status::Ok);

        e.observe(&event(at(40), silent("publisher", false)));
        let f = silent_connections(&mut e, now);
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert_eq!(
            f.summary,
            "the publisher's connection to host=db.internal port=5432 went silent for 12.0 s \
             during commit, 40 s ago; not replaced yet"
        );

        // The publisher's next commit went through on a new connection.
        e.observe(&event(
            at(30),
            TraceKind::Published {
                event_id: Default::default(),
                outbox_id: 1,
                channel: "events".into(),
                bytes: 10,
                by_ref: false,
                source: Default::default(),
            },
        ));
        let f = silent_connections(&mut e, now);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(f.summary.ends_with("40 s ago; replaced"), "{f:?}");

        e.observe(&event(at(5), silent("ingestion", true)));
        let f = silent_connections(&mut e, now);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(f.summary.starts_with("ingestion's connection"), "{f:?}");
        assert_eq!(f.evidence.len(), 2, "{f:?}");

        // Past the window both are history.
        e.prune(now + TimeDelta::seconds(61));
        let f = silent_connections(&mut e, now + TimeDelta::seconds(61));
        assert_eq!(f.status, Status::Ok, "{f:?}");
        assert!(f.summary.contains("(2 ever)"), "{f:?}");
    }

    fn notify_snapshot(at: DateTime<Utc>, waiting: usize, waited_s: f64, commits: i64) -> Snapshot {
        Snapshot {
            at: Some(at),
            notify_waiting: waiting as i64,
            notify_waiters: (0..waiting)
                .map(|i| NotifyWaiter {
                    pid: 100 + i as i32,
                    application_name: "pgbench".into(),
                    database: "test".into(),
                    waiting_s: waited_s,
                })
                .collect(),
            commits: Some(commits),
            ..Snapshot::default()
        }
    }

    #[test]
    fn bursts_of_notify_lock_waits_pass_and_a_queue_that_stays_warns_with_its_rate() {
        let mut e = evidence();
        // A busy healthy server: now and then one commit waits behind another, twice more.
        let healthy = [0, 1, 0, 2, 1, 0, 0, 1, 0, 1, 0, 0, 3, 0, 1, 0, 0, 0, 1, 0];
        for (i, waiting) in healthy.into_iter().enumerate() {
            let t = at(20 - i as i64);
            e.observe_snapshot(notify_snapshot(t, waiting, 0.001, 1000 * i as i64));
        }
        let f = notify_lock(&mut e, Utc::now());
        assert_eq!(f.status, Status::Ok, "{f:?}");
        assert!(
            f.summary.ends_with(
                "; NOTIFYing commits: 0/s heard on events (about 1000 commits/s in this database)"
            ),
            "{f:?}"
        );

        // Five snapshots later, five of the last twenty saw a queue.
        for (i, waiting) in [12, 0, 9, 2, 15].into_iter().enumerate() {
            let t = at(4 - i as i64);
            e.observe_snapshot(notify_snapshot(t, waiting, 0.02, 20_000 + 2000 * i as i64));
        }
        let f = notify_lock(&mut e, Utc::now());
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(
            f.summary.starts_with(
                "up to 15 commits waiting for the lock, in 5 of the last 20 snapshots, "
            ),
            "{f:?}"
        );
        assert!(f.summary.contains(", each up to 20ms; "), "{f:?}");
        assert!(f.summary.contains("commits/s in this database)"), "{f:?}");
        assert!(
            f.evidence
                .iter()
                .any(|l| l == "15 × pgbench (database test) waiting for the NOTIFY lock"),
            "{f:?}"
        );

        // A commit that waited a second: every NOTIFYing transaction is that late.
        e.observe_snapshot(notify_snapshot(Utc::now(), 4, 1.5, 30_000));
        assert_eq!(notify_lock(&mut e, Utc::now()).status, Status::Fail);
    }

    fn notified(at: DateTime<Utc>, bytes: usize) -> TraceEvent {
        event(
            at,
            TraceKind::Notified {
                channel: "events".into(),
                sender_pid: 1,
                outbox_id: None,
                by_ref: false,
                bytes,
                payload: String::new(),
            },
        )
    }

    #[test]
    fn payloads_near_the_limit_warn_with_their_distribution() {
        let mut e = evidence();
        let now = Utc::now();
        for i in 0..98 {
            e.observe(&notified(at(20), 400 + i));
        }
        let f = payload_size(&mut e, now);
        assert_eq!(f.status, Status::Ok, "{f:?}");
        assert_eq!(
            f.summary,
            "largest 497 of 7999 bytes; median 448, p99 497 of 98 payloads on events in the last \
             60 s"
        );
        e.observe(&notified(at(10), 7400));
        e.observe(&notified(at(5), 7512));
        let f = payload_size(&mut e, now);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(
            f.summary
                == "2 of 100 payloads on events in the last 60 s above 7000 bytes, the largest \
                    7512 of 7999: a longer message fails in pg_notify",
            "{f:?}"
        );
        assert!(
            f.evidence
                .iter()
                .any(|l| l == "bytes under 1000: 98, 1000–3999: 0, 4000–7000: 0, above 7000: 2"),
            "{f:?}"
        );
        // Out of the window, the largest is still remembered.
        e.prune(now + TimeDelta::seconds(120));
        let f = payload_size(&mut e, now + TimeDelta::seconds(120));
        assert_eq!(f.status, Status::Ok, "{f:?}");
        assert!(f.summary.contains("the largest ever 7512 bytes"), "{f:?}");
    }

    fn unread(pid: i32, query: &str) -> Unread {
        Unread {
            pid,
            application_name: "psql".into(),
            user: "app".into(),
            client: "10.0.0.7:50312".into(),
            query: query.into(),
            idle_s: 100.0,
        }
    }

    #[test]
    fn a_listener_that_does_not_read_is_named_after_its_time_blocked() {
        let mut e = evidence();
        let snap = |at, unread: Vec<Unread>| Snapshot {
            at: Some(at),
            unread,
            ..Snapshot::default()
        };
        let theirs = unread(4242, "LISTEN events");
        let elsewhere = unread(77, "LISTEN other");
        e.observe_snapshot(snap(at(12), vec![theirs.clone(), elsewhere.clone()]));
        let f = stalled_listener(&mut e, at(12));
        assert_eq!(f.status, Status::Ok, "a first sight is no stall yet: {f:?}");
        let f = stalled_listener(&mut e, at(9));
        assert_eq!(f.status, Status::Warn, "{f:?}");
        e.observe_snapshot(snap(at(0), vec![theirs.clone(), elsewhere]));
        let f = stalled_listener(&mut e, Utc::now());
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert_eq!(
            f.summary,
            "pid 4242 (psql) blocked 12 s: its process does not read the notifications on events"
        );
        assert!(f.evidence[0].contains("from 10.0.0.7:50312"), "{f:?}");
        assert_eq!(
            f.evidence[1].split(", user ").next(),
            Some("pid 77 (psql) blocked 12 s: its process does not read its notifications"),
            "{f:?}"
        );
        assert_eq!(
            f.target,
            Some(CheckTarget::Backend {
                pid: 4242,
                application_name: "psql".into(),
                user: "app".into()
            })
        );
        // It reads again: forgotten at once.
        e.observe_snapshot(snap(Utc::now(), vec![]));
        assert_eq!(stalled_listener(&mut e, Utc::now()).status, Status::Ok);
    }
}
