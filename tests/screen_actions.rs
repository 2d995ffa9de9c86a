//! Acting on the diagnosis from the monitor, against a real pipeline: each action is asked
//! for with its key, confirmed, carried out by the store's action, and answered on screen.

mod common;

use std::time::Duration;

use chrono::Utc;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use notifyscope::commands::reach::Reach;
use notifyscope::contract::Envelope;
use notifyscope::diagnose::{Check, CheckId, CheckTarget};
use notifyscope::pipeline::synthetic;
use notifyscope::screen::app::{App, AppEvent};
use notifyscope::screen::detail::Overlay;
use notifyscope::screen::effects::run_effect;
use notifyscope::screen::keys::{Action, KeyMap};
use notifyscope::screen::pane::PaneId;
use notifyscope::trace::Status;
use tokio::sync::mpsc;

use common::{is_inserted, PipelineRig, WAIT};

fn key(c: char) -> KeyEvent {
    KeyEvent {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

fn check(id: CheckId, target: CheckTarget) -> Check {
    Check {
        id,
        name: id.name().into(),
        status: Status::Fail,
        summary: "as the diagnosis found it".into(),
        evidence: vec![],
        hint: id.hint().into(),
        since: Utc::now(),
        message_ids: vec![],
        target: Some(target),
    }
}

/// The monitor with one check in its health pane, focused.
fn app_with(check: Check) -> App {
    let mut app = App::new(KeyMap::default(), 100, "events");
    app.on_event(AppEvent::Health(vec![check]));
    app.update(Action::Focus(PaneId::Health));
    app
}

/// `a`, then `choice`: the confirmed effect, carried out; what came back.
async fn act(app: &mut App, choice: char, reach: &Reach) -> AppEvent {
    assert_eq!(app.on_key(key('a')), None, "asks first");
    let effect = app.on_key(key(choice)).expect("the choice is an action");
    let (tx, mut rx) = mpsc::channel(4);
    run_effect(effect, app, reach, &tx, &tui_logger::TuiWidgetState::new());
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an answer in time")
        .expect("an answer")
}

fn toast(event: AppEvent) -> String {
    match event {
        AppEvent::Toast(text) => text,
        other => panic!("expected a toast, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_rows_are_retried_and_dead_letters_listed_and_deleted_from_the_health_pane() {
    let mut rig = PipelineRig::start("screen_act").await;
    let reach = Reach {
        live: None,
        operator: Some(rig.pipeline.operator()),
    };
    let client = rig.t.client().await;
    let envelope = Envelope::new(synthetic::message("given up, then retried").to_record());
    let message_id = envelope.message.message_id;
    client
        .execute(
            "INSERT INTO event_outbox (event_id, event_type, channel, message_id, payload, \
                                       attempts, error_class, last_error, dead_at) \
             VALUES ($1, 'discord.message_created', $2, $3, $4::text::jsonb, 5, 'constraint', \
                     'it failed', now())",
            &[
                &envelope.event_id,
                &rig.t.name,
                &message_id.as_i64(),
                &envelope.to_json(),
            ],
        )
        .await
        .expect("a given-up row");

    let mut app = app_with(check(CheckId::Backlog, CheckTarget::StuckRows));
    let said = toast(act(&mut app, 'y', &reach).await);
    assert!(said.contains("1 stuck outbox row due now"), "{said}");
    rig.seen
        .first("the retried row ingested", |e| {
            is_inserted(e) && e.message_id == Some(message_id)
        })
        .await;

    client
        .execute(
            "INSERT INTO dead_letters (channel, sender_pid, payload, error) \
             VALUES ($1, 4242, 'not json at all', 'not JSON')",
            &[&rig.t.name],
        )
        .await
        .expect("a dead letter");
    let mut app = app_with(check(CheckId::Malformed, CheckTarget::DeadLetters));
    match act(&mut app, 'l', &reach).await {
        AppEvent::Lines { title, lines } => {
            assert_eq!(title, "Dead letters");
            let text = lines.join("\n");
            assert!(
                text.contains("pid 4242: not JSON — not json at all"),
                "{text}"
            );
            app.on_event(AppEvent::Lines { title, lines });
            assert!(matches!(app.layers.overlay, Some(Overlay::Detail { .. })));
        }
        other => panic!("expected the list, got {other:?}"),
    }
    app.update(Action::Close);
    let said = toast(act(&mut app, 'd', &reach).await);
    assert!(said.contains("1 dead letter deleted"), "{said}");
    assert_eq!(
        rig.t
            .count(&format!(
                "SELECT count(*) FROM \"{}\".dead_letters",
                rig.t.name
            ))
            .await,
        0
    );
    rig.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_holding_the_pipeline_up_is_ended_only_when_chosen() {
    let rig = PipelineRig::start("screen_act_blocker").await;
    let reach = Reach {
        live: None,
        operator: Some(rig.pipeline.operator()),
    };
    // A session idle in a transaction that holds a lock on the pipeline's table.
    let holder = rig.t.client().await;
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    holder
        .batch_execute("BEGIN; LOCK TABLE discord_messages IN SHARE MODE")
        .await
        .expect("lock held");
    let blocker = CheckTarget::Backend {
        pid,
        application_name: "notifyscope-test".into(),
        user: "postgres".into(),
    };
    let mut app = app_with(check(CheckId::LockWaits, blocker));
    // Asked, then anything but a choice: nothing happens to the session.
    assert_eq!(app.on_key(key('a')), None);
    assert_eq!(
        app.on_key(key('q')),
        None,
        "q answers the question, it does not quit"
    );
    assert!(app.layers.prompt.is_none());
    let alive = |pid: i32| {
        let t = &rig.t;
        async move {
            t.count(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .await
                == 1
        }
    };
    assert!(alive(pid).await);
    let said = toast(act(&mut app, 't', &reach).await);
    assert_eq!(said, format!("pid {pid}: session ended"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while alive(pid).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session lives on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        holder.batch_execute("SELECT 1").await.is_err(),
        "its connection is gone"
    );
    // A second time, it is gone already.
    let said = toast(act(&mut app, 'c', &reach).await);
    assert!(said.contains("gone already"), "{said}");
    rig.pipeline.shutdown(Duration::from_secs(5)).await;
}
