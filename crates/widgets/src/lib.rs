//! Pane widgets of notifyscope. They draw what they are given and know nothing of the
//! pipeline: the caller hands over only the rows of the visible window, already formatted, and
//! the named styles of the current theme.

mod health;
mod stage_pane;

pub use health::{health_row_at_line, HealthItem, HealthPane, HealthStatus};
pub use notifyscope_model::text::{fit, fit_parts, fit_whole_numbers, width_of, wrap};
pub use stage_pane::{row_at_line, PaneRow, RowKind, StagePane};

use ratatui::style::Style;
use ratatui::widgets::{Block, BorderType, Borders};

/// The named styles every widget asks for; a theme fills them in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Styles {
    pub text: Style,
    pub dim: Style,
    pub border: Style,
    pub border_focused: Style,
    pub title: Style,
    pub title_focused: Style,
    pub header: Style,
    pub selected: Style,
    pub followed: Style,
    pub error: Style,
    pub warn: Style,
    pub ok: Style,
    pub status_bar: Style,
    pub key: Style,
    pub toast: Style,
    pub overlay: Style,
    pub sparkline: Style,
}

impl Styles {
    /// The border of a pane, by focus.
    pub fn block(&self, focused: bool) -> Style {
        if focused {
            self.border_focused
        } else {
            self.border
        }
    }

    pub fn block_title(&self, focused: bool) -> Style {
        if focused {
            self.title_focused
        } else {
            self.title
        }
    }

    /// The frame of a pane: thick and highlighted when focused.
    pub fn pane_block<'a>(&self, focused: bool, title: ratatui::text::Line<'a>) -> Block<'a> {
        Block::default()
            .borders(Borders::ALL)
            .border_type(if focused {
                BorderType::Thick
            } else {
                BorderType::Rounded
            })
            .border_style(self.block(focused))
            .title(title)
    }

    pub fn row(&self, kind: RowKind) -> Style {
        match kind {
            RowKind::Normal => self.text,
            RowKind::Error => self.error,
            RowKind::Warn => self.warn,
            RowKind::Ok => self.ok,
        }
    }
}

/// Which rows of a window, taking `lines` lines each, fit in `height` lines: the range of
/// rows shown. The selected row always shows; rows above it give way first, then rows below.
pub(crate) fn fitting(
    lines: &[usize],
    selected: Option<usize>,
    height: usize,
) -> std::ops::Range<usize> {
    let (mut first, mut end) = (0, lines.len());
    let total = |first: usize, end: usize| lines[first..end].iter().sum::<usize>();
    while end - first > 1 && total(first, end) > height {
        if selected.is_some_and(|s| s > first) {
            first += 1;
        } else {
            end -= 1;
        }
    }
    first..end
}

/// The row drawn on `line` of a list whose rows take `lines` lines each, `selected` among
/// them, in `height` lines, as [`fitting`] lays them out.
pub(crate) fn row_on_line(
    lines: &[usize],
    selected: Option<usize>,
    height: usize,
    line: usize,
) -> Option<usize> {
    let mut top = 0;
    for i in fitting(lines, selected, height) {
        if line < top + lines[i] {
            return Some(i);
        }
        top += lines[i];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selected_row_always_shows() {
        // Four rows of 1, 3, 1 and 2 lines in 5 lines.
        let lines = [1, 3, 1, 2];
        assert_eq!(fitting(&lines, Some(3), 5), 2..4, "rows above give way");
        assert_eq!(fitting(&lines, Some(0), 5), 0..3, "rows below give way");
        assert_eq!(fitting(&lines, None, 7), 0..4);
        assert_eq!(
            fitting(&[9], Some(0), 5),
            0..1,
            "even when it alone is taller"
        );
        assert_eq!(row_on_line(&lines, Some(0), 5, 0), Some(0));
        assert_eq!(row_on_line(&lines, Some(0), 5, 3), Some(1));
        assert_eq!(row_on_line(&lines, Some(0), 5, 4), Some(2));
        assert_eq!(row_on_line(&lines, Some(0), 5, 5), None);
    }
}
