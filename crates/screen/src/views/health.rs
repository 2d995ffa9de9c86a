//! The health pane as a view: the diagnosis's checks, worst first, the selected one, how far
//! the list is scrolled, and the action a check offers, as a question to confirm.

use super::Reply;
use crate::detail::check_detail;
use crate::events::{Effect, Mode, Prompt};
use crate::keys::{Action, KeyMap};
use notifyscope_model::check::{Check, CheckTarget};

#[derive(Debug, Default)]
pub struct HealthView {
    pub checks: Vec<Check>,
    pub selected: usize,
    /// Checks above the first one the pane shows.
    scroll: usize,
}

impl HealthView {
    /// Takes the latest checks (sorted worst first); whether they changed.
    pub fn set_checks(&mut self, mut checks: Vec<Check>) -> bool {
        checks.sort_by_key(|c| std::cmp::Reverse(c.status));
        if checks == self.checks {
            return false;
        }
        self.checks = checks;
        self.selected = self.selected.min(self.checks.len().saturating_sub(1));
        true
    }

    pub fn selected_check(&self) -> Option<&Check> {
        self.checks.get(self.selected)
    }

    /// Checks above the first one the pane shows, for a list of `height` rows: where it was
    /// scrolled to, moved only as far as the selected check needs to stay in view.
    pub fn top(&self, height: usize) -> usize {
        let lowest = (self.selected + 1).saturating_sub(height.max(1));
        self.scroll.min(self.selected).max(lowest)
    }

    /// Keeps the pane scrolled where the selection put it.
    fn settle(&mut self, height: usize) {
        self.scroll = self.top(height.max(1));
    }

    pub fn move_selection(&mut self, delta: isize, height: usize) {
        let len = self.checks.len();
        if len > 0 {
            self.selected = (self.selected as isize + delta).clamp(0, len as isize - 1) as usize;
            self.settle(height);
        }
    }

    pub fn select_last(&mut self, height: usize) {
        self.selected = self.checks.len().saturating_sub(1);
        self.settle(height);
    }

    /// Selects the `row`-th check shown.
    pub fn select_shown_row(&mut self, row: usize, height: usize) {
        let index = self.top(height.max(1)) + row;
        if index < self.checks.len() {
            self.selected = index;
            self.settle(height);
        }
    }

    /// The keys of the health pane while it is focused, for a list of `height` rows.
    pub fn update(&mut self, action: Action, height: usize, keys: &KeyMap) -> Reply {
        match action {
            Action::Up => self.move_selection(-1, height),
            Action::Down => self.move_selection(1, height),
            Action::PageUp => self.move_selection(-(height as isize), height),
            Action::PageDown => self.move_selection(height as isize, height),
            Action::Top => self.move_selection(isize::MIN / 2, height),
            Action::Bottom => self.select_last(height),
            Action::Detail => {
                if let Some(check) = self.selected_check() {
                    return Reply::Open(check_detail(check, keys));
                }
            }
            Action::Follow => {
                return match self
                    .selected_check()
                    .and_then(|c| c.message_ids.first().copied())
                {
                    Some(id) => Reply::Follow(id),
                    None => Reply::Toast("the selected check names no message".into()),
                }
            }
            Action::Copy => return Reply::Toast("nothing selected to copy".into()),
            Action::CopyId => return Reply::Toast("the selected row has no message id".into()),
            _ => {}
        }
        Reply::Nothing
    }

    /// The action the selected check offers in `mode`, as a question to confirm; why there
    /// is none, when there is none.
    pub fn act(&self, mode: &Mode) -> Result<Prompt, String> {
        let Some(check) = self.selected_check() else {
            return Err("no check selected".into());
        };
        match &check.target {
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
                Ok(Prompt::Confirm {
                    question: format!("{who}: cancel its statement, or end its session?"),
                    choices: vec![
                        ('c', "cancel statement".into(), Effect::CancelBackend(*pid)),
                        ('t', "end session".into(), Effect::TerminateBackend(*pid)),
                    ],
                })
            }
            Some(CheckTarget::StuckRows) if *mode == Mode::Live => Ok(Prompt::Confirm {
                question: "retry the stuck outbox rows now, retrying and given-up ones (attempts \
                           reset)?"
                    .into(),
                choices: vec![('y', "retry".into(), Effect::RetryStuckRows)],
            }),
            Some(CheckTarget::DeadLetters) if *mode == Mode::Live => Ok(Prompt::Confirm {
                question: "dead letters: list, requeue or delete them?".into(),
                choices: vec![
                    ('l', "list".into(), Effect::ListDeadLetters),
                    ('r', "requeue".into(), Effect::RequeueDeadLetters),
                    ('d', "delete".into(), Effect::DeleteDeadLetters),
                ],
            }),
            Some(_) => Err("watching someone else's pipeline: its outbox is theirs".into()),
            None => Err(format!("nothing to act on for \"{}\"", check.name)),
        }
    }

    /// The keys of the health pane in the footer, before the common ones.
    pub fn hints(&self, mode: &Mode) -> Vec<(Action, &'static str)> {
        if matches!(mode, Mode::Replay(_)) {
            Vec::new()
        } else {
            vec![(Action::Act, "act")]
        }
    }
}
