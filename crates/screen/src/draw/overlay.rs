//! The overlays: the help with every key (from the key map) and the detail of a row or a
//! check.

use notifyscope_widgets::Styles;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::app::App;
use crate::draw::status::{ms, sparkline};
use crate::keys::Action;
use crate::logs;
use crate::pane::PaneId;
use crate::views::status::{LATENCY_SPAN, RATE_HISTORY};
use notifyscope_model::trace::latency::Stage;

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

pub(super) fn draw_help(frame: &mut Frame, app: &App, styles: &Styles, scroll: usize) {
    let area = centered(frame.area(), 80, 90);
    let mut lines = Vec::new();
    let keys = &app.keymap;
    let panes: Vec<String> = PaneId::ALL
        .iter()
        .map(|p| format!("{} {}", keys.label(Action::Focus(*p)), p.short_title()))
        .collect();
    lines.push(Line::from(Span::styled(
        format!("Panes: {}", panes.join(" · ")),
        styles.header,
    )));
    lines.push(Line::from(""));
    for (_, bound, help) in &keys.listing {
        let bound: Vec<String> = bound.iter().map(|k| k.to_string()).collect();
        lines.push(Line::from(vec![
            Span::styled(format!("{:>16}  ", bound.join(" / ")), styles.title_focused),
            Span::styled(help.to_string(), styles.text),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(logs::help_line(), styles.dim)));
    lines.push(Line::from(Span::styled(
        format!(
            "Test keys go through the real pipeline; each shows the message id it sent so you can follow it ({}).",
            keys.label(Action::Follow)
        ),
        styles.dim,
    )));
    let closes = format!(
        " {} or {} closes ",
        keys.label(Action::Close),
        keys.label(Action::Help)
    );
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(overlay_block("Keys", styles, &closes))
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}

pub(super) fn draw_lines_overlay(
    frame: &mut Frame,
    app: &App,
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
    let keys = &app.keymap;
    let hint = format!(
        " {}/{} scroll · {} copy · {} follow · {} closes ",
        keys.label(Action::Down),
        keys.label(Action::Up),
        keys.label(Action::Copy),
        keys.label(Action::Follow),
        keys.label(Action::Close)
    );
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text)
            .block(overlay_block(title, styles, &hint))
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}

/// Latency per stage over the last seconds and the rates of the last minute, with
/// sparklines as wide as the overlay.
pub(super) fn draw_stats(frame: &mut Frame, app: &App, styles: &Styles) {
    let area = centered(frame.area(), 90, 90);
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
            "stage", "p50 ms", "p99 ms", "n"
        ),
        styles.dim,
    )));
    for stage in Stage::ALL {
        let (p50, p99, n) = match app.status.latency.percentiles(stage) {
            Some((p50, p99, n)) => (ms(p50), ms(p99), n.to_string()),
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
