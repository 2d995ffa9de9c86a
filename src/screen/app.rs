//! The monitor's state and how actions change it. Nothing here draws or does I/O: work that
//! needs the outside world is returned as an [`Effect`] for the event loop to carry out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::contract::Snowflake;
use crate::diagnose::{Check, CheckId, CheckTarget};
use crate::pipeline::synthetic::SimKind;
use crate::screen::detail::{self, copy_text, scroll, Overlay};
use crate::screen::keys::{Action, KeyMap};
use crate::screen::logs;
use crate::screen::pane::{Pane, PaneId};
use crate::screen::search::Search;
use crate::trace::latency::{RecentLatency, StageClock};
use crate::trace::{Status, TraceEvent, TraceKind};

/// Rows a pane keeps by default (`--history`).
pub const DEFAULT_HISTORY: usize = 10_000;
/// Seconds of per-stage rates kept for the sparklines.
pub const RATE_HISTORY: usize = 60;
const TOAST_FOR: Duration = Duration::from_secs(5);
/// The span of the live latency percentiles.
pub const LATENCY_SPAN: Duration = Duration::from_secs(10);
/// Health reports kept for a saved session.
const HEALTH_REPORTS_KEPT: usize = 200;
/// Two clicks on the same row within this are a double-click.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);

/// Per-stage counts for the last [`RATE_HISTORY`] seconds.
#[derive(Debug, Default)]
pub struct Rates {
    current: [u64; 5],
    pub history: [VecDeque<u64>; 5],
}

impl Rates {
    fn count(&mut self, pane: PaneId) {
        if let Some(c) = self.current.get_mut(pane.index()) {
            *c += 1;
        }
    }

    fn tick(&mut self) {
        for (h, c) in self.history.iter_mut().zip(self.current.iter_mut()) {
            if h.len() >= RATE_HISTORY {
                h.pop_front();
            }
            h.push_back(*c);
            *c = 0;
        }
    }

    /// Messages a second over the last full second.
    pub fn last(&self, pane: PaneId) -> u64 {
        self.history
            .get(pane.index())
            .and_then(|h| h.back().copied())
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connection {
    pub up: Option<bool>,
    pub text: String,
}

/// What the status bar shows.
#[derive(Debug, Clone, Default)]
pub struct StatusInfo {
    pub database: Connection,
    pub listener: Connection,
    pub gateway: Connection,
    pub backlog: Option<i64>,
    pub backpressure: u64,
    pub lagged: u64,
    /// Shown when there is no gateway: the simulated source feeds the bot path.
    pub simulated: bool,
}

/// Work for the event loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Quit,
    Send(SimKind),
    SendMalformed,
    SendWrongChannel,
    SendDirect,
    /// Put this text on the clipboard.
    Copy(String),
    /// Write these events as JSON lines.
    Save(Vec<Arc<TraceEvent>>),
    /// Forward the key to the log widget.
    LogKey(crossterm::event::KeyEvent),
    /// Cancel the statement of a backend that holds the pipeline up (`pg_cancel_backend`).
    CancelBackend(i32),
    /// End the session of that backend (`pg_terminate_backend`).
    TerminateBackend(i32),
    /// Stuck outbox rows of the channel due now, their attempts reset.
    RetryStuckRows,
    /// Dead letters and given-up outbox rows, listed in an overlay.
    ListDeadLetters,
    /// Dead letters sent again and given-up rows queued again.
    RequeueDeadLetters,
    /// Dead letters and given-up rows deleted.
    DeleteDeadLetters,
}

/// What the bottom line reads, when it reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// The filter or the search being typed; `error` says why the last Enter was refused
    /// (the text stays, to be corrected).
    Input {
        kind: InputKind,
        text: String,
        error: Option<String>,
    },
    /// An action on the diagnosis waiting for its confirmation: a key per choice.
    Confirm {
        question: String,
        choices: Vec<(char, String, Effect)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Filter,
    Search,
}

/// Where a click landed, as the layout tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickTarget {
    /// A pane's title in the tab bar.
    Tab(PaneId),
    /// A pane, and the row of its list under the pointer (counted from the first row shown).
    Pane { pane: PaneId, row: Option<usize> },
}

/// The mouse, in the app's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    Click(ClickTarget),
    ScrollUp(PaneId),
    ScrollDown(PaneId),
}

/// Things that happen to the app besides keys.
#[derive(Debug, Clone)]
pub enum AppEvent {
    Trace(Arc<TraceEvent>),
    Backlog(Option<i64>),
    Health(Vec<Check>),
    Toast(String),
    /// Lines to show in an overlay (the result of work such as listing dead letters).
    Lines {
        title: String,
        lines: Vec<String>,
    },
    Tick,
}

/// What the screen is attached to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Our own pipeline: test keys work.
    Live,
    /// Someone else's pipeline, watched without writing.
    Watch,
    /// A recording, read-only.
    Replay(String),
}

pub struct App {
    pub mode: Mode,
    pub panes: [Pane; 5],
    pub focus: PaneId,
    pub history: usize,
    pub paused: bool,
    pending: VecDeque<Arc<TraceEvent>>,
    pub pending_dropped: u64,
    pub filter: Option<Search>,
    /// Rows matching it are highlighted; `n`/`N` jump between them.
    pub search: Option<Search>,
    pub prompt: Option<Prompt>,
    pub followed: Option<Snowflake>,
    /// The focused pane alone on the whole screen.
    pub zoom: bool,
    /// Latency per stage over the last [`LATENCY_SPAN`].
    pub latency: RecentLatency,
    clock: StageClock,
    /// The latest `health_report` events, for a saved session.
    health_reports: VecDeque<Arc<TraceEvent>>,
    /// The `notifyscope send` command that reaches this instance, when there is one.
    pub send_command: Option<String>,
    /// The last click, and what it selected: a second click is a double-click only on the
    /// same row (rows that arrive in between must not turn it into another row's).
    last_click: Option<(Instant, ClickTarget, Option<Arc<TraceEvent>>)>,
    /// Checks above the first one the health pane shows.
    health_scroll: usize,
    pub overlay: Option<Overlay>,
    pub status: StatusInfo,
    pub rates: Rates,
    pub toasts: VecDeque<(Instant, String)>,
    pub health: Vec<Check>,
    pub health_selected: usize,
    /// Visible rows of each pane, from the last layout.
    pub heights: [usize; 7],
    pub keymap: KeyMap,
    pub channel: String,
    /// Something changed since the last frame.
    pub dirty: bool,
}

impl App {
    pub fn new(keymap: KeyMap, history: usize, channel: &str) -> Self {
        App {
            mode: Mode::Live,
            panes: std::array::from_fn(|_| Pane::new()),
            focus: PaneId::Received,
            history,
            paused: false,
            pending: VecDeque::new(),
            pending_dropped: 0,
            filter: None,
            search: None,
            prompt: None,
            followed: None,
            zoom: false,
            latency: RecentLatency::new(LATENCY_SPAN),
            clock: StageClock::default(),
            health_reports: VecDeque::new(),
            send_command: None,
            last_click: None,
            health_scroll: 0,
            overlay: None,
            status: StatusInfo::default(),
            rates: Rates::default(),
            toasts: VecDeque::new(),
            health: Vec::new(),
            health_selected: 0,
            heights: [10; 7],
            keymap,
            channel: channel.to_owned(),
            dirty: true,
        }
    }

    pub fn pane(&self, id: PaneId) -> Option<&Pane> {
        self.panes.get(id.index())
    }

    pub fn toast(&mut self, text: impl Into<String>) {
        self.toasts.push_back((Instant::now(), text.into()));
        while self.toasts.len() > 3 {
            self.toasts.pop_front();
        }
        self.dirty = true;
    }

    /// Events that arrived while paused and are not shown yet.
    pub fn pending(&self) -> u64 {
        self.pending.len() as u64 + self.pending_dropped
    }

    pub fn on_event(&mut self, event: AppEvent) {
        match event {
            AppEvent::Trace(ev) => self.on_trace(ev),
            AppEvent::Backlog(b) => {
                if self.status.backlog != b {
                    self.status.backlog = b;
                    self.dirty = true;
                }
            }
            AppEvent::Health(mut checks) => {
                checks.sort_by_key(|c| std::cmp::Reverse(c.status));
                if self.mode == Mode::Watch {
                    // Someone else's listener sends no listener events: the status bar says
                    // what the listener check found, so the two never disagree.
                    if let Some(c) = checks.iter().find(|c| c.id == CheckId::Listener) {
                        let listener = Connection {
                            up: match c.status {
                                Status::Ok => Some(true),
                                Status::Fail => Some(false),
                                Status::Warn | Status::Unknown => None,
                            },
                            text: c.summary.clone(),
                        };
                        if listener != self.status.listener {
                            self.status.listener = listener;
                            self.dirty = true;
                        }
                    }
                }
                if checks != self.health {
                    self.health = checks;
                    self.health_selected = self
                        .health_selected
                        .min(self.health.len().saturating_sub(1));
                    self.dirty = true;
                }
            }
            AppEvent::Toast(text) => self.toast(text),
            AppEvent::Lines { title, lines } => {
                self.overlay = Some(Overlay::Detail {
                    title,
                    lines,
                    scroll: 0,
                    message_ids: Vec::new(),
                });
                self.dirty = true;
            }
            AppEvent::Tick => {
                self.rates.tick();
                // A recording's events keep their own times: its latency stays as recorded.
                if !matches!(self.mode, Mode::Replay(_)) {
                    self.latency.prune(chrono::Utc::now());
                }
                self.toasts.retain(|(at, _)| at.elapsed() < TOAST_FOR);
                self.dirty = true;
            }
        }
    }

    pub fn on_trace(&mut self, event: Arc<TraceEvent>) {
        self.update_status(&event);
        for (stage, seconds) in self.clock.observe(&event) {
            self.latency.record(stage, event.at, seconds);
        }
        if let TraceKind::HealthReport { checks } = &event.kind {
            // Live, the diagnosis hands its checks over directly; a recording has only these.
            if matches!(self.mode, Mode::Replay(_)) {
                let checks = checks.iter().filter_map(Check::from_state).collect();
                self.on_event(AppEvent::Health(checks));
            }
            if self.health_reports.len() >= HEALTH_REPORTS_KEPT {
                self.health_reports.pop_front();
            }
            self.health_reports.push_back(event);
            return;
        }
        let Some(pane) = PaneId::of(&event.kind) else {
            return;
        };
        self.rates.count(pane);
        if self.paused {
            if self.pending.len() >= self.history * 5 {
                self.pending.pop_front();
                self.pending_dropped += 1;
            }
            self.pending.push_back(event);
        } else {
            self.panes[pane.index()].push(event, self.history, self.filter.as_ref());
        }
        self.dirty = true;
    }

    fn update_status(&mut self, event: &TraceEvent) {
        let status = &mut self.status;
        match &event.kind {
            TraceKind::DatabaseUp { url, embedded } => {
                status.database = Connection {
                    up: Some(true),
                    text: format!("{url}{}", if *embedded { " embedded" } else { "" }),
                }
            }
            TraceKind::DatabaseDown { error } => {
                status.database.up = Some(false);
                status.database.text = error.clone();
            }
            TraceKind::ListenerUp { channel, pid, .. } => {
                status.listener = Connection {
                    up: Some(true),
                    text: format!("pid {pid} on {channel}"),
                }
            }
            TraceKind::ListenerDown { cause, .. } => {
                status.listener = Connection {
                    up: Some(false),
                    text: cause.clone(),
                }
            }
            TraceKind::GatewayWaiting { waiting_for } => {
                status.gateway = Connection {
                    up: None,
                    text: format!("waiting for {waiting_for}"),
                }
            }
            TraceKind::GatewayReady {
                user_name,
                shard,
                shards,
                ..
            } => {
                status.simulated = false;
                status.gateway = Connection {
                    up: Some(true),
                    text: format!("{user_name} shard {shard}/{shards}"),
                }
            }
            TraceKind::GatewayResumed { .. } => status.gateway.up = Some(true),
            TraceKind::GatewayDown { code, reason, .. } => {
                status.gateway = Connection {
                    up: Some(false),
                    text: match code {
                        Some(c) => format!("close {c}: {reason}"),
                        None => reason.clone(),
                    },
                }
            }
            TraceKind::Backpressure { .. } => status.backpressure += 1,
            TraceKind::Lagged { missed } => status.lagged = status.lagged.saturating_add(*missed),
            _ => return,
        }
        self.dirty = true;
    }

    /// Applies a key. `None` means the key has no meaning here.
    pub fn on_key(&mut self, key: crossterm::event::KeyEvent) -> Option<Effect> {
        use crossterm::event::KeyCode;
        let ctrl_c = key.code == KeyCode::Char('c')
            && key
                .modifiers
                .contains(crossterm::event::KeyModifiers::CONTROL);
        if self.prompt.is_some() {
            self.dirty = true;
            if ctrl_c {
                return Some(Effect::Quit);
            }
            return self.on_prompt_key(key.code);
        }
        let action = self.keymap.action(&key);
        if self.focus == PaneId::Logs && self.overlay.is_none() {
            // The log widget has keys of its own for targets, levels and paging.
            let plain = !key.modifiers.intersects(
                crossterm::event::KeyModifiers::CONTROL | crossterm::event::KeyModifiers::ALT,
            );
            let own = plain
                && logs::log_event(key.code).is_some()
                && !matches!(action, Some(Action::Quit));
            if own {
                self.dirty = true;
                return Some(Effect::LogKey(key));
            }
        }
        self.update(action?)
    }

    /// A key while the bottom line reads: typed text never reaches the key map, so a
    /// mistyped filter cannot send anything.
    fn on_prompt_key(&mut self, code: crossterm::event::KeyCode) -> Option<Effect> {
        use crossterm::event::KeyCode;
        match self.prompt.as_mut()? {
            Prompt::Input { kind, text, error } => match code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Enter => {
                    let (kind, text) = (*kind, text.clone());
                    match self.apply_input(kind, &text) {
                        Ok(()) => self.prompt = None,
                        Err(e) => {
                            if let Some(Prompt::Input { error, .. }) = &mut self.prompt {
                                *error = Some(e);
                            }
                        }
                    }
                }
                KeyCode::Backspace => {
                    text.pop();
                    *error = None;
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    *error = None;
                }
                _ => {}
            },
            Prompt::Confirm { choices, .. } => {
                let chosen = match code {
                    KeyCode::Char(c) => choices
                        .iter()
                        .find(|(key, ..)| *key == c)
                        .map(|(_, _, effect)| effect.clone()),
                    _ => None,
                };
                self.prompt = None;
                match chosen {
                    Some(effect) => return Some(effect),
                    None => self.toast("cancelled: nothing was done"),
                }
            }
        }
        None
    }

    /// Applies what the prompt read; why not, when it cannot be.
    fn apply_input(&mut self, kind: InputKind, text: &str) -> Result<(), String> {
        let compiled = if text.is_empty() {
            None
        } else {
            Some(Search::new(text).map_err(|e| format!("bad regex: {e}"))?)
        };
        match kind {
            InputKind::Filter => self.apply_filter(compiled),
            InputKind::Search => {
                self.search = compiled;
                if self.search.is_some() {
                    self.jump_to_first_match();
                }
            }
        }
        Ok(())
    }

    /// Applies the mouse: a click focuses a pane (or a tab) and selects the row under the
    /// pointer, a second click on the same row opens its detail, the wheel scrolls.
    pub fn on_pointer(&mut self, pointer: Pointer) -> Option<Effect> {
        self.dirty = true;
        if self.prompt.is_some() {
            return None;
        }
        match pointer {
            Pointer::ScrollUp(pane) | Pointer::ScrollDown(pane) if self.overlay.is_some() => {
                let _ = pane;
                let delta = if matches!(pointer, Pointer::ScrollUp(_)) {
                    -3
                } else {
                    3
                };
                if let Some(overlay) = self.overlay.as_mut() {
                    scroll(overlay, delta);
                }
            }
            Pointer::ScrollUp(pane) | Pointer::ScrollDown(pane) => {
                let up = matches!(pointer, Pointer::ScrollUp(_));
                self.focus = pane;
                if pane == PaneId::Logs {
                    // The log widget scrolls by its own keys.
                    let code = if up {
                        crossterm::event::KeyCode::PageUp
                    } else {
                        crossterm::event::KeyCode::PageDown
                    };
                    return Some(Effect::LogKey(crossterm::event::KeyEvent::from(code)));
                }
                let height = self.heights[pane.index()].max(1);
                self.move_selection(if up { -3 } else { 3 }, height);
            }
            Pointer::Click(target) => {
                if self.overlay.is_some() {
                    return None;
                }
                let last = self.last_click.take();
                match target {
                    ClickTarget::Tab(pane) => self.focus = pane,
                    ClickTarget::Pane { pane, row } => {
                        self.focus = pane;
                        if let Some(row) = row {
                            self.select_shown_row(pane, row);
                        }
                        let clicked = self.selected_event().cloned();
                        let same_row = match (&last, &clicked) {
                            (Some((_, _, Some(a))), Some(b)) => Arc::ptr_eq(a, b),
                            (Some((_, _, None)), None) => pane == PaneId::Health,
                            _ => false,
                        };
                        let double = last
                            .is_some_and(|(at, t, _)| t == target && at.elapsed() <= DOUBLE_CLICK)
                            && same_row;
                        if double && row.is_some() {
                            self.open_detail();
                        } else {
                            self.last_click = Some((Instant::now(), target, clicked));
                        }
                    }
                }
            }
        }
        None
    }

    /// Checks above the first one the health pane shows, for a list of `height` rows: where
    /// it was scrolled to, moved only as far as the selected check needs to stay in view.
    pub fn health_top(&self, height: usize) -> usize {
        let lowest = (self.health_selected + 1).saturating_sub(height.max(1));
        self.health_scroll.min(self.health_selected).max(lowest)
    }

    /// Keeps the health pane scrolled where the selection put it.
    fn settle_health_scroll(&mut self) {
        let height = self.heights[PaneId::Health.index()].max(1);
        self.health_scroll = self.health_top(height);
    }

    /// Selects the `row`-th row shown in `pane`.
    fn select_shown_row(&mut self, pane: PaneId, row: usize) {
        let height = self.heights[pane.index()].max(1);
        if pane == PaneId::Health {
            let index = self.health_top(height) + row;
            if index < self.health.len() {
                self.health_selected = index;
                self.settle_health_scroll();
            }
            return;
        }
        if let Some(p) = self.panes.get_mut(pane.index()) {
            let index = p.window(height).start + row;
            if index < p.len() {
                p.select(index, height);
            }
        }
    }

    pub fn update(&mut self, action: Action) -> Option<Effect> {
        self.dirty = true;
        if self.overlay.is_some() {
            return self.update_overlay(action);
        }
        let height = self.heights[self.focus.index()].max(1);
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::Help => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::FocusNext => self.focus = PaneId::ALL[(self.focus.index() + 1) % 7],
            Action::FocusPrev => self.focus = PaneId::ALL[(self.focus.index() + 6) % 7],
            Action::Focus(i) => self.focus = PaneId::ALL[i.min(6)],
            Action::Up => self.move_selection(-1, height),
            Action::Down => self.move_selection(1, height),
            Action::PageUp => self.move_selection(-(height as isize), height),
            Action::PageDown => self.move_selection(height as isize, height),
            Action::Top => self.move_selection(isize::MIN / 2, height),
            Action::Bottom => {
                if let Some(p) = self.stage_pane_mut() {
                    p.tail = true;
                } else if self.focus == PaneId::Health {
                    self.health_selected = self.health.len().saturating_sub(1);
                    self.settle_health_scroll();
                }
            }
            Action::Pause => self.toggle_pause(),
            Action::Detail => self.open_detail(),
            Action::Close => {
                if self.zoom {
                    self.zoom = false;
                } else if self.search.is_some() {
                    self.search = None;
                } else if self.filter.is_some() {
                    self.apply_filter(None);
                } else if self.followed.take().is_none() {
                    return None;
                }
            }
            Action::Filter => self.open_input(InputKind::Filter),
            Action::Search => self.open_input(InputKind::Search),
            Action::SearchNext => self.jump_to_match(true),
            Action::SearchPrev => self.jump_to_match(false),
            Action::Zoom => self.zoom = !self.zoom,
            Action::Stats => self.overlay = Some(Overlay::Stats),
            Action::Act => return self.act(),
            Action::SendCommand => match self.send_command.clone() {
                Some(command) => {
                    self.overlay = Some(Overlay::Detail {
                        title: "Send a test message to this instance".into(),
                        lines: vec![
                            "From another shell on this machine (copied to the clipboard):".into(),
                            String::new(),
                            format!("  {command}"),
                        ],
                        scroll: 0,
                        message_ids: Vec::new(),
                    });
                    return Some(Effect::Copy(command));
                }
                None => self.toast("no instance of ours to send to here"),
            },
            Action::Follow => {
                let id = if self.focus == PaneId::Health {
                    self.health
                        .get(self.health_selected)
                        .and_then(|c| c.message_ids.first().copied())
                } else {
                    self.selected_event().and_then(|e| e.message_id)
                };
                match id {
                    Some(id) if self.followed == Some(id) => self.followed = None,
                    Some(id) => self.follow(id),
                    None if self.focus == PaneId::Health => {
                        self.toast("the selected check names no message")
                    }
                    None => self.toast("the selected row is not about a message"),
                }
            }
            Action::Copy => match self.selected_event() {
                Some(ev) => return Some(Effect::Copy(copy_text(ev))),
                None => self.toast("nothing selected to copy"),
            },
            Action::CopyId => match self.selected_event().and_then(|e| e.message_id) {
                Some(id) => return Some(Effect::Copy(id.to_string())),
                None => self.toast("the selected row has no message id"),
            },
            Action::Save => return Some(Effect::Save(self.session())),
            Action::Clear => self.clear(),
            Action::Send(kind) => return self.live(Effect::Send(kind)),
            Action::SendMalformed => return self.live(Effect::SendMalformed),
            Action::SendWrongChannel => return self.live(Effect::SendWrongChannel),
            Action::SendDirect => return self.live(Effect::SendDirect),
        }
        None
    }

    /// Keys while an overlay is open: scrolling, closing, and following or copying what the
    /// detail shows.
    fn update_overlay(&mut self, action: Action) -> Option<Effect> {
        let overlay = self.overlay.as_mut()?;
        match action {
            Action::Close | Action::Detail | Action::Help | Action::Stats => self.overlay = None,
            Action::Quit => return Some(Effect::Quit),
            Action::Up => scroll(overlay, -1),
            Action::Down => scroll(overlay, 1),
            Action::PageUp => scroll(overlay, -20),
            Action::PageDown => scroll(overlay, 20),
            Action::Top => scroll(overlay, isize::MIN / 2),
            Action::Follow => {
                if let Overlay::Detail { message_ids, .. } = overlay {
                    if let Some(id) = message_ids.first().copied() {
                        self.overlay = None;
                        self.follow(id);
                    }
                }
            }
            Action::Copy => {
                if let Overlay::Detail { lines, .. } = overlay {
                    return Some(Effect::Copy(lines.join("\n")));
                }
            }
            _ => {}
        }
        None
    }

    /// Every event kept, oldest first; those that arrived while paused belong to the session
    /// too.
    fn session(&self) -> Vec<Arc<TraceEvent>> {
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

    fn clear(&mut self) {
        for p in &mut self.panes {
            p.clear();
        }
        self.pending.clear();
        self.pending_dropped = 0;
        self.toast("view cleared (the pipeline and the database are untouched)");
    }

    fn live(&mut self, effect: Effect) -> Option<Effect> {
        match &self.mode {
            Mode::Live => {}
            Mode::Watch => {
                self.toast("watching someone else's pipeline: no test events");
                return None;
            }
            Mode::Replay(_) => {
                self.toast("replay is read-only: no test events");
                return None;
            }
        }
        Some(effect)
    }

    fn stage_pane_mut(&mut self) -> Option<&mut Pane> {
        self.panes.get_mut(self.focus.index())
    }

    fn move_selection(&mut self, delta: isize, height: usize) {
        if self.focus == PaneId::Health {
            let len = self.health.len();
            if len > 0 {
                self.health_selected =
                    (self.health_selected as isize + delta).clamp(0, len as isize - 1) as usize;
                self.settle_health_scroll();
            }
            return;
        }
        if let Some(p) = self.stage_pane_mut() {
            p.move_by(delta, height);
        }
    }

    fn toggle_pause(&mut self) {
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

    /// Filters every pane by `text` (empty: no filter); why not, when it does not compile.
    pub fn set_filter(&mut self, text: &str) -> Result<(), String> {
        self.apply_input(InputKind::Filter, text)
    }

    fn apply_filter(&mut self, filter: Option<Search>) {
        for p in &mut self.panes {
            p.apply_search(filter.as_ref());
        }
        self.filter = filter;
    }

    fn open_input(&mut self, kind: InputKind) {
        let current = match kind {
            InputKind::Filter => &self.filter,
            InputKind::Search => &self.search,
        };
        self.prompt = Some(Prompt::Input {
            kind,
            text: current.as_ref().map(|f| f.text.clone()).unwrap_or_default(),
            error: None,
        });
    }

    /// A new search starts at the top of the focused pane (and goes on to the next panes).
    fn jump_to_first_match(&mut self) {
        if let Some(p) = self.panes.get_mut(self.focus.index()) {
            if !p.is_empty() {
                let height = self.heights[self.focus.index()].max(1);
                p.select(0, height);
                if p.get(0)
                    .is_some_and(|e| self.search.as_ref().is_some_and(|s| s.matches(e)))
                {
                    return;
                }
            }
        }
        self.jump_to_match(true);
    }

    /// Selects the next (or previous) row matching the search, from the selection on, across
    /// the stage panes in their order, wrapping around.
    fn jump_to_match(&mut self, forward: bool) {
        let Some(search) = self.search.clone() else {
            self.toast(format!(
                "no search: {} starts one",
                self.keymap.label(Action::Search)
            ));
            return;
        };
        let order: Vec<PaneId> = PaneId::STAGES.to_vec();
        let start = order.iter().position(|p| *p == self.focus).unwrap_or(0);
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
                self.focus = pane;
                let height = self.heights[pane.index()].max(1);
                self.panes[pane.index()].select(j, height);
                return;
            }
        }
        self.toast(format!("no row matches {:?}", search.text));
    }

    /// The action the selected health check offers, as a question to confirm.
    fn act(&mut self) -> Option<Effect> {
        if self.mode != Mode::Live && !matches!(self.mode, Mode::Watch) {
            self.toast("replay is read-only: nothing to act on");
            return None;
        }
        if self.focus != PaneId::Health {
            self.toast(format!(
                "select a check in Health ({}) to act on it",
                self.keymap.label(Action::Focus(PaneId::Health.index()))
            ));
            return None;
        }
        let Some(check) = self.health.get(self.health_selected) else {
            self.toast("no check selected");
            return None;
        };
        let prompt = match &check.target {
            Some(CheckTarget::Backend {
                pid,
                application_name,
                user,
            }) => {
                let who = match (application_name.is_empty(), user.is_empty()) {
                    (true, true) => format!("pid {pid}"),
                    (false, true) => format!("pid {pid} ({application_name})"),
                    (true, false) => format!("pid {pid} (user {user})"),
                    (false, false) => format!("pid {pid} ({application_name}, user {user})"),
                };
                Prompt::Confirm {
                    question: format!("{who}: cancel its statement, or end its session?"),
                    choices: vec![
                        ('c', "cancel statement".into(), Effect::CancelBackend(*pid)),
                        ('t', "end session".into(), Effect::TerminateBackend(*pid)),
                    ],
                }
            }
            Some(CheckTarget::StuckRows) if self.mode == Mode::Live => Prompt::Confirm {
                question: "retry the stuck outbox rows now, retrying and given-up ones (attempts \
                           reset)?"
                    .into(),
                choices: vec![('y', "retry".into(), Effect::RetryStuckRows)],
            },
            Some(CheckTarget::DeadLetters) if self.mode == Mode::Live => Prompt::Confirm {
                question: "dead letters: list, requeue or delete them?".into(),
                choices: vec![
                    ('l', "list".into(), Effect::ListDeadLetters),
                    ('r', "requeue".into(), Effect::RequeueDeadLetters),
                    ('d', "delete".into(), Effect::DeleteDeadLetters),
                ],
            },
            Some(_) => {
                self.toast("watching someone else's pipeline: its outbox is theirs");
                return None;
            }
            None => {
                self.toast(format!("nothing to act on for \"{}\"", check.name));
                return None;
            }
        };
        self.prompt = Some(prompt);
        None
    }

    /// Highlights the message's rows in every pane and scrolls each pane to its first one.
    fn follow(&mut self, id: Snowflake) {
        self.followed = Some(id);
        for pane in PaneId::STAGES {
            let height = self.heights[pane.index()].max(1);
            let p = &mut self.panes[pane.index()];
            if let Some(i) =
                (0..p.len()).find(|&i| p.get(i).is_some_and(|e| e.message_id == Some(id)))
            {
                p.select(i, height);
            }
        }
        self.toast(format!("following message {id}"));
    }

    pub fn selected_event(&self) -> Option<&Arc<TraceEvent>> {
        self.pane(self.focus).and_then(|p| p.selected())
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

    fn open_detail(&mut self) {
        if self.focus == PaneId::Health {
            if let Some(check) = self.health.get(self.health_selected) {
                self.overlay = Some(detail::check_detail(check, &self.keymap));
            }
            return;
        }
        let Some(event) = self.selected_event().cloned() else {
            self.toast("no row selected");
            return;
        };
        let timeline = event
            .message_id
            .map(|id| self.timeline(id))
            .unwrap_or_default();
        self.overlay = Some(detail::event_detail(self.focus.title(), &event, &timeline));
    }
}
