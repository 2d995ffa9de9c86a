//! The key-hint bar (or the search prompt) at the bottom, and the toasts above it. Every key
//! shown comes from the key map.

use notifyscope_widgets::{fit, width_of, Styles};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::app::{App, InputKind, Prompt};
use crate::keys::Action;

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
            // The question on the line above, the choices on this one: both whole at 80
            // columns.
            if area.y > 0 {
                let above = Rect::new(area.x, area.y - 1, area.width, 1);
                frame.render_widget(Clear, above);
                frame.render_widget(
                    Paragraph::new(Line::from(vec![
                        Span::styled(" confirm ", styles.key),
                        Span::styled(
                            format!(
                                " {}",
                                fit(question, (area.width as usize).saturating_sub(11))
                            ),
                            styles.warn,
                        ),
                    ]))
                    .style(styles.overlay),
                    above,
                );
            }
            let mut spans = Vec::new();
            for (key, label, _) in choices {
                spans.push(Span::styled(format!(" {key} "), styles.key));
                spans.push(Span::raw(format!(" {label} ")));
            }
            spans.push(Span::styled(" any other key: nothing", styles.dim));
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
    // A confirmation's question takes the line above the footer: toasts go above it.
    let above = 1 + u16::from(matches!(app.layers.prompt, Some(Prompt::Confirm { .. })));
    for (i, text) in app.status.toasts().rev().enumerate() {
        let width = (notifyscope_widgets::width_of(text) as u16 + 2).min(area.width);
        let y = footer.y.saturating_sub(above + i as u16);
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
