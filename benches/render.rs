//! One frame of the wide layout with every pane full, after a million events have gone
//! through the monitor's state; and what that state costs in memory.
//!
//! `cargo bench --bench render`

use std::hint::black_box;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use notifyscope::contract::Snowflake;
use notifyscope::screen::app::App;
use notifyscope::screen::keys::KeyMap;
use notifyscope::screen::{draw as ui, theme};
use notifyscope::trace::SkipReason;
use notifyscope::trace::{IngestOutcome, TraceEvent, TraceKind};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders};
use ratatui::Terminal;

const EVENTS: u64 = 1_000_000;

fn event(i: u64) -> Arc<TraceEvent> {
    let id = Snowflake(1_575_700_000_000_000_000 + i / 5);
    let channel = Snowflake(200_000_000_000_000_002);
    let kind = match i % 5 {
        0 => TraceKind::Received {
            channel_id: channel,
            guild_id: Some(Snowflake(200_000_000_000_000_001)),
            author_id: Snowflake(200_000_000_000_000_003),
            author_name: "notifyscope-sim".into(),
            content_bytes: 24,
            source: notifyscope::trace::Source::Simulated,
        },
        1 => TraceKind::Published {
            source: notifyscope::trace::Source::Simulated,
            event_id: uuid::Uuid::from_u128(i as u128),
            outbox_id: i as i64,
            channel: "events".into(),
            bytes: 430,
            by_ref: false,
        },
        2 => TraceKind::Notified {
            channel: "events".into(),
            sender_pid: 4242,
            outbox_id: Some(i as i64),
            by_ref: false,
            bytes: 430,
            payload: format!(
                r#"{{"v":1,"event_type":"discord.message_created","event_id":"7d0e4f0a-3c6e-4a59-9d43-8f7b7a0c2d11","outbox_id":{i},"published_at":"2026-11-27T10:00:00.123Z","message":{{"message_id":"{id}","channel_id":"{channel}","guild_id":"200000000000000001","author_id":"200000000000000003","author_name":"notifyscope-sim","author_is_bot":false,"content":"test message {i}","created_at":"2026-11-27T10:00:00.100Z","synthetic":true}}}}"#
            ),
        },
        3 => TraceKind::Ingested {
            outbox_id: i as i64,
            outcome: IngestOutcome::Inserted,
            latency_ms: 3.2,
        },
        _ => TraceKind::Skipped {
            source: notifyscope::trace::Source::Simulated,
            reason: SkipReason::OwnMessage,
            author_name: "notifyscope-bot".into(),
            channel_id: channel,
        },
    };
    Arc::new(TraceEvent {
        at: Utc::now() + TimeDelta::microseconds(i as i64),
        message_id: Some(id),
        kind,
    })
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn full_app() -> App {
    let mut app = App::new(
        KeyMap::default(),
        notifyscope::screen::app::DEFAULT_HISTORY,
        "events",
    );
    for i in 0..EVENTS {
        app.on_trace(event(i));
    }
    app
}

fn render(c: &mut Criterion) {
    let before = rss_mib();
    let mut app = full_app();
    eprintln!(
        "state after {EVENTS} events: RSS {:.1} MiB (was {before:.1} MiB before), {} rows kept per stage pane, {} dropped",
        rss_mib(),
        app.pane(notifyscope::screen::pane::PaneId::Received).map(|p| p.total_kept()).unwrap_or(0),
        app.stages.dropped(),
    );
    let styles = theme::load("dark", true).expect("theme");
    let (w, h) = (200, 50);
    app.heights = ui::pane_heights(Rect::new(0, 0, w, h), app.focus, app.zoom);
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    let logs = |f: &mut ratatui::Frame, r: Rect, _: bool| {
        f.render_widget(Block::default().borders(Borders::ALL), r)
    };
    c.bench_function("frame_wide_200x50_full_panes", |b| {
        b.iter(|| {
            terminal
                .draw(|f| ui::draw(f, black_box(&app), &styles, &logs))
                .expect("draw");
        })
    });
    c.bench_function("ingest_10k_trace_events_into_state", |b| {
        let events: Vec<_> = (0..10_000).map(event).collect();
        b.iter(|| {
            for e in &events {
                app.on_trace(e.clone());
            }
        })
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
