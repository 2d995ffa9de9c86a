//! Every key binding, as data: one table of actions with their default keys and help text,
//! overridable from the config file's `[keys]` table.

use std::collections::HashMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::pane::{PaneId, PANES};
use notifyscope_model::sim::SimKind;

/// What a key does. The TUI maps keys to actions; `App::update` applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    FocusNext,
    FocusPrev,
    /// Focus a pane (by its number key).
    Focus(PaneId),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Pause,
    Detail,
    Close,
    Filter,
    Follow,
    Copy,
    Save,
    Clear,
    /// A test message through the bot path.
    Send(SimKind),
    /// A NOTIFY with a payload that breaks the contract.
    SendMalformed,
    /// A valid event on a neighbouring (wrong-case) channel.
    SendWrongChannel,
    /// A message published straight to the outbox, bypassing the bot path.
    SendDirect,
    /// The focused pane alone on the whole screen, and back.
    Zoom,
    /// Search every pane, highlighting matches (the filter hides the rest instead).
    Search,
    SearchNext,
    SearchPrev,
    /// Copy the selected row's message id.
    CopyId,
    /// Latency per stage and rates, full width.
    Stats,
    /// Act on the selected health check, after a confirmation.
    Act,
    /// Show and copy the `send` command for this instance.
    SendCommand,
}

/// (config name, action, default keys, help text), in the order of the help overlay; the
/// number keys of the panes (`focus_1` …) come from the pane table and follow `focus_prev`.
pub const BINDINGS: &[(&str, Action, &[&str], &str)] = &[
    (
        "quit",
        Action::Quit,
        &["q", "ctrl-c"],
        "quit (drains the pipeline first)",
    ),
    ("help", Action::Help, &["?"], "this help"),
    (
        "focus_next",
        Action::FocusNext,
        &["tab"],
        "focus the next pane",
    ),
    (
        "focus_prev",
        Action::FocusPrev,
        &["backtab"],
        "focus the previous pane",
    ),
    ("up", Action::Up, &["k", "up"], "select the row above"),
    ("down", Action::Down, &["j", "down"], "select the row below"),
    ("page_up", Action::PageUp, &["pageup"], "a page up"),
    ("page_down", Action::PageDown, &["pagedown"], "a page down"),
    ("top", Action::Top, &["g", "home"], "oldest row"),
    (
        "bottom",
        Action::Bottom,
        &["G", "end"],
        "newest row, and keep following new rows",
    ),
    (
        "pause",
        Action::Pause,
        &["space"],
        "pause or resume the view (the pipeline keeps running)",
    ),
    (
        "detail",
        Action::Detail,
        &["enter"],
        "details of the selected row: payload, fields, timeline",
    ),
    (
        "close",
        Action::Close,
        &["esc"],
        "close the overlay, or clear the filter",
    ),
    (
        "filter",
        Action::Filter,
        &["/"],
        "filter every pane (substring; `re:` for a regex)",
    ),
    (
        "follow",
        Action::Follow,
        &["f"],
        "follow the selected message id across the panes",
    ),
    (
        "copy",
        Action::Copy,
        &["y"],
        "copy the selected payload to the clipboard (OSC 52, works over ssh)",
    ),
    (
        "copy_id",
        Action::CopyId,
        &["Y"],
        "copy the selected message id to the clipboard",
    ),
    (
        "search",
        Action::Search,
        &["ctrl-f"],
        "search every pane, matches highlighted (substring; `re:` for a regex)",
    ),
    (
        "search_next",
        Action::SearchNext,
        &["n"],
        "next match, across the panes",
    ),
    (
        "search_prev",
        Action::SearchPrev,
        &["N"],
        "previous match, across the panes",
    ),
    (
        "zoom",
        Action::Zoom,
        &["z"],
        "the focused pane alone on the whole screen, and back",
    ),
    (
        "stats",
        Action::Stats,
        &["i"],
        "latency per stage (p50/p99 of the last 10 s) and rates",
    ),
    (
        "act",
        Action::Act,
        &["a"],
        "act on the selected health check (cancel a blocker, retry stuck rows, dead letters), \
         after a confirmation",
    ),
    (
        "send_command",
        Action::SendCommand,
        &["I"],
        "show and copy the `notifyscope send` command for this instance",
    ),
    (
        "save",
        Action::Save,
        &["s"],
        "save the session as JSON lines (replay it with `notifyscope replay`)",
    ),
    ("clear", Action::Clear, &["c"], "clear the view"),
    (
        "send_message",
        Action::Send(SimKind::Message),
        &["m"],
        "send a normal message through the bot path",
    ),
    (
        "send_burst",
        Action::Send(SimKind::Burst),
        &["M"],
        "send a burst of 100 messages",
    ),
    (
        "send_own",
        Action::Send(SimKind::Own),
        &["o"],
        "send a message written by the bot itself",
    ),
    (
        "send_bot",
        Action::Send(SimKind::Bot),
        &["b"],
        "send another bot's message",
    ),
    (
        "send_empty",
        Action::Send(SimKind::Empty),
        &["e"],
        "send a message without content (missing intent)",
    ),
    (
        "send_long",
        Action::Send(SimKind::Long),
        &["l"],
        "send a 16 KB message (published by reference)",
    ),
    (
        "send_malformed",
        Action::SendMalformed,
        &["x"],
        "send a malformed NOTIFY",
    ),
    (
        "send_wrong_channel",
        Action::SendWrongChannel,
        &["w"],
        "send a NOTIFY on a wrong-case channel",
    ),
    (
        "send_direct",
        Action::SendDirect,
        &["d"],
        "publish straight to the outbox, bypassing the bot",
    ),
];

/// One action the keys can be bound to, by its name in the config file's `[keys]`.
pub struct Binding {
    pub name: String,
    pub action: Action,
    pub keys: Vec<String>,
    pub help: String,
}

/// Every binding in help order: [`BINDINGS`], with a number key per pane of the pane table
/// after `focus_prev`.
pub fn bindings() -> Vec<Binding> {
    let fixed = |(name, action, keys, help): &(&str, Action, &[&str], &str)| Binding {
        name: (*name).to_owned(),
        action: *action,
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        help: (*help).to_owned(),
    };
    let focus = PANES.iter().enumerate().map(|(i, pane)| Binding {
        name: format!("focus_{}", i + 1),
        action: Action::Focus(pane.id),
        keys: vec![(i + 1).to_string()],
        help: format!("focus {}", pane.short_title),
    });
    let split = BINDINGS
        .iter()
        .position(|(name, ..)| *name == "focus_prev")
        .map_or(BINDINGS.len(), |i| i + 1);
    BINDINGS[..split]
        .iter()
        .map(fixed)
        .chain(focus)
        .chain(BINDINGS[split..].iter().map(fixed))
        .collect()
}

/// A key binding of the config file that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    #[error("unknown action {0:?} in [keys]")]
    UnknownAction(String),
    #[error("[keys] {action}: unknown key {key:?}")]
    BadKey { action: String, key: String },
    #[error(
        "[keys] {action}: {key} is bound to {holder} already; give {holder} another key in \
         [keys] too, or choose a free key for {action}"
    )]
    Taken {
        action: String,
        key: String,
        holder: String,
    },
}

/// A key with its modifiers; for characters the case carries Shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(ev: &KeyEvent) -> Self {
        Key {
            code: ev.code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        }
    }

    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = text;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "tab" => KeyCode::Tab,
            "backtab" | "shift-tab" => KeyCode::BackTab,
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" | "pgup" => KeyCode::PageUp,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "backspace" => KeyCode::Backspace,
            other => {
                let mut chars = other.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => return Err(KeyError::UnknownKey(text.to_owned())),
                }
            }
        };
        Ok(Key { code, ctrl, alt })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("Ctrl-")?;
        }
        if self.alt {
            f.write_str("Alt-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("Shift-Tab"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeyMap {
    by_key: HashMap<Key, Action>,
    /// For help and footer: each action with its keys and help, in table order.
    pub listing: Vec<(Action, Vec<Key>, String)>,
}

impl Default for KeyMap {
    fn default() -> Self {
        Self::new(&HashMap::new()).unwrap_or_else(|_| KeyMap {
            by_key: HashMap::new(),
            listing: Vec::new(),
        })
    }
}

impl KeyMap {
    /// The defaults with `overrides` (action name → keys) applied; a key taken from another
    /// action moves to the new one.
    pub fn new(overrides: &HashMap<String, Vec<String>>) -> Result<Self, KeyError> {
        let bindings = bindings();
        for name in overrides.keys() {
            if !bindings.iter().any(|b| &b.name == name) {
                return Err(KeyError::UnknownAction(name.clone()));
            }
        }
        let mut listing = Vec::new();
        for b in &bindings {
            let keys: Vec<Key> = match overrides.get(&b.name) {
                Some(keys) => keys
                    .iter()
                    .map(|k| {
                        Key::parse(k).map_err(|_| KeyError::BadKey {
                            action: b.name.clone(),
                            key: k.clone(),
                        })
                    })
                    .collect::<Result<_, _>>()?,
                None => b
                    .keys
                    .iter()
                    .map(|k| Key::parse(k))
                    .collect::<Result<_, _>>()?,
            };
            listing.push((b.action, keys, b.help.clone()));
        }
        // A key may do one thing: binding one that another action still holds is refused,
        // naming both, instead of silently taking it (`q` for a test message would leave
        // no way to quit).
        let mut by_key: HashMap<Key, Action> = HashMap::new();
        let mut holder_of: HashMap<Key, &str> = HashMap::new();
        for ((action, keys, _), b) in listing.iter().zip(&bindings) {
            for key in keys {
                if let Some(holder) = holder_of.get(key) {
                    let (action, holder) = if overrides.contains_key(&b.name) {
                        (b.name.as_str(), *holder)
                    } else {
                        (*holder, b.name.as_str())
                    };
                    return Err(KeyError::Taken {
                        action: action.to_owned(),
                        key: key.to_string(),
                        holder: holder.to_owned(),
                    });
                }
                holder_of.insert(*key, &b.name);
                by_key.insert(*key, *action);
            }
        }
        Ok(KeyMap { by_key, listing })
    }

    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        self.by_key.get(&Key::from_event(ev)).copied()
    }

    /// The first key of an action as shown in hints and messages; `-` when it has none.
    pub fn label(&self, action: Action) -> String {
        self.key_of(action)
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into())
    }

    /// The first key of an action, for the footer.
    pub fn key_of(&self, action: Action) -> Option<Key> {
        self.listing
            .iter()
            .find(|(a, ..)| *a == action)
            .and_then(|(_, keys, _)| keys.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crossterm::event::KeyEventKind;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: crossterm::event::KeyEventState::NONE,
        }
    }

    #[test]
    fn every_default_binding_resolves_to_its_action() {
        let map = KeyMap::default();
        let bindings = bindings();
        for Binding {
            name, action, keys, ..
        } in &bindings
        {
            for k in keys {
                let key = Key::parse(k).unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut modifiers = KeyModifiers::NONE;
                if key.ctrl {
                    modifiers |= KeyModifiers::CONTROL;
                }
                if let KeyCode::Char(c) = key.code {
                    if c.is_ascii_uppercase() {
                        modifiers |= KeyModifiers::SHIFT;
                    }
                }
                // Shift on letters is carried by the case; the modifier flag is ignored.
                let ev = press(key.code, modifiers - KeyModifiers::SHIFT);
                assert_eq!(map.action(&ev), Some(*action), "{name} via {k}");
            }
        }
        let keys: Vec<&str> = bindings
            .iter()
            .flat_map(|b| b.keys.iter().map(String::as_str))
            .collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "a key is bound twice");
    }

    #[test]
    fn overrides_from_the_config_file() {
        let config: ConfigFile =
            toml::from_str("[keys]\nquit = [\"ctrl-q\"]\nsend_message = [\"u\", \"q\"]\n")
                .expect("parses");
        let map = KeyMap::new(&config.keys).expect("valid");
        assert_eq!(
            map.action(&press(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            map.action(&press(KeyCode::Char('u'), KeyModifiers::NONE)),
            Some(Action::Send(SimKind::Message))
        );
        // quit gave `q` up, so send_message may have it; `m` is no longer bound.
        assert_eq!(
            map.action(&press(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Action::Send(SimKind::Message))
        );
        assert_eq!(
            map.action(&press(KeyCode::Char('m'), KeyModifiers::NONE)),
            None
        );
        assert!(KeyMap::new(&HashMap::from([(
            "launch".to_owned(),
            vec!["z".to_owned()]
        )]))
        .is_err());
        assert!(KeyMap::new(&HashMap::from([(
            "quit".to_owned(),
            vec!["hyper-z".to_owned()]
        )]))
        .is_err());
        assert!(toml::from_str::<ConfigFile>("[keyz]\n").is_err());
    }

    #[test]
    fn a_key_bound_already_is_refused_with_both_names() {
        let config: ConfigFile =
            toml::from_str("[keys]\nsend_message = [\"q\"]\n").expect("parses");
        let err = KeyMap::new(&config.keys).expect_err("q is quit's");
        assert_eq!(
            err,
            KeyError::Taken {
                action: "send_message".into(),
                key: "q".into(),
                holder: "quit".into(),
            }
        );
        assert!(
            err.to_string().contains("q is bound to quit already"),
            "{err}"
        );
        // Two overrides asking for the same key: the same refusal.
        let config: ConfigFile =
            toml::from_str("[keys]\nsend_own = [\"u\"]\nsend_bot = [\"u\"]\n").expect("parses");
        assert!(matches!(
            KeyMap::new(&config.keys),
            Err(KeyError::Taken { .. })
        ));
    }
}
