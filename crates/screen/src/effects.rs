//! What the state asks of the outside world ([`Effect`]), carried out: the clipboard and keys
//! for the log widget here; test events, actions on what the diagnosis found and saving the
//! session by the [`Outside`] the command that starts the monitor hands over. Nothing here
//! writes SQL or knows the pipeline.

use std::io::Write;

use base64::Engine;
use tokio::sync::mpsc;
use tui_logger::TuiWidgetState;

use crate::app::{App, AppEvent, Effect};
use crate::keys::Action;
use crate::logs;

/// What the monitor can reach beyond the screen. It carries out an effect (in a task of its
/// own when slow) and says what came of it on `results`, as a toast or an overlay.
pub trait Outside: Send + Sync {
    /// `key` is the label of the key that asked for it, for the toast to start with.
    fn carry_out(&self, effect: Effect, key: String, results: mpsc::Sender<AppEvent>);
}

pub fn run_effect(
    effect: Effect,
    app: &mut App,
    outside: &dyn Outside,
    results: &mpsc::Sender<AppEvent>,
    log_state: &TuiWidgetState,
) {
    match effect {
        Effect::Quit => {}
        Effect::LogKey(key) => {
            if let Some(ev) = logs::log_event(key.code) {
                log_state.transition(ev);
            }
        }
        Effect::Copy(text) => match copy_osc52(&text) {
            Ok(()) => app.toast(format!(
                "copied {} bytes to the clipboard (OSC 52)",
                text.len()
            )),
            Err(e) => app.toast(format!("copy failed: {e}")),
        },
        other => {
            let key = match &other {
                Effect::Send(kind) => app.keymap.label(Action::Send(*kind)),
                Effect::SendMalformed => app.keymap.label(Action::SendMalformed),
                Effect::SendWrongChannel => app.keymap.label(Action::SendWrongChannel),
                Effect::SendDirect => app.keymap.label(Action::SendDirect),
                _ => String::new(),
            };
            outside.carry_out(other, key, results.clone());
        }
    }
}

/// OSC 52 puts text on the clipboard of the terminal the user sits at, also over ssh.
fn copy_osc52(text: &str) -> std::io::Result<()> {
    write_osc52(&mut std::io::stdout().lock(), text)
}

/// Writes the OSC 52 sequence that puts `text` on the clipboard: `ESC ] 52 ; c ;`, the text
/// in standard base64 (with padding), then `BEL`; and flushes.
pub fn write_osc52(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    write!(out, "\x1b]52;c;{encoded}\x07")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osc52_bytes_are_exact() {
        let written = |text: &str| {
            let mut out = Vec::new();
            write_osc52(&mut out, text).expect("written");
            // Compared as text so that a mismatch shows the escapes; equal text is equal bytes.
            String::from_utf8(out).expect("ASCII")
        };
        assert_eq!(
            written("hello, wörld"),
            "\x1b]52;c;aGVsbG8sIHfDtnJsZA==\x07"
        );
        assert_eq!(written(""), "\x1b]52;c;\x07");
    }
}
