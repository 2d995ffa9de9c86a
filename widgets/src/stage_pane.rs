//! One stage of the pipeline: a titled table of the rows in view.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::{fit, Styles};

/// How a row reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowKind {
    #[default]
    Normal,
    Error,
    Warn,
    Ok,
}

/// A row, formatted by the caller: time, short message id, what matters for this stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PaneRow {
    pub time: String,
    pub id: String,
    pub detail: String,
    pub kind: RowKind,
    pub selected: bool,
    /// Belongs to the message being followed.
    pub followed: bool,
}

/// A stage pane with only the rows of its visible window.
pub struct StagePane<'a> {
    pub title: &'a str,
    /// The key that focuses it.
    pub key: &'a str,
    /// Rows in view (after the filter), and rows dropped from the bounded history.
    pub shown: usize,
    pub dropped: u64,
    pub focused: bool,
    /// Position of the window: rows above it.
    pub above: usize,
    pub rows: &'a [PaneRow],
    pub empty_hint: &'a str,
    pub styles: &'a Styles,
}

impl Widget for &StagePane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let s = self.styles;
        let mut title = vec![
            Span::styled(format!(" {} ", self.key), s.key),
            Span::styled(format!("{} ", self.title), s.block_title(self.focused)),
            Span::styled(format!("{} ", self.shown), s.dim),
        ];
        if self.dropped > 0 {
            title.push(Span::styled(format!("+{} dropped ", self.dropped), s.dim));
        }
        let block = s.pane_block(self.focused, Line::from(title));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width == 0 {
            return;
        }
        if self.rows.is_empty() {
            let hint = fit(self.empty_hint, inner.width as usize);
            buf.set_stringn(inner.x, inner.y, hint, inner.width as usize, s.dim);
            return;
        }
        let width = inner.width as usize;
        for (i, row) in self.rows.iter().take(inner.height as usize).enumerate() {
            let y = inner.y + i as u16;
            let base = if row.selected && self.focused {
                s.selected
            } else if row.followed {
                s.followed
            } else {
                Style::default()
            };
            buf.set_style(Rect::new(inner.x, y, inner.width, 1), base);
            let mut x = inner.x;
            let mut remaining = width;
            for (text, style) in [
                (row.time.as_str(), s.dim),
                (row.id.as_str(), s.text),
                (row.detail.as_str(), s.row(row.kind)),
            ] {
                if remaining == 0 {
                    break;
                }
                let cell = fit(text, remaining);
                let (next_x, _) = buf.set_stringn(
                    x,
                    y,
                    &cell,
                    remaining,
                    base.patch(style).patch(base_overrides(base)),
                );
                let used = (next_x - x) as usize;
                remaining = remaining.saturating_sub(used + 1);
                x = next_x.saturating_add(1);
            }
        }
        if self.above > 0 {
            // On the bottom border, where it cannot cover the title.
            let marker = format!(" ↑{} ", self.above);
            let x = inner.right().saturating_sub(marker.chars().count() as u16);
            if x > inner.x {
                buf.set_string(x, inner.bottom(), marker, s.dim);
            }
        }
    }
}

/// A selected or followed row keeps its highlight over the cell colours.
fn base_overrides(base: Style) -> Style {
    Style {
        bg: base.bg,
        add_modifier: base.add_modifier,
        ..Style::default()
    }
}
