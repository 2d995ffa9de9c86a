//! The rule of each live check: [`CheckId`] and its table live in the model, the rules here.

use chrono::{DateTime, Utc};

use crate::evidence::Evidence;
use crate::rules::{self, Finding};
use notifyscope_model::check::CheckId;

/// How a check judges the evidence as of a moment.
type Rule = fn(&mut Evidence, DateTime<Utc>) -> Finding;

/// The rule of a live check; `None` for the probes only `doctor` runs.
fn rule(id: CheckId) -> Option<Rule> {
    match id {
        CheckId::Runtime => Some(rules::runtime),
        CheckId::AsyncContext => Some(rules::async_context),
        CheckId::Malformed => Some(rules::malformed),
        CheckId::Database => Some(rules::database),
        CheckId::Writes => Some(rules::writes),
        CheckId::Listener => Some(rules::listener),
        CheckId::PublishBeforeListener => Some(rules::publish_before_listener),
        CheckId::SilentErrors => Some(rules::silent_errors),
        CheckId::SelfFilter => Some(rules::self_filter),
        CheckId::Channel => Some(rules::channel),
        CheckId::ContentIntent => Some(rules::content_intent),
        CheckId::NotifyQueue => Some(rules::notify_queue),
        CheckId::LockWaits => Some(rules::lock_waits),
        CheckId::SilentConnections => Some(rules::silent_connections),
        CheckId::StalledListener => Some(rules::stalled_listener),
        CheckId::NotifyLock => Some(rules::notify_lock),
        CheckId::PayloadSize => Some(rules::payload_size),
        CheckId::Backlog => Some(rules::backlog),
        CheckId::GivenUp => Some(rules::given_up),
        CheckId::ConnectionSettings => None,
        CheckId::Schema => None,
        CheckId::RoundTrip => None,
        CheckId::Config => None,
    }
}

/// What the rule of a live check finds now; `None` for the checks only `doctor` runs.
pub fn evaluate(id: CheckId, evidence: &mut Evidence, now: DateTime<Utc>) -> Option<Finding> {
    let rule = rule(id)?;
    Some(match id.needs_our_pipeline() {
        Some(_) if evidence.config.observer && id.observable() => {
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
