//! One stage of the pipeline: a titled table of the rows in view.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::{fit, fit_whole_numbers, fitting, width_of, wrap, Styles};

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

/// Lines a failure row takes at most; the rest of its text is in its detail (Enter).
const FAILURE_LINES: usize = 4;

/// The lines of `row`'s own text in a column `width` wide: a failure wraps, for its cause
/// comes after what failed; any other row is one line. Cut, neither cuts inside a number.
fn detail_lines(row: &PaneRow, width: usize) -> Vec<String> {
    if row.kind != RowKind::Error || width == 0 {
        return vec![fit_whole_numbers(&row.detail, width)];
    }
    let mut lines = wrap(&row.detail, width);
    if lines.len() > FAILURE_LINES {
        let rest = lines[FAILURE_LINES - 1..].join(" ");
        lines.truncate(FAILURE_LINES - 1);
        lines.push(fit_whole_numbers(&rest, width));
    }
    lines
}

/// The row of `rows` (the window a [`StagePane`] is given) drawn on `line` of the list of a
/// pane whose list is `width` columns wide and `height` lines high, as the pane lays it out.
pub fn row_at_line(rows: &[PaneRow], width: usize, height: usize, line: usize) -> Option<usize> {
    let (_, _, detail_w) = column_widths(width);
    let lines: Vec<usize> = rows
        .iter()
        .map(|r| detail_lines(r, detail_w).len())
        .collect();
    crate::row_on_line(&lines, rows.iter().position(|r| r.selected), height, line)
}

/// A stage pane with only the rows of its visible window.
pub struct StagePane<'a> {
    pub title: &'a str,
    /// Its title where the whole one does not fit.
    pub short_title: &'a str,
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
        let title = self.title_spans((area.width as usize).saturating_sub(2));
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
        let height = inner.height.saturating_sub(1) as usize;
        let texts: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| detail_lines(r, detail_w))
            .collect();
        let lines: Vec<usize> = texts.iter().map(Vec::len).collect();
        let shown = fitting(&lines, self.rows.iter().position(|r| r.selected), height);
        let above = self.above + shown.start;
        let mut y = inner.y + 1;
        for i in shown {
            let row = &self.rows[i];
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
            let keep = base_overrides(base);
            let time = if time_w >= 12 {
                row.time.clone()
            } else {
                row.time.chars().take(time_w).collect()
            };
            for (n, text) in texts[i].iter().enumerate() {
                if y >= inner.bottom() {
                    break;
                }
                buf.set_style(Rect::new(inner.x, y, inner.width, 1), base);
                // A wrapped row's later lines continue its text under its own column.
                let (time, id) = if n == 0 {
                    (time.clone(), id_cell(&row.id, id_w))
                } else {
                    (String::new(), String::new())
                };
                draw_cells(
                    buf,
                    inner.x,
                    y,
                    &[
                        (time, time_w, base.patch(s.dim).patch(keep)),
                        (id, id_w, base.patch(s.text).patch(keep)),
                        (
                            text.clone(),
                            detail_w,
                            base.patch(s.row(row.kind)).patch(keep),
                        ),
                    ],
                );
                y += 1;
            }
        }
        if above > 0 {
            // On the bottom border, where it cannot cover the title.
            let marker = format!(" ↑{above} ");
            let x = inner.right().saturating_sub(marker.chars().count() as u16);
            if x > inner.x {
                buf.set_string(x, inner.bottom(), marker, s.dim);
            }
        }
    }
}

impl StagePane<'_> {
    /// The title in `room` columns: the key, the name, the rows shown and those dropped.
    /// What does not fit gives way whole, never cut into a different number: the long name
    /// first (for the short one), then the dropped count, then the count of rows.
    fn title_spans(&self, room: usize) -> Vec<Span<'static>> {
        let s = self.styles;
        let key = Span::styled(format!(" {} ", self.key), s.key);
        let count = Span::styled(format!("{} ", self.shown), s.dim);
        let dropped =
            (self.dropped > 0).then(|| Span::styled(format!("+{} dropped ", self.dropped), s.dim));
        let name = |title: &str| Span::styled(format!("{title} "), s.block_title(self.focused));
        let choices = [
            vec![Some(name(self.title)), Some(count.clone()), dropped.clone()],
            vec![Some(name(self.short_title)), Some(count.clone()), dropped],
            vec![Some(name(self.short_title)), Some(count)],
            vec![Some(name(self.short_title))],
            vec![],
        ];
        for parts in choices {
            let mut spans = vec![key.clone()];
            spans.extend(parts.into_iter().flatten());
            if spans.iter().map(|t| width_of(&t.content)).sum::<usize>() <= room {
                return spans;
            }
        }
        vec![key]
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
