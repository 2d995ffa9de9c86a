//! Diagnosis: one check per failure mode of the pipeline (the failure table of the design),
//! each with a status, the evidence in numbers and samples, the time it changed, and a fix
//! in one sentence.
//!
//! Checks are computed from two sources only: the trace stream ([`Diagnosis::observe`]) and a
//! small query a second ([`Snapshot`]). [`spawn`] runs both and reports the checks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::contract::Snowflake;
use crate::store::{error_chain, Identifier, LISTENER_APP_NAME, MAX_ATTEMPTS};
use crate::trace::SkipReason;
use crate::trace::{Status, Trace, TraceEvent, TraceKind, TraceReceiver};

/// One failure mode and what is known about it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable identifier, e.g. `listener`.
    pub id: String,
    /// What must hold, for people.
    pub name: String,
    pub status: Status,
    /// The evidence in one line (numbers, names).
    pub summary: String,
    /// More evidence: samples, error texts, channel names.
    pub evidence: Vec<String>,
    /// What to do about it, in one sentence.
    pub hint: String,
    /// When the status last changed.
    pub since: DateTime<Utc>,
    /// Messages the evidence is about.
    pub message_ids: Vec<Snowflake>,
}

/// The checks, in the order of the failure table.
pub const CHECKS: [(&str, &str, &str); 12] = [
    (
        "runtime",
        "publishing from the right runtime",
        "publish with `publish(..).await` on runtime threads; keep `publish_blocking` for plain threads",
    ),
    (
        "async_context",
        "every received message handled",
        "make sure on_message awaits the publish (or hands it to the publisher) on every path",
    ),
    (
        "malformed",
        "payloads follow the contract",
        "validate events before publishing; the rejected payloads are in dead_letters",
    ),
    (
        "database",
        "database connection",
        "check that PostgreSQL runs and the URL, user and network are right; the pipeline reconnects by itself",
    ),
    (
        "listener",
        "listener running",
        "start the LISTEN subscriber (ingestion) for this channel; the outbox keeps events until it runs",
    ),
    (
        "publish_before_listener",
        "listener up before publishing",
        "start the listener before the bot (wait for `[init] Listener running`); events published meanwhile wait in the outbox",
    ),
    (
        "silent_errors",
        "no error goes unreported",
        "look at the counted errors; every failure should reach a log line and an error path, never a bare except",
    ),
    (
        "self_filter",
        "filter lets messages through",
        "check the skip rule named here: e.g. compare the author with the bot's own user id, not with any bot",
    ),
    (
        "channel",
        "channel and event_type match",
        "use one channel name, exactly as written, on both sides (LISTEN folds unquoted names to lower case; pg_notify does not)",
    ),
    (
        "content_intent",
        "message content arrives",
        "enable MESSAGE CONTENT INTENT for the bot in the Developer Portal and request the message_content intent",
    ),
    (
        "notify_queue",
        "NOTIFY queue has room",
        "end the transaction of the session named here; a listener inside an open transaction receives nothing and holds the queue",
    ),
    (
        "backlog",
        "outbox drained",
        "start or speed up ingestion; look at last_error of the oldest rows in event_outbox",
    ),
];

/// Settings of the diagnosis.
#[derive(Debug, Clone)]
pub struct DiagnoseConfig {
    pub channel: Identifier,
    /// Watching someone else's pipeline: no bot, no own listener, no outbox of ours.
    pub watch_only: bool,
    /// A received message must be skipped or published within this, a notified one ingested.
    pub deadline: Duration,
    /// How far back "recent" looks.
    pub window: Duration,
    /// Backlog older than this is a warning, ten times this a failure.
    pub backlog_age: Duration,
}

impl DiagnoseConfig {
    pub fn new(channel: Identifier) -> Self {
        DiagnoseConfig {
            channel,
            watch_only: false,
            deadline: Duration::from_secs(5),
            window: Duration::from_secs(60),
            backlog_age: Duration::from_secs(10),
        }
    }
}

/// A backend of `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub pid: i32,
    pub application_name: String,
    pub state: String,
    pub query: String,
    pub seconds_in_state: f64,
}

/// What the once-a-second query saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub at: Option<DateTime<Utc>>,
    /// The query failed: the database is unreachable (or the query broken).
    pub error: Option<String>,
    /// Unprocessed outbox rows of the channel; `None` without an outbox (watch mode).
    pub backlog: Option<i64>,
    pub oldest_age_s: Option<f64>,
    /// Unprocessed outbox rows of other channels: published where nobody ingests.
    pub other_channels: Vec<(String, i64)>,
    /// `pg_notification_queue_usage()`, 0..1.
    pub queue_usage: f64,
    /// Backends whose last query is a LISTEN on the channel.
    pub listeners: Vec<Backend>,
    /// notifyscope listeners whose last query does not name the channel (other channels).
    pub other_listeners: Vec<Backend>,
    pub idle_in_transaction: Vec<Backend>,
    /// Of the ids asked about, those in `discord_messages`.
    pub found: Vec<Snowflake>,
}

const SAMPLE: usize = 5;
const KEEP: usize = 10_000;

/// Timestamps in a sliding window.
#[derive(Debug)]
struct Recent<T> {
    items: VecDeque<(DateTime<Utc>, T)>,
    total: u64,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent {
            items: VecDeque::new(),
            total: 0,
        }
    }
}

impl<T: Clone> Recent<T> {
    fn push(&mut self, at: DateTime<Utc>, item: T) {
        if self.items.len() >= KEEP {
            self.items.pop_front();
        }
        self.items.push_back((at, item));
        self.total += 1;
    }

    fn prune(&mut self, before: DateTime<Utc>) {
        while self.items.front().is_some_and(|(at, _)| *at < before) {
            self.items.pop_front();
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn last(&self) -> Option<&(DateTime<Utc>, T)> {
        self.items.back()
    }

    fn samples(&self) -> Vec<T> {
        self.items
            .iter()
            .rev()
            .take(SAMPLE)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// Messages waiting for the next stage, oldest first.
#[derive(Debug, Default)]
struct Pending {
    order: VecDeque<(DateTime<Utc>, Snowflake)>,
    open: HashSet<Snowflake>,
    /// Recently finished ids: the next stage may be reported before this one (a row can be
    /// ingested before its own NOTIFY is read), and must not open it again.
    finished: VecDeque<Snowflake>,
    finished_set: HashSet<Snowflake>,
}

impl Pending {
    fn start(&mut self, at: DateTime<Utc>, id: Snowflake) {
        if self.finished_set.contains(&id) {
            return;
        }
        if self.order.len() >= KEEP {
            if let Some((_, old)) = self.order.pop_front() {
                self.open.remove(&old);
            }
        }
        if self.open.insert(id) {
            self.order.push_back((at, id));
        }
    }

    fn done(&mut self, id: Snowflake) {
        self.open.remove(&id);
        if self.finished_set.insert(id) {
            if self.finished.len() >= KEEP {
                if let Some(old) = self.finished.pop_front() {
                    self.finished_set.remove(&old);
                }
            }
            self.finished.push_back(id);
        }
    }

    /// After missed trace events nothing is known about what is open.
    fn forget(&mut self) {
        self.order.clear();
        self.open.clear();
    }

    /// Ids still open after `deadline`.
    fn overdue(&mut self, before: DateTime<Utc>) -> Vec<(DateTime<Utc>, Snowflake)> {
        while self
            .order
            .front()
            .is_some_and(|(_, id)| !self.open.contains(id))
        {
            self.order.pop_front();
        }
        self.order
            .iter()
            .filter(|(at, id)| *at < before && self.open.contains(id))
            .copied()
            .collect()
    }
}

/// The state behind the checks.
pub struct Diagnosis {
    config: DiagnoseConfig,
    started: DateTime<Utc>,
    received: Pending,
    notified: Pending,
    runtime_errors: Recent<String>,
    rejected: Recent<String>,
    malformed_gateway: Recent<String>,
    unknown_event_types: Recent<String>,
    publish_errors: Recent<String>,
    database_down: Option<(DateTime<Utc>, String)>,
    listener_up: Option<(DateTime<Utc>, i32)>,
    listener_down: Option<(DateTime<Utc>, String)>,
    published_while_down: Recent<Snowflake>,
    handled: Recent<Option<SkipReason>>,
    skipped_ids: Recent<Snowflake>,
    neighbours: BTreeMap<String, (u64, DateTime<Utc>)>,
    content_missing: Recent<Snowflake>,
    errors: BTreeMap<&'static str, u64>,
    snapshot: Snapshot,
    since: HashMap<&'static str, (Status, DateTime<Utc>)>,
}

impl Diagnosis {
    pub fn new(config: DiagnoseConfig) -> Self {
        Diagnosis {
            config,
            started: Utc::now(),
            received: Pending::default(),
            notified: Pending::default(),
            runtime_errors: Recent::default(),
            rejected: Recent::default(),
            malformed_gateway: Recent::default(),
            unknown_event_types: Recent::default(),
            publish_errors: Recent::default(),
            database_down: None,
            listener_up: None,
            listener_down: None,
            published_while_down: Recent::default(),
            handled: Recent::default(),
            skipped_ids: Recent::default(),
            neighbours: BTreeMap::new(),
            content_missing: Recent::default(),
            errors: BTreeMap::new(),
            snapshot: Snapshot::default(),
            since: HashMap::new(),
        }
    }

    fn listener_is_up(&self) -> bool {
        match (&self.listener_up, &self.listener_down) {
            (Some((up, _)), Some((down, _))) => up > down,
            (Some(_), None) => true,
            _ => false,
        }
    }

    pub fn observe(&mut self, event: &TraceEvent) {
        let at = event.at;
        if event.kind.is_error() {
            *self.errors.entry(event.kind.name()).or_default() += 1;
        }
        match &event.kind {
            TraceKind::Received { .. } => {
                if let Some(id) = event.message_id {
                    self.received.start(at, id);
                }
            }
            TraceKind::Skipped { reason, .. } => {
                if let Some(id) = event.message_id {
                    self.received.done(id);
                    self.skipped_ids.push(at, id);
                }
                self.handled.push(at, Some(*reason));
            }
            TraceKind::Published { .. } => {
                if let Some(id) = event.message_id {
                    self.received.done(id);
                    if !self.config.watch_only && !self.listener_is_up() {
                        self.published_while_down.push(at, id);
                    }
                }
                self.handled.push(at, None);
            }
            TraceKind::PublishFailed { error, .. } => {
                if let Some(id) = event.message_id {
                    self.received.done(id);
                }
                if error.contains("inside the async runtime") {
                    self.runtime_errors.push(at, error.clone());
                } else {
                    self.publish_errors.push(at, error.clone());
                }
            }
            TraceKind::Notified { .. } => {
                if let Some(id) = event.message_id {
                    self.notified.start(at, id);
                }
            }
            TraceKind::NotifyRejected { error, payload, .. } => {
                let sample = format!(
                    "{error} (payload {:?})",
                    crate::present::shorten(payload, 80)
                );
                if error.starts_with("unknown event_type") {
                    self.unknown_event_types.push(at, sample);
                } else {
                    self.rejected.push(at, sample);
                }
            }
            TraceKind::Ingested { .. } | TraceKind::RowObserved { .. } => {
                if let Some(id) = event.message_id {
                    self.notified.done(id);
                }
            }
            TraceKind::IngestFailed {
                error, permanent, ..
            } => {
                if let Some(id) = event.message_id {
                    self.notified.done(id);
                }
                if *permanent && !error.starts_with("database") {
                    self.rejected.push(at, format!("outbox row: {error}"));
                }
            }
            TraceKind::DatabaseUp { .. } => self.database_down = None,
            TraceKind::DatabaseDown { error } => self.database_down = Some((at, error.clone())),
            TraceKind::ListenerUp { pid, .. } => self.listener_up = Some((at, *pid)),
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
            TraceKind::Lagged { .. } => {
                self.received.forget();
                self.notified.forget();
            }
            _ => {}
        }
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
        self.snapshot = snapshot;
    }

    /// Every check as of `now`, worst first.
    pub fn checks(&mut self, now: DateTime<Utc>) -> Vec<Check> {
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
        self.handled.prune(window_start);
        self.skipped_ids.prune(window_start);
        self.published_while_down.prune(window_start);
        self.content_missing.prune(window_start);

        let mut checks: Vec<Check> = CHECKS
            .iter()
            .map(|(id, _, _)| {
                let (status, summary, evidence, ids) = self.evaluate(id, now);
                self.check(id, status, summary, evidence, ids, now)
            })
            .collect();
        checks.sort_by_key(|c| std::cmp::Reverse(c.status));
        checks
    }

    fn check(
        &mut self,
        id: &'static str,
        status: Status,
        summary: String,
        evidence: Vec<String>,
        message_ids: Vec<Snowflake>,
        now: DateTime<Utc>,
    ) -> Check {
        let (_, name, hint) = CHECKS
            .iter()
            .find(|(i, ..)| *i == id)
            .copied()
            .unwrap_or((id, id, ""));
        let since = match self.since.get(id) {
            Some((s, at)) if *s == status => *at,
            _ => {
                self.since.insert(id, (status, now));
                now
            }
        };
        Check {
            id: id.into(),
            name: name.into(),
            status,
            summary,
            evidence,
            hint: hint.into(),
            since,
            message_ids,
        }
    }

    fn evaluate(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> (Status, String, Vec<String>, Vec<Snowflake>) {
        let watch = self.config.watch_only;
        let snapshot_ok = self.snapshot.at.is_some() && self.snapshot.error.is_none();
        match id {
            "runtime" => {
                if watch {
                    return unknown("no publisher of ours to observe");
                }
                match self.runtime_errors.last() {
                    Some((at, _)) => (
                        Status::Fail,
                        format!(
                            "{} publish attempts from inside the async runtime, last {}",
                            self.runtime_errors.len(),
                            ago(now, *at)
                        ),
                        self.runtime_errors.samples(),
                        vec![],
                    ),
                    None => ok(format!(
                        "no wrong-runtime publish ({} ever)",
                        self.runtime_errors.total
                    )),
                }
            }
            "async_context" => {
                if watch {
                    return unknown("no bot of ours to observe");
                }
                let overdue = self.received.overdue(now - delta(self.config.deadline));
                if overdue.is_empty() {
                    ok(format!(
                        "every received message skipped or published within {} s",
                        self.config.deadline.as_secs()
                    ))
                } else {
                    let ids: Vec<Snowflake> = overdue.iter().map(|(_, id)| *id).collect();
                    // While the database is away or the queue is full, publishing is slow,
                    // not forgotten.
                    let slowed =
                        self.database_down.is_some() || !self.publish_errors.items.is_empty();
                    (
                        if slowed { Status::Warn } else { Status::Fail },
                        format!(
                            "{} received message(s) neither skipped nor published after {} s{}",
                            ids.len(),
                            self.config.deadline.as_secs(),
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
            "malformed" => {
                let count = self.rejected.len() + self.malformed_gateway.len();
                if count == 0 {
                    ok(format!(
                        "no malformed event in the last {} s ({} ever)",
                        self.config.window.as_secs(),
                        self.rejected.total + self.malformed_gateway.total
                    ))
                } else {
                    let mut evidence = self.rejected.samples();
                    evidence.extend(self.malformed_gateway.samples());
                    (
                        Status::Fail,
                        format!(
                            "{} NOTIFY payload(s) rejected, {} gateway event(s) unparseable in the last {} s",
                            self.rejected.len(),
                            self.malformed_gateway.len(),
                            self.config.window.as_secs()
                        ),
                        evidence,
                        vec![],
                    )
                }
            }
            "database" => {
                if let Some(error) = &self.snapshot.error {
                    return (
                        Status::Fail,
                        format!(
                            "the database does not answer: {}",
                            crate::present::shorten(error, 120)
                        ),
                        vec![error.clone()],
                        vec![],
                    );
                }
                if let Some((at, error)) = &self.database_down {
                    if !snapshot_ok || self.snapshot.at.is_some_and(|s| s < *at) {
                        return (
                            Status::Fail,
                            format!("connection lost {}", ago(now, *at)),
                            vec![error.clone()],
                            vec![],
                        );
                    }
                }
                if !self.publish_errors.items.is_empty() {
                    return (
                        Status::Warn,
                        format!(
                            "{} publish error(s) in the last {} s",
                            self.publish_errors.len(),
                            self.config.window.as_secs()
                        ),
                        self.publish_errors.samples(),
                        vec![],
                    );
                }
                if snapshot_ok {
                    ok("the database answers".into())
                } else {
                    unknown("not queried yet")
                }
            }
            "listener" => self.listener_check(now),
            "publish_before_listener" => {
                if watch {
                    return unknown("no publisher of ours to observe");
                }
                match self.published_while_down.last() {
                    Some((at, _)) => (
                        Status::Warn,
                        format!(
                            "{} event(s) published while no listener was up, last {}",
                            self.published_while_down.len(),
                            ago(now, *at)
                        ),
                        vec![format!(
                            "listener: {}",
                            match &self.listener_down {
                                Some((_, cause)) => format!("down ({cause})"),
                                None => "not started yet".into(),
                            }
                        )],
                        self.published_while_down.samples(),
                    ),
                    None => ok("nothing published while the listener was down".into()),
                }
            }
            "silent_errors" => {
                let lost = self.notified.overdue(now - delta(self.config.deadline));
                let counts: Vec<String> = self
                    .errors
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                if !lost.is_empty() {
                    let ids: Vec<Snowflake> = lost.iter().map(|(_, id)| *id).collect();
                    return (
                        Status::Fail,
                        format!(
                            "{} notified message(s) neither ingested nor reported failed after {} s",
                            ids.len(),
                            self.config.deadline.as_secs()
                        ),
                        lost.iter()
                            .take(SAMPLE)
                            .map(|(at, id)| format!("message {id} notified {}, no row and no error since", ago(now, *at)))
                            .chain(std::iter::once(format!("errors counted: {}", if counts.is_empty() { "none".into() } else { counts.join(", ") })))
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
            "self_filter" => {
                if watch {
                    return unknown("no filter of ours to observe");
                }
                let total = self.handled.len();
                let skipped: Vec<SkipReason> =
                    self.handled.items.iter().filter_map(|(_, r)| *r).collect();
                let mut by_reason: BTreeMap<&'static str, usize> = BTreeMap::new();
                for r in &skipped {
                    *by_reason.entry(r.as_str()).or_default() += 1;
                }
                let reasons: Vec<String> =
                    by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
                let summary = format!(
                    "{} of {total} message(s) skipped in the last {} s{}",
                    skipped.len(),
                    self.config.window.as_secs(),
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", reasons.join(", "))
                    }
                );
                let ids = self.skipped_ids.samples();
                // Channels left out on purpose (--allow-channel) are not a broken filter.
                let deliberate = by_reason.contains_key(SkipReason::ChannelNotAllowed.as_str());
                if total >= 3 && skipped.len() == total && by_reason.len() == 1 && !deliberate {
                    (
                        Status::Fail,
                        format!("every message skipped for one reason: {summary}"),
                        reasons,
                        ids,
                    )
                } else if total >= 10 && skipped.len() * 10 >= total * 9 {
                    (Status::Warn, summary, reasons, ids)
                } else {
                    ok(summary)
                }
            }
            "channel" => {
                let mut evidence = Vec::new();
                let mut status = Status::Ok;
                for (channel, (count, at)) in &self.neighbours {
                    if now - *at < delta(self.config.window) {
                        // Another spelling of our channel is surely a mistake; a usual name
                        // such as `events` may belong to another application.
                        let spelling = channel.eq_ignore_ascii_case(self.config.channel.as_str());
                        status = status.max(if spelling { Status::Fail } else { Status::Warn });
                        evidence.push(format!(
                            "{count} NOTIFY on {channel:?} (a neighbour of {:?}), last {}",
                            self.config.channel.as_str(),
                            ago(now, *at)
                        ));
                    }
                }
                for (channel, n) in &self.snapshot.other_channels {
                    status = Status::Fail;
                    evidence.push(format!(
                        "{n} event(s) published to channel {channel:?} wait in the outbox: nobody ingests that channel"
                    ));
                }
                if !self.unknown_event_types.items.is_empty() {
                    status = Status::Fail;
                    evidence.extend(self.unknown_event_types.samples());
                }
                if status == Status::Ok {
                    ok(format!("all traffic on {:?}", self.config.channel.as_str()))
                } else {
                    (
                        status,
                        evidence.first().cloned().unwrap_or_default(),
                        evidence,
                        vec![],
                    )
                }
            }
            "content_intent" => {
                if watch {
                    return unknown("no bot of ours to observe");
                }
                match self.content_missing.last() {
                    Some((at, _)) => (
                        Status::Fail,
                        format!(
                            "{} guild message(s) without content in the last {} s, last {}",
                            self.content_missing.len(),
                            self.config.window.as_secs(),
                            ago(now, *at)
                        ),
                        vec!["guild messages that do not mention the bot arrive empty without the MESSAGE_CONTENT intent".into()],
                        self.content_missing.samples(),
                    ),
                    None => ok("messages arrive with their content".into()),
                }
            }
            "notify_queue" => {
                if !snapshot_ok {
                    return unknown("not queried yet");
                }
                let usage = self.snapshot.queue_usage;
                let pct = usage * 100.0;
                let suspects: Vec<String> = self
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
                            crate::present::shorten(&b.query, 60)
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
                    (status, summary, suspects, vec![])
                }
            }
            "backlog" => {
                if !snapshot_ok {
                    return unknown("not queried yet");
                }
                let Some(count) = self.snapshot.backlog else {
                    return unknown("no event_outbox to look at");
                };
                let age = self.snapshot.oldest_age_s.unwrap_or(0.0);
                let limit = self.config.backlog_age.as_secs_f64();
                let summary = format!("{count} unprocessed outbox row(s), oldest {age:.1} s old");
                if count == 0 || age < limit {
                    ok(summary)
                } else if age < limit * 10.0 {
                    (Status::Warn, summary, vec![], vec![])
                } else {
                    (Status::Fail, summary, vec![], vec![])
                }
            }
            _ => unknown("no such check"),
        }
    }

    fn listener_check(
        &mut self,
        now: DateTime<Utc>,
    ) -> (Status, String, Vec<String>, Vec<Snowflake>) {
        let channel = self.config.channel.as_str();
        let backends: Vec<String> = self
            .snapshot
            .listeners
            .iter()
            .map(|b| {
                format!(
                    "pid {} {} ({}): {:?}",
                    b.pid,
                    b.application_name,
                    b.state,
                    crate::present::shorten(&b.query, 60)
                )
            })
            .collect();
        let listen_query = self
            .snapshot
            .listeners
            .iter()
            .any(|b| listens_on(&b.query, channel));
        if !self.config.watch_only {
            if let Some((at, cause)) = self.listener_down.clone() {
                if !self.listener_is_up() {
                    let mut evidence = vec![format!("listener down {}: {cause}", ago(now, at))];
                    evidence.extend(backends);
                    return (
                        Status::Fail,
                        format!("our listener on {channel:?} is down: {cause}"),
                        evidence,
                        vec![],
                    );
                }
            }
            return match self.listener_up {
                Some((at, pid)) if self.listener_is_up() => {
                    let seen = self.snapshot.listeners.iter().any(|b| b.pid == pid);
                    let mut evidence = vec![format!("probe answered {}", ago(now, at))];
                    evidence.extend(backends);
                    if self.snapshot.at.is_some() && self.snapshot.error.is_none() && !seen {
                        (
                            Status::Warn,
                            format!("listener pid {pid} answered its probe but is not in pg_stat_activity"),
                            evidence,
                            vec![],
                        )
                    } else {
                        (
                            Status::Ok,
                            format!("listener pid {pid} on {channel:?}, probe answered"),
                            evidence,
                            vec![],
                        )
                    }
                }
                _ => {
                    if now - self.started > delta(self.config.deadline) {
                        (
                            Status::Fail,
                            format!("no listener on {channel:?} has come up"),
                            backends,
                            vec![],
                        )
                    } else {
                        unknown("listener starting")
                    }
                }
            };
        }
        if self.snapshot.at.is_none() {
            return unknown("not queried yet");
        }
        if listen_query {
            return (
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
        if self.notified.order.is_empty() {
            (
                Status::Warn,
                format!("no backend in pg_stat_activity shows LISTEN {channel} as its last query"),
                evidence,
                vec![],
            )
        } else {
            let lost = self.notified.overdue(now - delta(self.config.deadline));
            if lost.is_empty() {
                (
                    Status::Ok,
                    format!("notified messages reach the table, though no backend shows LISTEN {channel}"),
                    evidence,
                    vec![],
                )
            } else {
                (
                    Status::Fail,
                    format!("no backend shows LISTEN {channel} and {} notified message(s) never reached the table", lost.len()),
                    evidence,
                    lost.iter().map(|(_, id)| *id).take(20).collect(),
                )
            }
        }
    }
}

/// The checks one snapshot decides on its own (queue, backlog, stray channels), for a
/// one-shot look such as `doctor`; without an outbox in the snapshot, backlog is left out.
pub fn snapshot_checks(channel: &Identifier, snapshot: Snapshot) -> Vec<Check> {
    let with_outbox = snapshot.backlog.is_some();
    let mut diagnosis = Diagnosis::new(DiagnoseConfig::new(channel.clone()));
    diagnosis.observe_snapshot(snapshot);
    let now = Utc::now();
    ["notify_queue", "backlog", "channel"]
        .into_iter()
        .filter(|id| with_outbox || *id == "notify_queue")
        .map(|id| {
            let (status, summary, evidence, ids) = diagnosis.evaluate(id, now);
            diagnosis.check(id, status, summary, evidence, ids, now)
        })
        .collect()
}

/// Channels people publish to by mistake instead of `channel`: its other spellings (LISTEN
/// folds unquoted names to lower case, pg_notify does not) and the usual names, plus `extra`.
pub fn neighbours(channel: &Identifier, extra: &[Identifier]) -> Vec<Identifier> {
    let name = channel.as_str();
    let mut capitalised = name.to_lowercase();
    if let Some(first) = capitalised.get(..1).map(str::to_uppercase) {
        capitalised.replace_range(..1, &first);
    }
    let mut out: Vec<Identifier> = Vec::new();
    let candidates = [
        name.to_lowercase(),
        name.to_uppercase(),
        capitalised,
        "events".into(),
        "discord".into(),
        "discord_events".into(),
    ];
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

/// What may be shown of another session's last statement: a LISTEN in full (it names a
/// channel), anything else only by its first word, since its text may hold secrets.
pub fn statement_shown(query: &str) -> String {
    let q = query.trim();
    if q.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("listen")) {
        return q.to_owned();
    }
    match q.split_whitespace().next() {
        Some(word) => format!("{} …", word.to_uppercase()),
        None => String::new(),
    }
}

/// Whether a `LISTEN …` statement listens on `channel`, with PostgreSQL's folding: an unquoted
/// name is lower-cased, a quoted one is taken as written.
pub fn listens_on(query: &str, channel: &str) -> bool {
    let q = query.trim().trim_end_matches(';').trim();
    let Some(rest) = q
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("listen"))
        .map(|_| q[6..].trim())
    else {
        return false;
    };
    let name = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => rest.to_lowercase(),
    };
    name == channel
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn ago(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let s = (now - at).num_milliseconds() as f64 / 1000.0;
    if s < 1.0 {
        "just now".into()
    } else if s < 120.0 {
        format!("{s:.0} s ago")
    } else {
        format!("{:.0} min ago", s / 60.0)
    }
}

fn ok(summary: String) -> (Status, String, Vec<String>, Vec<Snowflake>) {
    (Status::Ok, summary, vec![], vec![])
}

fn unknown(summary: &str) -> (Status, String, Vec<String>, Vec<Snowflake>) {
    (Status::Unknown, summary.into(), vec![], vec![])
}

/// The backends worth knowing about: listeners and sessions idle in a transaction.
const BACKENDS: &str = "(SELECT coalesce(json_agg(json_build_array(pid, coalesce(application_name, ''), \
        coalesce(state, ''), coalesce(query, ''), \
        coalesce(extract(epoch FROM now() - state_change), 0)::float8)), '[]') \
    FROM pg_stat_activity \
    WHERE datname = current_database() AND pid <> pg_backend_pid() \
      AND (application_name = $1 OR query ILIKE 'listen%' OR state LIKE 'idle in transaction%'))::text";

/// One small query a second: queue usage, listening and idle backends, and (with an outbox)
/// the backlog, the rows of other channels, and which of `look_up` are in `discord_messages`.
pub async fn snapshot(
    client: &tokio_postgres::Client,
    channel: &Identifier,
    with_outbox: bool,
    look_up: &[Snowflake],
) -> Snapshot {
    let now = Utc::now();
    let pending = "processed_at IS NULL AND attempts < $3";
    let sql = if with_outbox {
        format!(
            "SELECT pg_notification_queue_usage(), {BACKENDS}, \
               (SELECT count(*) FROM event_outbox WHERE channel = $2 AND {pending}), \
               (SELECT extract(epoch FROM now() - min(published_at))::float8 FROM event_outbox \
                  WHERE channel = $2 AND {pending}), \
               (SELECT coalesce(json_agg(json_build_array(channel, n)), '[]') FROM \
                  (SELECT channel, count(*) AS n FROM event_outbox \
                    WHERE channel <> $2 AND {pending} AND published_at < now() - interval '1 second' \
                    GROUP BY channel ORDER BY 2 DESC LIMIT 5) AS o)::text, \
               (SELECT coalesce(array_agg(message_id), '{{}}') FROM discord_messages \
                  WHERE message_id = ANY($4))"
        )
    } else {
        format!("SELECT pg_notification_queue_usage(), {BACKENDS}")
    };
    let look_up: Vec<i64> = look_up.iter().map(|id| id.as_i64()).collect();
    let row = if with_outbox {
        client
            .query_one(
                &sql,
                &[
                    &LISTENER_APP_NAME,
                    &channel.as_str(),
                    &MAX_ATTEMPTS,
                    &look_up,
                ],
            )
            .await
    } else {
        client.query_one(&sql, &[&LISTENER_APP_NAME]).await
    };
    let row = match row {
        Ok(row) => row,
        Err(e) => {
            return Snapshot {
                at: Some(now),
                error: Some(error_chain(&e)),
                ..Snapshot::default()
            }
        }
    };
    let mut snap = Snapshot {
        at: Some(now),
        queue_usage: row.get(0),
        ..Snapshot::default()
    };
    let backends: Vec<(i32, String, String, String, f64)> =
        serde_json::from_str(row.get::<_, &str>(1)).unwrap_or_default();
    for (pid, application_name, state, query, seconds_in_state) in backends {
        let b = Backend {
            pid,
            application_name,
            state,
            query: statement_shown(&query),
            seconds_in_state,
        };
        if b.state.starts_with("idle in transaction") {
            snap.idle_in_transaction.push(b.clone());
        }
        if listens_on(&b.query, channel.as_str()) {
            snap.listeners.push(b);
        } else if b.application_name == LISTENER_APP_NAME {
            snap.other_listeners.push(b);
        }
    }
    if with_outbox {
        snap.backlog = Some(row.get(2));
        snap.oldest_age_s = row.get(3);
        snap.other_channels = serde_json::from_str(row.get::<_, &str>(4)).unwrap_or_default();
        snap.found = row
            .get::<_, Vec<i64>>(5)
            .into_iter()
            .filter_map(Snowflake::from_i64)
            .collect();
    }
    snap
}

/// What the diagnosis reports each second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Unprocessed outbox rows of the channel, when there is an outbox.
    pub backlog: Option<i64>,
}

/// Runs the diagnosis on `events` (subscribe before the pipeline starts, so that its first
/// events count) and a query a second; the latest checks are in the returned watch. Status
/// changes are traced on `trace` as `health_changed`.
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
        let mut diagnosis = Diagnosis::new(config);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: HashMap<String, Status> = HashMap::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                ev = events.recv() => match ev {
                    Some(ev) => diagnosis.observe(&ev),
                    None => break,
                },
                _ = tick.tick() => {
                    let overdue = diagnosis.overdue_notified(Utc::now());
                    let failed = |error: String| Snapshot { at: Some(Utc::now()), error: Some(error), ..Snapshot::default() };
                    let query = async {
                        let client = pool.get().await.map_err(|e| error_chain(&e))?;
                        Ok::<_, String>(snapshot(&client, &channel, with_outbox, &overdue).await)
                    };
                    // A hung query must not stop the diagnosis from reading the trace.
                    let snap = match tokio::time::timeout(Duration::from_secs(3), query).await {
                        Ok(Ok(snap)) => snap,
                        Ok(Err(error)) => failed(error),
                        Err(_) => failed("the diagnosis query took over 3 s".into()),
                    };
                    diagnosis.found_in_table(&snap.found);
                    let backlog = snap.backlog;
                    diagnosis.observe_snapshot(snap);
                    let checks = diagnosis.checks(Utc::now());
                    for c in &checks {
                        if last.get(&c.id) != Some(&c.status) {
                            if last.contains_key(&c.id) || c.status != Status::Ok {
                                trace.emit(None, TraceKind::HealthChanged {
                                    check: c.id.clone(),
                                    status: c.status,
                                    summary: c.summary.clone(),
                                });
                            }
                            last.insert(c.id.clone(), c.status);
                        }
                    }
                    tx.send_replace(Arc::new(Report { checks, backlog }));
                }
            }
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_other_spellings_and_usual_names() {
        let n: Vec<String> = neighbours(&Identifier::fixed("events"), &[Identifier::fixed("bus")])
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(n, ["EVENTS", "Events", "discord", "discord_events", "bus"]);
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
                synthetic: false,
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
}
