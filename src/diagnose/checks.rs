//! The checks, one per failure mode of the pipeline (the failure table of the design), each
//! with a status, the evidence in numbers and samples, and a fix in one sentence. A check is
//! one line of the table below and one function in [`super::rules`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::Snowflake;
use crate::diagnose::evidence::Evidence;
use crate::diagnose::rules::{self, Finding};
use crate::diagnose::target::CheckTarget;
use crate::trace::{CheckState, Status};

/// How a check judges the evidence as of a moment.
type Rule = fn(&mut Evidence, DateTime<Utc>) -> Finding;

/// Declares [`CheckId`] from one table: variant, stable id, name, fix, the rule of a live
/// check (`None` for the probes only `doctor` runs), and for a check that needs our own
/// pipeline, what it cannot see in `watch` (`None`: it judges any pipeline).
macro_rules! checks {
    ($($variant:ident => $id:literal, $name:literal, $hint:literal, $rule:expr, $ours:expr;)*) => {
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

            fn rule(self) -> Option<Rule> {
                match self {
                    $(CheckId::$variant => $rule),*
                }
            }

            fn needs_our_pipeline(self) -> Option<&'static str> {
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
        Some(rules::runtime),
        Some("no publisher of ours to observe");
    AsyncContext => "async_context", "every received message handled",
        "make sure on_message awaits the publish (or hands it to the publisher) on every path",
        Some(rules::async_context),
        Some("no bot of ours to observe");
    Malformed => "malformed", "payloads follow the contract",
        "validate events before publishing; the rejected payloads are in dead_letters",
        Some(rules::malformed),
        None;
    Database => "database", "database connection",
        "check that PostgreSQL runs and the URL, user and network are right; the pipeline reconnects by itself",
        Some(rules::database),
        None;
    Writes => "writes", "the database accepts our writes",
        "read the error named here: a grant, a lock, a missing table or a full disk; the rows wait in the outbox and are retried on their schedule",
        Some(rules::writes),
        Some("no writer of ours to observe");
    Listener => "listener", "listener running",
        "start the LISTEN subscriber (ingestion) for this channel; the outbox keeps events until it runs",
        Some(rules::listener),
        None;
    PublishBeforeListener => "publish_before_listener", "listener up before publishing",
        "start the listener before the bot (wait for `[init] Listener running`); events published meanwhile wait in the outbox",
        Some(rules::publish_before_listener),
        Some("no publisher of ours to observe");
    SilentErrors => "silent_errors", "no error goes unreported",
        "look at the counted errors; every failure should reach a log line and an error path, never a bare except",
        Some(rules::silent_errors),
        None;
    SelfFilter => "self_filter", "filter lets messages through",
        "check the skip rule named here: e.g. compare the author with the bot's own user id, not with any bot",
        Some(rules::self_filter),
        Some("no filter of ours to observe");
    Channel => "channel", "channel and event_type match",
        "use one channel name, exactly as written, on both sides (LISTEN folds unquoted names to lower case; pg_notify does not)",
        Some(rules::channel),
        None;
    ContentIntent => "content_intent", "message content arrives",
        "enable MESSAGE CONTENT INTENT for the bot in the Developer Portal and request the message_content intent",
        Some(rules::content_intent),
        Some("no bot of ours to observe");
    NotifyQueue => "notify_queue", "NOTIFY queue has room",
        "end the transaction of the session named here; a listener inside an open transaction receives nothing and holds the queue",
        Some(rules::notify_queue),
        None;
    LockWaits => "lock_waits", "nothing waits on a lock",
        "end or commit the session holding the lock (usually a migration, a session idle in transaction or a long report); the confirmed cancel (pg_cancel_backend) or terminate (pg_terminate_backend) of that pid frees it",
        Some(rules::lock_waits),
        None;
    Backlog => "backlog", "outbox drained",
        "start or speed up ingestion; look at last_error of the oldest rows in event_outbox",
        Some(rules::backlog),
        None;
    Schema => "schema", "schema and migrations present",
        "start `notifyscope run` with the same --database-url and --schema; it migrates at start",
        None, None;
    RoundTrip => "round_trip", "round trip: publish → NOTIFY → ingested",
        "see the stage where the probe stopped",
        None, None;
    Config => "config", "configuration",
        "set the bot token from the Developer Portal's Bot page",
        None, None;
}

impl CheckId {
    /// What the rule of a live check finds now; `None` for the checks only `doctor` runs.
    pub fn evaluate(self, evidence: &mut Evidence, now: DateTime<Utc>) -> Option<Finding> {
        let rule = self.rule()?;
        Some(match self.needs_our_pipeline() {
            Some(_) if evidence.config.observer && self.observable() => {
                if evidence.observer_saw_nothing() {
                    rules::unknown("the observer has received no message in the window yet")
                } else {
                    rule(evidence, now)
                }
            }
            Some(unseen) if evidence.config.watch_only => rules::unknown(unseen),
            _ => rule(evidence, now),
        })
    }

    /// Checks of the bot's side that an observer of someone else's bot can judge.
    fn observable(self) -> bool {
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
