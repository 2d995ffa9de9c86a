//! Layout and drawing: one file per region of the screen. Everything here reads the [`App`];
//! nothing changes it, and nothing does I/O.

mod footer;
pub mod layout;
mod overlay;
mod panes;
mod status;

use notifyscope_widgets::Styles;
use ratatui::layout::Rect;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, ClickTarget};
use crate::detail::Overlay;
use crate::pane::{PaneId, Shows, PANE_COUNT};

pub use layout::{areas, Areas, MIN_HEIGHT, MIN_WIDTH};
pub use overlay::{overlay_area, overlay_scroll_max};
pub use status::sparkline;

/// Rows of a pane's list inside `area`: within the border, below the column headers of a
/// stage pane.
pub fn list_rows(pane: PaneId, area: Rect) -> usize {
    let inner = area.height.saturating_sub(2) as usize;
    if pane.is_stage() {
        inner.saturating_sub(1)
    } else {
        inner
    }
}

/// Rows of its list each pane shows.
pub fn pane_heights(area: Rect, focus: PaneId, zoom: bool) -> [usize; PANE_COUNT] {
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
    let first = r.y + 1 + u16::from(pane.is_stage());
    let line = (y >= first && y < r.bottom().saturating_sub(1)).then(|| (y - first) as usize);
    // A failure row may take several lines: the row drawn on that line, from the first row
    // the pane shows.
    let (width, height) = (r.width.saturating_sub(2) as usize, list_rows(pane, r));
    let row = line.and_then(|line| match pane.spec().shows {
        Shows::Stage(_) => {
            let rows = panes::stage_rows(app, pane, height)?;
            notifyscope_widgets::row_at_line(&rows, width, height, line)
        }
        Shows::Health => {
            let items = panes::health_items(app);
            let top = app.health.top(height).min(items.len());
            notifyscope_widgets::health_row_at_line(&items[top..], width, height, line)
        }
        Shows::Logs => Some(line),
    });
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
    for (pane, r) in PaneId::ALL.into_iter().zip(a.panes) {
        let Some(r) = r else { continue };
        match pane.spec().shows {
            Shows::Stage(_) => panes::draw_stage(frame, app, styles, pane, r),
            Shows::Health => panes::draw_health(frame, app, styles, r),
            Shows::Logs => logs(frame, r, app.focus == pane),
        }
    }
    footer::draw_footer(frame, app, styles, a.footer);
    match &app.layers.overlay {
        Some(Overlay::Help { scroll }) | Some(Overlay::Detail { scroll, .. }) => {
            overlay::draw_scrolling(frame, app, styles, *scroll)
        }
        Some(Overlay::Stats) => overlay::draw_stats(frame, app, styles),
        None => {}
    }
    footer::draw_toasts(frame, app, styles, a.footer);
}
