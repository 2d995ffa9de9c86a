//! The five stage panes and the health pane, built from the app state for the widgets.

use notifyscope_widgets::{HealthItem, HealthPane, HealthStatus, PaneRow, StagePane, Styles};
use ratatui::layout::Rect;
use ratatui::Frame;

use crate::app::App;
use crate::events::Mode;
use crate::keys::Action;
use crate::pane::PaneId;
use crate::rows::pane_row;
use notifyscope_model::check::Check;
use notifyscope_model::sim::SimKind;
use notifyscope_model::trace::{Status, Verdict};

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

/// The rows of a stage pane's window of `height` rows, as its widget draws them; `None` for
/// a pane that is not a stage.
pub(super) fn stage_rows(app: &App, pane_id: PaneId, height: usize) -> Option<Vec<PaneRow>> {
    let pane = app.pane(pane_id)?;
    let selected = pane.selected_index();
    Some(
        pane.window(height)
            .filter_map(|i| pane.get(i).map(|e| (i, e)))
            .map(|(i, e)| {
                let (detail, kind) = pane_row(e, pane.repeats(i));
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
            .collect(),
    )
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
    let Some(rows) = stage_rows(app, pane_id, height) else {
        return;
    };
    let widget = StagePane {
        title: pane_id.title(),
        short_title: pane_id.short_title(),
        key: &app.keymap.label(Action::Focus(pane_id)),
        shown: pane.len(),
        dropped: pane.dropped,
        focused: app.focus == pane_id,
        above: pane.window(height).start,
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

/// A check's row: what it found, and the fix for one that warns or fails. A check left
/// unknown shows what it waits for, never a fix for a fault nobody saw.
fn summary_and_fix(check: &Check) -> String {
    match check.status {
        Status::Warn | Status::Fail if !check.hint.is_empty() => {
            format!("{} — {}", check.summary, check.hint)
        }
        _ => check.summary.clone(),
    }
}

/// The verdict over `checks`, a part per status, worst first; none before a diagnosis.
fn verdict_parts(checks: &[Check]) -> Vec<(HealthStatus, String)> {
    if checks.is_empty() {
        return Vec::new();
    }
    let verdict = Verdict::of(checks.iter().map(|c| c.status));
    let statuses = [
        (verdict.fail, Status::Fail),
        (verdict.warn, Status::Warn),
        (verdict.unknown, Status::Unknown),
        (verdict.ok, Status::Ok),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(_, status)| health_status(status));
    // The words are the verdict's own; each part is coloured by the status it counts.
    verdict
        .words()
        .split(" · ")
        .map(str::to_owned)
        .zip(statuses)
        .map(|(words, status)| (status, words))
        .collect()
}

/// The rows of the health pane: the checks, worst first, or before any diagnosis the
/// connections.
pub(super) fn health_items(app: &App) -> Vec<HealthItem> {
    if app.health.checks.is_empty() {
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
                summary: summary_and_fix(c),
                selected: i == app.health.selected,
            })
            .collect()
    }
}

pub(super) fn draw_health(frame: &mut Frame, app: &App, styles: &Styles, area: Rect) {
    let items = health_items(app);
    let widget = HealthPane {
        key: &app.keymap.label(Action::Focus(PaneId::Health)),
        focused: app.focus == PaneId::Health,
        verdict: &verdict_parts(&app.health.checks),
        top: app.health.top(super::list_rows(PaneId::Health, area)),
        items: &items,
        styles,
    };
    frame.render_widget(&widget, area);
}
