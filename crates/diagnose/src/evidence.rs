//! What the diagnosis knows: the trace events seen (in sliding windows), the latest
//! snapshot, and the settings. The checks read it; nothing here judges.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::window::{Pending, Recent};
use notifyscope_model::contract::Snowflake;
use notifyscope_model::present::shorten;
use notifyscope_model::trace::{SkipReason, Source, TraceEvent, TraceKind, WriteStage};
use notifyscope_store::snapshot::{LockScope, LockWait, NotifyWaiter, Snapshot, Unread};
use notifyscope_store::{ErrorClass, Identifier};

/// Settings of the diagnosis.
#[derive(Debug, Clone)]
pub struct DiagnoseConfig {
    pub channel: Identifier,
    /// Watching someone else's pipeline: no bot, no own listener, no outbox of ours.
    pub watch_only: bool,
    /// In watch, an observer session shows what Discord delivers to their bot: received
    /// messages are followed to their NOTIFY.
    pub observer: bool,
    /// In watch, their bot's log or telemetry says what it did with each message.
    pub bot_reports: bool,
    /// A received message must be skipped or published within this, a notified one ingested.
    pub deadline: Duration,
    /// How far back "recent" looks.
    pub window: Duration,
    /// Backlog older than this is a warning, ten times this a failure.
    pub backlog_age: Duration,
    /// The database role the pipeline writes as, for the fix of a permission error.
    pub role: Option<String>,
    /// Whose lock waits on which tables the lock check watches.
    pub locks: LockScope,
    /// A backend blocked this long is a warning, five times this a failure.
    pub lock_wait: Duration,
}

impl DiagnoseConfig {
    pub fn new(channel: Identifier) -> Self {
        DiagnoseConfig {
            channel,
            watch_only: false,
            observer: false,
            bot_reports: false,
            deadline: Duration::from_secs(5),
            window: Duration::from_secs(60),
            backlog_age: Duration::from_secs(10),
            role: None,
            locks: LockScope::pipeline(),
            lock_wait: Duration::from_secs(2),
        }
    }
}

/// The state behind the checks.
pub struct Evidence {
    pub(super) config: DiagnoseConfig,
    pub(super) started: DateTime<Utc>,
    pub(super) received: Pending,
    pub(super) received_recent: Recent<Snowflake>,
    pub(super) notified: Pending,
    pub(super) runtime_errors: Recent<String>,
    pub(super) rejected: Recent<String>,
    pub(super) malformed_gateway: Recent<String>,
    pub(super) unknown_event_types: Recent<String>,
    pub(super) publish_errors: Recent<String>,
    /// Failures their bot's log or telemetry reported, by message when it named one.
    pub(super) their_failures: Recent<(Option<Snowflake>, String)>,
    /// Lines or records of their bot's log and telemetry: understood, not understood.
    pub(super) their_lines: BTreeMap<Source, (u64, u64)>,
    pub(super) database_down: Option<(DateTime<Utc>, String)>,
    pub(super) listener_up: Option<(DateTime<Utc>, i32)>,
    pub(super) listener_down: Option<(DateTime<Utc>, String)>,
    pub(super) published_while_down: Recent<Snowflake>,
    pub(super) handled: Recent<Option<SkipReason>>,
    pub(super) skipped_ids: Recent<Snowflake>,
    pub(super) neighbours: BTreeMap<String, (u64, DateTime<Utc>)>,
    pub(super) content_missing: Recent<Snowflake>,
    pub(super) errors: BTreeMap<&'static str, u64>,
    /// Writes the database refused for a reason other than a lost connection.
    pub(super) refusals: Recent<Refusal>,
    /// The last write of each part that went through.
    pub(super) last_write: BTreeMap<WriteStage, DateTime<Utc>>,
    /// Rows that appeared for a notified message: proof that someone ingests.
    pub(super) notified_rows: u64,
    /// Sessions that block watched backends, by pid: since when, last seen, and the wait.
    pub(super) blockers: BTreeMap<i32, Blocked>,
    /// Idle backends blocked writing to their client, by pid: since when they have been
    /// seen so, tick after tick.
    pub(super) unread: BTreeMap<i32, (DateTime<Utc>, Unread)>,
    /// Notifications heard on the channel (valid or not), ever: a rate between snapshots.
    pub(super) heard: u64,
    /// The queue for the NOTIFY lock at each of the latest snapshots, oldest first.
    pub(super) notify_samples: VecDeque<NotifySample>,
    /// Sizes of the NOTIFY payloads heard on the channel, and whether each was a reference.
    pub(super) payload_sizes: Recent<(usize, bool)>,
    /// The largest payload heard, ever, and when.
    pub(super) largest_payload: Option<(DateTime<Utc>, usize)>,
    /// Connections of the pipeline that missed their deadline.
    pub(super) silent: Recent<Silent>,
    /// When each role's connection last did its work (`publisher`, `ingestion`,
    /// `listener`): a silent connection is replaced once its role works again.
    pub(super) alive: BTreeMap<String, DateTime<Utc>>,
    /// When the database last came up for the pipeline: every role's connection is new.
    pub(super) database_up: Option<DateTime<Utc>>,
    pub(super) snapshot: Snapshot,
}

/// The queue for the NOTIFY lock as one snapshot saw it, with the counts its rates come from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NotifySample {
    pub(super) at: DateTime<Utc>,
    /// Commits waiting for the lock.
    pub(super) waiting: usize,
    /// Those waiters, longest first, when `pg_locks` could be read.
    pub(super) waiters: Vec<NotifyWaiter>,
    /// The database's commits so far.
    pub(super) commits: Option<i64>,
    /// Notifications heard on the channel so far.
    pub(super) heard: u64,
}

/// How many snapshots of the NOTIFY lock's queue are kept: twenty seconds of ticks.
pub(super) const NOTIFY_SAMPLES: usize = 20;

/// A connection of the pipeline that went silent.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Silent {
    pub(super) role: String,
    pub(super) target: String,
    pub(super) silent_ms: f64,
    pub(super) during: String,
    pub(super) replaced: bool,
}

/// A session seen blocking a watched backend. Retries of a statement that timed out on the
/// lock come and go; the blocker is one and the same, so it is followed across them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Blocked {
    pub(super) since: DateTime<Utc>,
    pub(super) last_seen: DateTime<Utc>,
    pub(super) wait: LockWait,
}

/// How long a blocker is remembered after it was last seen blocking, so that the gaps
/// between the retries of a blocked statement do not restart its clock.
const BLOCKER_MEMORY: Duration = Duration::from_secs(10);

/// A write the database refused.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Refusal {
    pub(super) part: WriteStage,
    pub(super) class: ErrorClass,
    pub(super) error: String,
}

impl Evidence {
    pub fn new(config: DiagnoseConfig) -> Self {
        Evidence {
            config,
            started: Utc::now(),
            received: Pending::default(),
            received_recent: Recent::default(),
            notified: Pending::default(),
            runtime_errors: Recent::default(),
            rejected: Recent::default(),
            malformed_gateway: Recent::default(),
            unknown_event_types: Recent::default(),
            publish_errors: Recent::default(),
            their_failures: Recent::default(),
            their_lines: BTreeMap::new(),
            database_down: None,
            listener_up: None,
            listener_down: None,
            published_while_down: Recent::default(),
            handled: Recent::default(),
            skipped_ids: Recent::default(),
            neighbours: BTreeMap::new(),
            content_missing: Recent::default(),
            errors: BTreeMap::new(),
            refusals: Recent::default(),
            last_write: BTreeMap::new(),
            notified_rows: 0,
            blockers: BTreeMap::new(),
            unread: BTreeMap::new(),
            heard: 0,
            notify_samples: VecDeque::new(),
            payload_sizes: Recent::default(),
            largest_payload: None,
            silent: Recent::default(),
            alive: BTreeMap::new(),
            database_up: None,
            snapshot: Snapshot::default(),
        }
    }

    /// In watch, nothing came through the observer lately: its checks have no evidence.
    pub(super) fn observer_saw_nothing(&self) -> bool {
        self.received_recent.items.is_empty()
    }

    pub(super) fn listener_is_up(&self) -> bool {
        match (&self.listener_up, &self.listener_down) {
            (Some((up, _)), Some((down, _))) => up > down,
            (Some(_), None) => true,
            _ => false,
        }
    }

    pub fn observe(&mut self, event: &TraceEvent) {
        if event.kind.is_error() {
            *self.errors.entry(event.kind.name()).or_default() += 1;
        }
        if !self.observe_message(event) {
            self.observe_system(event);
        }
    }

    /// The stages of a message; false for any other event.
    fn observe_message(&mut self, event: &TraceEvent) -> bool {
        let at = event.at;
        match &event.kind {
            TraceKind::Received { .. } => {
                if let Some(id) = event.message_id {
                    self.received_recent.push(at, id);
                    if self.config.watch_only && self.notified.has_seen(id) {
                        // Their bot's NOTIFY came before our observer's copy of the message.
                        self.handled.push(at, None);
                    } else {
                        self.received.start(at, id);
                    }
                }
            }
            TraceKind::Skipped { reason, .. } => {
                if let Some(id) = event.message_id {
                    self.received.done(id);
                    self.skipped_ids.push(at, id);
                }
                self.handled.push(at, Some(reason.clone()));
            }
            TraceKind::Published { .. } | TraceKind::PublishReported { .. } => {
                self.last_write.insert(WriteStage::Publish, at);
                self.alive.insert("publisher".into(), at);
                if let Some(id) = event.message_id {
                    // Only what came through the bot path met the filter: a message published
                    // straight to the outbox (the `d` key, `send message`) says nothing about
                    // what the filter lets through.
                    if self.received.is_open(id) {
                        self.handled.push(at, None);
                    }
                    self.received.done(id);
                    if !self.config.watch_only && !self.listener_is_up() {
                        self.published_while_down.push(at, id);
                    }
                }
            }
            TraceKind::PublishFailed { error, source, .. } => {
                if let Some(id) = event.message_id {
                    self.received.done(id);
                }
                if matches!(source, Source::BotLog | Source::Otlp) {
                    // Their bot's failure, judged as theirs rather than as our publisher's.
                    self.their_failures
                        .push(at, (event.message_id, error.clone()));
                } else if error.contains("inside the async runtime") {
                    self.runtime_errors.push(at, error.clone());
                } else {
                    self.publish_errors.push(at, error.clone());
                }
            }
            TraceKind::Notified { bytes, by_ref, .. } => {
                self.heard += 1;
                self.payload_sizes.push(at, (*bytes, *by_ref));
                if self
                    .largest_payload
                    .is_none_or(|(_, largest)| *bytes >= largest)
                {
                    self.largest_payload = Some((at, *bytes));
                }
                if let Some(id) = event.message_id {
                    let row_first = self.notified.has_seen(id) && !self.notified.is_open(id);
                    if self.config.watch_only && row_first {
                        // Their row was seen before its NOTIFY was read (a trigger commits
                        // both at once): proof all the same.
                        self.notified_rows += 1;
                    }
                    self.notified.start(at, id);
                    if self.config.watch_only {
                        // Someone else's bot published what it received: handled.
                        if self.received.is_open(id) {
                            self.handled.push(at, None);
                        }
                        self.received.done(id);
                    }
                }
            }
            TraceKind::NotifyRejected { error, payload, .. } => {
                self.heard += 1;
                let sample = format!("{error} (payload {:?})", shorten(payload, 80));
                if error.starts_with("unknown event_type") {
                    self.unknown_event_types.push(at, sample);
                } else {
                    self.rejected.push(at, sample);
                }
            }
            TraceKind::Ingested { .. } | TraceKind::RowObserved { .. } => {
                match event.kind {
                    TraceKind::Ingested { .. } => {
                        self.last_write.insert(WriteStage::Ingest, at);
                        self.alive.insert("ingestion".into(), at);
                    }
                    TraceKind::RowObserved {
                        latency_ms: Some(_),
                        ..
                    } => self.notified_rows += 1,
                    _ => {}
                }
                if let Some(id) = event.message_id {
                    self.notified.done(id);
                }
            }
            TraceKind::IngestFailed {
                error,
                permanent,
                class,
                ..
            } => {
                if let Some(id) = event.message_id {
                    self.notified.done(id);
                }
                match class {
                    // No class: the payload broke the contract, the one fault of the payload.
                    None if *permanent => self.rejected.push(at, format!("outbox row: {error}")),
                    None => {}
                    Some(ErrorClass::Connection) => {}
                    Some(class) => self.refused(at, WriteStage::Ingest, *class, error),
                }
            }
            _ => return false,
        }
        true
    }

    /// Connections, neighbours, gateway and the stream itself.
    fn observe_system(&mut self, event: &TraceEvent) {
        let at = event.at;
        match &event.kind {
            TraceKind::DatabaseUp { .. } => {
                self.database_down = None;
                self.database_up = Some(at);
            }
            TraceKind::DatabaseDown { error } => self.database_down = Some((at, error.clone())),
            TraceKind::DatabaseRefused {
                part, class, error, ..
            } if *class != ErrorClass::Connection => self.refused(at, *part, *class, error),
            TraceKind::ListenerUp { pid, .. } => {
                self.listener_up = Some((at, *pid));
                self.alive.insert("listener".into(), at);
            }
            TraceKind::ConnectionSilent {
                role,
                target,
                silent_ms,
                during,
                replaced,
            } => {
                self.silent.push(
                    at,
                    Silent {
                        role: role.clone(),
                        target: target.clone(),
                        silent_ms: *silent_ms,
                        during: during.clone(),
                        replaced: *replaced,
                    },
                );
            }
            TraceKind::ListenerDown { cause, .. } => self.listener_down = Some((at, cause.clone())),
            TraceKind::NeighbourNotified { channel, .. } => {
                let entry = self.neighbours.entry(channel.clone()).or_insert((0, at));
                entry.0 += 1;
                entry.1 = at;
            }
            TraceKind::ContentIntentSuspected { .. } => {
                if let Some(id) = event.message_id {
                    self.content_missing.push(at, id);
                }
            }
            TraceKind::GatewayMalformed { kind, error, .. } => {
                self.malformed_gateway.push(at, format!("{kind}: {error}"))
            }
            TraceKind::BotSourceRead {
                source,
                understood,
                not_understood,
            } => {
                self.their_lines
                    .insert(*source, (*understood, *not_understood));
            }
            TraceKind::Lagged { .. } => {
                self.received.forget();
                self.notified.forget();
            }
            _ => {}
        }
    }

    fn refused(&mut self, at: DateTime<Utc>, part: WriteStage, class: ErrorClass, error: &str) {
        self.refusals.push(
            at,
            Refusal {
                part,
                class,
                error: error.to_owned(),
            },
        );
    }

    /// The latest refusal of each part that no write of that part went through after, as of
    /// the window: what the database refuses now.
    pub(super) fn refused_now(&self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, Refusal)> {
        let mut latest: BTreeMap<WriteStage, (DateTime<Utc>, Refusal)> = BTreeMap::new();
        for (at, r) in &self.refusals.items {
            latest.insert(r.part, (*at, r.clone()));
        }
        latest
            .into_values()
            .filter(|(at, r)| match r.part {
                // Dead letters are written only when a payload is rejected: with no later
                // write to show the fault gone, a refusal counts as now for a deadline.
                WriteStage::DeadLetters => now - *at < delta(self.config.deadline),
                part => self.last_write.get(&part).is_none_or(|ok| ok < at),
            })
            .collect()
    }

    /// Notified messages past the deadline, to be looked up in the table: another process
    /// sharing the outbox may have ingested them.
    pub fn overdue_notified(&mut self, now: DateTime<Utc>) -> Vec<Snowflake> {
        self.notified
            .overdue(now - delta(self.config.deadline))
            .into_iter()
            .map(|(_, id)| id)
            .take(100)
            .collect()
    }

    /// Messages found in the table: done, whoever ingested them.
    pub fn found_in_table(&mut self, ids: &[Snowflake]) {
        for id in ids {
            self.notified.done(*id);
        }
    }

    pub fn observe_snapshot(&mut self, snapshot: Snapshot) {
        if let Some(at) = snapshot.at {
            self.observe_lock_waits(at, &snapshot);
            if snapshot.error.is_none() {
                self.observe_unread(at, &snapshot);
                self.observe_notify_lock(at, &snapshot);
            }
        }
        self.snapshot = snapshot;
    }

    /// Follows the idle backends blocked writing to their client: one counts from the first
    /// snapshot that saw it so, and is forgotten at the first that does not.
    fn observe_unread(&mut self, at: DateTime<Utc>, snapshot: &Snapshot) {
        self.unread
            .retain(|pid, _| snapshot.unread.iter().any(|u| u.pid == *pid));
        for u in &snapshot.unread {
            let entry = self.unread.entry(u.pid).or_insert((at, u.clone()));
            entry.1 = u.clone();
        }
    }

    fn observe_notify_lock(&mut self, at: DateTime<Utc>, snapshot: &Snapshot) {
        // Two looks a moment apart at a queue that turns over in milliseconds: the longer.
        // pg_stat_activity shows only the roles this one may see, pg_locks every waiter.
        let waiting = usize::try_from(snapshot.notify_waiting)
            .unwrap_or(0)
            .max(snapshot.notify_waiters.len());
        if self.notify_samples.len() >= NOTIFY_SAMPLES {
            self.notify_samples.pop_front();
        }
        self.notify_samples.push_back(NotifySample {
            at,
            waiting,
            waiters: snapshot.notify_waiters.clone(),
            commits: snapshot.commits,
            heard: self.heard,
        });
    }

    /// Follows the sessions that block watched backends. One is forgotten when it has not
    /// been seen blocking for a while, or at once when ingestion went through since.
    fn observe_lock_waits(&mut self, at: DateTime<Utc>, snapshot: &Snapshot) {
        if snapshot.error.is_some() || snapshot.lock_error.is_some() {
            return;
        }
        // A wait's own age counts too: a one-shot look (doctor) sees it only once.
        for wait in &snapshot.lock_waits {
            let began = at - delta(Duration::from_secs_f64(wait.waiting_s.max(0.0)));
            let entry = self.blockers.entry(wait.blocker.pid).or_insert(Blocked {
                since: began,
                last_seen: at,
                wait: wait.clone(),
            });
            entry.since = entry.since.min(began);
            entry.last_seen = at;
            entry.wait = wait.clone();
        }
        // Ingestion writes both tables in one statement: once a batch went through, the
        // lock that held it is gone.
        let last_write = self.last_write.get(&WriteStage::Ingest).copied();
        let seen_now: Vec<i32> = snapshot.lock_waits.iter().map(|w| w.blocker.pid).collect();
        // Someone else's pipeline shows no write of its own to tell a lock gone: a blocker
        // counts while it is seen.
        let memory = if self.config.watch_only {
            Duration::ZERO
        } else {
            BLOCKER_MEMORY
        };
        self.blockers.retain(|pid, b| {
            seen_now.contains(pid)
                || (at - b.last_seen < delta(memory) && last_write.is_none_or(|w| w < b.last_seen))
        });
    }

    /// The latest snapshot came back without an error.
    pub(super) fn snapshot_ok(&self) -> bool {
        self.snapshot.at.is_some() && self.snapshot.error.is_none()
    }

    /// Drops samples older than the window.
    pub(super) fn prune(&mut self, now: DateTime<Utc>) {
        let window_start = now - delta(self.config.window);
        for r in [
            &mut self.runtime_errors,
            &mut self.rejected,
            &mut self.malformed_gateway,
            &mut self.unknown_event_types,
            &mut self.publish_errors,
        ] {
            r.prune(window_start);
        }
        self.refusals.prune(window_start);
        self.their_failures.prune(window_start);
        self.payload_sizes.prune(window_start);
        self.silent.prune(window_start);
        self.handled.prune(window_start);
        self.received_recent.prune(window_start);
        self.skipped_ids.prune(window_start);
        self.published_while_down.prune(window_start);
        self.content_missing.prune(window_start);
    }
}

/// `d` as a chrono delta (saturating).
pub(super) fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}
