//! Diagnosis: the checks of the failure table, judged from two sources only: the trace
//! stream and one small query a second. [`evidence`] keeps what was seen, [`snapshot`] (the
//! store's) runs the query, [`checks`] judges by one rule per check, and [`spawn`] runs it all
//! and reports every second; it reads the trace and the database and writes neither (but for
//! `health_changed` events). [`doctor`] is the one-shot look, judged by the same rules, whose
//! round trip publishes one probe message of its own.

pub mod checks;
pub mod doctor;
mod doctor_checks;
pub mod evidence;
mod rules;
pub use notifyscope_store::snapshot;
mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use evidence::DiagnoseConfig;
pub use notifyscope_model::check::{Check, CheckId, CheckTarget, Report};
pub use notifyscope_store::snapshot::{
    listens_on, snapshot, statement_shown, Backend, LockScope, Snapshot,
};
pub use rules::Finding;

use crate::evidence::Evidence;
use notifyscope_model::contract::Snowflake;
use notifyscope_model::trace::{Status, Trace, TraceEvent, TraceKind, TraceReceiver};
use notifyscope_store::{error_chain, Identifier};

/// The evidence and the checks judged from it, with when each last changed status.
pub struct Diagnosis {
    evidence: Evidence,
    since: HashMap<CheckId, (Status, DateTime<Utc>)>,
}

impl Diagnosis {
    pub fn new(config: DiagnoseConfig) -> Self {
        Diagnosis {
            evidence: Evidence::new(config),
            since: HashMap::new(),
        }
    }

    pub fn observe(&mut self, event: &TraceEvent) {
        self.evidence.observe(event);
    }

    /// Notified messages past the deadline, to be looked up in the table: another process
    /// sharing the outbox may have ingested them.
    pub fn overdue_notified(&mut self, now: DateTime<Utc>) -> Vec<Snowflake> {
        self.evidence.overdue_notified(now)
    }

    /// Messages found in the table: done, whoever ingested them.
    pub fn found_in_table(&mut self, ids: &[Snowflake]) {
        self.evidence.found_in_table(ids);
    }

    pub fn observe_snapshot(&mut self, snapshot: Snapshot) {
        self.evidence.observe_snapshot(snapshot);
    }

    /// Every live check as of `now`, worst first.
    pub fn checks(&mut self, now: DateTime<Utc>) -> Vec<Check> {
        self.evidence.prune(now);
        let mut checks: Vec<Check> = CheckId::ALL
            .iter()
            .filter_map(|id| self.check(*id, now))
            .collect();
        checks.sort_by_key(|c| std::cmp::Reverse(c.status));
        checks
    }

    fn check(&mut self, id: CheckId, now: DateTime<Utc>) -> Option<Check> {
        let finding = checks::evaluate(id, &mut self.evidence, now)?;
        let since = match self.since.get(&id) {
            Some((s, at)) if *s == finding.status => *at,
            _ => {
                self.since.insert(id, (finding.status, now));
                now
            }
        };
        Some(Check {
            id,
            name: id.name().into(),
            status: finding.status,
            summary: finding.summary,
            evidence: finding.evidence,
            // An unknown check has found nothing to fix: it says what it waits for instead.
            hint: match finding.status {
                Status::Unknown => String::new(),
                _ => finding.hint.unwrap_or_else(|| id.hint().into()),
            },
            since,
            message_ids: finding.message_ids,
            target: finding.target,
        })
    }
}

/// The checks a one-shot look such as `doctor` can judge by the live rules: what one
/// snapshot decides (queue, lock waits, backlog, given-up messages, stray channels) and the
/// writes, from the database's refusals among `events`. Without an outbox in the snapshot,
/// the outbox's checks are left out.
pub fn snapshot_checks(
    channel: &Identifier,
    role: Option<&str>,
    snapshot: Snapshot,
    events: &[TraceEvent],
) -> Vec<Check> {
    let with_outbox = snapshot.backlog.is_some();
    let mut config = DiagnoseConfig::new(channel.clone());
    config.role = role.map(str::to_owned);
    let mut diagnosis = Diagnosis::new(config);
    for event in events {
        diagnosis.observe(event);
    }
    diagnosis.observe_snapshot(snapshot);
    let now = Utc::now();
    [
        CheckId::Writes,
        CheckId::LockWaits,
        CheckId::NotifyQueue,
        CheckId::Backlog,
        CheckId::GivenUp,
        CheckId::Channel,
    ]
    .into_iter()
    .filter(|id| {
        with_outbox
            || matches!(
                id,
                CheckId::NotifyQueue | CheckId::LockWaits | CheckId::Writes
            )
    })
    .filter_map(|id| diagnosis.check(id, now))
    .collect()
}

/// Channels people publish to by mistake instead of `channel`: its other spellings (LISTEN
/// folds unquoted names to lower case, pg_notify does not), the usual names when `channel`
/// is the default one (a pipeline that never named its channel may publish to any of them),
/// and `extra`, asked for by name. A usual name of someone else's channel is no mistake of
/// this pipeline: other software on the server may own it.
pub fn neighbours(channel: &Identifier, extra: &[Identifier]) -> Vec<Identifier> {
    let name = channel.as_str();
    let mut capitalised = name.to_lowercase();
    if let Some(first) = capitalised.get(..1).map(str::to_uppercase) {
        capitalised.replace_range(..1, &first);
    }
    let mut candidates = vec![name.to_lowercase(), name.to_uppercase(), capitalised];
    if name == notifyscope_store::DEFAULT_CHANNEL {
        candidates.extend(USUAL_CHANNELS.iter().map(|c| (*c).to_owned()));
    }
    let mut out: Vec<Identifier> = Vec::new();
    for c in candidates
        .iter()
        .filter_map(|c| Identifier::channel(c).ok())
        .chain(extra.iter().cloned())
    {
        if c.as_str() != name && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Channel names bots commonly publish to.
const USUAL_CHANNELS: [&str; 3] = ["events", "discord", "discord_events"];

/// The longest one tick's queries may take, past the timeouts of their parts (four parts of
/// at most 2 s each).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// One tick's snapshot. Each part gives up on a lock or a slow statement by itself; queries
/// that hang past all of them mean the server does not answer, and must not stop the
/// diagnosis from reading the trace. A connection given up on that way may still be inside
/// a part's transaction, so it is closed, never handed back to the pool.
async fn tick_snapshot(
    pool: &Pool,
    channel: &Identifier,
    with_outbox: bool,
    overdue: &[Snowflake],
    locks: &LockScope,
) -> Snapshot {
    let failed = |error: String| Snapshot {
        at: Some(Utc::now()),
        error: Some(error),
        ..Snapshot::default()
    };
    let client = match tokio::time::timeout(SNAPSHOT_TIMEOUT, pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return failed(error_chain(&e)),
        Err(_) => {
            return failed(format!(
                "no connection within {} s",
                SNAPSHOT_TIMEOUT.as_secs()
            ))
        }
    };
    let query = snapshot(&client, channel, with_outbox, overdue, locks);
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, query).await {
        Ok(snap) => snap,
        Err(_) => {
            drop(deadpool_postgres::Object::take(client));
            failed(format!(
                "the diagnosis queries took over {} s",
                SNAPSHOT_TIMEOUT.as_secs()
            ))
        }
    }
}

/// Minimum time between two `health_report` events whose statuses are the same: the
/// evidence (ages, counts) changes every second, the verdicts rarely.
const REPORT_DETAILS_EVERY: Duration = Duration::from_secs(10);

/// Decides when the checks go on the trace as a `health_report`: at once when a status
/// changed, else when the evidence changed and the last report is old enough.
#[derive(Default)]
struct HealthReports {
    last: Option<Reported>,
}

/// The statuses and checks of the last report, and when it went out.
type Reported = (Vec<(CheckId, Status)>, Vec<Check>, std::time::Instant);

impl HealthReports {
    fn offer(&mut self, checks: &[Check], trace: &Trace) {
        let statuses: Vec<(CheckId, Status)> = checks.iter().map(|c| (c.id, c.status)).collect();
        let due = match &self.last {
            None => true,
            Some((s, _, _)) if *s != statuses => true,
            Some((_, c, at)) => c.as_slice() != checks && at.elapsed() >= REPORT_DETAILS_EVERY,
        };
        if due {
            trace.emit(
                None,
                TraceKind::HealthReport {
                    checks: checks.iter().map(Check::to_state).collect(),
                },
            );
            self.last = Some((statuses, checks.to_vec(), std::time::Instant::now()));
        }
    }
}

/// Runs the diagnosis on `events` (subscribe before the pipeline starts, so that its first
/// events count) and its queries each second, on a `pool` of its own (a connection given up
/// on is closed, and none of the pipeline's may be); the latest checks are in the returned
/// watch. Status changes are traced on `trace` as `health_changed`.
pub fn spawn(
    config: DiagnoseConfig,
    mut events: TraceReceiver,
    trace: Trace,
    pool: Pool,
    with_outbox: bool,
    stop: CancellationToken,
) -> (watch::Receiver<Arc<Report>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(Report::default()));
    let task = tokio::spawn(async move {
        let channel = config.channel.clone();
        let locks = config.locks.clone();
        let mut diagnosis = Diagnosis::new(config);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: HashMap<CheckId, Status> = HashMap::new();
        let mut reported = HealthReports::default();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                ev = events.recv() => match ev {
                    Some(ev) => diagnosis.observe(&ev),
                    None => break,
                },
                _ = tick.tick() => {
                    let overdue = diagnosis.overdue_notified(Utc::now());
                    let snap = tick_snapshot(&pool, &channel, with_outbox, &overdue, &locks).await;
                    diagnosis.found_in_table(&snap.found);
                    let backlog = snap.backlog;
                    let given_up = snap.given_up.as_ref().map(|g| g.total());
                    let queue_usage = snap.error.is_none().then_some(snap.queue_usage);
                    diagnosis.observe_snapshot(snap);
                    let checks = diagnosis.checks(Utc::now());
                    reported.offer(&checks, &trace);
                    for c in &checks {
                        if last.get(&c.id) != Some(&c.status) {
                            if last.contains_key(&c.id) || c.status != Status::Ok {
                                trace.emit(None, TraceKind::HealthChanged {
                                    check: c.id.as_str().into(),
                                    status: c.status,
                                    summary: c.summary.clone(),
                                });
                            }
                            last.insert(c.id, c.status);
                        }
                    }
                    tx.send_replace(Arc::new(Report {
                        checks,
                        backlog,
                        given_up,
                        queue_usage,
                    }));
                }
            }
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use notifyscope_model::trace::SkipReason;

    fn names(channels: Vec<Identifier>) -> Vec<String> {
        channels.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn neighbours_of_the_default_channel_are_its_spellings_and_the_usual_names() {
        let n = names(neighbours(
            &Identifier::fixed("events"),
            &[Identifier::fixed("bus")],
        ));
        assert_eq!(n, ["EVENTS", "Events", "discord", "discord_events", "bus"]);
    }

    #[test]
    fn a_named_channel_has_only_its_spellings_and_what_is_asked_for() {
        assert_eq!(
            names(neighbours(&Identifier::fixed("orders"), &[])),
            ["ORDERS", "Orders"]
        );
        assert_eq!(
            names(neighbours(
                &Identifier::fixed("orders"),
                &[Identifier::fixed("events")]
            )),
            ["ORDERS", "Orders", "events"]
        );
    }

    #[test]
    fn other_sessions_statements_are_shown_by_kind_only() {
        assert_eq!(statement_shown("LISTEN \"Events\""), "LISTEN \"Events\"");
        assert_eq!(statement_shown("alter role app password 'x'"), "ALTER …");
        assert_eq!(statement_shown(""), "");
    }

    #[test]
    fn listen_statements_fold_like_postgres() {
        assert!(listens_on("LISTEN events", "events"));
        assert!(listens_on("listen Events;", "events"));
        assert!(!listens_on("LISTEN Events", "Events"));
        assert!(listens_on("LISTEN \"Events\"", "Events"));
        assert!(!listens_on("LISTEN \"Events\"", "events"));
        assert!(!listens_on("SELECT 1", "events"));
        assert!(!listens_on("UNLISTEN events", "events"));
    }

    fn event(ms: i64, id: Option<u64>, kind: TraceKind) -> TraceEvent {
        TraceEvent {
            at: Utc::now() - TimeDelta::seconds(30) + TimeDelta::milliseconds(ms),
            message_id: id.map(Snowflake),
            kind,
        }
    }

    fn status(checks: &[Check], id: &str) -> Status {
        checks
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.status)
            .unwrap_or(Status::Unknown)
    }

    #[test]
    fn a_received_message_never_handled_is_overdue() {
        let mut d = Diagnosis::new(DiagnoseConfig::new(Identifier::fixed("events")));
        d.observe(&event(
            0,
            Some(1),
            TraceKind::Received {
                channel_id: Snowflake(2),
                guild_id: None,
                author_id: Snowflake(3),
                author_name: "a".into(),
                content_bytes: 1,
                source: notifyscope_model::trace::Source::Gateway,
            },
        ));
        let checks = d.checks(Utc::now());
        assert_eq!(status(&checks, "async_context"), Status::Fail);
        let c = checks
            .iter()
            .find(|c| c.id == "async_context")
            .expect("check");
        assert_eq!(c.message_ids, vec![Snowflake(1)]);
    }

    #[test]
    fn all_skipped_for_one_reason_fails_the_self_filter() {
        let mut d = Diagnosis::new(DiagnoseConfig::new(Identifier::fixed("events")));
        for i in 0..5 {
            d.observe(&event(
                i,
                Some(i as u64 + 1),
                TraceKind::Skipped {
                    source: notifyscope_model::trace::Source::Simulated,
                    reason: SkipReason::OwnMessage,
                    author_name: "a".into(),
                    channel_id: Snowflake(2),
                },
            ));
        }
        let checks = d.checks(Utc::now());
        assert_eq!(status(&checks, "self_filter"), Status::Fail);
        assert_eq!(checks[0].status, Status::Fail, "worst first");
    }

    #[test]
    fn one_message_is_said_in_the_singular() {
        let mut d = Diagnosis::new(DiagnoseConfig::new(Identifier::fixed("events")));
        d.observe(&event(
            0,
            Some(1),
            TraceKind::Skipped {
                source: notifyscope_model::trace::Source::Simulated,
                reason: SkipReason::OwnMessage,
                author_name: "a".into(),
                channel_id: Snowflake(2),
            },
        ));
        d.observe(&event(
            1,
            Some(2),
            TraceKind::Received {
                channel_id: Snowflake(2),
                guild_id: None,
                author_id: Snowflake(3),
                author_name: "a".into(),
                content_bytes: 1,
                source: notifyscope_model::trace::Source::Gateway,
            },
        ));
        let checks = d.checks(Utc::now());
        let summary = |id: &str| {
            checks
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.summary.clone())
                .unwrap_or_default()
        };
        assert!(
            summary("self_filter").starts_with("1 of 1 message skipped in the last"),
            "{checks:#?}"
        );
        assert!(
            summary("async_context").starts_with("1 received message neither skipped"),
            "{checks:#?}"
        );
        assert!(
            checks.iter().all(|c| !c.summary.contains("(s)")),
            "{checks:#?}"
        );
    }

    #[test]
    fn a_given_up_message_fails_until_it_is_gone_and_unknown_checks_carry_no_fix() {
        let mut d = Diagnosis::new(DiagnoseConfig::new(Identifier::fixed("events")));
        let unknown = d.checks(Utc::now());
        let given_up = unknown
            .iter()
            .find(|c| c.id == CheckId::GivenUp)
            .expect("check");
        assert_eq!(given_up.status, Status::Unknown);
        assert!(given_up.hint.is_empty(), "{given_up:?}");
        d.observe_snapshot(Snapshot {
            at: Some(Utc::now()),
            backlog: Some(0),
            given_up: Some(snapshot::GivenUp {
                outbox_rows: 2,
                dead_letters: 1,
                oldest_age_s: Some(7200.0),
                last_error: Some("permission denied".into()),
            }),
            ..Snapshot::default()
        });
        // No window ages it out: a day later it still fails.
        let later = Utc::now() + TimeDelta::days(1);
        let checks = d.checks(later);
        let given_up = checks
            .iter()
            .find(|c| c.id == CheckId::GivenUp)
            .expect("check");
        assert_eq!(given_up.status, Status::Fail, "{given_up:?}");
        assert!(
            given_up
                .summary
                .starts_with("2 outbox rows given up and 1 dead letter"),
            "{given_up:?}"
        );
        assert_eq!(given_up.target, Some(CheckTarget::DeadLetters));
        assert!(!given_up.hint.is_empty());
    }

    #[test]
    fn in_watch_a_row_seen_before_its_notify_proves_the_listener() {
        let mut config = DiagnoseConfig::new(Identifier::fixed("events"));
        config.watch_only = true;
        let mut d = Diagnosis::new(config);
        d.observe(&event(
            0,
            Some(7),
            TraceKind::RowObserved {
                table: "discord_messages".into(),
                latency_ms: None,
            },
        ));
        d.observe(&event(
            1,
            Some(7),
            TraceKind::Notified {
                channel: "events".into(),
                sender_pid: 1,
                outbox_id: None,
                by_ref: false,
                bytes: 2,
                payload: "{}".into(),
            },
        ));
        d.observe_snapshot(Snapshot {
            at: Some(Utc::now()),
            ..Snapshot::default()
        });
        let checks = d.checks(Utc::now());
        assert_eq!(status(&checks, "listener"), Status::Ok, "{checks:#?}");
    }
}
