//! The checks, one per failure mode of the pipeline (the failure table of the design), each
//! with a status, the evidence in numbers and samples, and a fix in one sentence. A check is
//! one row of the table below; the diagnosis judges it with one rule, and the screen, the
//! recordings and `doctor` show it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::Snowflake;
use crate::trace::{CheckState, Status};

/// Declares [`CheckId`] from one table: variant, stable id, name, fix, and for a check that
/// needs our own pipeline, what it cannot see in `watch` (`None`: it judges any pipeline).
macro_rules! checks {
    ($($variant:ident => $id:literal, $name:literal, $hint:literal, $ours:expr;)*) => {
        /// Every check. Serialized as its stable id, e.g. `listener`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum CheckId {
            $($variant),*
        }

        impl CheckId {
            /// In the order of the failure table; the live checks first.
            pub const ALL: &'static [CheckId] = &[$(CheckId::$variant),*];

            /// Stable identifier, as in JSON and `health_changed`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(CheckId::$variant => $id),*
                }
            }

            /// What must hold, for people.
            pub fn name(self) -> &'static str {
                match self {
                    $(CheckId::$variant => $name),*
                }
            }

            /// What to do when it does not hold, in one sentence.
            pub fn hint(self) -> &'static str {
                match self {
                    $(CheckId::$variant => $hint),*
                }
            }

            /// What a watcher of someone else's pipeline cannot see of this check, when it
            /// needs our own pipeline.
            pub fn needs_our_pipeline(self) -> Option<&'static str> {
                match self {
                    $(CheckId::$variant => $ours),*
                }
            }
        }
    };
}

checks! {
    Runtime => "runtime", "publishing from the right runtime",
        "publish with `publish(..).await` on runtime threads; keep `publish_blocking` for plain threads",
        Some("no publisher of ours to observe");
    AsyncContext => "async_context", "every received message handled",
        "make sure on_message awaits the publish (or hands it to the publisher) on every path",
        Some("no bot of ours to observe");
    Malformed => "malformed", "payloads follow the contract",
        "validate events before publishing; the rejected payloads are in dead_letters",
        None;
    Database => "database", "database connection",
        "check that PostgreSQL runs and the URL, user and network are right; the pipeline reconnects by itself",
        None;
    Writes => "writes", "the database accepts our writes",
        "read the error named here: a grant, a lock, a missing table or a full disk; the rows wait in the outbox and are retried on their schedule",
        Some("no writer of ours to observe");
    Listener => "listener", "listener running",
        "start the LISTEN subscriber (ingestion) for this channel; the outbox keeps events until it runs",
        None;
    PublishBeforeListener => "publish_before_listener", "listener up before publishing",
        "start the listener before the bot (wait for `[init] Listener running`); events published meanwhile wait in the outbox",
        Some("no publisher of ours to observe");
    SilentErrors => "silent_errors", "no error goes unreported",
        "look at the counted errors; every failure should reach a log line and an error path, never a bare except",
        None;
    SelfFilter => "self_filter", "filter lets messages through",
        "check the skip rule named here: e.g. compare the author with the bot's own user id, not with any bot",
        Some("no filter of ours to observe");
    Channel => "channel", "channel and event_type match",
        "use one channel name, exactly as written, on both sides (LISTEN folds unquoted names to lower case; pg_notify does not)",
        None;
    ContentIntent => "content_intent", "message content arrives",
        "enable MESSAGE CONTENT INTENT for the bot in the Developer Portal and request the message_content intent",
        Some("no bot of ours to observe");
    NotifyQueue => "notify_queue", "NOTIFY queue has room",
        "end the transaction of the session named here; a listener inside an open transaction receives nothing and holds the queue",
        None;
    LockWaits => "lock_waits", "nothing waits on a lock",
        "end or commit the session holding the lock (usually a migration, a session idle in transaction or a long report); the confirmed cancel (pg_cancel_backend) or terminate (pg_terminate_backend) of that pid frees it",
        None;
    SilentConnections => "silent_connections", "no connection went silent",
        "look for what drops idle or long connections without a reset between here and the server (NAT, a load balancer's idle timeout, a firewall); lower keepalives_idle below its timeout",
        None;
    StalledListener => "stalled_listener", "listeners read their notifications",
        "the listener's process does not read its connection: look for a blocked event loop (a synchronous call in async code) or a stopped process, and restart it; ending its session (`a` on this check) frees the NOTIFY queue it holds back",
        None;
    NotifyLock => "notify_lock", "commits do not queue for NOTIFY",
        "send fewer NOTIFYing transactions: batch them, or publish through an outbox with one NOTIFY per batch",
        None;
    PayloadSize => "payload_size", "payloads fit NOTIFY's 8000 bytes",
        "send large events by reference (the outbox id) instead of the whole payload; pg_notify fails above 8000 bytes",
        None;
    Backlog => "backlog", "outbox drained",
        "start or speed up ingestion; look at last_error of the oldest rows in event_outbox",
        None;
    GivenUp => "given_up", "no message given up",
        "read the error of the given-up rows (`notifyscope outbox list`, `notifyscope dead-letters list`), fix its cause, then retry them (`a` on this check, or `notifyscope dead-letters retry`) or delete them (`notifyscope dead-letters delete`)",
        None;
    ConnectionSettings => "connection_settings", "server settings keep a LISTEN open",
        "a LISTEN connection is idle most of the time: exempt its role from idle_session_timeout (ALTER ROLE … SET idle_session_timeout = 0) and keep tcp_keepalives_idle below the network's idle timeout",
        None;
    Schema => "schema", "schema and migrations present",
        "start `notifyscope run` with the same --database-url and --schema; it migrates at start",
        None;
    RoundTrip => "round_trip", "round trip: publish → NOTIFY → ingested",
        "see the stage where the probe stopped",
        None;
    Config => "config", "configuration",
        "set the bot token from the Developer Portal's Bot page",
        None;
}

impl CheckId {
    /// Checks of the bot's side that an observer of someone else's bot can judge.
    pub fn observable(self) -> bool {
        matches!(
            self,
            CheckId::AsyncContext | CheckId::SelfFilter | CheckId::ContentIntent
        )
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for CheckId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::str::FromStr for CheckId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        CheckId::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("no check is called {s:?}"))
    }
}

/// One failure mode and what is known about it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub id: CheckId,
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
    /// What an action on this check would act on, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<CheckTarget>,
}

impl Check {
    /// The check in the trace's words (for `health_report`).
    pub fn to_state(&self) -> CheckState {
        CheckState {
            check: self.id.as_str().to_owned(),
            name: self.name.clone(),
            status: self.status,
            summary: self.summary.clone(),
            evidence: self.evidence.clone(),
            hint: self.hint.clone(),
            since: self.since,
            message_ids: self.message_ids.clone(),
        }
    }

    /// A check read back from the trace; `None` for a check this version does not know.
    pub fn from_state(state: &CheckState) -> Option<Check> {
        Some(Check {
            id: state.check.parse().ok()?,
            name: state.name.clone(),
            status: state.status,
            summary: state.summary.clone(),
            evidence: state.evidence.clone(),
            hint: state.hint.clone(),
            since: state.since,
            message_ids: state.message_ids.clone(),
            target: None,
        })
    }
}

/// What an action on a check acts on (the screen's `a` key, after a confirmation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckTarget {
    /// A session that holds the pipeline up: the holder of a lock the pipeline waits for, or
    /// a session idle in a transaction that keeps the NOTIFY queue from draining.
    Backend {
        pid: i32,
        application_name: String,
        user: String,
    },
    /// Outbox rows of the channel waiting, retrying or given up.
    StuckRows,
    /// Rejected notifications and outbox rows given up.
    DeadLetters,
}

/// What the diagnosis reports each second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Unprocessed outbox rows of the channel, when there is an outbox.
    pub backlog: Option<i64>,
    /// Messages of the channel given up (outbox rows and dead letters), when known.
    pub given_up: Option<i64>,
    /// `pg_notification_queue_usage()`, 0 to 1, when the server answered.
    pub queue_usage: Option<f64>,
}
