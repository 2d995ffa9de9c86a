//! The monitor in a real terminal: the binary in a detached tmux session of 200×50, keys sent
//! with `send-keys`, the screen read with `capture-pane`.

mod common;

use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{binary, server_url, TestSchema};

/// The text of one 40-column stage pane (the wide layout at 200 columns).
fn column(screen: &[String], index: usize) -> String {
    screen
        .iter()
        .map(|line| line.chars().skip(index * 40).take(40).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_message_flows_through_every_pane_in_a_real_terminal() {
    let t = TestSchema::new("terminal");
    let dir = tempfile::tempdir().expect("tempdir");
    let exit_file = dir.path().join("exit");
    let command = format!(
        "env -u DISCORD_TOKEN -u DATABASE_URL HOME={home} XDG_RUNTIME_DIR={runtime} {bin} --database-url '{url}' --schema {s} --channel {s}; echo $? > {exit}; sleep 600",
        home = dir.path().display(),
        runtime = t.runtime_dir().display(),
        bin = binary(),
        url = server_url(),
        s = t.name,
        exit = exit_file.display(),
    );
    let tmux = Tmux::start(&command, 200, 50);
    tmux.wait("the listener to come up", |s| {
        s.iter().any(|l| l.contains("listener ● pid"))
    });

    tmux.keys("m");
    let screen = tmux.wait("the confirmation of m", |s| {
        s.iter()
            .any(|l| l.contains("m: message ") && l.contains(" published"))
    });
    let id: String = screen
        .iter()
        .find_map(|l| l.split("m: message ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("message id in the confirmation")
        .to_owned();
    assert_eq!(id.len(), 19, "{id}");
    let short = id[id.len() - 8..].to_owned();
    let screen = tmux.wait("the message in all four stage panes", |s| {
        (0..4).all(|i| column(s, i).contains(&short))
    });
    let ingestion = column(&screen, 3);
    let row = ingestion
        .lines()
        .find(|l| l.contains(&short))
        .expect("ingestion row");
    assert!(row.contains("inserted"), "{row}");

    tmux.keys("o");
    tmux.wait("an own-message skip", |s| {
        column(s, 4).contains("own message")
    });

    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Ok(text) = std::fs::read_to_string(&exit_file) {
            if !text.trim().is_empty() {
                break text.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "notifyscope did not exit after q"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, "0");
    // Back on the normal screen: the panes are gone, the drain notice is there.
    let screen = tmux.screen().join("\n");
    assert!(!screen.contains("Discord messages received"), "{screen}");
    assert!(screen.contains("draining"), "{screen}");
}
