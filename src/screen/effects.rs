//! What the state asks of the outside world ([`Effect`]), carried out: test events through
//! the pipeline's handles, the clipboard, saving the session, keys for the log widget. Slow
//! work runs in a task and reports back as a toast; nothing here writes SQL.

use std::io::Write;

use base64::Engine;
use tokio::sync::mpsc;
use tui_logger::TuiWidgetState;

use crate::contract::Snowflake;
use crate::pipeline::bot_path::Handled;
use crate::pipeline::control::SimulatedSource;
use crate::pipeline::operate::{Operator, Stop};
use crate::pipeline::publish::PublishError;
use crate::pipeline::synthetic::SimKind;
use crate::pipeline::test_events::TestEvents;
use crate::recording;
use crate::screen::app::{App, AppEvent, Effect};
use crate::screen::keys::Action;
use crate::screen::logs;
use crate::trace::SkipReason;

/// What the monitor needs of a running pipeline to send test events.
#[derive(Clone)]
pub struct Live {
    pub simulated: SimulatedSource,
    pub tests: TestEvents,
}

/// What the monitor can reach of the outside world: test events into our own pipeline, and
/// the actions on what the diagnosis found (also in `watch`, for the sessions).
#[derive(Clone, Default)]
pub struct Reach {
    pub live: Option<Live>,
    pub operator: Option<Operator>,
}

pub fn run_effect(
    effect: Effect,
    app: &mut App,
    reach: &Reach,
    results: &mpsc::Sender<AppEvent>,
    log_state: &TuiWidgetState,
) {
    match effect {
        Effect::Quit => {}
        Effect::LogKey(key) => {
            if let Some(ev) = logs::log_event(key.code) {
                log_state.transition(ev);
            }
        }
        Effect::Copy(text) => match copy_osc52(&text) {
            Ok(()) => app.toast(format!(
                "copied {} bytes to the clipboard (OSC 52)",
                text.len()
            )),
            Err(e) => app.toast(format!("copy failed: {e}")),
        },
        Effect::Save(events) => match recording::save(&events) {
            Ok(path) => app.toast(saved(events.len(), &path)),
            Err(e) => app.toast(format!("save failed: {e}")),
        },
        Effect::CancelBackend(_)
        | Effect::TerminateBackend(_)
        | Effect::RetryStuckRows
        | Effect::ListDeadLetters
        | Effect::RequeueDeadLetters
        | Effect::DeleteDeadLetters => match &reach.operator {
            Some(operator) => act(effect, operator.clone(), results.clone()),
            None => app.toast("nothing to act with here"),
        },
        test => {
            if let Some(live) = &reach.live {
                send_test(test, app, live.clone(), results.clone());
            }
        }
    }
}

/// An action on what the diagnosis found, confirmed already, in a task of its own; what came
/// of it comes back as a toast (or, for a list, as an overlay).
fn act(effect: Effect, operator: Operator, results: mpsc::Sender<AppEvent>) {
    tokio::spawn(async move {
        let event = match effect {
            Effect::CancelBackend(pid) => {
                AppEvent::Toast(operator.stop_backend(pid, Stop::Cancel).await)
            }
            Effect::TerminateBackend(pid) => {
                AppEvent::Toast(operator.stop_backend(pid, Stop::Terminate).await)
            }
            Effect::RetryStuckRows => AppEvent::Toast(operator.retry_stuck().await),
            Effect::ListDeadLetters => AppEvent::Lines {
                title: "Dead letters".into(),
                lines: operator.list_dead_letters().await,
            },
            Effect::RequeueDeadLetters => AppEvent::Toast(operator.requeue_dead_letters().await),
            Effect::DeleteDeadLetters => AppEvent::Toast(operator.delete_dead_letters().await),
            _ => return,
        };
        let _ = results.send(event).await;
    });
}

/// A test event in a task of its own; its outcome comes back as a toast that starts with
/// the key that sent it.
fn send_test(effect: Effect, app: &App, live: Live, results: mpsc::Sender<AppEvent>) {
    let action = match effect {
        Effect::Send(kind) => Action::Send(kind),
        Effect::SendMalformed => Action::SendMalformed,
        Effect::SendWrongChannel => Action::SendWrongChannel,
        Effect::SendDirect => Action::SendDirect,
        _ => return,
    };
    let key = app.keymap.label(action);
    tokio::spawn(async move {
        let text = match effect {
            Effect::Send(kind) => describe_sent(&key, kind, &live.simulated.inject(kind).await),
            Effect::SendMalformed => match live.tests.malformed().await {
                Ok(()) => format!(
                    "{key}: malformed NOTIFY sent on {}: watch NOTIFY receipts",
                    live.tests.channel()
                ),
                Err(e) => format!("{key}: failed: {e}"),
            },
            Effect::SendWrongChannel => match live.tests.wrong_channel().await {
                Ok((wrong, id)) => format!(
                    "{key}: message {id} sent on {wrong:?} instead of {:?}: no listener of ours hears it",
                    live.tests.channel().as_str()
                ),
                Err(e) => format!("{key}: failed: {e}"),
            },
            _ => match live.tests.direct().await {
                (id, Ok(r)) => format!(
                    "{key}: message {id} published straight to the outbox (outbox {})",
                    r.outbox_id
                ),
                (id, Err(e)) => format!("{key}: message {id} failed: {e}"),
            },
        };
        let _ = results.send(AppEvent::Toast(text)).await;
    });
}

fn describe_sent(
    key: &str,
    kind: SimKind,
    outcome: &[(Snowflake, Result<Handled, PublishError>)],
) -> String {
    if let [(id, result)] = outcome {
        let label = match kind {
            SimKind::Message => "message".to_owned(),
            other => format!("{} message", other.as_str()),
        };
        return match result {
            Ok(Handled::Published(r)) => format!(
                "{key}: {label} {id} published (outbox {}{})",
                r.outbox_id,
                if r.by_ref { ", by reference" } else { "" }
            ),
            Ok(Handled::Skipped(reason)) => format!("{key}: {label} {id} skipped: {reason}"),
            Ok(Handled::Observed) => format!("{key}: {label} {id} observed"),
            Err(e) => format!("{key}: {label} {id} failed: {e}"),
        };
    }
    let published = outcome
        .iter()
        .filter(|(_, r)| matches!(r, Ok(Handled::Published(_))))
        .count();
    let skipped: Vec<SkipReason> = outcome
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(Handled::Skipped(reason)) => Some(*reason),
            _ => None,
        })
        .collect();
    let first = outcome
        .first()
        .map(|(id, _)| id.to_string())
        .unwrap_or_default();
    format!(
        "{key}: {} messages from {first}: {published} published, {} skipped, {} failed",
        outcome.len(),
        skipped.len(),
        outcome.len() - published - skipped.len()
    )
}

/// What a save says: how many events, where, and the command that replays them.
pub fn saved(count: usize, path: &std::path::Path) -> String {
    format!(
        "saved {} to {path} (notifyscope replay {path})",
        crate::present::counted(count, "event"),
        path = path.display()
    )
}

/// OSC 52 puts text on the clipboard of the terminal the user sits at, also over ssh.
fn copy_osc52(text: &str) -> std::io::Result<()> {
    write_osc52(&mut std::io::stdout().lock(), text)
}

/// Writes the OSC 52 sequence that puts `text` on the clipboard: `ESC ] 52 ; c ;`, the text
/// in standard base64 (with padding), then `BEL`; and flushes.
pub fn write_osc52(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    write!(out, "\x1b]52;c;{encoded}\x07")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_names_its_file_where_the_replay_command_needs_it() {
        assert_eq!(
            saved(438, std::path::Path::new("notifyscope-session-1.jsonl")),
            "saved 438 events to notifyscope-session-1.jsonl \
             (notifyscope replay notifyscope-session-1.jsonl)"
        );
    }

    #[test]
    fn osc52_bytes_are_exact() {
        let written = |text: &str| {
            let mut out = Vec::new();
            write_osc52(&mut out, text).expect("written");
            // Compared as text so that a mismatch shows the escapes; equal text is equal bytes.
            String::from_utf8(out).expect("ASCII")
        };
        assert_eq!(
            written("hello, wörld"),
            "\x1b]52;c;aGVsbG8sIHfDtnJsZA==\x07"
        );
        assert_eq!(written(""), "\x1b]52;c;\x07");
    }
}
