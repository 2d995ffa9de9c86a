//! The monitor's state and how actions change it. Nothing here draws or does I/O: work that
//! needs the outside world is returned as an [`Effect`] for the event loop to carry out.
//!
//! The state is four views, each with its own update and footer hints: the stage panes
//! ([`StageView`]), the health pane ([`HealthView`]), what lies over them ([`Layers`]: the
//! prompt and the overlays) and the status bar ([`StatusView`]). The app routes keys, the
//! mouse and events to them and keeps what they share: the mode, the focus and the layout.

pub use crate::events::{AppEvent, ClickTarget, Effect, InputKind, Mode, Pointer, Prompt};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::detail::Overlay;
use crate::keys::{Action, KeyMap};
use crate::logs;
use crate::pane::{Pane, PaneId, PANE_COUNT};
use crate::search::Search;
use crate::views::health::HealthView;
use crate::views::layers::{Layers, OverlayOutcome, PromptOutcome};
use crate::views::stages::StageView;
use crate::views::status::{Connection, StatusView};
use crate::views::Reply;
use notifyscope_model::check::{Check, CheckId};
use notifyscope_model::contract::Snowflake;
use notifyscope_model::sim::SimKind;
use notifyscope_model::trace::{Status, TraceEvent, TraceKind};

/// Rows a pane keeps by default (`--history`).
pub const DEFAULT_HISTORY: usize = 10_000;
/// Two clicks on the same row within this are a double-click.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);

pub struct App {
    pub mode: Mode,
    pub focus: PaneId,
    /// The focused pane alone on the whole screen.
    pub zoom: bool,
    /// Visible rows of each pane, from the last layout.
    pub heights: [usize; PANE_COUNT],
    pub stages: StageView,
    pub health: HealthView,
    pub layers: Layers,
    pub status: StatusView,
    pub keymap: KeyMap,
    pub channel: String,
    /// The last click, and what it selected: a second click is a double-click only on the
    /// same row (rows that arrive in between must not turn it into another row's).
    last_click: Option<(Instant, ClickTarget, Option<Arc<TraceEvent>>)>,
    /// Something changed since the last frame.
    pub dirty: bool,
}

impl App {
    pub fn new(keymap: KeyMap, history: usize, channel: &str) -> Self {
        App {
            mode: Mode::Live,
            focus: PaneId::Received,
            zoom: false,
            heights: [10; PANE_COUNT],
            stages: StageView::new(history),
            health: HealthView::default(),
            layers: Layers::default(),
            status: StatusView::default(),
            keymap,
            channel: channel.to_owned(),
            last_click: None,
            dirty: true,
        }
    }

    /// A stage pane's rows; `None` for the panes that are not stages.
    pub fn pane(&self, id: PaneId) -> Option<&Pane> {
        self.stages.pane(id)
    }

    pub fn toast(&mut self, text: impl Into<String>) {
        self.status.toast(text);
        self.dirty = true;
    }

    /// Rows of its list the focused pane shows.
    fn height(&self, pane: PaneId) -> usize {
        self.heights[pane.index()].max(1)
    }

    pub fn on_event(&mut self, event: AppEvent) {
        match event {
            AppEvent::Trace(ev) => self.on_trace(ev),
            AppEvent::Backlog(b) => {
                if self.status.info.backlog != b {
                    self.status.info.backlog = b;
                    self.dirty = true;
                }
            }
            AppEvent::Health(checks) => self.on_checks(checks),
            AppEvent::Toast(text) => self.toast(text),
            AppEvent::Lines { title, lines } => {
                self.layers.overlay = Some(Overlay::Detail {
                    title,
                    lines,
                    scroll: 0,
                    message_ids: Vec::new(),
                });
                self.dirty = true;
            }
            AppEvent::Tick => {
                self.status.tick(matches!(self.mode, Mode::Replay(_)));
                self.dirty = true;
            }
        }
    }

    fn on_checks(&mut self, checks: Vec<Check>) {
        if self.mode == Mode::Watch {
            // Someone else's listener sends no listener events: the status bar says what the
            // listener check found, so the two never disagree.
            if let Some(c) = checks.iter().find(|c| c.id == CheckId::Listener) {
                let listener = Connection {
                    up: match c.status {
                        Status::Ok => Some(true),
                        Status::Fail => Some(false),
                        Status::Warn | Status::Unknown => None,
                    },
                    text: c.summary.clone(),
                };
                if listener != self.status.info.listener {
                    self.status.info.listener = listener;
                    self.dirty = true;
                }
            }
        }
        if self.health.set_checks(checks) {
            self.dirty = true;
        }
    }

    pub fn on_trace(&mut self, event: Arc<TraceEvent>) {
        if self.status.observe(&event) {
            self.dirty = true;
        }
        if let TraceKind::HealthReport { checks } = &event.kind {
            // Live, the diagnosis hands its checks over directly; a recording has only these.
            if matches!(self.mode, Mode::Replay(_)) {
                self.on_checks(checks.iter().filter_map(Check::from_state).collect());
            }
            self.stages.keep_report(event);
            return;
        }
        let Some(pane) = PaneId::of(&event.kind) else {
            return;
        };
        self.status.count(pane);
        self.stages.push(pane, event);
        self.dirty = true;
    }

    /// Applies a key. `None` means the key has no meaning here.
    pub fn on_key(&mut self, key: crossterm::event::KeyEvent) -> Option<Effect> {
        use crossterm::event::{KeyCode, KeyModifiers};
        if self.layers.prompt.is_some() {
            self.dirty = true;
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c {
                return Some(Effect::Quit);
            }
            return self.on_prompt_key(key.code);
        }
        let action = self.keymap.action(&key);
        if self.focus == PaneId::Logs && self.layers.overlay.is_none() {
            // The log widget has keys of its own for targets, levels and paging.
            let plain = !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
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

    fn on_prompt_key(&mut self, code: crossterm::event::KeyCode) -> Option<Effect> {
        match self.layers.on_prompt_key(code) {
            PromptOutcome::Nothing => None,
            PromptOutcome::Apply(kind, text) => {
                match self.apply_input(kind, &text) {
                    Ok(()) => self.layers.prompt = None,
                    Err(why) => self.layers.refuse(why),
                }
                None
            }
            PromptOutcome::Chosen(effect) => Some(effect),
            PromptOutcome::Cancelled => {
                self.toast("cancelled: nothing was done");
                None
            }
        }
    }

    /// Applies what the prompt read; why not, when it cannot be.
    fn apply_input(&mut self, kind: InputKind, text: &str) -> Result<(), String> {
        let compiled = if text.is_empty() {
            None
        } else {
            Some(Search::new(text).map_err(|e| format!("bad regex: {e}"))?)
        };
        match kind {
            InputKind::Filter => self.stages.apply_filter(compiled),
            InputKind::Search => {
                self.stages.search = compiled;
                if self.stages.search.is_some() {
                    match self.stages.jump_to_first_match(self.focus, &self.heights) {
                        Some(pane) => self.focus = pane,
                        None => self.no_match(),
                    }
                }
            }
        }
        Ok(())
    }

    /// Filters every pane by `text` (empty: no filter); why not, when it does not compile.
    pub fn set_filter(&mut self, text: &str) -> Result<(), String> {
        self.apply_input(InputKind::Filter, text)
    }

    fn no_match(&mut self) {
        let said = match &self.stages.search {
            Some(search) => format!("no row matches {:?}", search.text),
            None => format!(
                "no search: {} starts one",
                self.keymap.label(Action::Search)
            ),
        };
        self.toast(said);
    }

    /// Applies the mouse: a click focuses a pane (or a tab) and selects the row under the
    /// pointer, a second click on the same row opens its detail, the wheel scrolls.
    pub fn on_pointer(&mut self, pointer: Pointer) -> Option<Effect> {
        self.dirty = true;
        if self.layers.prompt.is_some() {
            return None;
        }
        match pointer {
            Pointer::ScrollUp(_) | Pointer::ScrollDown(_) if self.layers.overlay.is_some() => {
                let up = matches!(pointer, Pointer::ScrollUp(_));
                self.layers.scroll(if up { -3 } else { 3 });
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
                self.move_selection(if up { -3 } else { 3 });
            }
            Pointer::Click(target) => {
                if self.layers.overlay.is_some() {
                    return None;
                }
                self.click(target);
            }
        }
        None
    }

    fn click(&mut self, target: ClickTarget) {
        let last = self.last_click.take();
        match target {
            ClickTarget::Tab(pane) => self.focus = pane,
            ClickTarget::Pane { pane, row } => {
                self.focus = pane;
                if let Some(row) = row {
                    let height = self.height(pane);
                    if pane == PaneId::Health {
                        self.health.select_shown_row(row, height);
                    } else {
                        self.stages.select_shown_row(pane, row, height);
                    }
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

    pub fn update(&mut self, action: Action) -> Option<Effect> {
        self.dirty = true;
        if self.layers.overlay.is_some() {
            return match self.layers.update_overlay(action) {
                OverlayOutcome::Nothing => None,
                OverlayOutcome::Effect(effect) => Some(effect),
                OverlayOutcome::Follow(id) => {
                    self.follow(id);
                    None
                }
            };
        }
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::Help => self.layers.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::FocusNext => self.focus = self.focus.step(1),
            Action::FocusPrev => self.focus = self.focus.step(-1),
            Action::Focus(pane) => self.focus = pane,
            Action::Close => return self.close(),
            // The view pauses, whichever pane has the focus.
            Action::Pause => self.stages.toggle_pause(),
            Action::Filter => self.read(InputKind::Filter),
            Action::Search => self.read(InputKind::Search),
            Action::SearchNext | Action::SearchPrev => {
                let forward = action == Action::SearchNext;
                match self
                    .stages
                    .jump_to_match(self.focus, forward, &self.heights)
                {
                    Some(pane) => self.focus = pane,
                    None => self.no_match(),
                }
            }
            Action::Zoom => self.zoom = !self.zoom,
            Action::Stats => self.layers.overlay = Some(Overlay::Stats),
            Action::Act => return self.act(),
            Action::SendCommand => return self.show_send_command(),
            Action::Save => return Some(Effect::Save(self.stages.session())),
            Action::Clear => {
                self.stages.clear();
                self.toast("view cleared (the pipeline and the database are untouched)");
            }
            Action::Send(kind) => return self.live(Effect::Send(kind)),
            Action::SendMalformed => return self.live(Effect::SendMalformed),
            Action::SendWrongChannel => return self.live(Effect::SendWrongChannel),
            Action::SendDirect => return self.live(Effect::SendDirect),
            pane_action => return self.update_focused(pane_action),
        }
        None
    }

    /// An action of the focused pane, by its view.
    fn update_focused(&mut self, action: Action) -> Option<Effect> {
        let height = self.height(self.focus);
        let reply = if self.focus == PaneId::Health {
            self.health.update(action, height, &self.keymap)
        } else {
            self.stages.update(self.focus, action, height)
        };
        match reply {
            Reply::Nothing => {}
            Reply::Effect(effect) => return Some(effect),
            Reply::Toast(text) => self.toast(text),
            Reply::Open(overlay) => self.layers.overlay = Some(overlay),
            Reply::Follow(id) if self.stages.followed == Some(id) => self.stages.followed = None,
            Reply::Follow(id) => self.follow(id),
        }
        None
    }

    /// Esc: unzoom, else end the search, else the filter, else stop following.
    fn close(&mut self) -> Option<Effect> {
        if self.zoom {
            self.zoom = false;
        } else if self.stages.search.is_some() {
            self.stages.search = None;
        } else if self.stages.filter.is_some() {
            self.stages.apply_filter(None);
        } else {
            self.stages.followed = None;
        }
        None
    }

    fn read(&mut self, kind: InputKind) {
        let current = match kind {
            InputKind::Filter => &self.stages.filter,
            InputKind::Search => &self.stages.search,
        };
        let text = current.as_ref().map(|f| f.text.clone());
        self.layers.read(kind, text.as_deref());
    }

    fn show_send_command(&mut self) -> Option<Effect> {
        let Some(command) = self.status.send_command.clone() else {
            self.toast("no instance of ours to send to here");
            return None;
        };
        self.layers.overlay = Some(Overlay::Detail {
            title: "Send a test message to this instance".into(),
            lines: vec![
                "From another shell on this machine (copied to the clipboard):".into(),
                String::new(),
                format!("  {command}"),
            ],
            scroll: 0,
            message_ids: Vec::new(),
        });
        Some(Effect::Copy(command))
    }

    fn follow(&mut self, id: Snowflake) {
        self.stages.follow(id, &self.heights);
        self.toast(format!("following message {id}"));
    }

    fn live(&mut self, effect: Effect) -> Option<Effect> {
        let refused = match &self.mode {
            Mode::Live => return Some(effect),
            Mode::Watch => "watching someone else's pipeline: no test events",
            Mode::Replay(_) => "replay is read-only: no test events",
        };
        self.toast(refused);
        None
    }

    fn move_selection(&mut self, delta: isize) {
        let height = self.height(self.focus);
        if self.focus == PaneId::Health {
            self.health.move_selection(delta, height);
        } else {
            self.stages.move_selection(self.focus, delta, height);
        }
    }

    /// The action the selected health check offers, as a question to confirm.
    fn act(&mut self) -> Option<Effect> {
        if matches!(self.mode, Mode::Replay(_)) {
            self.toast("replay is read-only: nothing to act on");
            return None;
        }
        if self.focus != PaneId::Health {
            self.toast(format!(
                "select a check in Health ({}) to act on it",
                self.keymap.label(Action::Focus(PaneId::Health))
            ));
            return None;
        }
        match self.health.act(&self.mode) {
            Ok(prompt) => self.layers.prompt = Some(prompt),
            Err(why) => self.toast(why),
        }
        None
    }

    pub fn selected_event(&self) -> Option<&Arc<TraceEvent>> {
        self.stages.selected(self.focus)
    }

    /// The detail of the focused pane's selection (a double click).
    fn open_detail(&mut self) {
        self.update_focused(Action::Detail);
    }

    /// The keys the footer offers now, in order of use; the last ones give way on a narrow
    /// terminal.
    pub fn hints(&self) -> Vec<(Action, &'static str)> {
        let live = self.mode == Mode::Live;
        let mut hints = vec![
            (Action::Quit, "quit"),
            (Action::Help, "help"),
            (Action::FocusNext, "focus"),
        ];
        if self.focus == PaneId::Health {
            hints.extend(self.health.hints(&self.mode));
        }
        if live {
            hints.push((Action::Send(SimKind::Message), "send"));
        }
        hints.extend(self.stages.hints(self.zoom));
        if live {
            hints.extend([
                (Action::Send(SimKind::Burst), "burst"),
                (Action::Send(SimKind::Own), "own"),
                (Action::SendMalformed, "malformed"),
            ]);
        }
        hints
    }
}
