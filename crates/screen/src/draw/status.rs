//! The status bar and the tab bar of small terminals. Both are laid out for the width they
//! have: what matters most is placed first and what does not fit gives way, never the
//! other way round (at 80 columns the health verdict and the listener must still show).

use notifyscope_widgets::{fit, fit_parts, fit_whole_numbers, width_of, Styles};
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
use notifyscope_model::trace::{Status, Verdict};

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

/// The worst check and how many more need attention; with none failing or warning, the
/// verdict over the checks (`? 7 unknown · ✓ 7 ok`, healthy only when every check was
/// judged and holds); before any diagnosis, that there is none. The reason the tool exists,
/// so always first.
fn verdict(app: &App, styles: &Styles, room: usize) -> Vec<Span<'static>> {
    let checks = &app.health.checks;
    let not_ok = checks.iter().filter(|c| c.status >= Status::Warn).count();
    match checks.first() {
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
        Some(_) => {
            let verdict = Verdict::of(checks.iter().map(|c| c.status));
            let parts: Vec<String> = verdict.words().split(" · ").map(str::to_owned).collect();
            // The unknown count before the ok one; what does not fit is left out whole.
            let first = parts.first().map(|p| width_of(p)).unwrap_or(0);
            let words = fit_parts(&parts, " · ", room.max(first));
            let style = if verdict.healthy() {
                styles.ok
            } else {
                styles.dim
            };
            vec![Span::styled(words, style)]
        }
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
        fit_whole_numbers(&c.text, text_room)
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

/// A part of the rates line and its rank: when the line is too narrow, the parts of the
/// lowest rank give way first, whole, wherever they stand.
struct Part {
    rank: u8,
    spans: Vec<Span<'static>>,
    /// The stage pane whose rate it is: it gets a sparkline from the room left over.
    rate_of: Option<PaneId>,
    /// Spaces after it: one after a badge of the view's state, which has its own padding.
    gap: usize,
}

impl Part {
    fn new(rank: u8, spans: Vec<Span<'static>>) -> Part {
        Part {
            rank,
            spans,
            rate_of: None,
            gap: 2,
        }
    }
}

/// The view's state first (it explains what is on screen), then messages a second per
/// stage with sparklines as wide as the room left, the backlog, and latency where it fits.
/// What does not fit gives way whole, by rank, never cut: a number cut short reads as
/// another number. The view's state and the backlog go last, the rates from the end of the
/// path first.
fn rates_line(app: &App, styles: &Styles, width: usize) -> Vec<Span<'static>> {
    let s = &app.status.info;
    let badge = |rank, text: String, style| Part {
        gap: 1,
        ..Part::new(rank, vec![Span::styled(text, style)])
    };
    let mut parts = Vec::new();
    if app.stages.paused {
        let text = format!(" PAUSED, {} new ", app.stages.pending());
        parts.push(badge(12, text, styles.toast));
    }
    if s.lagged > 0 {
        // The screen fell behind the trace: these events were never shown.
        parts.push(badge(12, format!(" missed {} ", s.lagged), styles.error));
    }
    if app.zoom {
        parts.push(badge(11, " ZOOM ".into(), styles.toast));
    }
    if let Some(f) = &app.stages.filter {
        let text = format!(" filter: {} ", fit_whole_numbers(&f.text, 20));
        parts.push(badge(11, text, styles.warn));
    }
    if let Some(f) = &app.stages.search {
        let text = format!(" search: {} ", fit_whole_numbers(&f.text, 20));
        parts.push(badge(11, text, styles.warn));
    }
    if let Some(id) = app.stages.followed {
        let text = format!(" following {} ", short_id(Some(id)));
        parts.push(badge(10, text, styles.followed));
    }
    for (rank, (pane, label)) in [
        (7, (PaneId::Received, "rx")),
        (6, (PaneId::Published, "pub")),
        (5, (PaneId::Notify, "notify")),
        (4, (PaneId::Ingest, "ingest")),
        (3, (PaneId::Skips, "skip")),
    ] {
        parts.push(Part {
            rank,
            spans: vec![
                Span::styled(format!("{label} "), styles.dim),
                Span::raw(format!("{}/s", app.status.rates.last(pane))),
            ],
            rate_of: Some(pane),
            gap: 2,
        });
    }
    let backlog = match s.backlog {
        Some(0) => Span::styled("0", styles.ok),
        Some(n) => Span::styled(n.to_string(), styles.warn),
        None => Span::styled("?", styles.dim),
    };
    parts.push(Part::new(
        9,
        vec![Span::styled("backlog ", styles.dim), backlog],
    ));
    let latency = latency_spans(app, styles);
    if !latency.is_empty() {
        parts.push(Part::new(2, latency));
    }
    if s.backpressure > 0 {
        let text = format!("queue full ×{}", s.backpressure);
        parts.push(Part::new(8, vec![Span::styled(text, styles.warn)]));
    }
    let dropped: u64 = app.stages.dropped();
    if dropped > 0 {
        // Old rows beyond --history: the normal life of a busy pane.
        let text = format!("dropped {dropped}");
        parts.push(Part::new(1, vec![Span::styled(text, styles.dim)]));
    }

    // The gap after the last part is not needed: the width may take it.
    const SEPARATOR: usize = 2;
    let line_width = |parts: &[Part]| -> usize {
        1 + parts
            .iter()
            .map(|p| spans_width(&p.spans) + p.gap)
            .sum::<usize>()
    };
    while line_width(&parts) > width + SEPARATOR {
        let Some(lowest) = parts.iter().map(|p| p.rank).min() else {
            break;
        };
        if let Some(at) = parts.iter().rposition(|p| p.rank == lowest) {
            parts.remove(at);
        }
    }
    // What is left goes to the sparklines, evenly; too little for 3 columns each, none.
    let room = (width + SEPARATOR).saturating_sub(line_width(&parts));
    let rates = parts.iter().filter(|p| p.rate_of.is_some()).count().max(1);
    let spark = (room / rates).saturating_sub(1).min(30);
    let spark = if spark >= 3 { spark } else { 0 };
    let mut line = vec![Span::raw(" ")];
    for part in parts {
        line.extend(part.spans);
        if let (Some(pane), true) = (part.rate_of, spark > 0) {
            line.push(Span::raw(" "));
            line.push(Span::styled(
                sparkline(app.status.rates.history(pane), spark),
                styles.sparkline,
            ));
        }
        line.push(Span::raw(" ".repeat(part.gap)));
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
            spans.push(Span::raw(format!("{}/{}", duration(p50), duration(p99))));
        }
    }
    spans
}

/// A duration given in milliseconds, as people say it (`7.0ms`, `1.5s`, `11m 44s`).
pub fn duration(ms: f64) -> String {
    notifyscope_model::text::duration_ms(ms)
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
