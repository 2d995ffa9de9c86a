//! The monitor's state and how actions change it. Nothing here draws or does I/O: work that
//! needs the outside world is returned as an [`Effect`] for the event loop to carry out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::contract::Snowflake;
use crate::diagnose::{Check, CheckId};
use crate::pipeline::synthetic::SimKind;
use crate::screen::detail::{self, copy_text, scroll, Overlay};
use crate::screen::keys::{Action, KeyMap};
use crate::screen::logs;
use crate::screen::pane::{Pane, PaneId};
use crate::screen::search::Search;
use crate::trace::{Status, TraceEvent, TraceKind};

/// Rows a pane keeps by default (`--history`).
pub const DEFAULT_HISTORY: usize = 10_000;
/// Seconds of per-stage rates kept for the sparklines.
pub const RATE_HISTORY: usize = 60;
const TOAST_FOR: Duration = Duration::from_secs(5);

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
}

/// Things that happen to the app besides keys.
#[derive(Debug, Clone)]
pub enum AppEvent {
    Trace(Arc<TraceEvent>),
    Backlog(Option<i64>),
    Health(Vec<Check>),
    Toast(String),
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
    /// The filter being typed after `/`.
    pub filter_input: Option<String>,
    pub filter_error: Option<String>,
    pub followed: Option<Snowflake>,
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
            filter_input: None,
            filter_error: None,
            followed: None,
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
            AppEvent::Tick => {
                self.rates.tick();
                self.toasts.retain(|(at, _)| at.elapsed() < TOAST_FOR);
                self.dirty = true;
            }
        }
    }

    pub fn on_trace(&mut self, event: Arc<TraceEvent>) {
        self.update_status(&event);
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
        if let Some(input) = &mut self.filter_input {
            self.dirty = true;
            if ctrl_c {
                return Some(Effect::Quit);
            }
            match key.code {
                KeyCode::Esc => {
                    self.filter_input = None;
                    self.filter_error = None;
                }
                KeyCode::Enter => {
                    let text = std::mem::take(input);
                    self.filter_input = None;
                    self.set_filter(&text);
                }
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) => input.push(c),
                _ => {}
            }
            return None;
        }
        let action = self.keymap.action(&key);
        if self.focus == PaneId::Logs && self.overlay.is_none() {
            // The log widget has keys of its own for targets, levels and paging.
            let own = logs::log_event(key.code).is_some() && !matches!(action, Some(Action::Quit));
            if own {
                self.dirty = true;
                return Some(Effect::LogKey(key));
            }
        }
        self.update(action?)
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
                }
            }
            Action::Pause => self.toggle_pause(),
            Action::Detail => self.open_detail(),
            Action::Close => {
                if self.filter.is_some() {
                    self.set_filter("");
                } else if self.followed.take().is_none() {
                    return None;
                }
            }
            Action::Filter => {
                self.filter_input = Some(
                    self.filter
                        .as_ref()
                        .map(|f| f.text.clone())
                        .unwrap_or_default(),
                )
            }
            Action::Follow => {
                let id = self.selected_event().and_then(|e| e.message_id);
                match id {
                    Some(id) if self.followed == Some(id) => self.followed = None,
                    Some(id) => self.follow(id),
                    None => self.toast("the selected row is not about a message"),
                }
            }
            Action::Copy => match self.selected_event() {
                Some(ev) => return Some(Effect::Copy(copy_text(ev))),
                None => self.toast("nothing selected to copy"),
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
            Action::Close | Action::Detail | Action::Help => self.overlay = None,
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

    pub fn set_filter(&mut self, text: &str) {
        self.filter_error = None;
        let filter = if text.is_empty() {
            None
        } else {
            match Search::new(text) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.filter_error = Some(format!("bad regex: {e}"));
                    return;
                }
            }
        };
        for p in &mut self.panes {
            p.apply_search(filter.as_ref());
        }
        self.filter = filter;
    }

    fn follow(&mut self, id: Snowflake) {
        self.followed = Some(id);
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
