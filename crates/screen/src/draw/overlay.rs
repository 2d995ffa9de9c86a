//! The overlays: the help with every key (from the key map) and the detail of a row or a
//! check. Their text wraps to the width the overlay has, and they scroll no further than
//! their last line.

use notifyscope_widgets::{width_of, wrap, Styles};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::app::App;
use crate::detail::Overlay;
use crate::draw::status::{duration, sparkline};
use crate::keys::Action;
use crate::logs;
use crate::pane::PaneId;
use crate::views::status::{LATENCY_SPAN, RATE_HISTORY};
use notifyscope_model::trace::latency::Stage;

/// From this width on an overlay leaves a margin on each side, where the panes show; below
/// it every column goes to the text.
const MARGIN_FROM: u16 = 120;
/// Columns of the help's key column at most; longer bindings push their text right.
const KEY_COLUMN: usize = 20;

/// Where an overlay goes on a screen of `area`: the whole width below [`MARGIN_FROM`]
/// columns, nine tenths from there; nine tenths of the height.
pub fn overlay_area(area: Rect) -> Rect {
    let [_, mid, _] = Layout::vertical([
        Constraint::Percentage(5),
        Constraint::Percentage(90),
        Constraint::Percentage(5),
    ])
    .areas(area);
    if area.width < MARGIN_FROM {
        return mid;
    }
    let [_, center, _] = Layout::horizontal([
        Constraint::Percentage(5),
        Constraint::Percentage(90),
        Constraint::Percentage(5),
    ])
    .areas(mid);
    center
}

/// A line of an overlay before it is wrapped: text in a style, after a label column (the
/// keys of the help) whose width its wrapped lines keep free.
struct Source {
    label: Option<(String, Style)>,
    text: String,
    style: Style,
}

impl Source {
    fn text(text: impl Into<String>, style: Style) -> Source {
        Source {
            label: None,
            text: text.into(),
            style,
        }
    }
}

/// The lines of `sources` wrapped to `width` columns.
fn wrapped(sources: &[Source], width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    for s in sources {
        match &s.label {
            None => out.extend(
                wrap(&s.text, width)
                    .into_iter()
                    .map(|l| Line::from(Span::styled(l, s.style))),
            ),
            Some((label, label_style)) => {
                let label_w = width_of(label);
                let pad = " ".repeat(label_w);
                for (i, l) in wrap(&s.text, width.saturating_sub(label_w))
                    .into_iter()
                    .enumerate()
                {
                    let head = if i == 0 { label.clone() } else { pad.clone() };
                    out.push(Line::from(vec![
                        Span::styled(head, *label_style),
                        Span::styled(l, s.style),
                    ]));
                }
            }
        }
    }
    out
}

/// The help: the panes, every key with what it does, the Logs pane's own keys.
fn help_sources(app: &App, styles: &Styles) -> Vec<Source> {
    let keys = &app.keymap;
    let panes: Vec<String> = PaneId::ALL
        .iter()
        .map(|p| format!("{} {}", keys.label(Action::Focus(*p)), p.short_title()))
        .collect();
    let mut sources = vec![
        Source::text(format!("Panes: {}", panes.join(" · ")), styles.header),
        Source::text("", styles.text),
    ];
    let bound: Vec<String> = keys
        .listing
        .iter()
        .map(|(_, bound, _)| {
            let names: Vec<String> = bound.iter().map(|k| k.to_string()).collect();
            names.join(" / ")
        })
        .collect();
    let column = bound
        .iter()
        .map(|b| width_of(b))
        .max()
        .unwrap_or(0)
        .min(KEY_COLUMN);
    for (names, (_, _, help)) in bound.iter().zip(&keys.listing) {
        sources.push(Source {
            label: Some((format!("{names:>column$}  "), styles.title_focused)),
            text: help.clone(),
            style: styles.text,
        });
    }
    sources.push(Source::text("", styles.text));
    sources.push(Source::text(logs::help_line(), styles.dim));
    sources.push(Source::text(
        format!(
            "Test keys go through the real pipeline; each shows the message id it sent so you \
             can follow it ({}).",
            keys.label(Action::Follow)
        ),
        styles.dim,
    ));
    sources
}

/// The lines of a detail: headings (lines that start at the margin) stand out.
fn detail_sources(lines: &[String], styles: &Styles) -> Vec<Source> {
    lines
        .iter()
        .map(|l| {
            let heading = !l.starts_with(' ') && !l.is_empty();
            Source::text(l.clone(), if heading { styles.header } else { styles.text })
        })
        .collect()
}

/// The open overlay's title, its lines wrapped to the overlay on a screen of `area`, and
/// the rows they scroll in; `None` for none, or one that does not scroll.
fn scrolling_text(
    app: &App,
    styles: &Styles,
    area: Rect,
) -> Option<(String, Vec<Line<'static>>, Rect)> {
    let (title, sources) = match app.layers.overlay.as_ref()? {
        Overlay::Help { .. } => ("Keys".to_owned(), help_sources(app, styles)),
        Overlay::Detail { title, lines, .. } => (title.clone(), detail_sources(lines, styles)),
        Overlay::Stats => return None,
    };
    let outer = overlay_area(area);
    let inner = Block::default().borders(Borders::ALL).inner(outer);
    Some((title, wrapped(&sources, inner.width as usize), outer))
}

/// How far the open overlay scrolls on a screen of `area` before its last line is at its
/// bottom; `None` when no overlay that scrolls is open.
pub fn overlay_scroll_max(app: &App, area: Rect) -> Option<usize> {
    let (_, lines, outer) = scrolling_text(app, &Styles::default(), area)?;
    let rows = outer.height.saturating_sub(2) as usize;
    Some(lines.len().saturating_sub(rows))
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

/// The help or a detail, scrolled to `scroll` (no further than its last line).
pub(super) fn draw_scrolling(frame: &mut Frame, app: &App, styles: &Styles, scroll: usize) {
    let Some((title, lines, area)) = scrolling_text(app, styles, frame.area()) else {
        return;
    };
    let keys = &app.keymap;
    let hint = match app.layers.overlay {
        Some(Overlay::Help { .. }) => format!(
            " {}/{} scroll · {} or {} closes ",
            keys.label(Action::Down),
            keys.label(Action::Up),
            keys.label(Action::Close),
            keys.label(Action::Help)
        ),
        _ => format!(
            " {}/{} scroll · {} copy · {} follow · {} closes ",
            keys.label(Action::Down),
            keys.label(Action::Up),
            keys.label(Action::Copy),
            keys.label(Action::Follow),
            keys.label(Action::Close)
        ),
    };
    let rows = area.height.saturating_sub(2) as usize;
    let scroll = scroll.min(lines.len().saturating_sub(rows));
    let mut block = overlay_block(&title, styles, &hint);
    if lines.len() > rows {
        // Where the view is in the text, so that its end is never a guess.
        let last = (scroll + rows).min(lines.len());
        block = block.title(
            Line::from(Span::styled(
                format!(" {}–{last} of {} ", scroll + 1, lines.len()),
                styles.dim,
            ))
            .right_aligned(),
        );
    }
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}

/// Latency per stage over the last seconds and the rates of the last minute, with
/// sparklines as wide as the overlay.
pub(super) fn draw_stats(frame: &mut Frame, app: &App, styles: &Styles) {
    let area = overlay_area(frame.area());
    let inner_width = area.width.saturating_sub(2) as usize;
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "Latency of the last {} s (from the trace)",
            LATENCY_SPAN.as_secs()
        ),
        styles.header,
    ))];
    lines.push(Line::from(Span::styled(
        format!(
            "{:<8}{:>9}{:>9}{:>8}  from → to",
            "stage", "p50", "p99", "n"
        ),
        styles.dim,
    )));
    for stage in Stage::ALL {
        let (p50, p99, n) = match app.status.latency.percentiles(stage) {
            Some((p50, p99, n)) => (duration(p50), duration(p99), n.to_string()),
            None => ("-".into(), "-".into(), "0".into()),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<8}", stage.as_str()), styles.text),
            Span::raw(format!("{p50:>9}{p99:>9}{n:>8}  ")),
            Span::styled(stage.describe(), styles.dim),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Messages a second, the last minute",
        styles.header,
    )));
    for pane in PaneId::STAGES {
        let label = format!(
            "{:<10}{:>6}/s ",
            pane.short_title(),
            app.status.rates.last(pane)
        );
        let spark_width = inner_width.saturating_sub(label.chars().count() + 1);
        lines.push(Line::from(vec![
            Span::styled(label, styles.text),
            Span::styled(
                sparkline(
                    app.status.rates.history(pane),
                    spark_width.min(RATE_HISTORY),
                ),
                styles.sparkline,
            ),
        ]));
    }
    let hint = format!(" {} closes ", app.keymap.label(Action::Close));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(overlay_block("Stats", styles, &hint)),
        area,
    );
}
