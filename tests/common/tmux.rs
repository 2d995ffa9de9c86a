//! The monitor in a real terminal: a detached tmux session of its own (its own server
//! socket), keys sent with `send-keys`, the screen read with `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{finish_blocking, try_finish_blocking, Unfinished};

/// How long one tmux command may take: it answers at once, unless its server hangs.
const TMUX_WAIT: Duration = Duration::from_secs(30);

/// Fails the test with a clear word when tmux is missing.
pub fn require_tmux() {
    let version = try_finish_blocking(Command::new("tmux").arg("-V"), TMUX_WAIT);
    match version {
        Ok(o) if o.status.success() => {}
        Err(Unfinished::Killed(failure)) => panic!("{failure}"),
        _ => panic!("this test needs tmux (apt-get install tmux)"),
    }
}

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `command` (a shell command line) in a new `width`×`height` session named `monitor`.
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        require_tmux();
        let tmux = Tmux {
            socket: format!("notifyscope-test-{}", rand::random::<u32>()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "monitor",
            "-x",
            &w,
            "-y",
            &h,
            command,
        ]);
        tmux
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = finish_blocking(Command::new("tmux").args(["-L", &self.socket]).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn screen(&self) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-t", "monitor"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Polls the screen until `pred` holds; tmux has no way to announce a redraw.
    pub fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; screen:\n{}",
                    screen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "monitor", keys]);
    }

    /// Types `text` as it is, character by character (no key names).
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "monitor", "-l", text]);
    }

    /// A left click at column `x`, row `y` (from 0), as a terminal reports it to a program
    /// that asked for mouse reports (SGR encoding): press, then release.
    pub fn click(&self, x: u16, y: u16) {
        self.type_text(&format!(
            "\x1b[<0;{};{}M\x1b[<0;{};{}m",
            x + 1,
            y + 1,
            x + 1,
            y + 1
        ));
    }

    /// The wheel turned once at column `x`, row `y`: `up` away from the user.
    pub fn wheel(&self, x: u16, y: u16, up: bool) {
        let button = if up { 64 } else { 65 };
        self.type_text(&format!("\x1b[<{button};{};{}M", x + 1, y + 1));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // No panic here: it may run while a failed test unwinds.
        let _ = try_finish_blocking(
            Command::new("tmux").args(["-L", &self.socket, "kill-server"]),
            TMUX_WAIT,
        );
    }
}
