//! The monitor at the sizes people ssh in with (80×24, 100×30): what must stay visible,
//! how every pane is reached, zoom, search, the mouse, acting on a check, and a snapshot of
//! each layout at 80×24. Rendered to ratatui's TestBackend.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use notifyscope::contract::Snowflake;
use notifyscope::diagnose::{Check, CheckId, CheckTarget};
use notifyscope::screen::app::{App, AppEvent, ClickTarget, Effect, Mode, Pointer, Prompt};
use notifyscope::screen::detail::Overlay;
use notifyscope::screen::draw;
use notifyscope::screen::keys::{Action, KeyMap};
use notifyscope::screen::pane::PaneId;
use notifyscope::screen::theme;
use notifyscope::trace::{IngestOutcome, SkipReason, Status, TraceEvent, TraceKind};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders};
use ratatui::Terminal;

const CHANNEL: Snowflake = Snowflake(200_000_000_000_000_002);

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

fn id(n: u64) -> u64 {
    1_575_700_000_000_000_000 + n
}

fn received(n: u64, author: &str) -> Arc<TraceEvent> {
    ev(
        n as i64 * 100,
        Some(id(n)),
        TraceKind::Received {
            channel_id: CHANNEL,
            guild_id: Some(Snowflake(9)),
            author_id: Snowflake(3),
            author_name: author.into(),
            content_bytes: 12,
            source: notifyscope::trace::Source::Simulated,
        },
    )
}

fn through_every_stage(app: &mut App, n: u64) {
    app.on_trace(received(n, "ada"));
    app.on_trace(ev(
        n as i64 * 100 + 2,
        Some(id(n)),
        TraceKind::Published {
            source: notifyscope::trace::Source::Simulated,
            event_id: uuid::Uuid::nil(),
            outbox_id: n as i64,
            channel: "events".into(),
            bytes: 310,
            by_ref: false,
        },
    ));
    app.on_trace(ev(
        n as i64 * 100 + 3,
        Some(id(n)),
        TraceKind::Notified {
            channel: "events".into(),
            sender_pid: 4242,
            outbox_id: Some(n as i64),
            by_ref: false,
            bytes: 310,
            payload: format!("{{\"v\":1,\"message_id\":\"{}\"}}", id(n)),
        },
    ));
    app.on_trace(ev(
        n as i64 * 100 + 7,
        Some(id(n)),
        TraceKind::Ingested {
            outbox_id: n as i64,
            outcome: IngestOutcome::Inserted,
            latency_ms: 5.0,
        },
    ));
}

fn check(id: CheckId, status: Status, summary: &str, target: Option<CheckTarget>) -> Check {
    Check {
        id,
        name: id.name().into(),
        status,
        summary: summary.into(),
        evidence: vec![],
        hint: id.hint().into(),
        since: t0(),
        message_ids: vec![],
        target,
    }
}

/// A pipeline whose listener is up, three messages through, one skip, and a failing check.
fn story() -> App {
    let mut app = App::new(KeyMap::default(), 1000, "events");
    app.on_trace(ev(
        0,
        None,
        TraceKind::DatabaseUp {
            url: "host=/tmp/notifyscope-pg-abc123 port=5432 user=notifyscope dbname=postgres (schema public)".into(),
            embedded: true,
        },
    ));
    app.on_trace(ev(
        1,
        None,
        TraceKind::ListenerUp {
            channel: "events".into(),
            pid: 4242,
            probe_ms: 1.5,
        },
    ));
    for n in 1..=3 {
        through_every_stage(&mut app, n);
    }
    app.on_trace(received(4, "notifyscope-bot"));
    app.on_trace(ev(
        401,
        Some(id(4)),
        TraceKind::Skipped {
            source: notifyscope::trace::Source::Simulated,
            reason: SkipReason::OwnMessage,
            author_name: "notifyscope-bot".into(),
            channel_id: CHANNEL,
        },
    ));
    let mut malformed = check(
        CheckId::Malformed,
        Status::Fail,
        "1 NOTIFY payload(s) rejected",
        Some(CheckTarget::DeadLetters),
    );
    malformed.message_ids = vec![Snowflake(id(2))];
    app.on_event(AppEvent::Health(vec![
        check(CheckId::Listener, Status::Ok, "1 listening: pid 4242", None),
        malformed,
        check(
            CheckId::LockWaits,
            Status::Warn,
            "pid 77 waits for AccessExclusiveLock on discord_messages",
            Some(CheckTarget::Backend {
                pid: 99,
                application_name: "psql".into(),
                user: "alice".into(),
            }),
        ),
    ]));
    app
}

fn no_logs(frame: &mut ratatui::Frame, area: Rect, _focused: bool) {
    frame.render_widget(
        Block::default().borders(Borders::ALL).title(" 7 Logs "),
        area,
    );
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    app.heights = draw::pane_heights(Rect::new(0, 0, width, height), app.focus, app.zoom);
    let styles = theme::load("dark", true).expect("dark theme");
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal
        .draw(|f| draw::draw(f, app, &styles, &no_logs))
        .expect("draw");
    terminal.backend().to_string()
}

fn line(text: &str, n: usize) -> String {
    text.lines().nth(n).unwrap_or_default().to_owned()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent {
        code,
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent {
        modifiers: KeyModifiers::CONTROL,
        ..key(KeyCode::Char(c))
    }
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
}

#[test]
fn the_health_verdict_and_the_listener_come_first_at_every_width() {
    for width in [60u16, 80, 100, 120] {
        let mut app = story();
        let text = screen(&mut app, width, 24);
        let status = line(&text, 0);
        assert!(
            status.contains("✗ payloads follow the contract"),
            "{width} columns: {status}"
        );
        assert!(status.contains("(+1)"), "{width} columns: {status}");
        if width >= 80 {
            assert!(status.contains("listener ●"), "{width} columns: {status}");
        }
        if width >= 100 {
            assert!(status.contains("db ●"), "{width} columns: {status}");
        }
    }
    // Without a diagnosis yet it says so, instead of a verdict it does not have.
    let mut fresh = App::new(KeyMap::default(), 10, "events");
    assert!(line(&screen(&mut fresh, 80, 24), 0).contains("? not judged yet"));
}

#[test]
fn every_pane_is_reached_by_its_number_and_name_at_80_columns() {
    let mut app = story();
    for (i, pane) in PaneId::ALL.iter().enumerate() {
        app.on_key(key(KeyCode::Char(char::from(b'1' + i as u8))));
        assert_eq!(app.focus, *pane);
        let text = screen(&mut app, 80, 24);
        let tabs = line(&text, 2);
        for (j, name) in [
            "Received",
            "Published",
            "NOTIFY",
            "Ingestion",
            "Skips",
            "Health",
            "Logs",
        ]
        .iter()
        .enumerate()
        {
            let short = PaneId::ALL[j].tab_title();
            assert!(
                tabs.contains(&format!("{} {name}", j + 1))
                    || tabs.contains(&format!("{} {short}", j + 1)),
                "pane {} missing from the tab bar: {tabs}",
                j + 1
            );
        }
        assert!(
            text.contains(pane.title()),
            "pane {} is not the one shown:\n{text}",
            i + 1
        );
    }
}

#[test]
fn ids_are_in_full_where_they_fit_and_reasons_before_names() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Received));
    let wide = screen(&mut app, 80, 24);
    assert!(wide.contains(&id(3).to_string()), "{wide}");
    assert!(wide.contains("message id"), "column headers: {wide}");
    app.update(Action::Focus(PaneId::Skips));
    let skips = screen(&mut app, 80, 24);
    assert!(skips.contains("own message · notifyscope-bot"), "{skips}");
    // In the 100-column grid a pane is a third of the width: the id shortens to its last
    // digits and the reason still reads whole.
    let grid = screen(&mut app, 100, 30);
    assert!(grid.contains("…00000003"), "{grid}");
    assert!(!grid.contains(&id(3).to_string()), "{grid}");
    assert!(grid.contains("own message"), "{grid}");
}

#[test]
fn f_on_a_health_row_follows_its_first_message_and_scrolls_the_panes_to_it() {
    let mut app = story();
    // Many newer messages, so that message 2 is off screen in a small pane.
    for n in 10..60 {
        through_every_stage(&mut app, n);
    }
    screen(&mut app, 80, 24);
    app.update(Action::Focus(PaneId::Health));
    assert_eq!(
        app.health.checks.get(app.health.selected).map(|c| c.id),
        Some(CheckId::Malformed),
        "worst first"
    );
    app.update(Action::Follow);
    assert_eq!(app.stages.followed, Some(Snowflake(id(2))));
    for pane in [
        PaneId::Received,
        PaneId::Published,
        PaneId::Notify,
        PaneId::Ingest,
    ] {
        let selected = app
            .pane(pane)
            .and_then(|p| p.selected())
            .and_then(|e| e.message_id);
        assert_eq!(selected, Some(Snowflake(id(2))), "{pane:?}");
    }
    app.update(Action::Focus(PaneId::Ingest));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains(&id(2).to_string()), "scrolled to it:\n{text}");
}

#[test]
fn zoom_shows_the_focused_pane_alone_and_back() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Notify));
    let before = draw::areas(Rect::new(0, 0, 200, 40), app.focus, app.zoom);
    assert!(before.panes.iter().filter(|p| p.is_some()).count() == 7);
    app.on_key(key(KeyCode::Char('z')));
    assert!(app.zoom);
    let zoomed = draw::areas(Rect::new(0, 0, 200, 40), app.focus, app.zoom);
    assert_eq!(zoomed.panes.iter().filter(|p| p.is_some()).count(), 1);
    assert_eq!(
        zoomed.panes[2].map(|r| r.width),
        Some(200),
        "the whole width"
    );
    let text = screen(&mut app, 200, 40);
    assert!(text.contains("ZOOM"), "{text}");
    app.on_key(key(KeyCode::Char('z')));
    assert!(!app.zoom);
    app.on_key(key(KeyCode::Char('z')));
    app.on_key(key(KeyCode::Esc));
    assert!(!app.zoom, "Esc leaves the zoom too");
}

#[test]
fn search_highlights_and_n_and_shift_n_walk_the_matches_across_panes() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Received));
    app.on_key(ctrl('f'));
    type_text(&mut app, &id(2).to_string());
    app.on_key(key(KeyCode::Enter));
    assert!(app.layers.prompt.is_none());
    assert_eq!(
        app.stages.search.as_ref().map(|s| s.text.clone()),
        Some(id(2).to_string())
    );
    // Nothing hidden, unlike the filter.
    assert_eq!(app.pane(PaneId::Received).map(|p| p.len()), Some(4));
    let at = |app: &App| {
        (
            app.focus,
            app.pane(app.focus)
                .and_then(|p| p.selected())
                .and_then(|e| e.message_id),
        )
    };
    assert_eq!(at(&app), (PaneId::Received, Some(Snowflake(id(2)))));
    app.on_key(key(KeyCode::Char('n')));
    assert_eq!(at(&app), (PaneId::Published, Some(Snowflake(id(2)))));
    app.on_key(key(KeyCode::Char('n')));
    assert_eq!(at(&app), (PaneId::Notify, Some(Snowflake(id(2)))));
    app.on_key(key(KeyCode::Char('N')));
    assert_eq!(at(&app), (PaneId::Published, Some(Snowflake(id(2)))));
    app.on_key(key(KeyCode::Char('N')));
    app.on_key(key(KeyCode::Char('N')));
    // Wrapped round to the last stage pane with a match: Ingestion.
    assert_eq!(at(&app), (PaneId::Ingest, Some(Snowflake(id(2)))));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("search: "), "{text}");
}

#[test]
fn the_mouse_focuses_selects_scrolls_and_opens_with_a_double_click() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Received));
    let area = Rect::new(0, 0, 200, 40);
    screen(&mut app, 200, 40);
    // The wide layout: five 40-column stage panes from row 2; the border, the column
    // headers, then the rows.
    let target = draw::pointer_target(&app, area, 45, 5);
    assert_eq!(
        target,
        Some(ClickTarget::Pane {
            pane: PaneId::Published,
            row: Some(1)
        })
    );
    app.on_pointer(Pointer::Click(target.expect("a pane")));
    assert_eq!(app.focus, PaneId::Published);
    assert_eq!(
        app.pane(PaneId::Published)
            .and_then(|p| p.selected())
            .and_then(|e| e.message_id),
        Some(Snowflake(id(2)))
    );
    assert!(app.layers.overlay.is_none());
    app.on_pointer(Pointer::Click(target.expect("a pane")));
    assert!(
        matches!(app.layers.overlay, Some(Overlay::Detail { .. })),
        "a second click on the row opens it"
    );
    app.update(Action::Close);
    app.on_pointer(Pointer::ScrollUp(PaneId::Published));
    assert_eq!(
        app.pane(PaneId::Published).and_then(|p| p.selected_index()),
        Some(0)
    );
    app.on_pointer(Pointer::ScrollDown(PaneId::Published));
    assert_eq!(
        app.pane(PaneId::Published).and_then(|p| p.selected_index()),
        Some(2)
    );
    // At 80 columns the tab bar is clickable too.
    screen(&mut app, 80, 24);
    let small = Rect::new(0, 0, 80, 24);
    let tab = (0..80u16)
        .find(|x| {
            draw::pointer_target(&app, small, *x, 2) == Some(ClickTarget::Tab(PaneId::Health))
        })
        .expect("a Health tab to click");
    app.on_pointer(Pointer::Click(ClickTarget::Tab(PaneId::Health)));
    assert_eq!(app.focus, PaneId::Health, "tab at column {tab}");
}

#[test]
fn acting_on_a_check_asks_first_and_does_only_what_is_chosen() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Health));
    // The worst first: malformed (dead letters), then the lock wait (a backend).
    assert_eq!(app.on_key(key(KeyCode::Char('a'))), None);
    assert!(matches!(app.layers.prompt, Some(Prompt::Confirm { .. })));
    let text = screen(&mut app, 80, 24);
    assert!(line(&text, 22).contains("dead letters"), "{text}");
    assert!(line(&text, 23).contains("r  requeue"), "{text}");
    assert_eq!(
        app.on_key(key(KeyCode::Char('r'))),
        Some(Effect::RequeueDeadLetters)
    );
    assert!(app.layers.prompt.is_none());

    app.update(Action::Down);
    app.on_key(key(KeyCode::Char('a')));
    match &app.layers.prompt {
        Some(Prompt::Confirm { question, .. }) => {
            assert!(question.contains("pid 99 (psql, user alice)"), "{question}")
        }
        other => panic!("no confirmation: {other:?}"),
    }
    // Any other key does nothing at all.
    assert_eq!(app.on_key(key(KeyCode::Char('m'))), None);
    assert!(app.layers.prompt.is_none());
    app.on_key(key(KeyCode::Char('a')));
    assert_eq!(
        app.on_key(key(KeyCode::Char('c'))),
        Some(Effect::CancelBackend(99)),
        "the gentler choice"
    );
    app.on_key(key(KeyCode::Char('a')));
    assert_eq!(
        app.on_key(key(KeyCode::Char('t'))),
        Some(Effect::TerminateBackend(99))
    );
    // A check with nothing to act on says so.
    app.update(Action::Top);
    app.update(Action::Down);
    app.update(Action::Down);
    app.on_key(key(KeyCode::Char('a')));
    assert!(app.layers.prompt.is_none());
    // A replay acts on nothing.
    let mut replay = story();
    replay.mode = Mode::Replay("r.jsonl".into());
    replay.update(Action::Focus(PaneId::Health));
    assert_eq!(replay.on_key(key(KeyCode::Char('a'))), None);
    assert!(replay.layers.prompt.is_none());
}

#[test]
fn y_copies_the_payload_and_shift_y_the_message_id() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Notify));
    assert_eq!(
        app.on_key(key(KeyCode::Char('Y'))),
        Some(Effect::Copy(id(3).to_string()))
    );
    assert_eq!(
        app.on_key(key(KeyCode::Char('y'))),
        Some(Effect::Copy(format!(
            "{{\"v\":1,\"message_id\":\"{}\"}}",
            id(3)
        )))
    );
}

#[test]
fn shift_i_shows_and_copies_the_send_command_of_this_instance() {
    let mut app = story();
    assert_eq!(app.on_key(key(KeyCode::Char('I'))), None);
    assert!(app
        .status
        .toasts()
        .next_back()
        .is_some_and(|t| t.contains("no instance")));
    let command = "notifyscope send --via-bot message --instance 4242".to_owned();
    app.status.send_command = Some(command.clone());
    assert_eq!(
        app.on_key(key(KeyCode::Char('I'))),
        Some(Effect::Copy(command.clone()))
    );
    let text = screen(&mut app, 80, 24);
    assert!(text.contains(&command), "{text}");
}

#[test]
fn a_replayed_recording_shows_the_health_it_recorded() {
    let report = ev(
        5,
        None,
        TraceKind::HealthReport {
            checks: vec![
                check(CheckId::Listener, Status::Fail, "no listener", None).to_state(),
                check(CheckId::Backlog, Status::Ok, "0 rows", None).to_state(),
            ],
        },
    );
    // Written and read back as a recording line.
    let line = report.to_json();
    let read: TraceEvent = serde_json::from_str(&line).expect("a trace event");
    let mut app = App::new(KeyMap::default(), 100, "");
    app.mode = Mode::Replay("r.jsonl".into());
    app.on_trace(Arc::new(read));
    assert_eq!(app.health.checks.len(), 2);
    assert_eq!(app.health.checks[0].id, CheckId::Listener);
    assert_eq!(app.health.checks[0].status, Status::Fail);
    app.update(Action::Focus(PaneId::Health));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("✗ listener running"), "{text}");
    assert!(!text.contains("all ok"), "{text}");
    // An older recording without health says it was not judged, not "all ok".
    let mut old = App::new(KeyMap::default(), 100, "");
    old.mode = Mode::Replay("old.jsonl".into());
    old.on_trace(received(1, "ada"));
    old.update(Action::Focus(PaneId::Health));
    let text = screen(&mut old, 80, 24);
    assert!(text.contains("not judged yet"), "{text}");
    assert!(!text.contains("all ok"), "{text}");
}

#[test]
fn the_status_bar_shows_live_latency_where_it_fits() {
    let mut app = story();
    let text = screen(&mut app, 120, 30);
    let rates = line(&text, 1);
    assert!(rates.contains("total p50/p99 "), "{rates}");
    assert!(rates.contains("7.0/7.0 ms"), "{rates}");
    app.on_key(key(KeyCode::Char('i')));
    assert_eq!(app.layers.overlay, Some(Overlay::Stats));
    let stats = screen(&mut app, 80, 24);
    assert!(stats.contains("publish"), "{stats}");
    assert!(stats.contains("bot path → row commit"), "{stats}");
}

/// One snapshot per layout at 80×24: each pane in front, zoom, help, a detail, the stats,
/// a prompt.
#[test]
fn layouts_at_80_by_24() {
    for (i, pane) in PaneId::ALL.into_iter().enumerate().take(6) {
        let mut app = story();
        app.update(Action::Focus(pane));
        insta::assert_snapshot!(format!("pane_{}", i + 1), screen(&mut app, 80, 24));
    }
    let mut app = story();
    app.update(Action::Focus(PaneId::Ingest));
    app.update(Action::Zoom);
    insta::assert_snapshot!("zoom", screen(&mut app, 80, 24));
    let mut app = story();
    app.update(Action::Help);
    insta::assert_snapshot!("help", screen(&mut app, 80, 24));
    let mut app = story();
    app.update(Action::Focus(PaneId::Notify));
    app.update(Action::Detail);
    insta::assert_snapshot!("detail", screen(&mut app, 80, 24));
    let mut app = story();
    app.update(Action::Stats);
    insta::assert_snapshot!("stats", screen(&mut app, 80, 24));
    let mut app = story();
    app.update(Action::Focus(PaneId::Health));
    app.update(Action::Down);
    app.on_key(key(KeyCode::Char('a')));
    insta::assert_snapshot!("confirm", screen(&mut app, 80, 24));
    let mut app = story();
    app.update(Action::Focus(PaneId::Published));
    insta::assert_snapshot!("grid_100_by_30", screen(&mut app, 100, 30));
}

#[test]
fn clicks_in_a_scrolled_health_pane_select_the_check_under_the_pointer() {
    let mut app = story();
    let checks: Vec<Check> = CheckId::ALL
        .iter()
        .take(12)
        .map(|id| check(*id, Status::Ok, "fine", None))
        .collect();
    app.on_event(AppEvent::Health(checks.clone()));
    app.update(Action::Focus(PaneId::Health));
    app.heights[PaneId::Health.index()] = 5;
    for _ in 0..7 {
        app.update(Action::Down);
    }
    assert_eq!(app.health.top(5), 3, "scrolled so that check 7 shows");
    let top_row = ClickTarget::Pane {
        pane: PaneId::Health,
        row: Some(0),
    };
    app.on_pointer(Pointer::Click(top_row));
    assert_eq!(app.health.selected, 3, "the check under the pointer");
    assert_eq!(app.health.top(5), 3, "the pane does not jump");
    app.on_pointer(Pointer::Click(top_row));
    match &app.layers.overlay {
        Some(Overlay::Detail { title, .. }) => {
            assert!(title.contains(&checks[3].name), "{title}")
        }
        other => panic!("a double-click opens the check: {other:?}"),
    }
}

#[test]
fn a_second_click_after_new_rows_arrived_is_not_a_double_click_on_another_row() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Received));
    screen(&mut app, 80, 24);
    // A pane of four rows, full: the newest row is the fourth, and the pane follows new rows.
    app.heights[PaneId::Received.index()] = 4;
    let newest = ClickTarget::Pane {
        pane: PaneId::Received,
        row: Some(3),
    };
    app.on_pointer(Pointer::Click(newest));
    through_every_stage(&mut app, 5);
    app.on_pointer(Pointer::Click(newest));
    assert!(
        app.layers.overlay.is_none(),
        "the row under the pointer changed"
    );
}

#[test]
fn a_replay_keeps_the_latency_it_recorded() {
    let mut app = App::new(KeyMap::default(), 100, "");
    app.mode = Mode::Replay("r.jsonl".into());
    through_every_stage(&mut app, 1);
    app.on_event(AppEvent::Tick);
    assert!(
        app.status
            .latency
            .percentiles(notifyscope::trace::latency::Stage::Total)
            .is_some(),
        "recorded times are not 'too old' in a replay"
    );
}

#[test]
fn ctrl_f_searches_from_the_logs_pane_too() {
    let mut app = story();
    app.update(Action::Focus(PaneId::Logs));
    assert_eq!(app.on_key(ctrl('f')), None);
    assert!(matches!(app.layers.prompt, Some(Prompt::Input { .. })));
}
