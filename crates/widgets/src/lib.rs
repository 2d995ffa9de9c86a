//! Pane widgets of notifyscope. They draw what they are given and know nothing of the
//! pipeline: the caller hands over only the rows of the visible window, already formatted, and
//! the named styles of the current theme.

mod health;
mod stage_pane;

pub use health::{HealthItem, HealthPane, HealthStatus};
pub use notifyscope_model::text::{fit, width_of};
pub use stage_pane::{PaneRow, RowKind, StagePane};

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
