//! The five stage panes and the health pane, built from the app state for the widgets.

use notifyscope_widgets::{HealthItem, HealthPane, HealthStatus, PaneRow, StagePane, Styles};
use ratatui::layout::Rect;
use ratatui::Frame;

use crate::pipeline::synthetic::SimKind;
use crate::present::pane_row;
use crate::screen::app::{App, Mode};
use crate::screen::keys::Action;
use crate::screen::pane::PaneId;
use crate::trace::Status;

/// What an empty pane says: why it is empty, and what would fill it where the user can. One
/// line of a narrow pane: short.
fn empty_hint(app: &App, pane: PaneId) -> String {
    if app.filter.is_some() {
        // The status bar shows the filter itself.
        return "nothing matches the filter".into();
    }
    match (pane, &app.mode) {
        (PaneId::Received, Mode::Live) => format!(
            "no messages yet: press {} to send one",
            app.keymap.label(Action::Send(SimKind::Message))
        ),
        // Test keys send nothing into someone else's pipeline: only an observer of their
        // bot sees messages arrive.
        (PaneId::Received, Mode::Watch) => "messages need --discord-token-env".into(),
        (PaneId::Received, Mode::Replay(_)) => "no message in this recording".into(),
        (PaneId::Published, Mode::Watch) => "their publishes: see NOTIFY receipts".into(),
        (PaneId::Published, _) => "nothing published yet".into(),
        (PaneId::Notify, _) => "no NOTIFY received yet".into(),
        (PaneId::Ingest, _) => "nothing ingested yet".into(),
        (PaneId::Skips, _) => "no message skipped".into(),
        _ => String::new(),
    }
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
                followed: app.followed.is_some() && e.message_id == app.followed,
                matched: app.search.as_ref().is_some_and(|s| s.matches(e)),
            }
        })
        .collect();
    let widget = StagePane {
        title: pane_id.title(),
        key: &app.keymap.label(Action::Focus(pane_id.index())),
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
    let items: Vec<HealthItem> = if app.health.is_empty() {
        // Before any diagnosis: the connection states.
        let s = &app.status;
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
                selected: i == app.health_selected,
            })
            .collect()
    };
    let widget = HealthPane {
        key: &app.keymap.label(Action::Focus(PaneId::Health.index())),
        focused: app.focus == PaneId::Health,
        judged: !app.health.is_empty(),
        top: app.health_top(super::list_rows(PaneId::Health, area)),
        items: &items,
        styles,
    };
    frame.render_widget(&widget, area);
}
