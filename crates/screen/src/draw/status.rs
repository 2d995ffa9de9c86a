//! The status bar and the tab bar of small terminals. Both are laid out for the width they
//! have: what matters most is placed first and what does not fit gives way, never the
//! other way round (at 80 columns the health verdict and the listener must still show).

use notifyscope_widgets::{fit, width_of, Styles};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::app::{App, Mode};
use crate::keys::Action;
use crate::pane::PaneId;
use crate::views::status::Connection;
use notifyscope_model::present::short_id;
use notifyscope_model::trace::latency::Stage;
use notifyscope_model::trace::Status;

fn dot(c: &Connection, styles: &Styles) -> Span<'static> {
    match c.up {
        Some(true) => Span::styled("●", styles.ok),
        Some(false) => Span::styled("●", styles.error),
        None => Span::styled("○", styles.dim),
    }
}

fn spans_width(spans: &[Span]) -> usize {
    spans.iter().map(|s| width_of(&s.content)).sum()
}

/// A part of the status bar, given the room left; `None` when it has nothing to show.
type Segment<'a> = Box<dyn Fn(usize) -> Option<Vec<Span<'static>>> + 'a>;

/// Places `segments` in order, each separated by two spaces; one that does not fit in what
/// is left is left out (it is given the room that is left, and may make itself smaller).
fn place(width: usize, segments: Vec<Segment<'_>>) -> Vec<Span<'static>> {
    let mut out = vec![Span::raw(" ")];
    let mut used = 1;
    for segment in segments {
        let room = width.saturating_sub(used);
        let Some(spans) = segment(room) else { continue };
        let w = spans_width(&spans);
        if w == 0 || w > room {
            continue;
        }
        used += w + 2;
        out.extend(spans);
        out.push(Span::raw("  "));
    }
    out
}

pub(super) fn draw_status(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let width = area.width as usize;
    let lines = vec![
        Line::from(connections_line(app, styles, width)),
        Line::from(rates_line(app, styles, width)),
    ];
    frame.render_widget(Paragraph::new(lines).style(styles.status_bar), area);
}

/// The worst check and how many are not well, or how the connections stand before any
/// diagnosis: the reason the tool exists, so always first.
fn verdict(app: &App, styles: &Styles, room: usize) -> Vec<Span<'static>> {
    let not_ok = app
        .health
        .checks
        .iter()
        .filter(|c| c.status >= Status::Warn)
        .count();
    match app.health.checks.first() {
        Some(top) if top.status >= Status::Warn => {
            let count = if not_ok > 1 {
                format!(" (+{})", not_ok - 1)
            } else {
                String::new()
            };
            let text = format!("{} {}", top.status.symbol(), top.name);
            let text = fit(&text, room.saturating_sub(width_of(&count)).max(8));
            vec![Span::styled(
                format!("{text}{count}"),
                if top.status == Status::Fail {
                    styles.error
                } else {
                    styles.warn
                },
            )]
        }
        Some(_) => vec![Span::styled("✓ healthy", styles.ok)],
        None => vec![Span::styled("? not judged yet", styles.dim)],
    }
}

/// A connection as `name ● text`, its text cut to the room there is (at least `min`
/// columns of it, or it is left out).
fn connection(
    name: &'static str,
    c: &Connection,
    styles: &Styles,
    room: usize,
    min: usize,
) -> Option<Vec<Span<'static>>> {
    let head = width_of(name) + 3;
    let text_room = room.checked_sub(head)?;
    let text = if c.text.is_empty() {
        String::new()
    } else if text_room < min.min(width_of(&c.text)) {
        return (room >= head)
            .then(|| vec![Span::styled(format!("{name} "), styles.dim), dot(c, styles)]);
    } else {
        fit(&c.text, text_room)
    };
    Some(vec![
        Span::styled(format!("{name} "), styles.dim),
        dot(c, styles),
        Span::raw(if text.is_empty() {
            String::new()
        } else {
            format!(" {text}")
        }),
    ])
}

/// Verdict, mode, listener, database, gateway, and the name of the program if there is
/// room left, in that order of importance.
fn connections_line(app: &App, styles: &Styles, width: usize) -> Vec<Span<'static>> {
    let s = &app.status.info;
    let mut segments: Vec<Segment<'_>> = vec![Box::new(|room| Some(verdict(app, styles, room)))];
    match &app.mode {
        Mode::Replay(file) => {
            segments.push(Box::new(move |room| {
                Some(vec![Span::styled(
                    fit(&format!("REPLAY {file}"), room),
                    styles.warn,
                )])
            }));
        }
        mode => {
            if *mode == Mode::Watch {
                segments.push(Box::new(|_| {
                    Some(vec![Span::styled("WATCH read-only", styles.warn)])
                }));
            }
            segments.push(Box::new(|room| {
                connection("listener", &s.listener, styles, room, 12)
            }));
            segments.push(Box::new(|room| {
                connection("db", &s.database, styles, room, 16)
            }));
            segments.push(Box::new(|room| {
                if s.simulated && s.gateway.text.is_empty() {
                    Some(vec![
                        Span::styled("gateway ", styles.dim),
                        Span::styled("◌ simulated", styles.dim),
                    ])
                } else {
                    connection("gateway", &s.gateway, styles, room, 10)
                }
            }));
        }
    }
    segments.push(Box::new(|_| {
        Some(vec![Span::styled(" notifyscope ", styles.key)])
    }));
    place(width, segments)
}

/// The view's state first (it explains what is on screen), then messages a second per
/// stage with sparklines as wide as the room left, the backlog, and latency where it fits.
fn rates_line(app: &App, styles: &Styles, width: usize) -> Vec<Span<'static>> {
    let s = &app.status.info;
    let mut state: Vec<Span<'static>> = Vec::new();
    if app.stages.paused {
        state.push(Span::styled(
            format!(" PAUSED, {} new ", app.stages.pending()),
            styles.toast,
        ));
    }
    if app.zoom {
        state.push(Span::styled(" ZOOM ", styles.toast));
    }
    if let Some(f) = &app.stages.filter {
        state.push(Span::styled(
            format!(" filter: {} ", fit(&f.text, 20)),
            styles.warn,
        ));
    }
    if let Some(f) = &app.stages.search {
        state.push(Span::styled(
            format!(" search: {} ", fit(&f.text, 20)),
            styles.warn,
        ));
    }
    if let Some(id) = app.stages.followed {
        state.push(Span::styled(
            format!(" following {} ", short_id(Some(id))),
            styles.followed,
        ));
    }
    if s.lagged > 0 {
        // The screen fell behind the trace: these events were never shown.
        state.push(Span::styled(format!(" missed {} ", s.lagged), styles.error));
    }
    let backlog = match s.backlog {
        Some(0) => vec![
            Span::styled("backlog ", styles.dim),
            Span::styled("0", styles.ok),
        ],
        Some(n) => vec![
            Span::styled("backlog ", styles.dim),
            Span::styled(n.to_string(), styles.warn),
        ],
        None => vec![
            Span::styled("backlog ", styles.dim),
            Span::styled("?", styles.dim),
        ],
    };
    let mut extra: Vec<Span<'static>> = Vec::new();
    let dropped: u64 = app.stages.dropped();
    if s.backpressure > 0 {
        extra.push(Span::styled(
            format!("  queue full ×{}", s.backpressure),
            styles.warn,
        ));
    }
    if dropped > 0 {
        // Old rows beyond --history: the normal life of a busy pane.
        extra.push(Span::styled(format!("  dropped {dropped}"), styles.dim));
    }
    let latency = latency_spans(app, styles);

    let stages = [
        (PaneId::Received, "rx"),
        (PaneId::Published, "pub"),
        (PaneId::Notify, "notify"),
        (PaneId::Ingest, "ingest"),
        (PaneId::Skips, "skip"),
    ];
    let labels: Vec<String> = stages
        .iter()
        .map(|(pane, label)| format!("{label} {}/s", app.status.rates.last(*pane)))
        .collect();
    // The fixed parts first, then the optional ones in order while they fit; what is left
    // goes to the sparklines.
    let mut used = 1
        + spans_width(&state)
        + usize::from(!state.is_empty())
        + labels.iter().map(|l| width_of(l) + 2).sum::<usize>()
        + spans_width(&backlog);
    let with_latency = !latency.is_empty() && used + 2 + spans_width(&latency) <= width;
    if with_latency {
        used += 2 + spans_width(&latency);
    }
    let with_extra = !extra.is_empty() && used + spans_width(&extra) <= width;
    if with_extra {
        used += spans_width(&extra);
    }
    let room = width.saturating_sub(used);
    // What is left goes to the sparklines, evenly; too little for 3 columns each, none.
    let spark = (room / stages.len()).saturating_sub(1).min(30);
    let spark = if spark >= 3 { spark } else { 0 };

    let mut line = vec![Span::raw(" ")];
    if !state.is_empty() {
        line.extend(state);
        line.push(Span::raw(" "));
    }
    for ((pane, _), label) in stages.iter().zip(&labels) {
        let (name, rate) = label.split_once(' ').unwrap_or((label, ""));
        line.push(Span::styled(format!("{name} "), styles.dim));
        line.push(Span::raw(rate.to_owned()));
        if spark > 0 {
            line.push(Span::raw(" "));
            line.push(Span::styled(
                sparkline(app.status.rates.history(*pane), spark),
                styles.sparkline,
            ));
        }
        line.push(Span::raw("  "));
    }
    line.extend(backlog);
    if with_latency {
        line.push(Span::raw("  "));
        line.extend(latency);
    }
    if with_extra {
        line.extend(extra);
    }
    line
}

/// `p50/p99 ms` of the last seconds: the whole path, and publish and ingest where known.
fn latency_spans(app: &App, styles: &Styles) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let stages: &[(Stage, &str)] = if app.mode == Mode::Watch {
        &[(Stage::Row, "row")]
    } else {
        &[(Stage::Total, "total")]
    };
    for (stage, label) in stages {
        if let Some((p50, p99, _)) = app.status.latency.percentiles(*stage) {
            spans.push(Span::styled(format!("{label} p50/p99 "), styles.dim));
            spans.push(Span::raw(format!("{}/{} ms", ms(p50), ms(p99))));
        }
    }
    spans
}

/// Milliseconds in 3 or 4 characters.
pub fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// Unicode block sparkline of the last `width` values.
pub fn sparkline(values: &std::collections::VecDeque<u64>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = values.len().saturating_sub(width);
    let recent: Vec<u64> = values.iter().skip(start).copied().collect();
    let max = recent.iter().copied().max().unwrap_or(0);
    let mut out: String = std::iter::repeat_n(' ', width.saturating_sub(recent.len())).collect();
    for v in recent {
        out.push(match (v * 7).checked_div(max) {
            Some(level) => BARS[level as usize],
            None => ' ',
        });
    }
    out
}

/// Levels of detail of the tab bar, most first.
const TAB_LEVELS: usize = 4;

/// The labels of the tab bar at one level of detail: with row counts; without; tight; with
/// short names.
fn tab_labels(app: &App, level: usize) -> Vec<String> {
    PaneId::ALL
        .iter()
        .map(|pane| {
            let key = app.keymap.label(Action::Focus(*pane));
            let name = if level < 3 {
                pane.short_title()
            } else {
                pane.tab_title()
            };
            let health = (*pane == PaneId::Health)
                .then(|| app.health.checks.first().map(|c| c.status.symbol()))
                .flatten()
                .map(|s| format!(" {s}"))
                .unwrap_or_default();
            let count = match (level, app.pane(*pane)) {
                (0, Some(p)) => format!(" {}", p.len()),
                _ => String::new(),
            };
            if level < 2 {
                format!(" {key} {name}{health}{count} ")
            } else {
                format!("{key} {name}{health}")
            }
        })
        .collect()
}

fn tab_bar_labels(app: &App, width: usize) -> Vec<String> {
    (0..TAB_LEVELS)
        .map(|level| tab_labels(app, level))
        .find(|labels| labels.iter().map(|l| width_of(l) + 1).sum::<usize>() <= width)
        .unwrap_or_else(|| tab_labels(app, TAB_LEVELS - 1))
}

/// Every pane by its number and name, the most detail that fits the width: with row
/// counts, without, then with shorter names.
pub(super) fn draw_tabs(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let labels = tab_bar_labels(app, area.width as usize);
    let mut spans = Vec::new();
    for (pane, label) in PaneId::ALL.iter().zip(labels) {
        let style = if *pane == app.focus {
            styles.title_focused
        } else {
            styles.dim
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::styled("│", styles.border));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The tab under column `x` of the tab bar, as [`draw_tabs`] lays it out.
pub(super) fn tab_at(app: &App, width: u16, x: u16) -> Option<PaneId> {
    let labels = tab_bar_labels(app, width as usize);
    let mut start = 0;
    for (pane, label) in PaneId::ALL.iter().zip(labels) {
        let end = start + width_of(&label) + 1;
        if (x as usize) < end {
            return Some(*pane);
        }
        start = end;
    }
    None
}
