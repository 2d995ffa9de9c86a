//! Layout and drawing: one file per region of the screen. Everything here reads the [`App`];
//! nothing changes it, and nothing does I/O.

mod footer;
mod overlay;
mod panes;
mod status;

use notifyscope_widgets::Styles;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::screen::app::{App, ClickTarget};
use crate::screen::detail::Overlay;
use crate::screen::pane::PaneId;

pub use status::sparkline;

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;
/// All five stage panes side by side from this width.
pub const WIDE: u16 = 160;
/// A grid from this width; tabs below it.
pub const GRID: u16 = 100;

/// Where everything goes for a terminal size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Areas {
    pub too_small: bool,
    pub status: Rect,
    pub tabs: Option<Rect>,
    /// By [`PaneId`] index; `None` when the pane is not shown (tabs).
    pub panes: [Option<Rect>; 7],
    pub footer: Rect,
}

/// Rows of a pane's list inside `area`: within the border, below the column headers of a
/// stage pane.
pub fn list_rows(pane: PaneId, area: Rect) -> usize {
    let inner = area.height.saturating_sub(2) as usize;
    if PaneId::STAGES.contains(&pane) {
        inner.saturating_sub(1)
    } else {
        inner
    }
}

pub fn areas(area: Rect, focus: PaneId, zoom: bool) -> Areas {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return Areas {
            too_small: true,
            ..Areas::default()
        };
    }
    let [status, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    let mut panes = [None; 7];
    let mut tabs = None;
    if zoom {
        panes[focus.index()] = Some(body);
    } else if area.width >= WIDE {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
        let columns = Layout::horizontal([Constraint::Ratio(1, 5); 5]).split(top);
        for (i, r) in columns.iter().enumerate() {
            panes[i] = Some(*r);
        }
        let [health, logs] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)])
                .areas(bottom);
        panes[PaneId::Health.index()] = Some(health);
        panes[PaneId::Logs.index()] = Some(logs);
    } else if area.width >= GRID {
        let rows = Layout::vertical([
            Constraint::Percentage(38),
            Constraint::Percentage(36),
            Constraint::Percentage(26),
        ])
        .split(body);
        let first = Layout::horizontal([Constraint::Ratio(1, 3); 3]).split(rows[0]);
        let second = Layout::horizontal([Constraint::Ratio(1, 3); 3]).split(rows[1]);
        for (i, r) in first.iter().chain(second.iter()).enumerate() {
            panes[i] = Some(*r);
        }
        panes[PaneId::Logs.index()] = Some(rows[2]);
    } else {
        let [tab_bar, content] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(body);
        tabs = Some(tab_bar);
        panes[focus.index()] = Some(content);
    }
    Areas {
        too_small: false,
        status,
        tabs,
        panes,
        footer,
    }
}

/// Rows of its list each pane shows.
pub fn pane_heights(area: Rect, focus: PaneId, zoom: bool) -> [usize; 7] {
    let a = areas(area, focus, zoom);
    std::array::from_fn(|i| {
        a.panes[i]
            .map(|r| list_rows(PaneId::ALL[i], r))
            .unwrap_or(0)
    })
}

/// What is under the pointer at (`x`, `y`) on a screen of `area`, as [`draw`] lays it out.
pub fn pointer_target(app: &App, area: Rect, x: u16, y: u16) -> Option<ClickTarget> {
    let a = areas(area, app.focus, app.zoom);
    if a.too_small {
        return None;
    }
    let inside = |r: Rect| x >= r.x && x < r.right() && y >= r.y && y < r.bottom();
    if let Some(tabs) = a.tabs.filter(|t| inside(*t)) {
        return status::tab_at(app, tabs.width, x - tabs.x).map(ClickTarget::Tab);
    }
    let (i, r) = a
        .panes
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.filter(|r| inside(*r)).map(|r| (i, r)))?;
    let pane = PaneId::ALL[i];
    // Below the border, and below the column headers of a stage pane.
    let first = r.y + 1 + u16::from(PaneId::STAGES.contains(&pane));
    let row = (y >= first && y < r.bottom().saturating_sub(1)).then(|| (y - first) as usize);
    Some(ClickTarget::Pane { pane, row })
}

/// Draws one frame. `logs` draws the log pane (it needs the logger's own state).
pub fn draw(frame: &mut Frame, app: &App, styles: &Styles, logs: &dyn Fn(&mut Frame, Rect, bool)) {
    let area = frame.area();
    let a = areas(area, app.focus, app.zoom);
    if a.too_small {
        let text = format!(
            "terminal too small: {}×{}, notifyscope needs at least {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(text)
                .style(styles.warn)
                .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    status::draw_status(frame, app, styles, a.status);
    if let Some(tabs) = a.tabs {
        status::draw_tabs(frame, app, styles, tabs);
    }
    for pane in PaneId::STAGES {
        if let Some(r) = a.panes[pane.index()] {
            panes::draw_stage(frame, app, styles, pane, r);
        }
    }
    if let Some(r) = a.panes[PaneId::Health.index()] {
        panes::draw_health(frame, app, styles, r);
    }
    if let Some(r) = a.panes[PaneId::Logs.index()] {
        logs(frame, r, app.focus == PaneId::Logs);
    }
    footer::draw_footer(frame, app, styles, a.footer);
    match &app.overlay {
        Some(Overlay::Help { scroll }) => overlay::draw_help(frame, app, styles, *scroll),
        Some(Overlay::Detail {
            title,
            lines,
            scroll,
            ..
        }) => overlay::draw_lines_overlay(frame, app, styles, title, lines, *scroll),
        Some(Overlay::Stats) => overlay::draw_stats(frame, app, styles),
        None => {}
    }
    footer::draw_toasts(frame, app, styles, a.footer);
}
