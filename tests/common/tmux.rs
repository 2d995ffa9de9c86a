//! The monitor in a real terminal: a detached tmux session of its own (its own server
//! socket), keys sent with `send-keys`, the screen read with `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

/// Fails the test with a clear word when tmux is missing.
pub fn require_tmux() {
    let version = Command::new("tmux").arg("-V").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "this test needs tmux (apt-get install tmux)"
    );
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
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs (apt-get install tmux)");
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
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
