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

/// The command line that runs the monitor on `t` in tmux, and where its exit code goes.
fn monitor_command(t: &TestSchema, dir: &std::path::Path) -> String {
    format!(
        "env -u DISCORD_TOKEN -u DATABASE_URL HOME={home} {bin} --database-url '{url}' --schema {s} --channel {s}; echo $? > {exit}; sleep 600",
        home = dir.display(),
        bin = binary(),
        url = server_url(),
        s = t.name,
        exit = dir.join("exit").display(),
    )
}

/// The status bar shows a diagnosis's verdict: the worst check, or the count of checks at
/// each status (`? 7 unknown · ✓ 7 ok`), not "? not judged yet".
fn verdict_shown(screen: &[String]) -> bool {
    screen.first().is_some_and(|l| {
        let l = l.trim_start();
        l.starts_with('✓') || l.starts_with('✗') || l.starts_with('!') || l.contains(" unknown")
    })
}

/// At 80×24, as over ssh from a laptop: the verdict and the listener in the status bar,
/// every pane reached by its number, a mistyped filter that sends nothing, zoom, search
/// with n, and the mouse on the tab bar and in a pane.
#[test]
fn at_80_by_24_everything_is_in_reach() {
    let t = TestSchema::new("term80");
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start(&monitor_command(&t, dir.path()), 80, 24);
    let screen = tmux.wait("the verdict and the listener", |s| {
        verdict_shown(s) && s[0].contains("listener ● pid")
    });
    assert!(
        screen[2].contains("7 Logs") || screen[2].contains("7 Logs"),
        "{}",
        screen[2]
    );

    // A bad regex, Enter, then letters that are test keys: typed, never sent.
    tmux.keys("/");
    tmux.type_text("re:(own");
    tmux.keys("Enter");
    tmux.wait("the error in the prompt", |s| {
        s[23].contains("bad regex") && s[23].contains("/re:(own")
    });
    tmux.type_text("eowbmx");
    tmux.wait("the letters in the prompt", |s| {
        s[23].contains("re:(owneowbmx")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let screen = tmux.screen().join("\n");
    assert!(!screen.contains("published"), "{screen}");
    assert!(screen.contains("no messages yet"), "{screen}");
    tmux.keys("Escape");
    tmux.wait("the key hints back", |s| {
        s[23].contains("quit") && !s[23].contains("bad regex")
    });

    for (key, title) in [
        ("1", "Discord messages received"),
        ("2", "Published payloads"),
        ("3", "NOTIFY receipts"),
        ("4", "Ingestion results"),
        ("5", "Filter skips"),
        ("6", "Health"),
        ("7", "Logs"),
    ] {
        tmux.keys(key);
        tmux.wait(&format!("pane {key}"), |s| {
            s.get(3).is_some_and(|l| l.contains(title))
        });
    }

    // Three messages; search the second one's id, n goes to its next pane.
    tmux.keys("1");
    let mut ids = Vec::new();
    for _ in 0..3 {
        tmux.keys("m");
        let screen = tmux.wait("a confirmation", |s| {
            s.iter().any(|l| {
                l.split("m: message ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .is_some_and(|id| !ids.contains(&id.to_owned()))
            })
        });
        let id = screen
            .iter()
            .find_map(|l| {
                l.split("m: message ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .filter(|id| !ids.contains(&id.to_string()))
            })
            .expect("an id")
            .to_owned();
        ids.push(id);
    }
    tmux.wait("the three in pane 1", |s| {
        ids.iter().all(|id| s.join("\n").contains(id.as_str()))
    });
    tmux.keys("C-f");
    tmux.type_text(&ids[1]);
    tmux.keys("Enter");
    tmux.wait("searching", |s| s[1].contains("search:"));
    tmux.keys("n");
    tmux.wait("the match in Published", |s| {
        s[3].contains("Published payloads")
    });

    tmux.keys("z");
    tmux.wait("zoomed", |s| s[1].contains("ZOOM"));
    tmux.keys("z");
    tmux.wait("unzoomed", |s| !s[1].contains("ZOOM"));

    // The mouse: a click on the Health tab, then on the Ingestion tab and into its rows.
    let tabs = tmux.screen()[2].clone();
    let column = |name: &str| -> u16 {
        tabs.chars()
            .collect::<Vec<_>>()
            .windows(name.chars().count())
            .position(|w| w.iter().collect::<String>() == name)
            .unwrap_or_else(|| panic!("{name} not in the tab bar: {tabs}")) as u16
    };
    tmux.click(column("6 "), 2);
    tmux.wait("Health by a click", |s| s[3].contains("Health"));
    tmux.click(column("4 "), 2);
    tmux.wait("Ingestion by a click", |s| {
        s[3].contains("Ingestion results")
    });
    tmux.wait("three rows ingested", |s| {
        ids.iter().all(|id| s.join("\n").contains(id.as_str()))
    });
    // The first row of the list is on line 5 (title on 3, headers on 4).
    tmux.click(10, 5);
    tmux.click(10, 5);
    tmux.wait("the detail of the first row", |s| {
        s.join("\n").contains("Ingestion results — ingested")
    });
    tmux.keys("Escape");
    tmux.wheel(10, 8, true);
    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(dir.path().join("exit")).map_or(true, |t| t.trim().is_empty()) {
        assert!(Instant::now() < deadline, "no exit after q");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// At 100×30 every pane is on screen at once, the verdict first in the status bar, and a
/// click focuses the pane under it.
#[test]
fn at_100_by_30_the_grid_shows_every_pane_and_clicks_focus_them() {
    let t = TestSchema::new("term100");
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start(&monitor_command(&t, dir.path()), 100, 30);
    let screen = tmux.wait("the verdict, listener and database", |s| {
        verdict_shown(s) && s[0].contains("listener ● pid") && s[0].contains("db ●")
    });
    let text = screen.join("\n");
    for title in [
        "1 Discord",
        "2 Published",
        "3 NOTIFY",
        "4 Ingestion",
        "5 Filter",
        "6 Health",
        "7 Logs",
    ] {
        assert!(text.contains(title), "{title} not on screen:\n{text}");
    }
    // The second row of the grid starts below the first; a click in its middle pane.
    let row = screen
        .iter()
        .position(|l| l.contains("5 Filter"))
        .expect("the second row") as u16;
    tmux.click(50, row + 2);
    tmux.keys("z");
    tmux.wait("the Filter skips pane zoomed", |s| {
        s[1].contains("ZOOM") && s[2].contains("Filter skips")
    });
    tmux.keys("z");
    tmux.wait("unzoomed", |s| !s[1].contains("ZOOM"));
    // The wheel over a pane scrolls it, and so focuses it.
    tmux.wheel(80, 5, true);
    tmux.keys("z");
    tmux.wait("the NOTIFY pane zoomed", |s| {
        s[1].contains("ZOOM") && s[2].contains("NOTIFY receipts")
    });
    tmux.keys("q");
}

/// The lines `from`–`to` of `of` that the open pop-up's top border says it shows.
fn shown_lines(border: &str) -> Option<(usize, usize, usize)> {
    let (range, rest) = border.rsplit_once(" of ")?;
    let of = rest.split_whitespace().next()?.parse().ok()?;
    let (from, to) = range.rsplit_once(' ')?.1.split_once('–')?;
    Some((from.parse().ok()?, to.parse().ok()?, of))
}

/// At 80×24: the send command's pop-up shows the whole command, the help scrolls to its
/// last line and no further, and the Logs pane's rate falls to 0 once nothing is logged.
#[test]
fn at_80_by_24_pop_ups_show_everything_and_the_log_rate_comes_to_rest() {
    let t = TestSchema::new("term_pop");
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start(&monitor_command(&t, dir.path()), 80, 24);
    tmux.wait("the verdict and the listener", |s| {
        verdict_shown(s) && s[0].contains("listener ● pid")
    });

    tmux.keys("I");
    let screen = tmux.wait("the send command", |s| {
        s.iter().any(|l| l.contains("notifyscope send"))
    });
    let inside: Vec<&str> = screen
        .iter()
        .filter_map(|l| l.strip_prefix('║'))
        .map(|l| l.trim_end_matches('║').trim())
        .collect();
    let command = inside.join(" ");
    for whole in [
        format!("--schema {}", t.name),
        format!("--channel {}", t.name),
    ] {
        assert!(command.contains(&whole), "{whole} in {command}");
    }
    tmux.keys("Escape");
    tmux.wait("the pop-up closed", |s| !s.join("\n").contains("╔"));

    tmux.keys("?");
    tmux.wait("the help", |s| s[1].contains("Keys"));
    tmux.keys("G");
    let end = tmux.wait("the help's last line at the bottom", |s| {
        shown_lines(&s[1]).is_some_and(|(_, to, of)| to == of)
    });
    assert!(end[21].contains("follow it"), "{}", end.join("\n"));
    let (from, to, of) = shown_lines(&end[1]).expect("lines shown");
    tmux.keys("PageDown");
    tmux.keys("k");
    tmux.wait("one line up from the end, not a page past it", |s| {
        shown_lines(&s[1]) == Some((from - 1, to - 1, of))
    });
    tmux.keys("Escape");

    // NOTIFYs on a neighbouring channel are logged as warnings: the rate rises, then falls
    // back to 0 once they stop.
    tmux.keys("7");
    for _ in 0..5 {
        tmux.keys("w");
    }
    tmux.wait("the Logs pane counting", |s| {
        s.get(3)
            .is_some_and(|l| l.contains("[log=") && !l.contains("[log=0.0/s]"))
    });
    tmux.wait("the Logs pane, quiet", |s| {
        s.get(3).is_some_and(|l| l.contains("[log=0.0/s]"))
    });
    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(dir.path().join("exit")).map_or(true, |t| t.trim().is_empty()) {
        assert!(Instant::now() < deadline, "no exit after q");
        std::thread::sleep(Duration::from_millis(100));
    }
}
