//! One stage of the pipeline: a titled table of the rows in view.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
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

/// A row, formatted by the caller: time (`HH:MM:SS.mmm`), the message id in full (`-` for
/// none), what matters for this stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PaneRow {
    pub time: String,
    pub id: String,
    pub detail: String,
    pub kind: RowKind,
    pub selected: bool,
    /// Belongs to the message being followed.
    pub followed: bool,
    /// Matches the search.
    pub matched: bool,
}

/// Columns the stage-specific text keeps before the time gives way.
const DETAIL_MIN: usize = 24;
/// A Discord snowflake in full.
const ID_FULL: usize = 19;
/// The last eight digits after `…`.
const ID_SHORT: usize = 9;

/// How wide each column is in a pane `width` columns wide. By importance: the message id
/// (in full where the text keeps room), the stage's text (reasons before names, as the
/// caller orders it), and the time, which shrinks to seconds and then leaves.
pub fn column_widths(width: usize) -> (usize, usize, usize) {
    let id = if width >= ID_FULL + 1 + DETAIL_MIN {
        ID_FULL
    } else {
        ID_SHORT.min(width)
    };
    let left = width.saturating_sub(id + 1);
    let time = if left >= 12 + 1 + DETAIL_MIN {
        12
    } else if left >= 8 + 1 + DETAIL_MIN {
        8
    } else {
        0
    };
    let detail = left.saturating_sub(if time > 0 { time + 1 } else { 0 });
    (time, id, detail)
}

/// `id` cut to `width` from the left: the last digits tell snowflakes apart.
fn id_cell(id: &str, width: usize) -> String {
    let n = id.chars().count();
    if n <= width {
        return id.to_owned();
    }
    let tail: String = id.chars().skip(n + 1 - width).collect();
    format!("…{tail}")
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
    /// The header of the stage's own column (`author #channel size`, `reason · author`…).
    pub columns: &'a str,
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
        let (time_w, id_w, detail_w) = column_widths(inner.width as usize);
        let header = [
            ("time", time_w),
            (if id_w > 10 { "message id" } else { "id" }, id_w),
            (self.columns, detail_w),
        ];
        draw_cells(
            buf,
            inner.x,
            inner.y,
            &header.map(|(t, w)| (t.to_owned(), w, s.header)),
        );
        for (i, row) in self
            .rows
            .iter()
            .take(inner.height.saturating_sub(1) as usize)
            .enumerate()
        {
            let y = inner.y + 1 + i as u16;
            let mut base = if row.selected && self.focused {
                s.selected
            } else if row.followed {
                s.followed
            } else {
                Style::default()
            };
            if row.matched {
                base = base.add_modifier(Modifier::UNDERLINED | Modifier::BOLD);
            }
            buf.set_style(Rect::new(inner.x, y, inner.width, 1), base);
            let keep = base_overrides(base);
            let time = if time_w >= 12 {
                row.time.clone()
            } else {
                row.time.chars().take(time_w).collect()
            };
            draw_cells(
                buf,
                inner.x,
                y,
                &[
                    (time, time_w, base.patch(s.dim).patch(keep)),
                    (id_cell(&row.id, id_w), id_w, base.patch(s.text).patch(keep)),
                    (
                        row.detail.clone(),
                        detail_w,
                        base.patch(s.row(row.kind)).patch(keep),
                    ),
                ],
            );
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

/// Cells left to right, each in its column (a column of width 0 is left out), one space
/// between them.
fn draw_cells(buf: &mut Buffer, x: u16, y: u16, cells: &[(String, usize, Style)]) {
    let mut x = x;
    for (text, width, style) in cells {
        if *width == 0 {
            continue;
        }
        buf.set_stringn(x, y, fit(text, *width), *width, *style);
        x = x.saturating_add(*width as u16 + 1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_give_way_by_importance() {
        // A 78-column pane (80 minus borders): the id in full, the time with milliseconds.
        assert_eq!(column_widths(78), (12, 19, 45));
        // A third of 100 columns: the id shortened before the text, then no time.
        assert_eq!(column_widths(31), (0, 9, 21));
        let (time, id, detail) = column_widths(44);
        assert_eq!(id, 19);
        assert!(detail >= 24 && time == 0, "{time} {id} {detail}");
        assert_eq!(id_cell("1199000000000000123", 9), "…00000123");
        assert_eq!(id_cell("1199000000000000123", 19), "1199000000000000123");
        assert_eq!(id_cell("-", 9), "-");
    }
}
