//! Layout and drawing. Everything here reads the [`App`]; nothing changes it.

use notifyscope_widgets::{
    fit, HealthItem, HealthPane, HealthStatus, PaneRow, RowKind, StagePane, Styles,
};
use ratatui::layout::{Constraint, Layout, Rect};

use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, Connection, Mode, Overlay, PaneId};
use crate::diagnose::Status;
use crate::event::Snowflake;
use crate::keys::Action;
use crate::synthetic::SimKind;
use crate::trace::{IngestOutcome, Stage, TraceEvent};

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;
/// All five stage panes side by side from this width.
pub const WIDE: u16 = 160;
/// A grid from this width; tabs below it.
pub const GRID: u16 = 100;

/// Where everything goes for a terminal size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Areas {
    pub too_small: bool,
    pub status: Rect,
    pub tabs: Option<Rect>,
    /// By [`PaneId`] index; `None` when the pane is not shown (tabs).
    pub panes: [Option<Rect>; 7],
    pub footer: Rect,
}

pub fn areas(area: Rect, focus: PaneId) -> Areas {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return Areas {
            too_small: true,
            ..Areas::default()
        };
    }
    let [status, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    let mut panes = [None; 7];
    let mut tabs = None;
    if area.width >= WIDE {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
        let columns = Layout::horizontal([Constraint::Ratio(1, 5); 5]).split(top);
        for (i, r) in columns.iter().enumerate() {
            panes[i] = Some(*r);
        }
        let [health, logs] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)])
                .areas(bottom);
        panes[PaneId::Health.index()] = Some(health);
        panes[PaneId::Logs.index()] = Some(logs);
    } else if area.width >= GRID {
        let rows = Layout::vertical([
            Constraint::Percentage(38),
            Constraint::Percentage(36),
            Constraint::Percentage(26),
        ])
        .split(body);
        let first = Layout::horizontal([Constraint::Ratio(1, 3); 3]).split(rows[0]);
        let second = Layout::horizontal([Constraint::Ratio(1, 3); 3]).split(rows[1]);
        for (i, r) in first.iter().chain(second.iter()).enumerate() {
            panes[i] = Some(*r);
        }
        panes[PaneId::Logs.index()] = Some(rows[2]);
    } else {
        let [tab_bar, content] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(body);
        tabs = Some(tab_bar);
        panes[focus.index()] = Some(content);
    }
    Areas {
        too_small: false,
        status,
        tabs,
        panes,
        footer,
    }
}

/// Rows each pane shows (inside its border).
pub fn pane_heights(area: Rect, focus: PaneId) -> [usize; 7] {
    let a = areas(area, focus);
    std::array::from_fn(|i| {
        a.panes[i]
            .map(|r| r.height.saturating_sub(2) as usize)
            .unwrap_or(0)
    })
}

/// Draws one frame. `logs` draws the log pane (it needs the logger's own state).
pub fn draw(frame: &mut Frame, app: &App, styles: &Styles, logs: &dyn Fn(&mut Frame, Rect, bool)) {
    let area = frame.area();
    let a = areas(area, app.focus);
    if a.too_small {
        let text = format!(
            "terminal too small: {}×{}, notifyscope needs at least {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(text)
                .style(styles.warn)
                .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    draw_status(frame, app, styles, a.status);
    if let Some(tabs) = a.tabs {
        draw_tabs(frame, app, styles, tabs);
    }
    for pane in PaneId::STAGES {
        if let Some(r) = a.panes[pane.index()] {
            draw_stage(frame, app, styles, pane, r);
        }
    }
    if let Some(r) = a.panes[PaneId::Health.index()] {
        draw_health(frame, app, styles, r);
    }
    if let Some(r) = a.panes[PaneId::Logs.index()] {
        logs(frame, r, app.focus == PaneId::Logs);
    }
    draw_footer(frame, app, styles, a.footer);
    match &app.overlay {
        Some(Overlay::Help { scroll }) => draw_help(frame, app, styles, *scroll),
        Some(Overlay::Detail {
            title,
            lines,
            scroll,
            ..
        }) => draw_lines_overlay(frame, styles, title, lines, *scroll),
        None => {}
    }
    draw_toasts(frame, app, styles, a.footer);
}

fn dot(c: &Connection, styles: &Styles) -> Span<'static> {
    match c.up {
        Some(true) => Span::styled("●", styles.ok),
        Some(false) => Span::styled("●", styles.error),
        None => Span::styled("○", styles.dim),
    }
}

fn draw_status(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let s = &app.status;
    let width = area.width as usize;
    let mut first = vec![Span::styled(" notifyscope ", styles.key), Span::raw(" ")];
    if let Mode::Replay(file) = &app.mode {
        first.push(Span::styled(format!("REPLAY {file}  "), styles.warn));
    } else {
        if app.mode == Mode::Watch {
            first.push(Span::styled("WATCH (read-only)  ", styles.warn));
        }
        first.extend([
            Span::styled("db ", styles.dim),
            dot(&s.database, styles),
            Span::raw(format!(" {}  ", fit(&s.database.text, 48))),
            Span::styled("listener ", styles.dim),
            dot(&s.listener, styles),
            Span::raw(format!(" {}  ", fit(&s.listener.text, 40))),
            Span::styled("gateway ", styles.dim),
        ]);
        if s.simulated && s.gateway.text.is_empty() {
            first.push(Span::styled("◌ simulated source  ", styles.dim));
        } else {
            first.push(dot(&s.gateway, styles));
            first.push(Span::raw(format!(" {}  ", fit(&s.gateway.text, 40))));
        }
    }
    let worst = app.health.iter().map(|c| c.status).max();
    let failing = app
        .health
        .iter()
        .filter(|c| c.status >= Status::Warn)
        .count();
    match (worst, app.health.first()) {
        (Some(Status::Fail | Status::Warn), Some(top)) => first.push(Span::styled(
            format!("health: {} {} ({failing})  ", top.status.symbol(), top.name),
            if top.status == Status::Fail {
                styles.error
            } else {
                styles.warn
            },
        )),
        (Some(_), _) => first.push(Span::styled("health ✓  ", styles.ok)),
        (None, _) => {}
    }
    let mut second = vec![Span::raw(" ")];
    for (pane, label) in [
        (PaneId::Received, "rx"),
        (PaneId::Published, "pub"),
        (PaneId::Notify, "notify"),
        (PaneId::Ingest, "ingest"),
        (PaneId::Skips, "skip"),
    ] {
        second.push(Span::styled(format!("{label} "), styles.dim));
        second.push(Span::raw(format!("{}/s ", app.rates.last(pane))));
        second.push(Span::styled(
            format!("{} ", sparkline(&app.rates.history[pane.index()], 8)),
            styles.sparkline,
        ));
    }
    second.push(Span::styled("backlog ", styles.dim));
    second.push(match s.backlog {
        Some(0) => Span::styled("0  ", styles.ok),
        Some(n) => Span::styled(format!("{n}  "), styles.warn),
        None => Span::styled("?  ", styles.dim),
    });
    let dropped: u64 = app.panes.iter().map(|p| p.dropped).sum();
    if dropped > 0 {
        // Old rows beyond --history: the normal life of a busy pane.
        second.push(Span::styled(
            format!("dropped from view {dropped}  "),
            styles.dim,
        ));
    }
    if s.lagged > 0 {
        // The screen fell behind the trace: these events were never shown.
        second.push(Span::styled(format!("missed {}  ", s.lagged), styles.error));
    }
    if s.backpressure > 0 {
        second.push(Span::styled(
            format!("queue full ×{}  ", s.backpressure),
            styles.warn,
        ));
    }
    if let Some(f) = &app.filter {
        second.push(Span::styled(format!("filter: {}  ", f.text), styles.warn));
    }
    if let Some(id) = app.followed {
        second.push(Span::styled(
            format!("following {}  ", short_id(Some(id))),
            styles.followed,
        ));
    }
    if app.paused {
        second.push(Span::styled(
            format!(" PAUSED, {} new ", app.pending()),
            styles.toast,
        ));
    }
    let lines = vec![Line::from(first), Line::from(second)];
    frame.render_widget(
        Paragraph::new(lines).style(styles.status_bar),
        Rect::new(area.x, area.y, width as u16, area.height),
    );
}

/// Unicode block sparkline of the last `width` values.
pub fn sparkline(values: &std::collections::VecDeque<u64>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = values.len().saturating_sub(width);
    let recent: Vec<u64> = values.iter().skip(start).copied().collect();
    let max = recent.iter().copied().max().unwrap_or(0);
    let mut out: String = std::iter::repeat_n(' ', width - recent.len()).collect();
    for v in recent {
        out.push(match (v * 7).checked_div(max) {
            Some(level) => BARS[level as usize],
            None => ' ',
        });
    }
    out
}

fn draw_tabs(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let mut spans = Vec::new();
    for pane in PaneId::ALL {
        let style = if pane == app.focus {
            styles.title_focused
        } else {
            styles.dim
        };
        let count = app
            .pane(pane)
            .map(|p| format!(" {}", p.len()))
            .unwrap_or_default();
        spans.push(Span::styled(
            format!(" {} {}{count} ", pane.key(), pane.short_title()),
            style,
        ));
        spans.push(Span::styled("│", styles.border));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn short_id(id: Option<Snowflake>) -> String {
    match id {
        Some(id) => {
            let s = id.to_string();
            let tail = s.len().saturating_sub(8);
            format!("…{}", &s[tail..])
        }
        None => "-".into(),
    }
}

/// The row of an event in its stage pane.
pub fn pane_row(event: &TraceEvent) -> (String, RowKind) {
    let tail4 = |id: Snowflake| {
        let s = id.to_string();
        s[s.len().saturating_sub(4)..].to_owned()
    };
    match &event.stage {
        Stage::Received {
            channel_id,
            author_name,
            content_bytes,
            synthetic,
            guild_id,
            ..
        } => (
            format!(
                "{author_name} #{} {content_bytes}B{}{}",
                tail4(*channel_id),
                if guild_id.is_none() { " dm" } else { "" },
                if *synthetic { " sim" } else { "" }
            ),
            RowKind::Normal,
        ),
        Stage::Published {
            outbox_id,
            bytes,
            by_ref,
            ..
        } => (
            format!(
                "outbox {outbox_id} {bytes}B{}",
                if *by_ref { " by ref" } else { "" }
            ),
            RowKind::Normal,
        ),
        Stage::PublishFailed { error, .. } => (format!("FAILED {error}"), RowKind::Error),
        Stage::Backpressure { queued, capacity } => {
            (format!("queue full {queued}/{capacity}"), RowKind::Warn)
        }
        Stage::Notified {
            channel,
            sender_pid,
            outbox_id,
            bytes,
            by_ref,
            ..
        } => (
            format!(
                "{channel} pid {sender_pid} outbox {} {bytes}B{}",
                outbox_id
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                if *by_ref { " ref" } else { "" }
            ),
            RowKind::Normal,
        ),
        Stage::NotifyRejected { channel, error, .. } => {
            (format!("REJECTED on {channel}: {error}"), RowKind::Error)
        }
        Stage::NeighbourNotified {
            channel,
            sender_pid,
            ..
        } => (
            format!("WRONG CHANNEL {channel:?} pid {sender_pid}"),
            RowKind::Error,
        ),
        Stage::RowObserved { table, latency_ms } => (
            match latency_ms {
                Some(ms) => format!("row in {table} {ms:.1}ms"),
                None => format!("row in {table}"),
            },
            RowKind::Ok,
        ),
        Stage::Ingested {
            outcome,
            latency_ms,
            outbox_id,
        } => match outcome {
            IngestOutcome::Inserted => (
                format!("inserted {latency_ms:.1}ms outbox {outbox_id}"),
                RowKind::Ok,
            ),
            IngestOutcome::Duplicate => (format!("duplicate outbox {outbox_id}"), RowKind::Warn),
        },
        Stage::IngestFailed {
            error,
            attempts,
            permanent,
            ..
        } => (
            format!(
                "FAILED try {attempts}{} {error}",
                if *permanent { " (gave up)" } else { "" }
            ),
            RowKind::Error,
        ),
        Stage::Skipped {
            reason,
            author_name,
            channel_id,
        } => (
            format!("{reason} · {author_name} #{}", tail4(*channel_id)),
            RowKind::Warn,
        ),
        Stage::ContentIntentSuspected { count, .. } => (
            format!("no content: MESSAGE_CONTENT intent off? ({count})"),
            RowKind::Error,
        ),
        other => (other.name().to_owned(), RowKind::Normal),
    }
}

fn empty_hint(pane: PaneId) -> &'static str {
    match pane {
        PaneId::Received => "no messages yet: press m to send one",
        PaneId::Published => "nothing published yet",
        PaneId::Notify => "no NOTIFY received yet",
        PaneId::Ingest => "nothing ingested yet",
        PaneId::Skips => "no message skipped",
        _ => "",
    }
}

fn draw_stage(frame: &mut Frame, app: &App, styles: &Styles, pane_id: PaneId, area: Rect) {
    let Some(pane) = app.pane(pane_id) else {
        return;
    };
    let height = area.height.saturating_sub(2) as usize;
    let window = pane.window(height);
    let selected = pane.selected_index();
    let rows: Vec<PaneRow> = window
        .clone()
        .filter_map(|i| pane.get(i).map(|e| (i, e)))
        .map(|(i, e)| {
            let (detail, kind) = pane_row(e);
            PaneRow {
                time: e.at.format("%H:%M:%S%.3f").to_string(),
                id: short_id(e.message_id),
                detail,
                kind,
                selected: Some(i) == selected,
                followed: app.followed.is_some() && e.message_id == app.followed,
            }
        })
        .collect();
    let widget = StagePane {
        title: pane_id.title(),
        key: pane_id.key(),
        shown: pane.len(),
        dropped: pane.dropped,
        focused: app.focus == pane_id,
        above: window.start,
        rows: &rows,
        empty_hint: empty_hint(pane_id),
        styles,
    };
    frame.render_widget(&widget, area);
}

fn health_status(s: Status) -> HealthStatus {
    match s {
        Status::Ok => HealthStatus::Ok,
        Status::Unknown => HealthStatus::Unknown,
        Status::Warn => HealthStatus::Warn,
        Status::Fail => HealthStatus::Fail,
    }
}

fn draw_health(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let items: Vec<HealthItem> = if app.health.is_empty() {
        // Before any diagnosis: the connection states.
        let s = &app.status;
        [
            ("database", &s.database),
            ("listener", &s.listener),
            ("gateway", &s.gateway),
        ]
        .into_iter()
        .filter(|(name, c)| *name != "gateway" || c.up.is_some() || !c.text.is_empty())
        .map(|(name, c)| HealthItem {
            status: match c.up {
                Some(true) => HealthStatus::Ok,
                Some(false) => HealthStatus::Fail,
                None => HealthStatus::Unknown,
            },
            name: name.into(),
            summary: c.text.clone(),
            selected: false,
        })
        .collect()
    } else {
        app.health
            .iter()
            .enumerate()
            .map(|(i, c)| HealthItem {
                status: health_status(c.status),
                name: c.name.clone(),
                summary: if c.status == Status::Ok {
                    c.summary.clone()
                } else {
                    format!("{} — {}", c.summary, c.hint)
                },
                selected: i == app.health_selected,
            })
            .collect()
    };
    let widget = HealthPane {
        key: PaneId::Health.key(),
        focused: app.focus == PaneId::Health,
        items: &items,
        styles,
    };
    frame.render_widget(&widget, area);
}

fn key_hint(app: &App, action: Action, label: &str, styles: &Styles) -> Vec<Span<'static>> {
    match app.keymap.key_of(action) {
        Some(k) => vec![
            Span::styled(format!(" {k} "), styles.key),
            Span::styled(format!(" {label} "), styles.dim),
        ],
        None => Vec::new(),
    }
}

fn draw_footer(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    if let Some(input) = &app.filter_input {
        let line = Line::from(vec![
            Span::styled(" filter ", styles.key),
            Span::raw(format!(" /{input}█ ")),
            Span::styled(
                "  Enter apply · Esc cancel · substring, or re:REGEX",
                styles.dim,
            ),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    if let Some(error) = &app.filter_error {
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {error}"), styles.error)),
            area,
        );
        return;
    }
    let mut spans = Vec::new();
    let mut hints = vec![
        (Action::Quit, "quit"),
        (Action::Help, "help"),
        (Action::FocusNext, "focus"),
        (Action::Pause, if app.paused { "resume" } else { "pause" }),
        (Action::Detail, "detail"),
        (Action::Filter, "filter"),
        (Action::Follow, "follow"),
    ];
    if app.mode == Mode::Live {
        hints.extend([
            (Action::Send(SimKind::Message), "send"),
            (Action::Send(SimKind::Burst), "burst"),
            (Action::Send(SimKind::Own), "own"),
            (Action::SendMalformed, "malformed"),
        ]);
    }
    for (action, label) in hints {
        spans.extend(key_hint(app, action, label, styles));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centered(area: Rect, width_pct: u16, height_pct: u16) -> Rect {
    let [_, mid, _] = Layout::vertical([
        Constraint::Percentage((100 - height_pct) / 2),
        Constraint::Percentage(height_pct),
        Constraint::Percentage((100 - height_pct) / 2),
    ])
    .areas(area);
    let [_, center, _] = Layout::horizontal([
        Constraint::Percentage((100 - width_pct) / 2),
        Constraint::Percentage(width_pct),
        Constraint::Percentage((100 - width_pct) / 2),
    ])
    .areas(mid);
    center
}

fn overlay_block<'a>(title: &'a str, styles: &Styles, hint: &'a str) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(styles.border_focused)
        .title(Span::styled(format!(" {title} "), styles.title_focused))
        .title_bottom(Line::from(Span::styled(hint, styles.dim)).right_aligned())
        .style(styles.overlay)
}

fn draw_help(frame: &mut Frame, app: &App, styles: &Styles, scroll: usize) {
    let area = centered(frame.area(), 80, 90);
    let mut lines = Vec::new();
    lines.push(Line::from(Span::styled(
        "Panes: 1 Received · 2 Published · 3 NOTIFY · 4 Ingestion · 5 Skips · 6 Health · 7 Logs",
        styles.header,
    )));
    lines.push(Line::from(""));
    for (_, keys, help) in &app.keymap.listing {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        lines.push(Line::from(vec![
            Span::styled(format!("{:>16}  ", keys.join(" / ")), styles.title_focused),
            Span::styled(help.to_string(), styles.text),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "In the Logs pane: ↑/↓ pick a target, ←/→ level shown, +/- level captured, h hide the target list, PgUp/PgDn page.",
        styles.dim,
    )));
    lines.push(Line::from(Span::styled(
        "Test keys go through the real pipeline; each shows the message id it sent so you can follow it (f).",
        styles.dim,
    )));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(overlay_block("Keys", styles, " Esc or ? closes "))
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}

fn draw_lines_overlay(
    frame: &mut Frame,
    styles: &Styles,
    title: &str,
    lines: &[String],
    scroll: usize,
) {
    let area = centered(frame.area(), 90, 90);
    let text: Vec<Line> = lines
        .iter()
        .map(|l| {
            let heading = !l.starts_with(' ') && !l.is_empty();
            Line::from(Span::styled(
                l.clone(),
                if heading { styles.header } else { styles.text },
            ))
        })
        .collect();
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text)
            .block(overlay_block(
                title,
                styles,
                " j/k scroll · y copy · f follow · Esc closes ",
            ))
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}

fn draw_toasts(frame: &mut Frame, app: &App, styles: &Styles, footer: Rect) {
    let area = frame.area();
    for (i, (_, text)) in app.toasts.iter().rev().enumerate() {
        let width = (notifyscope_widgets::width_of(text) as u16 + 2).min(area.width);
        let y = footer.y.saturating_sub(1 + i as u16);
        if y < area.y + 2 {
            break;
        }
        let r = Rect::new(area.right().saturating_sub(width), y, width, 1);
        frame.render_widget(Clear, r);
        frame.render_widget(
            Paragraph::new(format!(" {} ", fit(text, width.saturating_sub(2) as usize)))
                .style(styles.toast),
            r,
        );
    }
}
