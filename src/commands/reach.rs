//! What the monitor reaches beyond the screen ([`Outside`]): test events through our own
//! pipeline's handles, the operator's actions on what the diagnosis found (also in `watch`, on
//! the sessions; each answers with its outcome's toast), and saving the session to a
//! recording. Slow work runs in a task and reports back as a toast.

use tokio::sync::mpsc;

use notifyscope_model::contract::Snowflake;
use notifyscope_model::sim::SimKind;
use notifyscope_model::trace::SkipReason;
use notifyscope_pipeline::bot_path::Handled;
use notifyscope_pipeline::control::SimulatedSource;
use notifyscope_pipeline::operate::{Apply, BackendSignal, Operator, Present, Selection, LISTED};
use notifyscope_pipeline::publish::PublishError;
use notifyscope_pipeline::recording;
use notifyscope_pipeline::test_events::TestEvents;
use notifyscope_screen::app::{AppEvent, Effect};
use notifyscope_screen::effects::Outside;

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

/// A toast, delivered however full the channel is for now.
fn say(results: mpsc::Sender<AppEvent>, text: String) {
    tokio::spawn(async move {
        let _ = results.send(AppEvent::Toast(text)).await;
    });
}

impl Outside for Reach {
    fn carry_out(&self, effect: Effect, key: String, results: mpsc::Sender<AppEvent>) {
        match effect {
            Effect::Save(events) => {
                let said = match recording::save(&events) {
                    Ok(path) => saved(events.len(), &path),
                    Err(e) => format!("save failed: {e}"),
                };
                say(results, said);
            }
            Effect::CancelBackend(_)
            | Effect::TerminateBackend(_)
            | Effect::RetryStuckRows
            | Effect::ListDeadLetters
            | Effect::RequeueDeadLetters
            | Effect::DeleteDeadLetters => match &self.operator {
                Some(operator) => act(effect, operator.clone(), results),
                None => {
                    say(results, "nothing to act with here".into());
                }
            },
            test => {
                if let Some(live) = &self.live {
                    send_test(test, key, live.clone(), results);
                }
            }
        }
    }
}

/// An action on what the diagnosis found, confirmed already, in a task of its own; what came
/// of it comes back as its toast (or, for a list, as an overlay).
fn act(effect: Effect, operator: Operator, results: mpsc::Sender<AppEvent>) {
    tokio::spawn(async move {
        let all = Some(&Selection::All);
        let commit = Apply::Commit;
        let said = match effect {
            Effect::CancelBackend(pid) | Effect::TerminateBackend(pid) => {
                let signal = match effect {
                    Effect::CancelBackend(_) => BackendSignal::Cancel,
                    _ => BackendSignal::Terminate,
                };
                operator.signal_backend(pid, signal, commit).await.toast()
            }
            Effect::RetryStuckRows => {
                let stuck = Selection::All;
                operator.retry_outbox(&stuck, commit).await.toast()
            }
            Effect::ListDeadLetters => {
                let lines = operator.list_dead_letters(LISTED).await.overview();
                let title = "Dead letters".into();
                let _ = results.send(AppEvent::Lines { title, lines }).await;
                return;
            }
            Effect::RequeueDeadLetters => {
                let done = operator.retry_dead_letters(all, all, commit).await;
                done.toast()
            }
            Effect::DeleteDeadLetters => {
                let done = operator.delete_dead_letters(all, all, commit).await;
                done.toast()
            }
            _ => return,
        };
        let _ = results.send(AppEvent::Toast(said)).await;
    });
}

/// A test event in a task of its own; its outcome comes back as a toast that starts with
/// the key that sent it.
fn send_test(effect: Effect, key: String, live: Live, results: mpsc::Sender<AppEvent>) {
    if !matches!(
        effect,
        Effect::Send(_) | Effect::SendMalformed | Effect::SendWrongChannel | Effect::SendDirect
    ) {
        return;
    }
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
            Ok(Handled::Skipped(reason)) => Some(reason.clone()),
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
        notifyscope_model::present::counted(count, "event"),
        path = path.display()
    )
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
}
