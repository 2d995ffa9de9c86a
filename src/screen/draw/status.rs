//! The status bar (connections, health verdict, rates with sparklines, backlog, view state)
//! and the tab bar of small terminals.

use notifyscope_widgets::{fit, Styles};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::present::short_id;
use crate::screen::app::{App, Connection, Mode};
use crate::screen::keys::Action;
use crate::screen::pane::PaneId;
use crate::trace::Status;

fn dot(c: &Connection, styles: &Styles) -> Span<'static> {
    match c.up {
        Some(true) => Span::styled("●", styles.ok),
        Some(false) => Span::styled("●", styles.error),
        None => Span::styled("○", styles.dim),
    }
}

pub(super) fn draw_status(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let lines = vec![
        Line::from(connections_line(app, styles)),
        Line::from(rates_line(app, styles)),
    ];
    frame.render_widget(Paragraph::new(lines).style(styles.status_bar), area);
}

/// What the screen is attached to, the connections, and the worst health check.
fn connections_line(app: &App, styles: &Styles) -> Vec<Span<'static>> {
    let s = &app.status;
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
    first
}

/// Messages a second per stage, the backlog, and the state of the view.
fn rates_line(app: &App, styles: &Styles) -> Vec<Span<'static>> {
    let s = &app.status;
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
    second
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

pub(super) fn draw_tabs(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
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
            format!(
                " {} {}{count} ",
                app.keymap.label(Action::Focus(pane.index())),
                pane.short_title()
            ),
            style,
        ));
        spans.push(Span::styled("│", styles.border));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
