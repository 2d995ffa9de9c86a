//! The Logs pane: tui-logger's widget, the keys it takes while focused (one table, read by
//! the key handling, the widget and the help text alike), and its text in a replay.

use crossterm::event::KeyCode;
use notifyscope_widgets::Styles;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use ratatui::Frame;
use tui_logger::{TuiLoggerSmartWidget, TuiWidgetEvent, TuiWidgetState};

/// Keys the log widget takes that go together, and what they do for the help text (`None`:
/// not listed there).
struct LogKeys {
    keys: &'static [(KeyCode, TuiWidgetEvent)],
    help: Option<&'static str>,
}

/// The keys the log widget takes while its pane is focused.
const LOG_KEYS: [LogKeys; 6] = [
    LogKeys {
        keys: &[
            (KeyCode::Up, TuiWidgetEvent::UpKey),
            (KeyCode::Down, TuiWidgetEvent::DownKey),
        ],
        help: Some("pick a target"),
    },
    LogKeys {
        keys: &[
            (KeyCode::Left, TuiWidgetEvent::LeftKey),
            (KeyCode::Right, TuiWidgetEvent::RightKey),
        ],
        help: Some("level shown"),
    },
    LogKeys {
        keys: &[
            (KeyCode::Char('+'), TuiWidgetEvent::PlusKey),
            (KeyCode::Char('-'), TuiWidgetEvent::MinusKey),
        ],
        help: Some("level captured"),
    },
    LogKeys {
        keys: &[(KeyCode::Char('h'), TuiWidgetEvent::HideKey)],
        help: Some("hide the target list"),
    },
    LogKeys {
        keys: &[
            (KeyCode::PageUp, TuiWidgetEvent::PrevPageKey),
            (KeyCode::PageDown, TuiWidgetEvent::NextPageKey),
        ],
        help: Some("page"),
    },
    LogKeys {
        keys: &[(KeyCode::Char('f'), TuiWidgetEvent::FocusKey)],
        help: None,
    },
];

/// What the log widget does with `key`, if it takes it.
pub fn log_event(key: KeyCode) -> Option<TuiWidgetEvent> {
    LOG_KEYS
        .iter()
        .flat_map(|group| group.keys.iter())
        .find(|(k, _)| *k == key)
        .map(|(_, event)| *event)
}

/// The help text's line about the Logs pane.
pub fn help_line() -> String {
    let parts: Vec<String> = LOG_KEYS
        .iter()
        .filter_map(|group| {
            let names: Vec<String> = group.keys.iter().map(|(k, _)| key_name(*k)).collect();
            group.help.map(|h| format!("{} {h}", names.join("/")))
        })
        .collect();
    format!("In the Logs pane: {}.", parts.join(", "))
}

fn key_name(key: KeyCode) -> String {
    match key {
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::Char(c) => c.to_string(),
        other => format!("{other:?}"),
    }
}

/// The Logs pane; `key` is the key that focuses it.
pub fn draw_logs(
    frame: &mut Frame,
    area: Rect,
    key: &str,
    focused: bool,
    styles: &Styles,
    state: &TuiWidgetState,
    replay: bool,
) {
    let title = format!(" {key} Logs ");
    if replay {
        let block = Block::default()
            .borders(Borders::ALL)
            .border_type(BorderType::Rounded)
            .border_style(styles.block(focused))
            .title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new("a replay has no logs").style(styles.dim),
            inner,
        );
        return;
    }
    let widget = TuiLoggerSmartWidget::default()
        .title_log(title)
        .title_target(" targets ")
        .border_style(styles.block(focused))
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .style(styles.text)
        .style_error(styles.error)
        .style_warn(styles.warn)
        .style_info(styles.ok)
        .style_debug(styles.dim)
        .style_trace(styles.dim)
        .output_separator(' ')
        .output_timestamp(Some("%H:%M:%S".into()))
        .output_level(Some(tui_logger::TuiLoggerLevelOutput::Abbreviated))
        .output_target(true)
        .output_file(false)
        .output_line(false)
        .state(state);
    frame.render_widget(widget, area);
}

/// The layer that sends log records to the Logs pane while the screen is drawn: logs must
/// never reach the terminal then. Records of the dependencies that use the `log` crate are
/// taken from Info up (their debug records, a line per query, cost more than they tell).
pub fn pane_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if tui_logger::init_logger(tui_logger::LevelFilter::Info).is_ok() {
        tui_logger::set_default_level(tui_logger::LevelFilter::Info);
    }
    tui_logger::TuiTracingSubscriberLayer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_names_every_listed_key() {
        assert_eq!(
            help_line(),
            "In the Logs pane: ↑/↓ pick a target, ←/→ level shown, +/- level captured, \
             h hide the target list, PgUp/PgDn page."
        );
        assert!(log_event(KeyCode::Char('f')).is_some());
        assert!(log_event(KeyCode::Char('x')).is_none());
    }
}
