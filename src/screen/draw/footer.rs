//! The key-hint bar (or the search prompt) at the bottom, and the toasts above it. Every key
//! shown comes from the key map.

use notifyscope_widgets::{fit, Styles};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::pipeline::synthetic::SimKind;
use crate::screen::app::{App, Mode};
use crate::screen::keys::Action;

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

pub(super) fn draw_toasts(frame: &mut Frame, app: &App, styles: &Styles, footer: Rect) {
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
