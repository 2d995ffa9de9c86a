//! The five stage panes and the health pane, built from the app state for the widgets.

use notifyscope_widgets::{HealthItem, HealthPane, HealthStatus, PaneRow, StagePane, Styles};
use ratatui::layout::Rect;
use ratatui::Frame;

use crate::app::App;
use crate::events::Mode;
use crate::keys::Action;
use crate::pane::PaneId;
use crate::rows::pane_row;
use notifyscope_model::sim::SimKind;
use notifyscope_model::trace::Status;

/// What an empty pane says: why it is empty, and what would fill it where the user can (the
/// pane table's hint). One line of a narrow pane: short.
fn empty_hint(app: &App, pane: PaneId) -> String {
    if app.stages.filter.is_some() {
        // The status bar shows the filter itself.
        return "nothing matches the filter".into();
    }
    let empty = pane.spec().empty;
    let text = match app.mode {
        Mode::Live => empty.live,
        Mode::Watch => empty.watch,
        Mode::Replay(_) => empty.replay,
    };
    text.replace("{send}", &app.keymap.label(Action::Send(SimKind::Message)))
}

pub(super) fn draw_stage(
    frame: &mut Frame,
    app: &App,
    styles: &Styles,
    pane_id: PaneId,
    area: Rect,
) {
    let Some(pane) = app.pane(pane_id) else {
        return;
    };
    let height = super::list_rows(pane_id, area);
    let window = pane.window(height);
    let selected = pane.selected_index();
    let rows: Vec<PaneRow> = window
        .clone()
        .filter_map(|i| pane.get(i).map(|e| (i, e)))
        .map(|(i, e)| {
            let (detail, kind) = pane_row(e);
            PaneRow {
                time: e.at.format("%H:%M:%S%.3f").to_string(),
                id: e
                    .message_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".into()),
                detail,
                kind,
                selected: Some(i) == selected,
                followed: app.stages.followed.is_some() && e.message_id == app.stages.followed,
                matched: app.stages.search.as_ref().is_some_and(|s| s.matches(e)),
            }
        })
        .collect();
    let widget = StagePane {
        title: pane_id.title(),
        key: &app.keymap.label(Action::Focus(pane_id)),
        shown: pane.len(),
        dropped: pane.dropped,
        focused: app.focus == pane_id,
        above: window.start,
        rows: &rows,
        columns: pane_id.columns(),
        empty_hint: &empty_hint(app, pane_id),
        styles,
    };
    frame.render_widget(&widget, area);
}

fn health_status(s: Status) -> HealthStatus {
    match s {
        Status::Ok => HealthStatus::Ok,
        Status::Unknown => HealthStatus::Unknown,
        Status::Warn => HealthStatus::Warn,
        Status::Fail => HealthStatus::Fail,
    }
}

pub(super) fn draw_health(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let items: Vec<HealthItem> = if app.health.checks.is_empty() {
        // Before any diagnosis: the connection states.
        let s = &app.status.info;
        [
            ("database", &s.database),
            ("listener", &s.listener),
            ("gateway", &s.gateway),
        ]
        .into_iter()
        .filter(|(name, c)| *name != "gateway" || c.up.is_some() || !c.text.is_empty())
        .map(|(name, c)| HealthItem {
            status: match c.up {
                Some(true) => HealthStatus::Ok,
                Some(false) => HealthStatus::Fail,
                None => HealthStatus::Unknown,
            },
            name: name.into(),
            summary: c.text.clone(),
            selected: false,
        })
        .collect()
    } else {
        app.health
            .checks
            .iter()
            .enumerate()
            .map(|(i, c)| HealthItem {
                status: health_status(c.status),
                name: c.name.clone(),
                summary: if c.status == Status::Ok {
                    c.summary.clone()
                } else {
                    format!("{} — {}", c.summary, c.hint)
                },
                selected: i == app.health.selected,
            })
            .collect()
    };
    let widget = HealthPane {
        key: &app.keymap.label(Action::Focus(PaneId::Health)),
        focused: app.focus == PaneId::Health,
        judged: !app.health.checks.is_empty(),
        top: app.health.top(super::list_rows(PaneId::Health, area)),
        items: &items,
        styles,
    };
    frame.render_widget(&widget, area);
}
