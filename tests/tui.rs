//! The screen: layouts, overlays and themes rendered to ratatui's TestBackend and compared
//! with insta snapshots; keys through actions into state; a recording replayed.

mod common;

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use notifyscope::contract::Snowflake;
use notifyscope::diagnose::{Check, CheckId};
use notifyscope::pipeline::synthetic::SimKind;
use notifyscope::screen::app::{App, AppEvent, Effect, Mode, Prompt};
use notifyscope::screen::detail::Overlay;
use notifyscope::screen::draw;
use notifyscope::screen::effects;
use notifyscope::screen::keys::{Action, KeyMap};
use notifyscope::screen::pane::PaneId;
use notifyscope::screen::theme;
use notifyscope::trace::SkipReason;
use notifyscope::trace::Status;
use notifyscope::trace::{IngestOutcome, TraceEvent, TraceKind};
use notifyscope_widgets::Styles;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders};
use ratatui::Terminal;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

fn ev(ms: i64, id: Option<u64>, kind: TraceKind) -> Arc<TraceEvent> {
    Arc::new(TraceEvent {
        at: t0() + TimeDelta::milliseconds(ms),
        message_id: id.map(Snowflake),
        kind,
    })
}

/// A fixed story: system events, three messages through every stage, a skip, errors.
fn story() -> Vec<Arc<TraceEvent>> {
    let channel = Snowflake(200_000_000_000_000_002);
    let mut events = vec![
        ev(
            0,
            None,
            TraceKind::DatabaseUp {
                url: "host=127.0.0.1 user=postgres dbname=test (schema demo)".into(),
                embedded: false,
            },
        ),
        ev(
            1,
            None,
            TraceKind::ListenerUp {
                channel: "events".into(),
                pid: 4242,
                probe_ms: 1.2,
            },
        ),
    ];
    for i in 0..3u64 {
        let id = 1_575_700_000_000_000_100 + i;
        let base = 100 * (i as i64 + 1);
        events.push(ev(
            base,
            Some(id),
            TraceKind::Received {
                channel_id: channel,
                guild_id: Some(Snowflake(200_000_000_000_000_001)),
                author_id: Snowflake(200_000_000_000_000_003),
                author_name: "ada".into(),
                content_bytes: 12,
                source: notifyscope::trace::Source::Simulated,
            },
        ));
        events.push(ev(
            base + 2,
            Some(id),
            TraceKind::Published {
                source: notifyscope::trace::Source::Simulated,
                event_id: uuid::Uuid::from_u128(i as u128 + 1),
                outbox_id: i as i64 + 1,
                channel: "events".into(),
                bytes: 420,
                by_ref: false,
            },
        ));
        events.push(ev(base + 4, Some(id), TraceKind::Notified {
            channel: "events".into(),
            sender_pid: 4243,
            outbox_id: Some(i as i64 + 1),
            by_ref: false,
            bytes: 420,
            payload: format!(r#"{{"v":1,"event_type":"discord.message_created","outbox_id":{},"message":{{"message_id":"{id}"}}}}"#, i + 1),
        }));
        events.push(ev(
            base + 7,
            Some(id),
            TraceKind::Ingested {
                outbox_id: i as i64 + 1,
                outcome: if i == 2 {
                    IngestOutcome::Duplicate
                } else {
                    IngestOutcome::Inserted
                },
                latency_ms: 5.0,
            },
        ));
    }
    events.push(ev(
        500,
        Some(1_575_700_000_000_000_200),
        TraceKind::Skipped {
            source: notifyscope::trace::Source::Simulated,
            reason: SkipReason::OwnMessage,
            author_name: "notifyscope-bot".into(),
            channel_id: channel,
        },
    ));
    events.push(ev(
        600,
        None,
        TraceKind::NotifyRejected {
            channel: "events".into(),
            sender_pid: 777,
            error: "payload is not valid JSON: expected value at line 1 column 1".into(),
            payload: "garbage".into(),
        },
    ));
    events.push(ev(
        700,
        Some(1_575_700_000_000_000_300),
        TraceKind::PublishFailed {
            source: notifyscope::trace::Source::Simulated,
            event_type: "discord.message_created".into(),
            channel: "events".into(),
            error: "database: connection closed".into(),
        },
    ));
    events
}

fn app_with_story() -> App {
    let mut app = App::new(KeyMap::default(), 1000, "events");
    for e in story() {
        app.on_trace(e);
    }
    app.on_event(AppEvent::Health(vec![
        Check {
            id: CheckId::Listener,
            name: "no listener running".into(),
            status: Status::Ok,
            summary: "listener pid 4242 on events".into(),
            evidence: vec![],
            hint: "start the listener".into(),
            since: t0(),
            message_ids: vec![],
            target: None,
        },
        Check {
            id: CheckId::Malformed,
            name: "malformed event".into(),
            status: Status::Fail,
            summary: "1 NOTIFY rejected".into(),
            evidence: vec!["garbage: payload is not valid JSON".into()],
            hint: "validate payloads before publishing".into(),
            since: t0(),
            message_ids: vec![Snowflake(1_575_700_000_000_000_100)],
            target: Some(notifyscope::diagnose::CheckTarget::DeadLetters),
        },
    ]));
    app
}

fn styles() -> Styles {
    theme::load("dark", true).expect("dark theme")
}

fn no_logs(frame: &mut ratatui::Frame, area: Rect, _focused: bool) {
    frame.render_widget(
        Block::default().borders(Borders::ALL).title(" 7 Logs "),
        area,
    );
}

fn render(app: &mut App, width: u16, height: u16, styles: &Styles) -> Terminal<TestBackend> {
    app.heights = draw::pane_heights(Rect::new(0, 0, width, height), app.focus, app.zoom);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal
        .draw(|f| draw::draw(f, app, styles, &no_logs))
        .expect("draw");
    terminal
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    render(app, width, height, &styles()).backend().to_string()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent {
        code,
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

#[test]
fn wide_layout_shows_all_five_stages_side_by_side() {
    let mut app = app_with_story();
    insta::assert_snapshot!(screen(&mut app, 200, 40));
}

#[test]
fn grid_layout_between_100_and_160_columns() {
    let mut app = app_with_story();
    insta::assert_snapshot!(screen(&mut app, 120, 40));
}

#[test]
fn tabs_below_100_columns() {
    let mut app = app_with_story();
    app.update(Action::Focus(PaneId::Ingest));
    insta::assert_snapshot!(screen(&mut app, 80, 24));
}

#[test]
fn too_small_terminal_says_so() {
    let mut app = app_with_story();
    insta::assert_snapshot!(screen(&mut app, 50, 10));
}

#[test]
fn help_overlay_lists_every_key() {
    let mut app = app_with_story();
    app.update(Action::Help);
    let text = screen(&mut app, 160, 60);
    for binding in notifyscope::screen::keys::bindings() {
        assert!(
            text.contains(&binding.help),
            "help misses {:?}",
            binding.help
        );
    }
    insta::assert_snapshot!(text);
}

#[test]
fn detail_view_has_payload_fields_and_timeline() {
    let mut app = app_with_story();
    app.update(Action::Focus(PaneId::Notify));
    app.update(Action::Top);
    app.update(Action::Detail);
    let text = screen(&mut app, 160, 45);
    assert!(
        text.contains("\"event_type\": \"discord.message_created\""),
        "{text}"
    );
    assert!(
        text.contains("Timeline of message 1575700000000000100"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn filter_applies_to_every_pane() {
    let mut app = app_with_story();
    app.update(Action::Filter);
    for c in "…101".chars().skip(1) {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Enter));
    assert_eq!(
        app.stages.filter.as_ref().map(|f| f.text.as_str()),
        Some("101")
    );
    for pane in [
        PaneId::Received,
        PaneId::Published,
        PaneId::Notify,
        PaneId::Ingest,
    ] {
        assert_eq!(app.pane(pane).map(|p| p.len()), Some(1), "{pane:?}");
    }
    assert_eq!(app.pane(PaneId::Skips).map(|p| p.len()), Some(0));
    insta::assert_snapshot!(screen(&mut app, 200, 30));
    app.update(Action::Close);
    assert!(app.stages.filter.is_none());
    assert_eq!(app.pane(PaneId::Received).map(|p| p.len()), Some(3));
}

#[test]
fn a_filter_that_matches_nothing_says_so_in_every_pane() {
    let mut app = app_with_story();
    app.set_filter("matches nothing").expect("a substring");
    let text = screen(&mut app, 200, 30);
    assert_eq!(
        text.matches("nothing matches the filter").count(),
        5,
        "{text}"
    );
    for stage_hint in ["no message skipped", "nothing published", "to send one"] {
        assert!(!text.contains(stage_hint), "{stage_hint:?}: {text}");
    }
}

#[test]
fn regex_filter_and_bad_regex() {
    let mut app = app_with_story();
    app.set_filter("re:^157570000000000010[02] ")
        .expect("a regex");
    assert_eq!(app.pane(PaneId::Received).map(|p| p.len()), Some(2));
    let err = app.set_filter("re:(").expect_err("not a regex");
    assert!(err.contains("bad regex"), "{err}");
    // The filter in force stays.
    assert_eq!(app.pane(PaneId::Received).map(|p| p.len()), Some(2));
}

/// `/`, a bad regex, Enter, then letters that are test keys elsewhere: the prompt stays
/// open with the error, the letters are typed into it, nothing is sent; Esc closes it and
/// the key-hint bar is back.
#[test]
fn a_bad_regex_keeps_the_prompt_and_sends_nothing() {
    let mut app = app_with_story();
    app.on_key(key(KeyCode::Char('/')));
    for c in "re:(own".chars() {
        assert_eq!(app.on_key(key(KeyCode::Char(c))), None);
    }
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let text = screen(&mut app, 80, 24);
    let footer = text.lines().last().expect("footer");
    assert!(footer.contains("/re:(own"), "{footer}");
    assert!(footer.contains("bad regex"), "{footer}");
    for c in "eowbmMxwd".chars() {
        assert_eq!(
            app.on_key(key(KeyCode::Char(c))),
            None,
            "{c} must be typed, never sent"
        );
    }
    match &app.layers.prompt {
        Some(Prompt::Input { text, error, .. }) => {
            assert_eq!(text, "re:(owneowbmMxwd");
            assert!(error.is_none(), "typing clears the error");
        }
        other => panic!("the prompt closed: {other:?}"),
    }
    assert!(app.stages.filter.is_none());
    app.on_key(key(KeyCode::Esc));
    assert!(app.layers.prompt.is_none());
    let text = screen(&mut app, 80, 24);
    let footer = text.lines().last().expect("footer");
    assert!(
        footer.contains("quit") && !footer.contains("bad regex"),
        "{footer}"
    );
}

#[test]
fn paused_view_counts_new_events() {
    let mut app = app_with_story();
    app.update(Action::Pause);
    for e in story().into_iter().skip(2).take(4) {
        app.on_trace(e);
    }
    assert_eq!(app.stages.pending(), 4);
    assert_eq!(app.pane(PaneId::Received).map(|p| p.len()), Some(3));
    let text = screen(&mut app, 200, 30);
    assert!(text.contains("PAUSED, 4 new"), "{text}");
    insta::assert_snapshot!(text);
    app.update(Action::Pause);
    assert_eq!(app.pane(PaneId::Received).map(|p| p.len()), Some(4));
}

/// Space pauses the view from any pane, the health and logs panes too.
#[test]
fn the_view_pauses_whichever_pane_has_the_focus() {
    for pane in PaneId::ALL {
        let mut app = app_with_story();
        app.update(Action::Focus(pane));
        app.on_key(key(KeyCode::Char(' ')));
        assert!(app.stages.paused, "from {pane:?}");
    }
}

#[test]
fn themes_and_no_color() {
    for (name, _) in theme::BUILTIN {
        for colour in [true, false] {
            let styles = theme::load(name, colour).expect("theme");
            let mut app = app_with_story();
            let terminal = render(&mut app, 100, 20, &styles);
            let label = format!(
                "theme_{name}_{}",
                if colour { "colour" } else { "no_color" }
            );
            insta::assert_debug_snapshot!(label, terminal.backend().buffer());
        }
    }
}

#[test]
fn every_key_changes_state_as_it_says() {
    let mut app = app_with_story();
    let map = KeyMap::default();
    let press = |app: &mut App, code: KeyCode| {
        let k = key(code);
        let action = map.action(&k);
        (action, app.on_key(k))
    };
    assert_eq!(press(&mut app, KeyCode::Tab).0, Some(Action::FocusNext));
    assert_eq!(app.focus, PaneId::Published);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus, PaneId::Received);
    for (i, pane) in PaneId::ALL.iter().enumerate() {
        press(&mut app, KeyCode::Char(char::from(b'1' + i as u8)));
        assert_eq!(app.focus, *pane);
    }
    press(&mut app, KeyCode::Char('1'));
    let newest = app.pane(PaneId::Received).and_then(|p| p.selected_index());
    assert_eq!(newest, Some(2));
    press(&mut app, KeyCode::Char('k'));
    assert_eq!(
        app.pane(PaneId::Received).and_then(|p| p.selected_index()),
        Some(1)
    );
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Down);
    assert_eq!(
        app.pane(PaneId::Received).and_then(|p| p.selected_index()),
        Some(2)
    );
    press(&mut app, KeyCode::Char('g'));
    assert_eq!(
        app.pane(PaneId::Received).and_then(|p| p.selected_index()),
        Some(0)
    );
    assert!(!app.pane(PaneId::Received).map(|p| p.tail).unwrap_or(true));
    press(&mut app, KeyCode::Char('G'));
    assert!(app.pane(PaneId::Received).map(|p| p.tail).unwrap_or(false));
    press(&mut app, KeyCode::PageUp);
    assert_eq!(
        app.pane(PaneId::Received).and_then(|p| p.selected_index()),
        Some(0)
    );
    press(&mut app, KeyCode::PageDown);
    assert_eq!(
        app.pane(PaneId::Received).and_then(|p| p.selected_index()),
        Some(2)
    );
    assert_eq!(press(&mut app, KeyCode::Home).0, Some(Action::Top));
    assert_eq!(
        app.pane(PaneId::Received).and_then(|p| p.selected_index()),
        Some(0)
    );
    assert!(!app.pane(PaneId::Received).map(|p| p.tail).unwrap_or(true));
    assert_eq!(press(&mut app, KeyCode::End).0, Some(Action::Bottom));
    assert_eq!(
        app.pane(PaneId::Received).and_then(|p| p.selected_index()),
        Some(2)
    );
    assert!(app.pane(PaneId::Received).map(|p| p.tail).unwrap_or(false));

    press(&mut app, KeyCode::Char(' '));
    assert!(app.stages.paused);
    press(&mut app, KeyCode::Char(' '));
    assert!(!app.stages.paused);

    press(&mut app, KeyCode::Char('f'));
    assert_eq!(
        app.stages.followed,
        Some(Snowflake(1_575_700_000_000_000_102))
    );
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.stages.followed, None);

    press(&mut app, KeyCode::Enter);
    assert!(matches!(app.layers.overlay, Some(Overlay::Detail { .. })));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Esc);
    assert!(app.layers.overlay.is_none());
    press(&mut app, KeyCode::Char('?'));
    assert!(matches!(app.layers.overlay, Some(Overlay::Help { .. })));
    press(&mut app, KeyCode::Char('?'));
    assert!(app.layers.overlay.is_none());

    press(&mut app, KeyCode::Char('/'));
    assert!(matches!(app.layers.prompt, Some(Prompt::Input { .. })));
    press(&mut app, KeyCode::Esc);
    assert!(app.layers.prompt.is_none());

    // y copies the selected row (the newest message's receipt, as JSON) with OSC 52.
    let copied = match press(&mut app, KeyCode::Char('y')).1 {
        Some(Effect::Copy(text)) => text,
        other => panic!("y gave {other:?}"),
    };
    assert!(
        copied.contains(r#""message_id":"1575700000000000102""#)
            && copied.contains(r#""stage":"received""#),
        "{copied}"
    );
    let mut written = Vec::new();
    effects::write_osc52(&mut written, &copied).expect("written");
    let encoded = written
        .strip_prefix(b"\x1b]52;c;")
        .and_then(|rest| rest.strip_suffix(b"\x07"))
        .unwrap_or_else(|| {
            panic!(
                "not ESC ] 52 ; c ; … BEL: {:?}",
                String::from_utf8_lossy(&written)
            )
        });
    assert!(
        encoded
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)),
        "not standard base64: {:?}",
        String::from_utf8_lossy(encoded)
    );
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
        copied.as_bytes()
    );
    match press(&mut app, KeyCode::Char('s')).1 {
        Some(Effect::Save(events)) => assert_eq!(events.len(), story().len() - 2),
        other => panic!("s gave {other:?}"),
    }
    for (c, effect) in [
        ('m', Effect::Send(SimKind::Message)),
        ('M', Effect::Send(SimKind::Burst)),
        ('o', Effect::Send(SimKind::Own)),
        ('b', Effect::Send(SimKind::Bot)),
        ('e', Effect::Send(SimKind::Empty)),
        ('l', Effect::Send(SimKind::Long)),
        ('x', Effect::SendMalformed),
        ('w', Effect::SendWrongChannel),
        ('d', Effect::SendDirect),
    ] {
        assert_eq!(press(&mut app, KeyCode::Char(c)).1, Some(effect), "{c}");
    }
    press(&mut app, KeyCode::Char('c'));
    assert!(app
        .pane(PaneId::Received)
        .map(|p| p.is_empty())
        .unwrap_or(false));
    assert_eq!(press(&mut app, KeyCode::Char('q')).1, Some(Effect::Quit));
    let ctrl_c = KeyEvent {
        modifiers: KeyModifiers::CONTROL,
        ..key(KeyCode::Char('c'))
    };
    assert_eq!(app.on_key(ctrl_c), Some(Effect::Quit));
}

#[test]
fn replay_is_read_only() {
    let mut app = app_with_story();
    app.mode = notifyscope::screen::app::Mode::Replay("run.jsonl".into());
    assert_eq!(app.update(Action::Send(SimKind::Message)), None);
    assert!(app
        .status
        .toasts()
        .next_back()
        .is_some_and(|t| t.contains("read-only")));
}

#[test]
fn history_is_bounded_and_drops_are_counted() {
    let mut app = App::new(KeyMap::default(), 10, "events");
    for i in 0..25u64 {
        app.on_trace(ev(
            i as i64,
            Some(1_000 + i),
            TraceKind::Received {
                channel_id: Snowflake(1),
                guild_id: None,
                author_id: Snowflake(2),
                author_name: "x".into(),
                content_bytes: 1,
                source: notifyscope::trace::Source::Gateway,
            },
        ));
    }
    let pane = app.pane(PaneId::Received).expect("pane");
    assert_eq!(pane.len(), 10);
    assert_eq!(pane.dropped, 15);
    assert_eq!(
        pane.get(0).and_then(|e| e.message_id),
        Some(Snowflake(1_015))
    );
}

#[test]
fn health_detail_shows_evidence_and_follows_its_messages() {
    let mut app = app_with_story();
    app.update(Action::Focus(PaneId::Health));
    app.update(Action::Detail);
    match &app.layers.overlay {
        Some(Overlay::Detail {
            lines, message_ids, ..
        }) => {
            assert!(lines
                .iter()
                .any(|l| l.contains("garbage: payload is not valid JSON")));
            assert!(lines
                .iter()
                .any(|l| l.starts_with("Fix: validate payloads")));
            assert_eq!(message_ids, &vec![Snowflake(1_575_700_000_000_000_100)]);
        }
        other => panic!("expected check detail, got {other:?}"),
    }
    app.update(Action::Follow);
    assert_eq!(
        app.stages.followed,
        Some(Snowflake(1_575_700_000_000_000_100))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_replays_into_the_same_rows() {
    use common::{is_inserted, Seen, TestSchema, WAIT};
    use notifyscope::pipeline::{Pipeline, PipelineConfig};
    use notifyscope::trace::Trace;
    use tokio_util::sync::CancellationToken;

    let t = TestSchema::new("replay");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    let trace = Trace::new();
    let mut live = trace.subscribe();
    let mut seen = Seen::new(trace.subscribe());
    let stop = CancellationToken::new();
    let file = std::fs::File::create(&path).expect("recording file");
    let recorder = tokio::spawn(notifyscope::recording::writer::write_events(
        trace.subscribe(),
        true,
        std::io::BufWriter::new(file),
        stop.clone(),
    ));
    let mut pipeline = Pipeline::start(
        PipelineConfig::new(t.database(), t.channel()),
        trace.clone(),
    )
    .await
    .expect("pipeline");
    pipeline.wait_listening(WAIT).await.expect("listener");
    for kind in [
        SimKind::Message,
        SimKind::Own,
        SimKind::Long,
        SimKind::Empty,
    ] {
        pipeline.simulated().inject(kind).await;
    }
    seen.until_count("two ingested", 2, is_inserted).await;
    pipeline.shutdown(std::time::Duration::from_secs(5)).await;
    stop.cancel();
    recorder
        .await
        .expect("recorder")
        .expect("recording written");

    let mut live_app = App::new(KeyMap::default(), 1000, "events");
    while let Some(e) = live.try_recv() {
        live_app.on_trace(e);
    }
    let mut replay_app = App::new(KeyMap::default(), 1000, "events");
    replay_app.mode = notifyscope::screen::app::Mode::Replay(path.display().to_string());
    for e in notifyscope::recording::load(&path).expect("recording loads") {
        replay_app.on_trace(Arc::new(e));
    }
    for pane in PaneId::STAGES {
        let rows = |app: &App| -> Vec<TraceEvent> {
            let p = app.pane(pane).expect("pane");
            (0..p.len())
                .filter_map(|i| p.get(i).map(|e| (**e).clone()))
                .collect()
        };
        let (a, b) = (rows(&live_app), rows(&replay_app));
        assert!(!a.is_empty(), "{pane:?} is empty");
        // As the recording keeps them: measured numbers to what was measured.
        let recorded = |events: &[TraceEvent]| serde_json::to_value(events).expect("JSON");
        assert_eq!(recorded(&a), recorded(&b), "{pane:?}");
    }
}

/// A key rebound in the config file is the key every label names: the help, the footer, the
/// empty pane's hint, and the toast of the test message it sends through a real pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_key_is_named_in_help_footer_hint_and_toast() {
    use notifyscope::commands::reach::{Live, Reach};
    use notifyscope::screen::config::ConfigFile;
    use notifyscope::screen::effects::run_effect;

    let config: ConfigFile =
        toml::from_str("[keys]\nsend_message = [\"u\"]\n").expect("config parses");
    let keymap = KeyMap::new(&config.keys).expect("valid bindings");
    let mut app = App::new(keymap, 1000, "events");

    let text = screen(&mut app, 120, 40);
    let footer = text.lines().last().expect("footer line");
    assert!(footer.contains(" u  send "), "{footer}");
    assert!(!footer.contains(" m  send "), "{footer}");
    assert!(text.contains("press u to send one"), "{text}");

    app.on_key(key(KeyCode::Char('?')));
    let help = screen(&mut app, 120, 70);
    assert!(help.contains("u  send a normal message"), "{help}");
    assert!(!help.contains("m  send a normal message"), "{help}");
    app.on_key(key(KeyCode::Esc));

    assert_eq!(app.on_key(key(KeyCode::Char('m'))), None, "m is unbound");
    let effect = app.on_key(key(KeyCode::Char('u'))).expect("u sends");
    assert_eq!(effect, Effect::Send(SimKind::Message));
    let common::PipelineRig {
        t: _schema,
        pipeline,
        ..
    } = common::PipelineRig::start("rebind").await;
    let live = Live {
        simulated: pipeline.simulated().clone(),
        tests: pipeline.test_events(),
    };
    let (results, mut toasts) = tokio::sync::mpsc::channel(4);
    let reach = Reach {
        live: Some(live),
        operator: None,
    };
    run_effect(
        effect,
        &mut app,
        &reach,
        &results,
        &tui_logger::TuiWidgetState::new(),
    );
    let toast = tokio::time::timeout(common::WAIT, toasts.recv())
        .await
        .expect("a toast in time");
    match toast {
        Some(AppEvent::Toast(text)) => {
            assert!(text.starts_with("u: message "), "{text}");
            assert!(text.contains("published"), "{text}");
        }
        other => panic!("expected a toast, got {other:?}"),
    }
    pipeline.shutdown(std::time::Duration::from_secs(5)).await;
}

/// In watch, test keys send nothing: the empty Received pane says what brings rows there.
#[test]
fn watch_says_what_fills_the_received_pane() {
    let mut app = App::new(KeyMap::default(), 1000, "events");
    app.mode = Mode::Watch;
    let text = screen(&mut app, 200, 30);
    assert!(!text.contains("to send one"), "{text}");
    assert!(text.contains("messages need --discord-token-env"), "{text}");
    assert_eq!(app.on_key(key(KeyCode::Char('m'))), None, "m sends nothing");
}

/// In watch, someone else's listener sends no listener events: the status bar says what the
/// listener check found, as the health pane does.
#[test]
fn in_watch_the_status_bar_follows_the_listener_check() {
    let listener = |status: Status, summary: &str| Check {
        id: CheckId::Listener,
        name: CheckId::Listener.name().into(),
        status,
        summary: summary.into(),
        evidence: vec![],
        hint: String::new(),
        since: t0(),
        message_ids: vec![],
        target: None,
    };
    let mut app = App::new(KeyMap::default(), 1000, "events");
    app.mode = Mode::Watch;
    app.on_event(AppEvent::Health(vec![listener(
        Status::Warn,
        "no backend shows LISTEN events",
    )]));
    let text = screen(&mut app, 200, 30);
    let status_bar = text.lines().next().unwrap_or_default().to_owned();
    assert!(
        status_bar.contains("listener ○ no backend shows LISTEN events"),
        "{status_bar}"
    );

    app.on_event(AppEvent::Health(vec![listener(
        Status::Ok,
        "a backend's last query is LISTEN events",
    )]));
    let text = screen(&mut app, 200, 30);
    let status_bar = text.lines().next().unwrap_or_default().to_owned();
    assert!(
        status_bar.contains("listener ● a backend's last query is LISTEN events"),
        "{status_bar}"
    );
    assert!(text.contains("✓ listener running"), "{text}");
}
