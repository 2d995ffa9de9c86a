//! `--help` of every command as a person reads it in a terminal of 80 columns, or in a CI log:
//! every line fits, options are grouped under the same headings in the same order, `help`
//! works like the other commands, and the environment shows only what is set and not secret.

mod common;

use common::process::{notifyscope, Finish};

/// The headings of options, in the order every help lists them.
const HEADINGS: [&str; 5] = ["Connection", "Pipeline", "Bot", "Screen", "Output"];

/// Wider than the help may be: without a terminal, `COLUMNS` must not widen it.
const WIDE: &str = "200";

async fn help_of(path: &[&str], flag: &str) -> String {
    let out = notifyscope()
        .env("COLUMNS", WIDE)
        .args(path)
        .arg(flag)
        .finish()
        .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{path:?} {flag}: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The lines of a help that open a section (`Connection:`, `Commands:`, `Arguments:`).
fn sections(help: &str) -> Vec<&str> {
    help.lines()
        .filter_map(|l| l.strip_suffix(':'))
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphabetic()))
        .collect()
}

/// The subcommands a help lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every command and subcommand, found by walking the helps from the top: `[]` is
/// notifyscope itself.
async fn every_command() -> Vec<Vec<String>> {
    let mut found = vec![Vec::new()];
    let mut next = 0;
    while next < found.len() {
        let path = found[next].clone();
        next += 1;
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&help_of(&args, "--help").await) {
            let mut deeper = path.clone();
            deeper.push(sub);
            found.push(deeper);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_help_fits_80_columns_with_its_options_under_headings_in_order() {
    let commands = every_command().await;
    for expected in [
        &["doctor"][..],
        &["outbox", "list"],
        &["dead-letters", "retry"],
        &["send", "raw"],
        &["help"],
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected:?} not found: {commands:?}"
        );
    }
    for path in &commands {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for flag in ["-h", "--help"] {
            let help = help_of(&args, flag).await;
            for line in help.lines() {
                assert!(
                    line.chars().count() <= 80,
                    "`notifyscope {} {flag}` has a line of {} columns:\n{line}",
                    args.join(" "),
                    line.chars().count()
                );
            }
            let headings: Vec<&str> = sections(&help)
                .into_iter()
                .filter(|s| !["Commands", "Arguments"].contains(s))
                .collect();
            let places: Vec<usize> = headings
                .iter()
                .map(|h| {
                    HEADINGS
                        .iter()
                        .position(|known| known == h)
                        .unwrap_or_else(|| {
                            panic!("`{} {flag}`: options under {h:?}:\n{help}", args.join(" "))
                        })
                })
                .collect();
            assert!(
                places.windows(2).all(|w| w[0] < w[1]) && headings.last() == Some(&"Output"),
                "`{} {flag}`: headings {headings:?}:\n{help}",
                args.join(" ")
            );
        }
    }

    // The connection first, where a command uses one.
    let doctor = help_of(&["doctor"], "--help").await;
    assert_eq!(
        sections(&doctor),
        ["Connection", "Pipeline", "Bot", "Output"],
        "{doctor}"
    );
    let connection: Vec<&str> = doctor
        .lines()
        .skip_while(|l| *l != "Connection:")
        // Option lines, not the help under them (indented further).
        .filter(|l| !l.starts_with("          "))
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_whitespace().next())
        .take(4)
        .collect();
    assert_eq!(
        connection,
        ["database-url", "direct-database-url", "channel", "schema"],
        "{doctor}"
    );
    let run = help_of(&[], "--help").await;
    assert_eq!(
        sections(&run),
        [&["Commands"][..], &HEADINGS].concat(),
        "{run}"
    );
    let watch = help_of(&["watch"], "--help").await;
    assert_eq!(
        sections(&watch),
        ["Connection", "Pipeline", "Bot", "Screen", "Output"],
        "{watch}"
    );
    let replay = help_of(&["replay"], "--help").await;
    assert_eq!(
        sections(&replay),
        ["Arguments", "Screen", "Output"],
        "{replay}"
    );
}

#[tokio::test]
async fn help_is_a_command_with_a_help_of_its_own() {
    let help = help_of(&["help"], "--help").await;
    assert!(help.contains("Usage: notifyscope help"), "{help}");

    // `help COMMAND` is what `COMMAND --help` prints.
    for path in [&["doctor"][..], &["outbox", "retry"], &[]] {
        let mut args = vec!["help"];
        args.extend_from_slice(path);
        let out = notifyscope().args(&args).finish().await;
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            help_of(path, "--help").await,
            "{args:?}"
        );
    }

    let out = notifyscope()
        .args(["help", "outbox", "nosuch"])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no command `nosuch`") && stderr.contains("list, retry, purge"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_environment_variable_shows_its_value_only_when_set_and_not_secret() {
    let out = notifyscope().args(["watch", "--help"]).finish().await;
    let unset = String::from_utf8_lossy(&out.stdout);
    assert!(unset.contains("NOTIFYSCOPE_CHANNEL]"), "{unset}");
    assert!(!unset.contains("NOTIFYSCOPE_CHANNEL="), "{unset}");

    let out = notifyscope()
        .env("NOTIFYSCOPE_CHANNEL", "Ev")
        .env("DATABASE_URL", "postgresql://ada:hunter2@db.example/app")
        .env("DISCORD_API_URL", "http://proxy:hunter3@127.0.0.1:8080")
        .args(["watch", "--help"])
        .finish()
        .await;
    let set = String::from_utf8_lossy(&out.stdout);
    // Wrapping may put the value at the start of the next line.
    let joined = set.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(joined.contains("NOTIFYSCOPE_CHANNEL=Ev]"), "{set}");
    assert!(joined.contains("[env: DATABASE_URL]"), "{set}");
    assert!(joined.contains("[env: DISCORD_API_URL]"), "{set}");
    assert!(!set.contains("hunter"), "{set}");
}
