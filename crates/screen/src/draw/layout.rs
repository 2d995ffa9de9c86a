//! Where the panes go, as data: from each breakpoint (a terminal width) on, rows of panes with
//! their constraints; below the narrowest, a tab bar and the focused pane. Zoom gives the
//! focused pane the whole body at any width.

use ratatui::layout::{Constraint, Layout, Rect};

use crate::pane::{PaneId, PANE_COUNT};

pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

/// A row of the body: its height, and its panes with their widths.
pub struct Row {
    pub height: Constraint,
    pub panes: &'static [(PaneId, Constraint)],
}

/// The layout of the body from `min_width` columns on.
pub struct Breakpoint {
    pub min_width: u16,
    pub rows: &'static [Row],
}

/// Every stage side by side above health and logs.
///
/// ```text
/// ┌────────┬─────────┬────────┬─────────┬───────┐
/// │Received│Published│ NOTIFY │Ingestion│ Skips │ 62 %
/// ├────────┴─────────┴──┬─────┴─────────┴───────┤
/// │ Health              │ Logs                  │ 38 %
/// └─────────────────────┴───────────────────────┘
/// ```
const WIDE: Breakpoint = Breakpoint {
    min_width: 160,
    rows: &[
        Row {
            height: Constraint::Percentage(62),
            panes: &[
                (PaneId::Received, Constraint::Ratio(1, 5)),
                (PaneId::Published, Constraint::Ratio(1, 5)),
                (PaneId::Notify, Constraint::Ratio(1, 5)),
                (PaneId::Ingest, Constraint::Ratio(1, 5)),
                (PaneId::Skips, Constraint::Ratio(1, 5)),
            ],
        },
        Row {
            height: Constraint::Percentage(38),
            panes: &[
                (PaneId::Health, Constraint::Percentage(40)),
                (PaneId::Logs, Constraint::Percentage(60)),
            ],
        },
    ],
};

/// Three by two, logs across the bottom.
///
/// ```text
/// ┌──────────┬───────────┬──────────┐
/// │ Received │ Published │ NOTIFY   │ 38 %
/// ├──────────┼───────────┼──────────┤
/// │ Ingestion│ Skips     │ Health   │ 36 %
/// ├──────────┴───────────┴──────────┤
/// │ Logs                            │ 26 %
/// └─────────────────────────────────┘
/// ```
const GRID: Breakpoint = Breakpoint {
    min_width: 100,
    rows: &[
        Row {
            height: Constraint::Percentage(38),
            panes: &[
                (PaneId::Received, Constraint::Ratio(1, 3)),
                (PaneId::Published, Constraint::Ratio(1, 3)),
                (PaneId::Notify, Constraint::Ratio(1, 3)),
            ],
        },
        Row {
            height: Constraint::Percentage(36),
            panes: &[
                (PaneId::Ingest, Constraint::Ratio(1, 3)),
                (PaneId::Skips, Constraint::Ratio(1, 3)),
                (PaneId::Health, Constraint::Ratio(1, 3)),
            ],
        },
        Row {
            height: Constraint::Percentage(26),
            panes: &[(PaneId::Logs, Constraint::Percentage(100))],
        },
    ],
};

/// The breakpoints, widest first. Narrower than the last: tabs.
///
/// ```text
/// ┌ 1 Rx  2 Pub  3 Ntfy  4 Ingest … ┐ the tab bar
/// │ the focused pane                │
/// └─────────────────────────────────┘
/// ```
pub const BREAKPOINTS: &[Breakpoint] = &[WIDE, GRID];

/// Where everything goes for a terminal size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Areas {
    pub too_small: bool,
    pub status: Rect,
    pub tabs: Option<Rect>,
    /// By [`PaneId`] index; `None` when the pane is not shown (tabs).
    pub panes: [Option<Rect>; PANE_COUNT],
    pub footer: Rect,
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
    let mut panes = [None; PANE_COUNT];
    let mut tabs = None;
    let breakpoint = BREAKPOINTS.iter().find(|b| area.width >= b.min_width);
    match breakpoint {
        _ if zoom => panes[focus.index()] = Some(body),
        Some(b) => {
            let rows = Layout::vertical(b.rows.iter().map(|r| r.height)).split(body);
            for (row, r) in b.rows.iter().zip(rows.iter()) {
                let cells = Layout::horizontal(row.panes.iter().map(|(_, c)| *c)).split(*r);
                for ((pane, _), cell) in row.panes.iter().zip(cells.iter()) {
                    panes[pane.index()] = Some(*cell);
                }
            }
        }
        None => {
            let [tab_bar, content] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(body);
            tabs = Some(tab_bar);
            panes[focus.index()] = Some(content);
        }
    }
    Areas {
        too_small: false,
        status,
        tabs,
        panes,
        footer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_breakpoint_places_every_pane_once() {
        for b in BREAKPOINTS {
            let mut placed: Vec<PaneId> = b
                .rows
                .iter()
                .flat_map(|r| r.panes.iter().map(|(p, _)| *p))
                .collect();
            placed.sort_by_key(|p| p.index());
            assert_eq!(placed, PaneId::ALL, "from {} columns", b.min_width);
        }
        assert!(BREAKPOINTS
            .windows(2)
            .all(|w| w[0].min_width > w[1].min_width));
    }
}
