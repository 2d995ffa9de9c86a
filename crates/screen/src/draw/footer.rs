//! The key-hint bar (or the search prompt) at the bottom, and the toasts above it. Every key
//! shown comes from the key map.

use notifyscope_widgets::{fit_whole_numbers, width_of, wrap, Styles};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::app::{App, InputKind, Prompt};
use crate::keys::Action;

/// What starts a confirmation's question.
const CONFIRM_LABEL: &str = " confirm ";

/// A confirmation's question wrapped to a screen `width` columns wide, after its label.
fn question_lines(question: &str, width: usize) -> Vec<String> {
    wrap(question, width.saturating_sub(width_of(CONFIRM_LABEL) + 1))
}

/// Lines the prompt takes above the footer: a confirmation's question.
fn prompt_lines(app: &App, width: usize) -> u16 {
    match &app.layers.prompt {
        Some(Prompt::Confirm { question, .. }) => question_lines(question, width).len() as u16,
        _ => 0,
    }
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

pub(super) fn draw_footer(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    match &app.layers.prompt {
        Some(Prompt::Input { kind, text, error }) => {
            let (label, sigil) = match kind {
                InputKind::Filter => (" filter ", "/"),
                InputKind::Search => (" search ", "?"),
            };
            let mut spans = vec![
                Span::styled(label, styles.key),
                Span::raw(format!(" {sigil}{text}█ ")),
            ];
            match error {
                Some(e) => spans.push(Span::styled(format!(" {e} · fix it, or Esc"), styles.error)),
                None => spans.push(Span::styled(
                    " Enter apply · Esc cancel · substring, or re:REGEX",
                    styles.dim,
                )),
            }
            frame.render_widget(Paragraph::new(Line::from(spans)), area);
            return;
        }
        Some(Prompt::Confirm { question, choices }) => {
            // The question on the lines above, wrapped to the width; the choices on this one.
            let lines = question_lines(question, area.width as usize);
            let height = (lines.len() as u16).min(area.y);
            let above = Rect::new(area.x, area.y - height, area.width, height);
            let text: Vec<Line> = lines
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    let head = if i == 0 {
                        Span::styled(CONFIRM_LABEL, styles.key)
                    } else {
                        Span::raw(" ".repeat(width_of(CONFIRM_LABEL)))
                    };
                    Line::from(vec![head, Span::styled(format!(" {l}"), styles.warn)])
                })
                .collect();
            frame.render_widget(Clear, above);
            frame.render_widget(Paragraph::new(text).style(styles.overlay), above);
            let mut spans = Vec::new();
            for (key, label, _) in choices {
                spans.push(Span::styled(format!(" {key} "), styles.key));
                spans.push(Span::raw(format!(" {label} ")));
            }
            // The reminder gives way before a choice would.
            let other = " any other key: nothing";
            let used: usize = spans.iter().map(|s| width_of(&s.content)).sum();
            if used + width_of(other) <= area.width as usize {
                spans.push(Span::styled(other, styles.dim));
            }
            frame.render_widget(Paragraph::new(Line::from(spans)), area);
            return;
        }
        None => {}
    }
    let hints = app.hints();
    // Hints in order of use; the last ones give way on a narrow terminal, never half-shown.
    let mut spans = Vec::new();
    let mut used = 0;
    let width = area.width as usize;
    for (action, label) in hints {
        let hint = key_hint(app, action, label, styles);
        let w: usize = hint.iter().map(|s| width_of(&s.content)).sum();
        if used + w > width {
            break;
        }
        used += w;
        spans.extend(hint);
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub(super) fn draw_toasts(frame: &mut Frame, app: &App, styles: &Styles, footer: Rect) {
    let area = frame.area();
    // A confirmation's question takes the lines above the footer: toasts go above it.
    let above = 1 + prompt_lines(app, footer.width as usize);
    for (i, text) in app.status.toasts().rev().enumerate() {
        let width = (notifyscope_widgets::width_of(text) as u16 + 2).min(area.width);
        let y = footer.y.saturating_sub(above + i as u16);
        if y < area.y + 2 {
            break;
        }
        let r = Rect::new(area.right().saturating_sub(width), y, width, 1);
        frame.render_widget(Clear, r);
        frame.render_widget(
            Paragraph::new(format!(
                " {} ",
                fit_whole_numbers(text, width.saturating_sub(2) as usize)
            ))
            .style(styles.toast),
            r,
        );
    }
}
