//! The health pane: diagnosis checks, worst first.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::{fit, fit_whole_numbers, fitting, width_of, wrap, Styles};

fn status_style(s: &Styles, status: HealthStatus) -> ratatui::style::Style {
    match status {
        HealthStatus::Ok => s.ok,
        HealthStatus::Unknown => s.dim,
        HealthStatus::Warn => s.warn,
        HealthStatus::Fail => s.error,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HealthStatus {
    Ok,
    Unknown,
    Warn,
    Fail,
}

impl HealthStatus {
    pub fn symbol(self) -> &'static str {
        match self {
            HealthStatus::Ok => "✓",
            HealthStatus::Unknown => "?",
            HealthStatus::Warn => "!",
            HealthStatus::Fail => "✗",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthItem {
    pub status: HealthStatus,
    pub name: String,
    /// Evidence in a few words.
    pub summary: String,
    pub selected: bool,
}

pub struct HealthPane<'a> {
    pub key: &'a str,
    pub focused: bool,
    /// The verdict over the checks, worst first, a part per status (`✗ 1 failing`,
    /// `? 7 unknown`, `✓ 6 ok`, or `✓ healthy`); parts that do not fit the title are left
    /// out whole, the least grave first. Empty before a diagnosis: the items are then the
    /// connection states and the title says nothing was judged.
    pub verdict: &'a [(HealthStatus, String)],
    /// Items above the first one shown.
    pub top: usize,
    pub items: &'a [HealthItem],
    pub styles: &'a Styles,
}

impl Widget for &HealthPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let s = self.styles;
        let mut title = vec![
            Span::styled(format!(" {} ", self.key), s.key),
            Span::styled("Health ", s.block_title(self.focused)),
        ];
        if self.verdict.is_empty() {
            title.push(Span::styled("not judged yet ", s.dim));
        } else {
            // Within the border's corners; a part that does not fit is left out, never cut.
            let head: usize = title.iter().map(|t| width_of(&t.content)).sum();
            let mut room = (area.width as usize).saturating_sub(2 + head);
            for (i, (status, words)) in self.verdict.iter().enumerate() {
                let separator = if i == 0 { "" } else { "· " };
                if width_of(separator) + width_of(words) + 1 > room {
                    break;
                }
                room -= width_of(separator) + width_of(words) + 1;
                title.push(Span::styled(separator, s.dim));
                title.push(Span::styled(format!("{words} "), status_style(s, *status)));
            }
        }
        let block = s.pane_block(self.focused, Line::from(title));
        let inner = block.inner(area);
        block.render(area, buf);
        let width = inner.width as usize;
        let height = inner.height as usize;
        let window: Vec<&HealthItem> = self.items.iter().skip(self.top).take(height).collect();
        let texts: Vec<Vec<ItemLine>> = window.iter().map(|i| item_lines(i, width)).collect();
        let lines: Vec<usize> = texts.iter().map(Vec::len).collect();
        let shown = fitting(&lines, window.iter().position(|i| i.selected), height);
        let above = self.top + shown.start;
        if above > 0 {
            // Checks scrolled off the top may be the worst ones: on the bottom border, as the
            // stage panes say it.
            let marker = format!(" ↑{above} ");
            let x = inner.right().saturating_sub(width_of(&marker) as u16);
            if x > inner.x {
                buf.set_string(x, inner.bottom(), marker, s.dim);
            }
        }
        let mut y = inner.y;
        for i in shown {
            let item = window[i];
            let style = status_style(s, item.status);
            let base = if item.selected && self.focused {
                s.selected
            } else {
                ratatui::style::Style::default()
            };
            for line in &texts[i] {
                if y >= inner.bottom() {
                    break;
                }
                buf.set_style(Rect::new(inner.x, y, inner.width, 1), base);
                let (x, _) = buf.set_stringn(inner.x, y, &line.head, width, style.patch(base));
                let used = (x - inner.x) as usize;
                buf.set_stringn(
                    x,
                    y,
                    &line.text,
                    width.saturating_sub(used),
                    s.dim.patch(base),
                );
                y += 1;
            }
        }
    }
}

/// Lines the selected check takes at most; the rest is in its detail (Enter).
const FAILING_LINES: usize = 4;

/// A line of a check's row: the status and name (on the first line only), then text.
struct ItemLine {
    head: String,
    text: String,
}

/// The lines of a check's row in `width` columns: `✓ name: summary` on one line, cut but
/// never inside a number, so that the list stays whole; the selected check wraps, its later lines indented
/// under its name, for what it found (a blocker's pid comes last) and its fix are the point.
fn item_lines(item: &HealthItem, width: usize) -> Vec<ItemLine> {
    let head = fit(&format!("{} {}:", item.status.symbol(), item.name), width);
    let room = width.saturating_sub(width_of(&head) + 1);
    if !item.selected || item.summary.is_empty() {
        let text = if room >= 2 {
            format!(" {}", fit_whole_numbers(&item.summary, room))
        } else {
            String::new()
        };
        return vec![ItemLine { head, text }];
    }
    let full = format!("{head} {}", item.summary);
    let mut wrapped = wrap(&full, width).into_iter();
    let first = wrapped.next().unwrap_or_default();
    let first_text = first.get(head.len()..).unwrap_or_default().to_owned();
    let mut lines = vec![ItemLine {
        head,
        text: first_text,
    }];
    let rest = full
        .get(first.len()..)
        .unwrap_or_default()
        .trim_start_matches(' ');
    if !rest.is_empty() {
        let mut more = wrap(rest, width.saturating_sub(2));
        if more.len() >= FAILING_LINES {
            let tail = more[FAILING_LINES - 2..].join(" ");
            more.truncate(FAILING_LINES - 2);
            more.push(fit_whole_numbers(&tail, width.saturating_sub(2)));
        }
        lines.extend(more.into_iter().map(|text| ItemLine {
            head: String::new(),
            text: format!("  {text}"),
        }));
    }
    lines
}

/// The item of `items` (the checks from the first one a [`HealthPane`] shows) drawn on
/// `line` of a pane whose inside is `width` columns wide and `height` lines high.
pub fn health_row_at_line(
    items: &[HealthItem],
    width: usize,
    height: usize,
    line: usize,
) -> Option<usize> {
    let window = &items[..items.len().min(height)];
    let lines: Vec<usize> = window.iter().map(|i| item_lines(i, width).len()).collect();
    crate::row_on_line(&lines, window.iter().position(|i| i.selected), height, line)
}
