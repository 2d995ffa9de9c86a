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
use notifyscope::screen::event_loop;
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
    // As the event loop does after every key: the panes' rows, the overlay's scroll.
    event_loop::settle(app, Rect::new(0, 0, width, height));
    let styles = theme::load("dark", true).expect("dark theme");
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal
        .draw(|f| draw::draw(f, app, &styles, &no_logs))
        .expect("draw");
    terminal.backend().to_string()
}

/// Line `n` of the screen, as it shows.
fn line(text: &str, n: usize) -> String {
    plain(text).lines().nth(n).unwrap_or_default().to_owned()
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
    assert!(rates.contains("7.0ms/7.0ms"), "{rates}");
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

/// The sizes people ssh in with, and the smallest the monitor draws at.
const SIZES: [(u16, u16); 4] = [(60, 15), (80, 24), (100, 30), (160, 40)];

/// The text inside the open overlay on a screen of `width` × `height`, every line of it:
/// from its top, a line down at a time until it scrolls no further. Its lines are joined
/// with single spaces, so that wrapped text reads as it was written.
fn overlay_text(app: &mut App, width: u16, height: u16) -> String {
    let scroll = |app: &App| match &app.layers.overlay {
        Some(Overlay::Help { scroll } | Overlay::Detail { scroll, .. }) => *scroll,
        other => panic!("no overlay that scrolls: {other:?}"),
    };
    let area = draw::overlay_area(Rect::new(0, 0, width, height));
    let inner = |text: &str| -> Vec<String> {
        plain(text)
            .lines()
            .skip(area.y as usize + 1)
            .take(area.height.saturating_sub(2) as usize)
            .map(|l| {
                l.chars()
                    .skip(area.x as usize + 1)
                    .take(area.width.saturating_sub(2) as usize)
                    .collect::<String>()
            })
            .collect()
    };
    app.update(Action::Top);
    let mut lines = inner(&screen(app, width, height));
    loop {
        assert!(lines.len() < 1_000, "scrolls on past its last line");
        let before = scroll(app);
        app.update(Action::Down);
        let text = screen(app, width, height);
        if scroll(app) == before {
            break;
        }
        lines.push(inner(&text).last().cloned().unwrap_or_default());
    }
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with its runs of spaces as one: how wrapped text compares with what was written.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The screen as it shows, without the quotes around each line of the test backend's text.
fn plain(text: &str) -> String {
    text.lines()
        .map(|l| {
            l.strip_prefix('"')
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A lock wait as the diagnosis reports it: the blocker's pid at the very end.
fn lock_wait() -> Check {
    let summary = "pid 77 (notifyscope-ingest) waits for RowExclusiveLock on discord_messages \
                   for 12 s, blocked by pid 99 (psql, user alice, idle in transaction for 45 s, \
                   statement LOCK)";
    let mut check = check(
        CheckId::LockWaits,
        Status::Fail,
        summary,
        Some(CheckTarget::Backend {
            pid: 99,
            application_name: "psql".into(),
            user: "alice".into(),
        }),
    );
    check.evidence = vec![summary.into()];
    check
}

#[test]
fn the_detail_of_a_check_wraps_whole_at_every_size_over_the_whole_width() {
    for (width, height) in SIZES {
        let mut app = story();
        app.on_event(AppEvent::Health(vec![lock_wait()]));
        app.update(Action::Focus(PaneId::Health));
        app.update(Action::Detail);
        let text = screen(&mut app, width, height);
        let all = overlay_text(&mut app, width, height);
        for whole in [
            "blocked by pid 99 (psql, user alice, idle in transaction for 45 s, statement LOCK)",
            CheckId::LockWaits.hint(),
        ] {
            assert!(
                words(&all).contains(whole),
                "{width}×{height}: {whole:?} in {all}"
            );
        }
        if width < 120 {
            // Every column goes to the text: the frame from the first column to the last.
            let top = line(
                &text,
                draw::overlay_area(Rect::new(0, 0, width, height)).y as usize,
            );
            assert!(top.starts_with('╔') && top.ends_with('╗'), "{width}: {top}");
        }
    }
}

#[test]
fn an_overlay_scrolls_no_further_than_its_last_line() {
    let mut app = story();
    let mut check = lock_wait();
    check.message_ids = (1..=60).map(|n| Snowflake(id(n))).collect();
    app.on_event(AppEvent::Health(vec![check]));
    app.update(Action::Focus(PaneId::Health));
    app.update(Action::Detail);
    screen(&mut app, 80, 24);
    app.update(Action::Bottom);
    let end = screen(&mut app, 80, 24);
    assert!(
        end.contains(&id(60).to_string()),
        "the last line shows:\n{end}"
    );
    let last = line(&end, 21);
    assert!(last.contains(&id(60).to_string()), "at the bottom: {last}");
    for _ in 0..5 {
        app.update(Action::PageDown);
    }
    assert_eq!(screen(&mut app, 80, 24), end, "no page past the end");
    app.update(Action::Up);
    let up = screen(&mut app, 80, 24);
    assert!(
        line(&up, 21).contains(&id(59).to_string()),
        "one line up, at once: {}",
        line(&up, 21)
    );
}

#[test]
fn the_help_wraps_every_line_whole_at_every_size() {
    for (width, height) in SIZES {
        let mut app = story();
        app.update(Action::Help);
        let all = words(&overlay_text(&mut app, width, height));
        for binding in notifyscope::screen::keys::bindings() {
            assert!(
                all.contains(&words(&binding.help)),
                "{width}×{height}: {:?} in {all}",
                binding.help
            );
        }
        assert!(
            all.contains("h hide the target list, PgUp/PgDn page."),
            "{all}"
        );
    }
}

#[test]
fn the_send_command_pop_up_shows_the_whole_command_at_every_size() {
    let command = "/home/alice/src/notifyscope/target/release/notifyscope send --via-bot \
                   message --database-url 'host=/tmp/notifyscope-pg-DGdKr7 port=5432 \
                   user=alice dbname=postgres' --schema public --channel events";
    for (width, height) in SIZES {
        let mut app = story();
        app.status.send_command = Some(command.into());
        app.on_key(key(KeyCode::Char('I')));
        let all = overlay_text(&mut app, width, height);
        assert!(words(&all).contains(command), "{width}×{height}: {all}");
    }
}

#[test]
fn a_confirmation_shows_its_whole_question_at_every_size() {
    for (width, height) in SIZES {
        let mut app = story();
        let mut check = lock_wait();
        check.target = Some(CheckTarget::Backend {
            pid: 123_456,
            application_name: "reporting-dashboard-nightly-export".into(),
            user: "analytics_readonly".into(),
        });
        app.on_event(AppEvent::Health(vec![check]));
        app.update(Action::Focus(PaneId::Health));
        app.on_key(key(KeyCode::Char('a')));
        let question = match &app.layers.prompt {
            Some(Prompt::Confirm { question, .. }) => question.clone(),
            other => panic!("no confirmation: {other:?}"),
        };
        let text = plain(&screen(&mut app, width, height));
        let lines: Vec<&str> = text.lines().collect();
        let asked = lines
            .iter()
            .rposition(|l| l.contains(" confirm "))
            .expect("the question");
        let shown: String = lines[asked..lines.len() - 1]
            .iter()
            .map(|l| l.replace(" confirm ", " "))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            words(&shown).contains(&question),
            "{width}×{height}:\n{text}"
        );
        assert!(line(&text, height as usize - 1).contains("c  cancel statement"));
    }
}

fn ingest_failed(n: u64, error: &str) -> Arc<TraceEvent> {
    ev(
        n as i64 * 100 + 9,
        Some(id(n)),
        TraceKind::IngestFailed {
            outbox_id: n as i64,
            error: error.into(),
            attempts: 1,
            permanent: false,
            class: Some(notifyscope::store::ErrorClass::Timeout),
            next_attempt_at: Some(t0() + TimeDelta::seconds(1)),
        },
    )
}

#[test]
fn failure_rows_wrap_to_show_their_cause_and_clicks_find_them() {
    let cause = "db error: ERROR: canceling statement due to lock timeout";
    for (width, height) in SIZES {
        let mut app = story();
        app.on_trace(ingest_failed(5, cause));
        app.update(Action::Focus(PaneId::Ingest));
        let text = screen(&mut app, width, height);
        for word in ["canceling", "timeout"] {
            assert!(text.contains(word), "{width}×{height}:\n{text}");
        }
    }
    // In the tabs of 80 columns, the failure is the newest row, wrapped onto more lines; a
    // click on its second line selects it, and on the line above it, the row before.
    let mut app = story();
    app.on_trace(ingest_failed(5, cause));
    app.update(Action::Focus(PaneId::Ingest));
    let text = screen(&mut app, 80, 24);
    let first = text
        .lines()
        .position(|l| l.contains(&id(5).to_string()))
        .expect("the failure on screen") as u16;
    assert!(
        line(&text, first as usize + 1).contains("lock timeout"),
        "the cause continues the row:\n{text}"
    );
    let area = Rect::new(0, 0, 80, 24);
    let selected = |app: &App| {
        app.pane(PaneId::Ingest)
            .and_then(|p| p.selected())
            .and_then(|e| e.message_id)
    };
    app.update(Action::Top);
    let target = draw::pointer_target(&app, area, 40, first + 1).expect("a pane");
    app.on_pointer(Pointer::Click(target));
    assert_eq!(selected(&app), Some(Snowflake(id(5))));
    let target = draw::pointer_target(&app, area, 40, first - 1).expect("a pane");
    app.on_pointer(Pointer::Click(target));
    assert_eq!(selected(&app), Some(Snowflake(id(3))));
}

#[test]
fn a_failing_check_wraps_in_the_health_pane_and_shows_its_blocker() {
    let mut app = story();
    app.on_event(AppEvent::Health(vec![
        lock_wait(),
        check(CheckId::Backlog, Status::Ok, "0 rows waiting", None),
    ]));
    app.update(Action::Focus(PaneId::Health));
    let text = plain(&screen(&mut app, 80, 24));
    assert!(
        words(&text.replace('┃', " ")).contains("blocked by pid 99 (psql, user alice"),
        "{text}"
    );
    assert!(text.contains("✓ outbox drained: 0 rows waiting"), "{text}");
    assert!(!text.contains('↑'), "nothing above: {text}");
    // A click on the check below the wrapped one selects it.
    let row = text
        .lines()
        .position(|l| l.contains("✓ outbox drained"))
        .expect("the backlog check") as u16;
    let target = draw::pointer_target(&app, Rect::new(0, 0, 80, 24), 10, row).expect("pane");
    app.on_pointer(Pointer::Click(target));
    assert_eq!(app.health.selected, 1);
}

/// A number on screen whose end was cut reads as another number (`received 10` for 106):
/// at every size, each count shown is the whole count, or it is not shown at all.
#[test]
fn a_cut_value_is_never_shown_as_a_different_number() {
    let mut app = App::new(KeyMap::default(), 1000, "events");
    for n in 1..=106 {
        app.on_trace(received(n, "ada"));
    }
    app.on_event(AppEvent::Backlog(Some(12_345)));
    let mut checks: Vec<Check> = CheckId::ALL
        .iter()
        .take(17)
        .map(|id| check(*id, Status::Unknown, "not queried yet", None))
        .collect();
    checks[0].status = Status::Fail;
    checks[1].status = Status::Ok;
    app.on_event(AppEvent::Health(checks));
    app.on_trace(ev(
        0,
        None,
        TraceKind::DatabaseUp {
            url: "host=127.0.0.1 port=5432 user=postgres dbname=test (schema public)".into(),
            embedded: false,
        },
    ));
    app.on_trace(ev(
        1,
        None,
        TraceKind::ListenerUp {
            channel: "events".into(),
            pid: 4242,
            probe_ms: 1.0,
        },
    ));
    // The connections in the status bar, at every width: a cut falls between numbers.
    for width in 60..=160 {
        let status = line(&screen(&mut app, width, 24), 0);
        for (name, value) in [("port=", "5432"), ("pid ", "4242")] {
            for (at, _) in status.match_indices(name) {
                let digits: String = status[at + name.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                assert!(
                    digits.is_empty() || digits == value,
                    "{width}: {name}{digits} in {status}"
                );
            }
        }
    }
    for filter in [None, Some("re:(ada|bob) ")] {
        if let Some(f) = filter {
            app.set_filter(f).expect("a filter");
        }
        for (width, height) in SIZES {
            for focus in [PaneId::Received, PaneId::Health] {
                app.update(Action::Focus(focus));
                let text = screen(&mut app, width, height);
                let rates = line(&text, 1);
                assert!(
                    !rates.contains("back") || rates.contains("backlog 12345"),
                    "{width}×{height}: {rates}"
                );
                // The health pane's title: whole parts of the verdict, or none.
                let titles = text.lines().filter_map(|l| {
                    ["┏ 6 Health ", "╭ 6 Health "]
                        .iter()
                        .find_map(|corner| l.split_once(corner).map(|(_, title)| title))
                });
                for title in titles {
                    let verdict = title.split(['━', '─', '┓', '╮', '┐']).next().unwrap_or("");
                    for part in verdict
                        .split(" · ")
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                    {
                        assert!(
                            ["✗ 1 failing", "? 15 unknown", "✓ 1 ok"].contains(&part),
                            "{width}×{height}: {part:?} in {title}"
                        );
                    }
                }
                // Counts after their name (`received 106`), and before their word
                // (`15 unknown`).
                for (word, count, after) in [
                    ("received", 106, true),
                    ("Received", 106, true),
                    ("Rx", 106, true),
                    ("failing", 1, false),
                    ("unknown", 15, false),
                    (" ok", 1, false),
                ] {
                    for (at, _) in text.match_indices(word) {
                        let n = if after {
                            number_after(&text[at + word.len()..])
                        } else {
                            number_before(&text[..at])
                        };
                        if let Some(n) = n {
                            assert_eq!(n, count, "{width}×{height} {word}:\n{text}");
                        }
                    }
                }
            }
        }
    }
}

/// The number right after `text` starts (after one space), if any.
fn number_after(text: &str) -> Option<u64> {
    let digits: String = text
        .strip_prefix(' ')?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The number `text` ends with (before one space), if any.
fn number_before(text: &str) -> Option<u64> {
    let digits: String = text
        .strip_suffix(' ')?
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

#[test]
fn unknown_is_not_healthy() {
    let mut app = story();
    let mut checks: Vec<Check> = CheckId::ALL
        .iter()
        .take(14)
        .map(|id| check(*id, Status::Ok, "fine", None))
        .collect();
    for c in checks.iter_mut().take(7) {
        c.status = Status::Unknown;
        c.summary = "waits for a notified message to reach the table".into();
        // The diagnosis leaves the fix of an unknown check empty; a stale one is not shown.
        c.hint = if c.id == CheckId::Malformed {
            "a fix for a fault nobody saw".into()
        } else {
            String::new()
        };
    }
    app.on_event(AppEvent::Health(checks));
    let text = screen(&mut app, 80, 24);
    let status = line(&text, 0);
    assert!(status.starts_with(" ? 7 unknown · ✓ 7 ok"), "{status}");
    assert!(!text.contains("healthy"), "{text}");
    app.update(Action::Focus(PaneId::Health));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("6 Health ? 7 unknown · ✓ 7 ok"), "{text}");
    assert!(!text.contains(" — "), "no fix on an unknown row:\n{text}");
    assert!(!text.contains("nobody saw"), "{text}");
    app.update(Action::Top);
    app.update(Action::Detail);
    match &app.layers.overlay {
        Some(Overlay::Detail { lines, .. }) => {
            assert!(lines
                .iter()
                .any(|l| l.contains("waits for a notified message")));
            assert!(!lines.iter().any(|l| l.starts_with("Fix")), "{lines:?}");
        }
        other => panic!("no detail: {other:?}"),
    }
    // A failing check without a fix says what it found, with no empty fix after it.
    let mut app = story();
    let mut failing = check(CheckId::Channel, Status::Fail, "NOTIFY on Events", None);
    failing.hint = String::new();
    app.on_event(AppEvent::Health(vec![failing]));
    app.update(Action::Focus(PaneId::Health));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("NOTIFY on Events "), "{text}");
    assert!(!text.contains(" — "), "{text}");
    app.update(Action::Detail);
    match &app.layers.overlay {
        Some(Overlay::Detail { lines, .. }) => {
            assert!(!lines.iter().any(|l| l.starts_with("Fix")), "{lines:?}")
        }
        other => panic!("no detail: {other:?}"),
    }
    // Every check judged and holding: healthy.
    let mut app = story();
    app.on_event(AppEvent::Health(vec![check(
        CheckId::Backlog,
        Status::Ok,
        "0",
        None,
    )]));
    assert!(line(&screen(&mut app, 80, 24), 0).starts_with(" ✓ healthy"));
}

fn neighbour(ms: i64, channel: &str) -> Arc<TraceEvent> {
    ev(
        ms,
        None,
        TraceKind::NeighbourNotified {
            channel: channel.into(),
            sender_pid: 5151,
            bytes: 40,
            payload: "{}".into(),
        },
    )
}

#[test]
fn wrong_channel_notifies_take_one_row_per_channel_updated_in_place() {
    let mut app = App::new(KeyMap::default(), 50, "events");
    for n in 1..=3 {
        through_every_stage(&mut app, n);
    }
    for i in 0..559 {
        app.on_trace(neighbour(1_000 + i, "Events"));
    }
    for i in 0..10 {
        app.on_trace(neighbour(2_000 + i, "discord"));
    }
    through_every_stage(&mut app, 4);
    let pane = app.pane(PaneId::Notify).expect("pane");
    assert_eq!(pane.len(), 6, "four of our channel, one per neighbour");
    assert_eq!(pane.dropped, 0, "nothing pushed out");
    app.update(Action::Focus(PaneId::Notify));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("WRONG CHANNEL \"Events\" ×559"), "{text}");
    assert!(text.contains("WRONG CHANNEL \"discord\" ×10"), "{text}");
    // Its time is the newest one's.
    assert!(text.contains("10:00:01.558"), "{text}");
    for n in 1..=4 {
        assert!(text.contains(&id(n).to_string()), "message {n}:\n{text}");
    }
    // Once its row has left the history, the next one starts a row at the end, the count
    // going on.
    let mut app = App::new(KeyMap::default(), 3, "events");
    app.on_trace(neighbour(0, "Events"));
    for n in 1..=3 {
        through_every_stage(&mut app, n);
    }
    app.on_trace(neighbour(900, "Events"));
    app.update(Action::Focus(PaneId::Notify));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("WRONG CHANNEL \"Events\" ×2"), "{text}");
    assert_eq!(app.pane(PaneId::Notify).map(|p| p.len()), Some(3));
}

#[test]
fn latency_reads_as_people_say_it() {
    let mut app = App::new(KeyMap::default(), 50, "events");
    app.on_trace(ev(
        1,
        Some(id(1)),
        TraceKind::Ingested {
            outbox_id: 1,
            outcome: IngestOutcome::Inserted,
            latency_ms: 704_464.0,
        },
    ));
    app.update(Action::Focus(PaneId::Ingest));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("inserted 11m 44s outbox 1"), "{text}");
}

#[test]
fn the_health_pane_says_how_many_checks_are_above_the_first_it_shows() {
    let mut app = story();
    let mut checks: Vec<Check> = CheckId::ALL
        .iter()
        .take(12)
        .map(|id| check(*id, Status::Ok, "fine", None))
        .collect();
    checks[0] = lock_wait();
    app.on_event(AppEvent::Health(checks));
    app.update(Action::Focus(PaneId::Health));
    for _ in 0..11 {
        app.update(Action::Down);
    }
    let text = plain(&screen(&mut app, 60, 15));
    let bottom = text
        .lines()
        .find(|l| l.starts_with('┗'))
        .expect("the pane's bottom border");
    let above: usize = bottom
        .split('↑')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ↑ marker: {text}"));
    let shown = text
        .lines()
        .filter(|l| l.starts_with("┃✓") || l.starts_with("┃✗"))
        .count();
    assert_eq!(above + shown, 12, "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with('┃') && l.contains("nothing waits on a lock")),
        "the worst is above: {text}"
    );
}
