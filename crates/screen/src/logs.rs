//! The Logs pane: tui-logger's widget, the keys it takes while focused (one table, read by
//! the key handling, the widget and the help text alike), and its text in a replay.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crossterm::event::KeyCode;
use notifyscope_widgets::{width_of, Styles};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use ratatui::Frame;
use tui_logger::{TuiLoggerSmartWidget, TuiWidgetEvent, TuiWidgetState};

/// Records handed to the Logs pane since the start.
static RECORDS: AtomicU64 = AtomicU64::new(0);

/// Records handed to the Logs pane since the start.
pub fn records() -> u64 {
    RECORDS.load(Ordering::Relaxed)
}

/// Seconds the rate in the Logs pane's title is taken over.
const RATE_SPAN: usize = 10;

/// Log records a second over the last [`RATE_SPAN`] seconds, from the count of records
/// sampled once a second: it falls to 0 when nothing is logged.
#[derive(Debug, Default)]
pub struct LogRate {
    /// The count at each of the last samples, oldest first.
    samples: VecDeque<u64>,
}

impl LogRate {
    /// Counting from `total` records logged so far, so that the records of the first second
    /// count.
    pub fn from(total: u64) -> LogRate {
        LogRate {
            samples: VecDeque::from([total]),
        }
    }

    /// A second passed and `total` records were logged so far.
    pub fn sample(&mut self, total: u64) {
        if self.samples.len() > RATE_SPAN {
            self.samples.pop_front();
        }
        self.samples.push_back(total);
    }

    pub fn per_second(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) if self.samples.len() > 1 => {
                last.saturating_sub(*first) as f64 / (self.samples.len() - 1) as f64
            }
            _ => 0.0,
        }
    }
}

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

/// The Logs pane; `key` is the key that focuses it, `rate` the records a second of late.
#[allow(clippy::too_many_arguments)]
pub fn draw_logs(
    frame: &mut Frame,
    area: Rect,
    key: &str,
    focused: bool,
    styles: &Styles,
    state: &TuiWidgetState,
    replay: bool,
    rate: f64,
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
    let border = if focused {
        BorderType::Thick
    } else {
        BorderType::Rounded
    };
    let widget = TuiLoggerSmartWidget::default()
        .title_log(title)
        .title_target(" targets ")
        .border_style(styles.block(focused))
        .border_type(border)
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
    retitle_rate(frame.buffer_mut(), area, border, rate);
}

/// What starts the rate in the title of tui-logger's log pane.
const RATE_MARK: &str = "[log=";

/// tui-logger's widget titles its log pane with the average rate over every record it keeps
/// (` [log=156.9/s]`), which stays where it was on a monitor that has gone quiet. This puts
/// the rate of the last seconds in its place, or the border where it does not fit whole: a
/// rate cut short would read as another number.
fn retitle_rate(buf: &mut Buffer, area: Rect, border: BorderType, rate: f64) {
    let y = area.y;
    let cells: Vec<u16> = (area.x..area.right()).collect();
    let symbol = |buf: &Buffer, x: u16| buf[(x, y)].symbol().to_owned();
    let Some(start) = cells.iter().position(|x| {
        RATE_MARK.chars().enumerate().all(|(i, c)| {
            symbol(buf, *x + i as u16) == c.to_string() && *x + (i as u16) < area.right()
        })
    }) else {
        return;
    };
    let start = cells[start];
    // Its end: the `]`, or where the title was cut.
    let end = (start..area.right().saturating_sub(1))
        .find(|x| symbol(buf, *x) == "]")
        .map_or(area.right().saturating_sub(1), |x| x + 1);
    let line = BorderType::border_symbols(border).horizontal_top;
    let text = format!("{RATE_MARK}{rate:.1}/s]");
    let room = area.right().saturating_sub(1).saturating_sub(start) as usize;
    let text = if width_of(&text) <= room {
        text
    } else {
        String::new()
    };
    let width = width_of(&text) as u16;
    let style = buf[(start, y)].style();
    buf.set_string(start, y, &text, style);
    for x in start + width..end.max(start + width).min(area.right().saturating_sub(1)) {
        buf[(x, y)].set_symbol(line);
    }
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
    use tracing_subscriber::Layer;
    tui_logger::TuiTracingSubscriberLayer.and_then(CountRecords)
}

/// Counts the records the Logs pane keeps, for the rate in its title: those at the level it
/// captures by default or more severe (the level captured for one target can be changed in
/// the pane, but its widget does not tell).
struct CountRecords;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountRecords {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::INFO {
            RECORDS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_falls_to_zero_when_nothing_is_logged() {
        let mut rate = LogRate::from(7);
        assert_eq!(rate.per_second(), 0.0);
        rate.sample(1_507);
        assert_eq!(rate.per_second(), 1_500.0);
        for _ in 0..RATE_SPAN {
            rate.sample(1_500);
        }
        assert_eq!(rate.per_second(), 0.0, "ten quiet seconds later");
    }

    #[test]
    fn the_title_shows_the_rate_of_late_or_none() {
        let draw = |width: u16, rate: f64| {
            let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, 6))
                .expect("terminal");
            let state =
                TuiWidgetState::new().set_default_display_level(tui_logger::LevelFilter::Info);
            terminal
                .draw(|f| {
                    let area = f.area();
                    draw_logs(f, area, "7", false, &Styles::default(), &state, false, rate)
                })
                .expect("drawn");
            let buffer = terminal.backend().buffer().clone();
            (0..width)
                .map(|x| buffer[(x, 0)].symbol().to_owned())
                .collect::<String>()
        };
        let top = draw(80, 0.0);
        assert!(top.contains("7 Logs  [log=0.0/s]"), "{top}");
        let top = draw(80, 12.25);
        assert!(top.contains("[log=12.2/s]"), "{top}");
        assert!(top.ends_with("─╮"), "the border goes on: {top}");
        // Too narrow for the whole rate: none, rather than a cut number.
        let top = draw(30, 123.0);
        assert!(!top.contains("[log"), "{top}");
    }

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
