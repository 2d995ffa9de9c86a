//! The overlays over the panes: help, and the detail of a row or a health check (the text
//! of an event comes from [`notifyscope_model::present`]).

use std::sync::Arc;

use crate::keys::{Action, KeyMap};
use notifyscope_model::check::Check;
use notifyscope_model::contract::Snowflake;
use notifyscope_model::present;
use notifyscope_model::trace::{Status, TraceEvent, TraceKind};

/// A full-screen layer over the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help {
        scroll: usize,
    },
    /// Pre-rendered lines of the selected row or check, and the message ids it concerns.
    Detail {
        title: String,
        lines: Vec<String>,
        scroll: usize,
        message_ids: Vec<Snowflake>,
    },
    /// Latency per stage and rates, drawn live from the app's state.
    Stats,
}

pub(super) fn scroll(overlay: &mut Overlay, delta: isize) {
    let s = match overlay {
        Overlay::Help { scroll } | Overlay::Detail { scroll, .. } => scroll,
        Overlay::Stats => return,
    };
    *s = (*s as isize + delta).max(0) as usize;
}

/// The payload of a NOTIFY row, or the whole event as JSON.
pub(super) fn copy_text(event: &TraceEvent) -> String {
    match &event.kind {
        TraceKind::Notified { payload, .. } | TraceKind::NotifyRejected { payload, .. } => {
            payload.clone()
        }
        _ => event.to_json(),
    }
}

pub(super) fn check_detail(check: &Check, keys: &KeyMap) -> Overlay {
    let mut lines = vec![
        format!(
            "{} {} — {:?}",
            check.status.symbol(),
            check.name,
            check.status
        ),
        format!(
            "since {}",
            check
                .since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        String::new(),
        check.summary.clone(),
    ];
    if !check.evidence.is_empty() {
        lines.push(String::new());
        lines.push("Evidence".into());
        lines.extend(check.evidence.iter().map(|e| format!("  {e}")));
    }
    // A check left unknown waits for evidence (its summary says which): there is no fault
    // to fix yet.
    let faulty = matches!(check.status, Status::Warn | Status::Fail);
    if faulty && !check.hint.trim().is_empty() {
        lines.push(String::new());
        lines.push(format!("Fix: {}", check.hint));
    }
    if !check.message_ids.is_empty() {
        lines.push(String::new());
        lines.push(format!(
            "Messages ({} follows the first one in the panes)",
            keys.label(Action::Follow)
        ));
        lines.extend(check.message_ids.iter().map(|id| format!("  {id}")));
    }
    Overlay::Detail {
        title: format!("Health — {}", check.name),
        lines,
        scroll: 0,
        message_ids: check.message_ids.clone(),
    }
}
/// The detail of an event in the pane titled `pane`, with its message's `timeline`.
pub(super) fn event_detail(
    pane: &str,
    event: &TraceEvent,
    timeline: &[&Arc<TraceEvent>],
) -> Overlay {
    Overlay::Detail {
        title: format!("{pane} — {}", event.kind.name()),
        lines: present::event_lines(event, timeline),
        scroll: 0,
        message_ids: event.message_id.into_iter().collect(),
    }
}
