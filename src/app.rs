//! The monitor's state and how actions change it. Nothing here draws or does I/O: work that
//! needs the outside world is returned as an [`Effect`] for the event loop to carry out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use regex::Regex;

use crate::diagnose::{Check, Status};
use crate::event::Snowflake;
use crate::keys::{Action, KeyMap};
use crate::output::detail_text;
use crate::synthetic::SimKind;
use crate::trace::{Stage, TraceEvent};

/// Rows a pane keeps by default (`--history`).
pub const DEFAULT_HISTORY: usize = 10_000;
/// Seconds of per-stage rates kept for the sparklines.
pub const RATE_HISTORY: usize = 60;
const TOAST_FOR: Duration = Duration::from_secs(5);

/// The five stage panes, then health and logs: the order of the `1`–`7` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaneId {
    Received,
    Published,
    Notify,
    Ingest,
    Skips,
    Health,
    Logs,
}

impl PaneId {
    pub const ALL: [PaneId; 7] = [
        PaneId::Received,
        PaneId::Published,
        PaneId::Notify,
        PaneId::Ingest,
        PaneId::Skips,
        PaneId::Health,
        PaneId::Logs,
    ];
    pub const STAGES: [PaneId; 5] = [
        PaneId::Received,
        PaneId::Published,
        PaneId::Notify,
        PaneId::Ingest,
        PaneId::Skips,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn key(self) -> char {
        char::from(b'1' + self as u8)
    }

    pub fn title(self) -> &'static str {
        match self {
            PaneId::Received => "Discord messages received",
            PaneId::Published => "Published payloads",
            PaneId::Notify => "NOTIFY receipts",
            PaneId::Ingest => "Ingestion results",
            PaneId::Skips => "Filter skips",
            PaneId::Health => "Health",
            PaneId::Logs => "Logs",
        }
    }

    pub fn short_title(self) -> &'static str {
        match self {
            PaneId::Received => "Received",
            PaneId::Published => "Published",
            PaneId::Notify => "NOTIFY",
            PaneId::Ingest => "Ingestion",
            PaneId::Skips => "Skips",
            PaneId::Health => "Health",
            PaneId::Logs => "Logs",
        }
    }

    /// The stage pane an event belongs in, if any.
    pub fn of(stage: &Stage) -> Option<PaneId> {
        Some(match stage {
            Stage::Received { .. } => PaneId::Received,
            Stage::Published { .. } | Stage::PublishFailed { .. } | Stage::Backpressure { .. } => {
                PaneId::Published
            }
            Stage::Notified { .. }
            | Stage::NotifyRejected { .. }
            | Stage::NeighbourNotified { .. } => PaneId::Notify,
            Stage::Ingested { .. } | Stage::IngestFailed { .. } | Stage::RowObserved { .. } => {
                PaneId::Ingest
            }
            Stage::Skipped { .. } | Stage::ContentIntentSuspected { .. } => PaneId::Skips,
            _ => return None,
        })
    }
}

/// A bounded history of one stage's events, addressed by sequence numbers so that dropping
/// old rows does not move the selection.
#[derive(Debug, Default)]
pub struct Pane {
    events: VecDeque<Arc<TraceEvent>>,
    /// Sequence number of `events[0]`.
    first_seq: u64,
    /// With a filter: the sequence numbers of matching events, in order.
    matches: Option<VecDeque<u64>>,
    pub dropped: u64,
    /// Showing (and selecting) the newest row as rows arrive.
    pub tail: bool,
    selected_seq: u64,
    top_seq: u64,
}

impl Pane {
    fn new() -> Self {
        Pane {
            tail: true,
            ..Pane::default()
        }
    }

    fn push(&mut self, event: Arc<TraceEvent>, capacity: usize, filter: Option<&RowFilter>) {
        if self.events.len() >= capacity.max(1) {
            self.events.pop_front();
            self.first_seq += 1;
            self.dropped += 1;
            if let Some(m) = &mut self.matches {
                while m.front().is_some_and(|s| *s < self.first_seq) {
                    m.pop_front();
                }
            }
        }
        let seq = self.first_seq + self.events.len() as u64;
        if let (Some(m), Some(f)) = (&mut self.matches, filter) {
            if f.matches(&event) {
                m.push_back(seq);
            }
        }
        self.events.push_back(event);
    }

    fn apply_filter(&mut self, filter: Option<&RowFilter>) {
        self.matches = filter.map(|f| {
            self.events
                .iter()
                .enumerate()
                .filter(|(_, e)| f.matches(e))
                .map(|(i, _)| self.first_seq + i as u64)
                .collect()
        });
        self.tail = true;
    }

    fn clear(&mut self) {
        self.first_seq += self.events.len() as u64;
        self.events.clear();
        if let Some(m) = &mut self.matches {
            m.clear();
        }
        self.tail = true;
    }

    /// Rows in view (matching the filter).
    pub fn len(&self) -> usize {
        self.matches
            .as_ref()
            .map(|m| m.len())
            .unwrap_or(self.events.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn total_kept(&self) -> usize {
        self.events.len()
    }

    fn seq_at(&self, index: usize) -> Option<u64> {
        match &self.matches {
            Some(m) => m.get(index).copied(),
            None => (index < self.events.len()).then(|| self.first_seq + index as u64),
        }
    }

    fn index_of(&self, seq: u64) -> usize {
        match &self.matches {
            Some(m) => m.partition_point(|s| *s < seq),
            None => seq.saturating_sub(self.first_seq) as usize,
        }
        .min(self.len().saturating_sub(1))
    }

    /// The event at a view index.
    pub fn get(&self, index: usize) -> Option<&Arc<TraceEvent>> {
        let seq = self.seq_at(index)?;
        self.events.get((seq - self.first_seq) as usize)
    }

    pub fn selected_index(&self) -> Option<usize> {
        if self.is_empty() {
            None
        } else if self.tail {
            Some(self.len() - 1)
        } else {
            Some(self.index_of(self.selected_seq))
        }
    }

    pub fn selected(&self) -> Option<&Arc<TraceEvent>> {
        self.selected_index().and_then(|i| self.get(i))
    }

    /// The view indices shown in a window of `height` rows.
    pub fn window(&self, height: usize) -> std::ops::Range<usize> {
        let len = self.len();
        if len == 0 || height == 0 {
            return 0..0;
        }
        if self.tail {
            return len.saturating_sub(height)..len;
        }
        let top = self.index_of(self.top_seq);
        let top = top.min(len.saturating_sub(height));
        top..(top + height).min(len)
    }

    /// Moves the selection by `delta` rows, keeping it inside a window of `height`.
    fn move_by(&mut self, delta: isize, height: usize) {
        let len = self.len();
        if len == 0 {
            return;
        }
        let current = self.selected_index().unwrap_or(len - 1);
        let target = (current as isize + delta).clamp(0, len as isize - 1) as usize;
        self.select(target, height);
    }

    fn select(&mut self, target: usize, height: usize) {
        let len = self.len();
        if len == 0 {
            return;
        }
        let height = height.max(1);
        let mut top = self.window(height).start;
        if target < top {
            top = target;
        } else if target >= top + height {
            top = target + 1 - height;
        }
        // Reaching the newest row goes back to following new rows.
        self.tail = target + 1 == len;
        self.selected_seq = self.seq_at(target).unwrap_or(0);
        self.top_seq = self.seq_at(top).unwrap_or(0);
    }
}

/// The `/` filter: a case-insensitive substring, or a regex after `re:`.
#[derive(Debug, Clone)]
pub struct RowFilter {
    pub text: String,
    regex: Option<Regex>,
    lower: String,
}

impl RowFilter {
    pub fn new(text: &str) -> Result<Self, String> {
        let regex = match text.strip_prefix("re:") {
            Some(pattern) => Some(Regex::new(pattern).map_err(|e| format!("bad regex: {e}"))?),
            None => None,
        };
        Ok(RowFilter {
            text: text.to_owned(),
            regex,
            lower: text.to_lowercase(),
        })
    }

    pub fn matches(&self, event: &TraceEvent) -> bool {
        let text = searchable(event);
        match &self.regex {
            Some(re) => re.is_match(&text),
            None => text.to_lowercase().contains(&self.lower),
        }
    }
}

/// What the filter looks at: full message id, stage and its details.
fn searchable(event: &TraceEvent) -> String {
    let id = event.message_id.map(|i| i.to_string()).unwrap_or_default();
    format!("{id} {} {}", event.stage.name(), detail_text(event))
}

/// A full-screen layer over the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help {
        scroll: usize,
    },
    /// Pre-rendered lines of the selected row or check, and the message ids it concerns.
    Detail {
        title: String,
        lines: Vec<String>,
        scroll: usize,
        message_ids: Vec<Snowflake>,
    },
}

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
    pub filter: Option<RowFilter>,
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
        let Some(pane) = PaneId::of(&event.stage) else {
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
        match &event.stage {
            Stage::DatabaseUp { url, embedded } => {
                status.database = Connection {
                    up: Some(true),
                    text: format!("{url}{}", if *embedded { " embedded" } else { "" }),
                }
            }
            Stage::DatabaseDown { error } => {
                status.database.up = Some(false);
                status.database.text = error.clone();
            }
            Stage::ListenerUp { channel, pid, .. } => {
                status.listener = Connection {
                    up: Some(true),
                    text: format!("pid {pid} on {channel}"),
                }
            }
            Stage::ListenerDown { cause, .. } => {
                status.listener = Connection {
                    up: Some(false),
                    text: cause.clone(),
                }
            }
            Stage::GatewayWaiting { waiting_for } => {
                status.gateway = Connection {
                    up: None,
                    text: format!("waiting for {waiting_for}"),
                }
            }
            Stage::GatewayReady {
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
            Stage::GatewayResumed { .. } => status.gateway.up = Some(true),
            Stage::GatewayDown { code, reason, .. } => {
                status.gateway = Connection {
                    up: Some(false),
                    text: match code {
                        Some(c) => format!("close {c}: {reason}"),
                        None => reason.clone(),
                    },
                }
            }
            Stage::Backpressure { .. } => status.backpressure += 1,
            Stage::Lagged { missed } => status.lagged = status.lagged.saturating_add(*missed),
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
            let own = matches!(
                key.code,
                KeyCode::Up
                    | KeyCode::Down
                    | KeyCode::Left
                    | KeyCode::Right
                    | KeyCode::PageUp
                    | KeyCode::PageDown
                    | KeyCode::Char('+')
                    | KeyCode::Char('-')
                    | KeyCode::Char('h')
                    | KeyCode::Char('f')
            ) && !matches!(action, Some(Action::Quit));
            if own {
                self.dirty = true;
                return Some(Effect::LogKey(key));
            }
        }
        self.update(action?)
    }

    pub fn update(&mut self, action: Action) -> Option<Effect> {
        self.dirty = true;
        if let Some(overlay) = &mut self.overlay {
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
            return None;
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
            Action::Save => {
                // Events that arrived while paused belong to the session too.
                let mut events: Vec<Arc<TraceEvent>> = self
                    .panes
                    .iter()
                    .flat_map(|p| p.events.iter().cloned())
                    .chain(self.pending.iter().cloned())
                    .collect();
                events.sort_by_key(|e| e.at);
                return Some(Effect::Save(events));
            }
            Action::Clear => {
                for p in &mut self.panes {
                    p.clear();
                }
                self.pending.clear();
                self.pending_dropped = 0;
                self.toast("view cleared (the pipeline and the database are untouched)");
            }
            Action::Send(kind) => return self.live(Effect::Send(kind)),
            Action::SendMalformed => return self.live(Effect::SendMalformed),
            Action::SendWrongChannel => return self.live(Effect::SendWrongChannel),
            Action::SendDirect => return self.live(Effect::SendDirect),
        }
        None
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
                if let Some(pane) = PaneId::of(&ev.stage) {
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
            match RowFilter::new(text) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.filter_error = Some(e);
                    return;
                }
            }
        };
        for p in &mut self.panes {
            p.apply_filter(filter.as_ref());
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
            .flat_map(|p| p.events.iter())
            .filter(|e| e.message_id == Some(id))
            .collect();
        events.sort_by_key(|e| e.at);
        events
    }

    fn open_detail(&mut self) {
        if self.focus == PaneId::Health {
            if let Some(check) = self.health.get(self.health_selected) {
                self.overlay = Some(check_detail(check));
            }
            return;
        }
        let Some(event) = self.selected_event().cloned() else {
            self.toast("no row selected");
            return;
        };
        let mut lines = Vec::new();
        lines.push(format!(
            "{} at {}",
            event.stage.name(),
            event
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ));
        lines.push(String::new());
        lines.push("Fields".into());
        let fields = serde_json::to_value(&*event).unwrap_or_default();
        if let Some(obj) = fields.as_object() {
            for (k, v) in obj {
                if k == "payload" {
                    continue;
                }
                lines.push(format!(
                    "  {k}: {}",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                ));
            }
        }
        let payload = match &event.stage {
            Stage::Notified { payload, .. } | Stage::NotifyRejected { payload, .. } => {
                Some(payload)
            }
            _ => None,
        };
        if let Some(payload) = payload {
            lines.push(String::new());
            lines.push("Payload".into());
            match serde_json::from_str::<serde_json::Value>(payload) {
                Ok(v) => lines.extend(
                    serde_json::to_string_pretty(&v)
                        .unwrap_or_default()
                        .lines()
                        .map(|l| format!("  {l}")),
                ),
                Err(_) => lines.push(format!("  {payload}")),
            }
        }
        let mut message_ids = Vec::new();
        if let Some(id) = event.message_id {
            message_ids.push(id);
            lines.push(String::new());
            lines.push(format!("Timeline of message {id}"));
            let timeline = self.timeline(id);
            let start = timeline.first().map(|e| e.at);
            let mut previous: Option<DateTime<Utc>> = None;
            for e in timeline {
                let since_start = start.map(|s| ms(e.at - s)).unwrap_or(0.0);
                let step = previous
                    .map(|p| format!("(+{:.1} ms)", ms(e.at - p)))
                    .unwrap_or_default();
                lines.push(format!(
                    "  {:>9.1} ms  {:<16} {:<14} {}",
                    since_start,
                    e.stage.name(),
                    step,
                    detail_text(e)
                ));
                previous = Some(e.at);
            }
        }
        self.overlay = Some(Overlay::Detail {
            title: format!("{} — {}", self.focus.title(), event.stage.name()),
            lines,
            scroll: 0,
            message_ids,
        });
    }
}

fn ms(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(0) as f64 / 1000.0
}

fn scroll(overlay: &mut Overlay, delta: isize) {
    let s = match overlay {
        Overlay::Help { scroll } | Overlay::Detail { scroll, .. } => scroll,
    };
    *s = (*s as isize + delta).max(0) as usize;
}

/// The payload of a NOTIFY row, or the whole event as JSON.
fn copy_text(event: &TraceEvent) -> String {
    match &event.stage {
        Stage::Notified { payload, .. } | Stage::NotifyRejected { payload, .. } => payload.clone(),
        _ => event.to_json(),
    }
}

fn check_detail(check: &Check) -> Overlay {
    let mut lines = vec![
        format!(
            "{} {} — {:?}",
            check.status.symbol(),
            check.name,
            check.status
        ),
        format!(
            "since {}",
            check
                .since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        String::new(),
        check.summary.clone(),
    ];
    if !check.evidence.is_empty() {
        lines.push(String::new());
        lines.push("Evidence".into());
        lines.extend(check.evidence.iter().map(|e| format!("  {e}")));
    }
    if check.status != Status::Ok {
        lines.push(String::new());
        lines.push(format!("Fix: {}", check.hint));
    }
    if !check.message_ids.is_empty() {
        lines.push(String::new());
        lines.push("Messages (f follows the first one in the panes)".into());
        lines.extend(check.message_ids.iter().map(|id| format!("  {id}")));
    }
    Overlay::Detail {
        title: format!("Health — {}", check.name),
        lines,
        scroll: 0,
        message_ids: check.message_ids.clone(),
    }
}
