//! The health pane: diagnosis checks, worst first.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::{fit, Styles};

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
    /// Checks from a diagnosis; without one the items are the connection states and the
    /// title says nothing was judged.
    pub judged: bool,
    /// Items above the first one shown.
    pub top: usize,
    pub items: &'a [HealthItem],
    pub styles: &'a Styles,
}

impl Widget for &HealthPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let s = self.styles;
        let failing = self
            .items
            .iter()
            .filter(|i| i.status >= HealthStatus::Warn)
            .count();
        let block = s.pane_block(
            self.focused,
            Line::from(vec![
                Span::styled(format!(" {} ", self.key), s.key),
                Span::styled("Health ", s.block_title(self.focused)),
                if !self.judged {
                    Span::styled("not judged yet ", s.dim)
                } else if failing == 0 {
                    Span::styled("all ok ", s.ok)
                } else {
                    Span::styled(format!("{failing} need attention "), s.error)
                },
            ]),
        );
        let inner = block.inner(area);
        block.render(area, buf);
        let width = inner.width as usize;
        for (i, item) in self
            .items
            .iter()
            .skip(self.top)
            .take(inner.height as usize)
            .enumerate()
        {
            let y = inner.y + i as u16;
            let style = match item.status {
                HealthStatus::Ok => s.ok,
                HealthStatus::Unknown => s.dim,
                HealthStatus::Warn => s.warn,
                HealthStatus::Fail => s.error,
            };
            let base = if item.selected && self.focused {
                s.selected
            } else {
                ratatui::style::Style::default()
            };
            buf.set_style(Rect::new(inner.x, y, inner.width, 1), base);
            let line = format!("{} {}:", item.status.symbol(), item.name);
            let (x, _) = buf.set_stringn(inner.x, y, fit(&line, width), width, style.patch(base));
            let used = (x - inner.x) as usize;
            if used + 2 < width {
                buf.set_stringn(
                    x + 1,
                    y,
                    fit(&item.summary, width - used - 1),
                    width - used - 1,
                    s.dim.patch(base),
                );
            }
        }
    }
}
