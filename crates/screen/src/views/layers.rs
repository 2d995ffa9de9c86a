//! What lies over the panes: the bottom line while it reads (a filter, a search, a
//! confirmation) and the overlays (help, details, stats). While one is open it takes the
//! keys: typed text never reaches the key map, so a mistyped filter cannot send anything.

use crossterm::event::KeyCode;

use crate::detail::{scroll, Overlay};
use crate::events::{Effect, InputKind, Prompt};
use crate::keys::Action;
use notifyscope_model::contract::Snowflake;

#[derive(Debug, Default)]
pub struct Layers {
    pub prompt: Option<Prompt>,
    pub overlay: Option<Overlay>,
}

/// What a key on the bottom line came to.
#[derive(Debug, PartialEq)]
pub enum PromptOutcome {
    /// Still reading, or closed without a word.
    Nothing,
    /// Enter on an input: apply the text (and say why not, if it cannot be).
    Apply(InputKind, String),
    /// A confirmation answered with one of its choices.
    Chosen(Effect),
    /// A confirmation answered with any other key.
    Cancelled,
}

/// What a key over an overlay came to, beyond scrolling or closing it.
#[derive(Debug, PartialEq)]
pub enum OverlayOutcome {
    Nothing,
    Effect(Effect),
    Follow(Snowflake),
}

impl Layers {
    /// Opens the input of `kind` with `current` as its text.
    pub fn read(&mut self, kind: InputKind, current: Option<&str>) {
        self.prompt = Some(Prompt::Input {
            kind,
            text: current.unwrap_or_default().to_owned(),
            error: None,
        });
    }

    /// Leaves the input open with why its text was refused.
    pub fn refuse(&mut self, why: String) {
        if let Some(Prompt::Input { error, .. }) = &mut self.prompt {
            *error = Some(why);
        }
    }

    pub fn on_prompt_key(&mut self, code: KeyCode) -> PromptOutcome {
        let Some(prompt) = self.prompt.as_mut() else {
            return PromptOutcome::Nothing;
        };
        match prompt {
            Prompt::Input { kind, text, error } => match code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Enter => return PromptOutcome::Apply(*kind, text.clone()),
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
                return match chosen {
                    Some(effect) => PromptOutcome::Chosen(effect),
                    None => PromptOutcome::Cancelled,
                };
            }
        }
        PromptOutcome::Nothing
    }

    /// Scrolls the open overlay by `delta` lines.
    pub fn scroll(&mut self, delta: isize) {
        if let Some(overlay) = self.overlay.as_mut() {
            scroll(overlay, delta);
        }
    }

    /// Keeps the open overlay's scroll at most `max`: the line that puts its last line at
    /// the bottom, as the layout measured it. Scrolling further would show empty pages.
    pub fn limit_scroll(&mut self, max: usize) {
        if let Some(Overlay::Help { scroll } | Overlay::Detail { scroll, .. }) =
            self.overlay.as_mut()
        {
            *scroll = (*scroll).min(max);
        }
    }

    /// Keys while an overlay is open: scrolling, closing, and following or copying what the
    /// detail shows.
    pub fn update_overlay(&mut self, action: Action) -> OverlayOutcome {
        let Some(overlay) = self.overlay.as_mut() else {
            return OverlayOutcome::Nothing;
        };
        match action {
            Action::Close | Action::Detail | Action::Help | Action::Stats => self.overlay = None,
            Action::Quit => return OverlayOutcome::Effect(Effect::Quit),
            Action::Up => scroll(overlay, -1),
            Action::Down => scroll(overlay, 1),
            Action::PageUp => scroll(overlay, -20),
            Action::PageDown => scroll(overlay, 20),
            Action::Top => scroll(overlay, isize::MIN / 2),
            // As far as it goes: the layout stops it at the last line.
            Action::Bottom => scroll(overlay, isize::MAX / 2),
            Action::Follow => {
                if let Overlay::Detail { message_ids, .. } = overlay {
                    if let Some(id) = message_ids.first().copied() {
                        self.overlay = None;
                        return OverlayOutcome::Follow(id);
                    }
                }
            }
            Action::Copy => {
                if let Overlay::Detail { lines, .. } = overlay {
                    return OverlayOutcome::Effect(Effect::Copy(lines.join("\n")));
                }
            }
            _ => {}
        }
        OverlayOutcome::Nothing
    }
}
