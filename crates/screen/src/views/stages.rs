//! The stage panes as one view: their bounded histories, what arrived while paused, the
//! filter that hides rows, the search that highlights them, and the message followed across
//! the panes.

use std::collections::VecDeque;
use std::sync::Arc;

use super::Reply;
use crate::detail::{copy_text, event_detail};
use crate::events::Effect;
use crate::keys::Action;
use crate::pane::{Pane, PaneId, PANE_COUNT};
use crate::search::Search;
use notifyscope_model::contract::Snowflake;
use notifyscope_model::trace::TraceEvent;

/// Health reports kept for a saved session.
const HEALTH_REPORTS_KEPT: usize = 200;

pub struct StageView {
    /// By pane index; the panes that are not stages stay empty.
    panes: [Pane; PANE_COUNT],
    /// Rows each pane keeps (`--history`).
    pub history: usize,
    pub paused: bool,
    pending: VecDeque<Arc<TraceEvent>>,
    pub pending_dropped: u64,
    pub filter: Option<Search>,
    /// Rows matching it are highlighted; `n`/`N` jump between them.
    pub search: Option<Search>,
    pub followed: Option<Snowflake>,
    /// The latest `health_report` events, for a saved session.
    health_reports: VecDeque<Arc<TraceEvent>>,
}

impl StageView {
    pub fn new(history: usize) -> Self {
        StageView {
            panes: std::array::from_fn(|i| Pane::new(PaneId::ALL[i].spec().summarise)),
            history,
            paused: false,
            pending: VecDeque::new(),
            pending_dropped: 0,
            filter: None,
            search: None,
            followed: None,
            health_reports: VecDeque::new(),
        }
    }

    /// A stage pane's rows; `None` for the panes that are not stages.
    pub fn pane(&self, id: PaneId) -> Option<&Pane> {
        id.is_stage().then(|| &self.panes[id.index()])
    }

    fn pane_mut(&mut self, id: PaneId) -> Option<&mut Pane> {
        id.is_stage().then(|| &mut self.panes[id.index()])
    }

    pub fn panes(&self) -> impl Iterator<Item = (PaneId, &Pane)> {
        PaneId::STAGES
            .into_iter()
            .map(|p| (p, &self.panes[p.index()]))
    }

    /// Events that arrived while paused and are not shown yet.
    pub fn pending(&self) -> u64 {
        self.pending.len() as u64 + self.pending_dropped
    }

    /// Keeps a health report for the session.
    pub fn keep_report(&mut self, event: Arc<TraceEvent>) {
        if self.health_reports.len() >= HEALTH_REPORTS_KEPT {
            self.health_reports.pop_front();
        }
        self.health_reports.push_back(event);
    }

    /// Shows `event` in `pane`, or keeps it for later while paused.
    pub fn push(&mut self, pane: PaneId, event: Arc<TraceEvent>) {
        if self.paused {
            if self.pending.len() >= self.history * 5 {
                self.pending.pop_front();
                self.pending_dropped += 1;
            }
            self.pending.push_back(event);
        } else if pane.is_stage() {
            // Indexed here, not through `pane_mut`: the filter is borrowed beside the pane.
            self.panes[pane.index()].push(event, self.history, self.filter.as_ref());
        }
    }

    pub fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        if !self.paused {
            let pending = std::mem::take(&mut self.pending);
            self.pending_dropped = 0;
            for ev in pending {
                if let Some(pane) = PaneId::of(&ev.kind) {
                    self.panes[pane.index()].push(ev, self.history, self.filter.as_ref());
                }
            }
        }
    }

    /// Every event kept, oldest first; those that arrived while paused belong to the session
    /// too.
    pub fn session(&self) -> Vec<Arc<TraceEvent>> {
        let mut events: Vec<Arc<TraceEvent>> = self
            .panes
            .iter()
            .flat_map(|p| p.events().cloned())
            .chain(self.pending.iter().cloned())
            .chain(self.health_reports.iter().cloned())
            .collect();
        events.sort_by_key(|e| e.at);
        events
    }

    pub fn clear(&mut self) {
        for p in &mut self.panes {
            p.clear();
        }
        self.pending.clear();
        self.pending_dropped = 0;
    }

    pub fn apply_filter(&mut self, filter: Option<Search>) {
        for p in &mut self.panes {
            p.apply_search(filter.as_ref());
        }
        self.filter = filter;
    }

    /// Rows dropped from the histories so far.
    pub fn dropped(&self) -> u64 {
        self.panes.iter().map(|p| p.dropped).sum()
    }

    pub fn move_selection(&mut self, pane: PaneId, delta: isize, height: usize) {
        if let Some(p) = self.pane_mut(pane) {
            p.move_by(delta, height);
        }
    }

    /// Back to following the newest row.
    pub fn follow_tail(&mut self, pane: PaneId) {
        if let Some(p) = self.pane_mut(pane) {
            p.tail = true;
        }
    }

    /// Selects the `row`-th row shown in `pane`.
    pub fn select_shown_row(&mut self, pane: PaneId, row: usize, height: usize) {
        if let Some(p) = self.pane_mut(pane) {
            let index = p.window(height).start + row;
            if index < p.len() {
                p.select(index, height);
            }
        }
    }

    pub fn selected(&self, pane: PaneId) -> Option<&Arc<TraceEvent>> {
        self.pane(pane).and_then(|p| p.selected())
    }

    /// Every event about `id`, oldest first.
    pub fn timeline(&self, id: Snowflake) -> Vec<&Arc<TraceEvent>> {
        let mut events: Vec<&Arc<TraceEvent>> = self
            .panes
            .iter()
            .flat_map(|p| p.events())
            .filter(|e| e.message_id == Some(id))
            .collect();
        events.sort_by_key(|e| e.at);
        events
    }

    /// Highlights the message's rows in every pane and scrolls each pane to its first one.
    pub fn follow(&mut self, id: Snowflake, heights: &[usize; PANE_COUNT]) {
        self.followed = Some(id);
        for pane in PaneId::STAGES {
            let height = heights[pane.index()].max(1);
            let p = &mut self.panes[pane.index()];
            if let Some(i) =
                (0..p.len()).find(|&i| p.get(i).is_some_and(|e| e.message_id == Some(id)))
            {
                p.select(i, height);
            }
        }
    }

    /// A new search starts at the top of `focus` and goes on to the next panes: the pane of
    /// the first match.
    pub fn jump_to_first_match(
        &mut self,
        focus: PaneId,
        heights: &[usize; PANE_COUNT],
    ) -> Option<PaneId> {
        let search = self.search.clone()?;
        if let Some(p) = self.pane_mut(focus) {
            if !p.is_empty() {
                p.select(0, heights[focus.index()].max(1));
                if p.get(0).is_some_and(|e| search.matches(e)) {
                    return Some(focus);
                }
            }
        }
        self.jump_to_match(focus, true, heights)
    }

    /// Selects the next (or previous) row matching the search, from the selection in
    /// `focus` on, across the stage panes in their order, wrapping around: the pane it is
    /// in, or `None` when no row matches.
    pub fn jump_to_match(
        &mut self,
        focus: PaneId,
        forward: bool,
        heights: &[usize; PANE_COUNT],
    ) -> Option<PaneId> {
        let search = self.search.clone()?;
        let order = PaneId::STAGES;
        let start = order.iter().position(|p| *p == focus).unwrap_or(0);
        let n = order.len();
        for step in 0..=n {
            let i = if forward {
                (start + step) % n
            } else {
                (start + n * 2 - step) % n
            };
            let pane = order[i];
            let p = &self.panes[pane.index()];
            let from = if step == 0 { p.selected_index() } else { None };
            let found = if forward {
                let first = from.map(|f| f + 1).unwrap_or(0);
                (first..p.len()).find(|&j| p.get(j).is_some_and(|e| search.matches(e)))
            } else {
                let end = from.unwrap_or(p.len());
                (0..end)
                    .rev()
                    .find(|&j| p.get(j).is_some_and(|e| search.matches(e)))
            };
            if let Some(j) = found {
                self.panes[pane.index()].select(j, heights[pane.index()].max(1));
                return Some(pane);
            }
        }
        None
    }

    /// The keys of the stage pane `pane` while it is focused, for a list of `height` rows.
    pub fn update(&mut self, pane: PaneId, action: Action, height: usize) -> Reply {
        match action {
            Action::Up => self.move_selection(pane, -1, height),
            Action::Down => self.move_selection(pane, 1, height),
            Action::PageUp => self.move_selection(pane, -(height as isize), height),
            Action::PageDown => self.move_selection(pane, height as isize, height),
            Action::Top => self.move_selection(pane, isize::MIN / 2, height),
            Action::Bottom => self.follow_tail(pane),
            Action::Detail => {
                let Some(event) = self.selected(pane) else {
                    return Reply::Toast("no row selected".into());
                };
                let timeline = event
                    .message_id
                    .map(|id| self.timeline(id))
                    .unwrap_or_default();
                return Reply::Open(event_detail(pane.title(), event, &timeline));
            }
            Action::Follow => {
                return match self.selected(pane).and_then(|e| e.message_id) {
                    Some(id) => Reply::Follow(id),
                    None => Reply::Toast("the selected row is not about a message".into()),
                }
            }
            Action::Copy => {
                return match self.selected(pane) {
                    Some(event) => Reply::Effect(Effect::Copy(copy_text(event))),
                    None => Reply::Toast("nothing selected to copy".into()),
                }
            }
            Action::CopyId => {
                return match self.selected(pane).and_then(|e| e.message_id) {
                    Some(id) => Reply::Effect(Effect::Copy(id.to_string())),
                    None => Reply::Toast("the selected row has no message id".into()),
                }
            }
            _ => {}
        }
        Reply::Nothing
    }

    /// The keys of the stage panes in the footer, in order of use.
    pub fn hints(&self, zoom: bool) -> Vec<(Action, &'static str)> {
        vec![
            (Action::Detail, "detail"),
            (Action::Filter, "filter"),
            (Action::Search, "search"),
            (Action::Zoom, if zoom { "unzoom" } else { "zoom" }),
            (Action::Pause, if self.paused { "resume" } else { "pause" }),
            (Action::Follow, "follow"),
        ]
    }
}
