//! One rule for the exit code of every command, as README's table says: 2 when it could not
//! run (the command line, the configuration, or the database it names), 1 when what it ran or
//! checked failed, 0 otherwise. Each command is run as a user runs it, with each class of
//! error.

mod common;

use std::time::Duration;

use common::process::{notifyscope, Finish};
use common::{server_url, TestSchema};

/// Every command that works on a database, with what it needs besides to run.
const ON_A_DATABASE: &[&[&str]] = &[
    &["run", "--headless"],
    &["doctor"],
    &["send", "message"],
    &["send", "raw", "--payload", "x"],
    &["send", "--via-bot", "message", "--timeout", "1"],
    &["watch", "--headless"],
    &["outbox", "list"],
    &["outbox", "retry", "--all-stuck", "--yes"],
    &["outbox", "purge", "--all-dead", "--yes"],
    &["dead-letters", "list"],
    &["dead-letters", "retry", "--all", "--yes"],
    &["dead-letters", "delete", "--all", "--yes"],
    &["backend", "cancel", "1", "--yes"],
    &["backend", "terminate", "1", "--yes"],
    &["selftest", "--timeout", "1"],
    &["bench", "--messages", "10"],
];

/// A command that should have stopped at once but runs on (`run` and `watch` run until
/// stopped) is killed after this, failing the test.
const AT_ONCE: Duration = Duration::from_secs(60);

/// A port on 127.0.0.1 nothing listens on: taken from the system, then let go.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// The exit code and everything printed (stdout, then stderr).
async fn exit_of(args: &[&str]) -> (Option<i32>, String) {
    let out = notifyscope().args(args).finish_within(AT_ONCE).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `args` exits with `code`, and says `says`.
async fn assert_exit(args: &[&str], code: i32, says: &str) {
    let (exit, text) = exit_of(args).await;
    assert_eq!(exit, Some(code), "`notifyscope {}`: {text}", args.join(" "));
    assert!(
        text.contains(says),
        "`notifyscope {}` does not say {says:?}: {text}",
        args.join(" ")
    );
}

fn with<'a>(command: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    [command, more].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_error_exits_2() {
    let replay = ["replay", "recording.jsonl"];
    for command in ON_A_DATABASE
        .iter()
        .copied()
        .chain([&replay[..], &["help"]])
    {
        assert_exit(&with(command, &["--no-such-option"]), 2, "--no-such-option").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_schema_or_log_filter_exits_2() {
    let server = server_url();
    for command in ON_A_DATABASE {
        // The host is not closed by its `]`.
        let bad_url = with(
            command,
            &["--database-url", "postgresql://ada@[db.example/app"],
        );
        assert_exit(&bad_url, 2, "invalid database URL").await;

        if command[0] != "bench" {
            let bad_schema = with(
                command,
                &["--database-url", &server, "--schema", "my schema"],
            );
            assert_exit(&bad_schema, 2, "schema name \"my schema\"").await;
        }

        let bad_log = with(
            command,
            &["--database-url", &server, "--log", "notifyscope=loud"],
        );
        assert_exit(&bad_log, 2, "notifyscope=loud").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_exits_2() {
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=test",
        closed_port()
    );
    for command in ON_A_DATABASE {
        assert_exit(
            &with(command, &["--database-url", &url]),
            2,
            "Connection refused",
        )
        .await;
    }
}

/// A recording of one trace event, for `replay`.
fn recording(dir: &std::path::Path) -> String {
    let path = dir.join("recording.jsonl");
    std::fs::write(
        &path,
        "{\"at\":\"2026-01-01T00:00:00Z\",\"stage\":\"database_up\",\"url\":\"host=h\",\
         \"embedded\":false}\n",
    )
    .expect("recording written");
    path.display().to_string()
}

/// `--theme` and `--config` are judged the same with a screen and headless: a typo is an
/// error before anything starts, never ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_theme_or_config_exits_2_headless_too() {
    let t = TestSchema::new("exit_screen");
    let dir = tempfile::tempdir().expect("temporary directory");
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "theme = [\n").expect("config written");
    let missing = dir.path().join("missing.toml");
    let (broken, missing) = (broken.display().to_string(), missing.display().to_string());
    let recording = recording(dir.path());
    let server = server_url();
    let target = [
        "--database-url",
        &server,
        "--schema",
        &t.name,
        "--channel",
        &t.name,
    ];
    let run = with(&["run", "--headless"], &target);
    let watch = with(&["watch", "--headless"], &target);
    let replay = ["replay", recording.as_str()];
    for command in [&run[..], &watch, &replay] {
        assert_exit(
            &with(command, &["--theme", "nosuch"]),
            2,
            "no theme named \"nosuch\"",
        )
        .await;
        assert_exit(&with(command, &["--config", &broken]), 2, "broken.toml").await;
        assert_exit(&with(command, &["--config", &missing]), 2, "missing.toml").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_cannot_be_read_exits_2() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let damaged = dir.path().join("damaged.jsonl");
    std::fs::write(&damaged, "{\"stage\":\n").expect("written");
    let directory = dir.path().display().to_string();
    let damaged = damaged.display().to_string();
    let missing = dir.path().join("missing.jsonl").display().to_string();
    assert_exit(&["replay", &directory], 2, "cannot read").await;
    assert_exit(&["replay", &missing], 2, "cannot read").await;
    assert_exit(&["replay", &damaged], 2, "not a trace event").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_port_exits_2() {
    let t = TestSchema::new("exit_metrics");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let server = server_url();
    for command in [&["run", "--headless"][..], &["watch", "--headless"]] {
        let args = with(
            command,
            &[
                "--database-url",
                &server,
                "--schema",
                &t.name,
                "--channel",
                &t.name,
                "--metrics",
                &addr,
            ],
        );
        assert_exit(&args, 2, "--metrics").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_or_run_that_fails_exits_1() {
    let t = TestSchema::new("exit_failed");
    let server = server_url();
    let on = |command: &[&'static str]| {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(
            [
                "--database-url",
                &server,
                "--schema",
                &t.name,
                "--channel",
                &t.name,
            ]
            .map(str::to_owned),
        );
        args
    };
    let exit = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        exit_of(&refs).await
    };

    // A schema notifyscope never migrated: doctor and selftest find it wanting.
    let (code, text) = exit(on(&["doctor"])).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("✗ schema and migrations present"), "{text}");
    let (code, text) = exit(on(&["selftest", "--timeout", "1"])).await;
    assert_eq!(code, Some(1), "{text}");

    // Nobody runs this pipeline, so nobody answers.
    let (code, text) = exit(on(&["send", "--via-bot", "message", "--timeout", "1"])).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no running notifyscope answered"), "{text}");

    // Rows and sessions named that are not there.
    t.database().migrate().await.expect("migrated");
    let (code, text) = exit(on(&["outbox", "retry", "--id", "999999999", "--yes"])).await;
    assert_eq!(code, Some(1), "{text}");
    let (code, text) = exit(on(&["backend", "cancel", "1", "--yes"])).await;
    assert_eq!(code, Some(1), "{text}");

    // And what works exits 0.
    let (code, text) = exit(on(&["outbox", "list"])).await;
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = exit_of(&["help", "--help"]).await;
    assert_eq!(code, Some(0), "{text}");
}
