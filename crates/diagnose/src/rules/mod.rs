//! The rules: one function per live check, judging the [`Evidence`] as of a moment. Each
//! returns a [`Finding`]; [`crate::checks`] names them and adds the fix. By side: [`bot`],
//! [`server`] (the database), [`delivery`] and [`field`] (what goes wrong while every part
//! runs).

mod bot;
mod delivery;
mod field;
mod server;

pub(crate) use bot::{
    async_context, content_intent, publish_before_listener, runtime, self_filter, silent_errors,
};
pub(crate) use delivery::{channel, listener, malformed};
pub(crate) use field::{notify_lock, payload_size, silent_connections, stalled_listener};
pub(crate) use server::{backlog, database, given_up, lock_waits, notify_queue, writes};

use notifyscope_model::check::CheckTarget;
use notifyscope_model::contract::Snowflake;
use notifyscope_model::trace::Status;

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
    pub(super) fn acting_on(mut self, target: CheckTarget) -> Self {
        self.target = Some(target);
        self
    }
}

pub(super) fn found(
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

pub(super) fn ok(summary: String) -> Finding {
    found(Status::Ok, summary, vec![], vec![])
}

/// Unknown while the latest snapshot failed, or before the first: for the rules that judge
/// the server's sessions.
pub(super) fn sessions_unread(e: &crate::evidence::Evidence) -> Option<Finding> {
    if let Some(error) = &e.snapshot.error {
        return Some(unknown(&format!(
            "the sessions could not be read: {}",
            notifyscope_model::present::shorten(error, 160)
        )));
    }
    (!e.snapshot_ok()).then(|| unknown("not queried yet"))
}

pub(crate) fn unknown(summary: &str) -> Finding {
    found(Status::Unknown, summary.into(), vec![], vec![])
}
