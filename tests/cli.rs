//! The binary as a user runs it: `run --headless --json`, `send`, signals, exit codes.

mod common;

use std::time::Duration;

use common::process::{notifyscope, notifyscope_for, run_pipeline, stage, Finish, Running};
use common::{fresh_runtime_dir, server_url, TestSchema};
use nix::sys::signal::Signal;

#[test]
fn without_a_server_the_tests_say_what_to_do_in_one_line() {
    let line = common::server_check("host=127.0.0.1 port=1 user=postgres dbname=test")
        .expect_err("nothing listens on port 1");
    assert_eq!(line.lines().count(), 1, "{line}");
    for part in [
        "NOTIFYSCOPE_TEST_DATABASE_URL",
        common::DEFAULT_SERVER,
        ".ci/run",
        "port=1",
    ] {
        assert!(line.contains(part), "{part:?} missing from: {line}");
    }
    assert!(common::server_check(&server_url()).is_ok());
}

/// A subcommand that hangs does not hang the tests: once its limit passes it is killed, and
/// the test fails naming it, with what it printed so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_subcommand_is_killed_and_named_with_its_output() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$ > {}; echo started; echo waiting >&2; exec sleep 600",
        pid_file.display()
    );
    let hung = tokio::spawn(
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .finish_within(Duration::from_secs(1)),
    );
    let failure = hung.await.expect_err("the hung command fails the test");
    let message = *failure
        .into_panic()
        .downcast::<String>()
        .expect("a message");
    for part in ["`sh -c", "still running", "killed", "started", "waiting"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid written")
        .trim()
        .parse()
        .expect("a pid");
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the hung command was killed and reaped"
    );

    // The same outside the runtime (tmux is run so).
    let blocking = common::process::try_finish_blocking(
        std::process::Command::new("sh").args(["-c", "echo started; exec sleep 600"]),
        Duration::from_secs(1),
    );
    match blocking {
        Err(common::process::Unfinished::Killed(message)) => {
            assert!(message.contains("started"), "{message}")
        }
        other => panic!("not killed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_json_prints_one_ingested_line_per_sent_message() {
    let t = TestSchema::new("cli_json");
    let mut run = run_pipeline(&t).await;

    let sent = notifyscope()
        .args([
            "send",
            "message",
            "--count",
            "1000",
            "--schema",
            &t.name,
            "--channel",
            &t.name,
        ])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(String::from_utf8_lossy(&sent.stdout).contains("published 1000 of 1000"));

    let mut ingested = 0;
    run.until("1000 ingested lines", |v| {
        if stage(v) == "ingested" {
            assert_eq!(v["outcome"], "inserted");
            assert!(v["message_id"].as_str().is_some());
            ingested += 1;
        }
        ingested == 1000
    })
    .await;
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_database_serves_another_shell_and_is_removed_at_exit() {
    // Without --database-url the binary makes a private cluster of its own.
    common::require_server_binaries();
    let runtime = fresh_runtime_dir();
    let mut cmd = notifyscope();
    cmd.env("XDG_RUNTIME_DIR", &runtime)
        .args(["run", "--headless", "--json"]);
    let mut run = Running::start(cmd);
    let up = run
        .until("database up", |v| stage(v) == "database_up")
        .await;
    assert_eq!(up["embedded"], true);
    let url = up["url"]
        .as_str()
        .expect("url")
        .split(" (schema")
        .next()
        .expect("url part")
        .to_owned();
    let socket_dir = url
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host="))
        .expect("host=")
        .to_owned();
    assert!(std::path::Path::new(&socket_dir).exists());
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;

    let sent = notifyscope()
        .args(["send", "message", "--count", "20", "--database-url", &url])
        .finish()
        .await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // Another shell of the same user finds it without any option, by its runtime file.
    let via_bot = notifyscope()
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["send", "--via-bot", "message"])
        .finish()
        .await;
    let text = String::from_utf8_lossy(&via_bot.stdout);
    assert!(
        via_bot.status.success() && text.contains("1 published"),
        "{text}{}",
        String::from_utf8_lossy(&via_bot.stderr)
    );
    let mut ingested = 0;
    run.until("21 ingested", |v| {
        ingested += usize::from(stage(v) == "ingested");
        ingested == 21
    })
    .await;
    let runtime_file = runtime
        .join("notifyscope")
        .join(format!("{}.json", run.pid()));
    assert!(runtime_file.exists());
    let status = run.signal_and_wait(Signal::SIGINT).await;
    assert!(status.success(), "{status}");
    assert!(
        !std::path::Path::new(&socket_dir).exists(),
        "temporary cluster left behind in {socket_dir}"
    );
    assert!(!runtime_file.exists(), "runtime file left behind");
}

#[tokio::test]
async fn without_a_terminal_the_monitor_points_to_headless() {
    let out = notifyscope()
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a terminal") && stderr.contains("--headless"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn invalid_channel_name_is_a_clear_error() {
    let out = notifyscope()
        .args(["send", "raw", "--payload", "x", "--channel", "my events"])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("channel name \"my events\" is not a plain identifier"),
        "{stderr}"
    );
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error_without_the_password() {
    let out = notifyscope()
        .args(["run", "--headless", "--json"])
        .args(["--database-url", "postgresql://ada:s3cret@127.0.0.1:1/nope"])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to host=127.0.0.1 port=1"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_via_bot_reaches_the_running_bot_path() {
    let t = TestSchema::new("cli_via_bot");
    let mut run = run_pipeline(&t).await;

    let via_bot = |kind: &str| {
        let mut cmd = notifyscope_for(&t);
        cmd.args([
            "send",
            "--via-bot",
            kind,
            "--schema",
            &t.name,
            "--channel",
            &t.name,
        ])
        .args(["--database-url", &server_url()]);
        cmd
    };
    for (kind, expect) in [
        (
            "message",
            "1 message through the running bot path: 1 published, 0 skipped",
        ),
        ("own", "1 own message through the running bot path"),
        ("own", "skipped: own message"),
        ("bot", "skipped: author is a bot"),
        ("webhook", "skipped: webhook"),
        ("empty", "skipped: empty content"),
        ("long", "1 published, 0 skipped"),
        (
            "burst",
            "100 burst messages through the running bot path: 100 published, 0 skipped",
        ),
    ] {
        let out = via_bot(kind).finish().await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{kind}: {text}");
        assert!(text.contains(expect), "{kind}: {text}");
        if kind == "burst" {
            // Ten listed, and the rest counted rather than left out silently.
            let listed = text
                .lines()
                .filter(|l| {
                    l.starts_with("  ") && l.trim_start().starts_with(|c: char| c.is_ascii_digit())
                })
                .count();
            assert_eq!(listed, 10, "{text}");
            assert!(text.contains("\n  … and 90 more published\n"), "{text}");
        }
    }
    let mut ingested = 0;
    run.until("102 ingested", |v| {
        ingested += usize::from(stage(v) == "ingested");
        ingested == 102
    })
    .await;
    let long: i64 = t
        .client()
        .await
        .query_one(
            &format!(
                "SELECT max(octet_length(content))::int8 FROM \"{}\".discord_messages",
                t.name
            ),
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(long, 16 * 1024);
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn send_via_bot_without_a_running_instance_says_so() {
    let t = TestSchema::new("cli_nobody");
    let out = notifyscope()
        .args([
            "send",
            "--via-bot",
            "message",
            "--timeout",
            "1",
            "--schema",
            &t.name,
        ])
        .args(["--channel", &t.name, "--database-url", &server_url()])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no running notifyscope answered"),
        "{stderr}"
    );
}

/// `notifyscope --headless | head -1`: once the reader has its line and closes the pipe, the
/// command stops as on SIGTERM (drained, exit 0), with no error about the pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_stops_run_and_watch_quietly() {
    let t = TestSchema::new("cli_head");
    let mut run = Running::start(common::process::pipeline_command(&t));
    run.until("a first line", |_| true).await;
    let (status, stderr) = run.close_stdout_and_exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");

    // watch, with the readable lines, on the schema run has migrated.
    let mut cmd = notifyscope();
    cmd.args([
        "watch",
        "--headless",
        "--schema",
        &t.name,
        "--channel",
        &t.name,
    ])
    .args(["--database-url", &server_url()]);
    let mut watching = Running::start(cmd);
    let first = watching.next_line().await;
    assert!(first.is_some(), "{}", watching.stderr());
    let (status, stderr) = watching.close_stdout_and_exit().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
}

/// Every part of an error once: the server named once, the cause once, the password never.
fn assert_each_part_once(what: &str, text: &str) {
    assert!(
        !text.contains("s3cret"),
        "{what} shows the password: {text}"
    );
    for line in text.lines() {
        let parts: Vec<&str> = line
            .split([':', '(', ')', ';', '—'])
            .map(str::trim)
            .filter(|p| p.len() > 3)
            .collect();
        for (i, part) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(part),
                "{what} repeats {part:?}: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_each_part_once_and_never_the_password() {
    let unreachable = "postgresql://ada:s3cret@127.0.0.1:1/nope";
    for args in [
        vec!["doctor"],
        vec!["send", "message"],
        vec!["send", "raw", "--payload", "x"],
        vec!["run", "--headless"],
        vec!["selftest"],
        vec!["outbox", "list"],
        vec!["send", "--via-bot", "message"],
    ] {
        let out = notifyscope()
            .args(&args)
            .args(["--database-url", unreachable])
            .finish()
            .await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let what = args.join(" ");
        assert_ne!(out.status.code(), Some(0), "{what}: {text}");
        assert!(text.contains("host=127.0.0.1 port=1"), "{what}: {text}");
        assert!(
            text.lines()
                .all(|l| l.matches("host=127.0.0.1 port=1").count() <= 1),
            "{what} names the server once a line: {text}"
        );
        assert!(text.contains("Connection refused"), "{what}: {text}");
        assert_each_part_once(&what, &text);
    }

    let bad = "postgres://ada:s3cret@:::/x";
    for args in [vec!["doctor"], vec!["run", "--headless"]] {
        let out = notifyscope()
            .args(&args)
            .args(["--database-url", bad])
            .finish()
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = args.join(" ");
        assert_ne!(out.status.code(), Some(0), "{what}: {stderr}");
        assert!(
            stderr.contains("invalid database URL: invalid value for option `port`"),
            "{what} says which part is wrong: {stderr}"
        );
        assert_each_part_once(&what, &stderr);
    }
}

/// Passwords as generated ones often are: with `@`, `:`, `/`, `=` and a space, which a URL
/// or a `key=value` string gives a meaning to.
const ODD_PASSWORDS: [&str; 3] = [
    "qZx7:Hkp9@Vmw2/Trb4",
    "qZx7@Hkp9@Vmw2",
    "qZx7@Hkp9 Vmw2=Trb4",
];

/// Every piece of an odd password between the characters that split it.
const PASSWORD_PIECES: [&str; 4] = ["qZx7", "Hkp9", "Vmw2", "Trb4"];

/// No command shows a password, or a piece of one, whether its database URL parses or not
/// and whether the database answers or not: in the URL form and the `key=value` form, on
/// stdout and stderr, in lines and in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_shows_a_password_from_a_url_that_parses_or_not() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let commands: &[&[&str]] = &[
        &["run", "--headless"],
        &["run", "--headless", "--json"],
        &["doctor"],
        &["doctor", "--json"],
        &["send", "message"],
        &["send", "message", "--json"],
        &["send", "raw", "--payload", "x"],
        &["send", "--via-bot", "message", "--timeout", "1"],
        &["send", "--via-bot", "message", "--timeout", "1", "--json"],
        &["watch", "--headless"],
        &["watch", "--headless", "--json"],
        &["outbox", "list"],
        &["outbox", "list", "--json"],
        &["outbox", "retry", "--all-stuck", "--yes", "--json"],
        &["outbox", "purge", "--all-dead", "--yes"],
        &["dead-letters", "list", "--json"],
        &["dead-letters", "retry", "--all", "--yes"],
        &["dead-letters", "delete", "--all", "--yes", "--json"],
        &["backend", "cancel", "1", "--yes", "--json"],
        &["backend", "terminate", "1", "--yes"],
        &["selftest", "--timeout", "1"],
        &["bench", "--messages", "10"],
        &["bench", "--messages", "10", "--json"],
    ];
    for password in ODD_PASSWORDS {
        // (URL, whether it parses: then the error names the server it could not reach)
        let urls = [
            (
                format!("postgresql://postgres:{password}@127.0.0.1:{closed}/test"),
                true,
            ),
            (
                format!("postgresql://postgres:{password}@127.0.0.1:port/test"),
                false,
            ),
            (
                format!(
                    "host=127.0.0.1 port={closed} user=postgres password='{password}' dbname=test"
                ),
                true,
            ),
            (
                format!("host=127.0.0.1 port=port user=postgres password='{password}' dbname=test"),
                false,
            ),
            // Not quoted: what follows a space is read as more `key=value` pairs.
            (
                format!(
                    "host=127.0.0.1 port={closed} user=postgres password={password} dbname=test"
                ),
                !password.contains(' '),
            ),
        ];
        // Each URL as --database-url, and as --direct-database-url beside one that holds
        // no password.
        let beside = format!("host=127.0.0.1 port={closed} user=postgres dbname=test");
        let cases = urls.iter().flat_map(|(url, parses)| {
            [
                (vec!["--database-url", url.as_str()], url, parses),
                (
                    vec!["--database-url", &beside, "--direct-database-url", url],
                    url,
                    parses,
                ),
            ]
        });
        for (options, url, parses) in cases {
            let options = &options;
            let runs = commands.iter().map(|args| async move {
                let out = notifyscope().args(*args).args(options).finish().await;
                (args, out)
            });
            for (args, out) in futures_util::future::join_all(runs).await {
                let text = format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let what = format!("`{}` on {url}", args.join(" "));
                assert_eq!(out.status.code(), Some(2), "{what}: {text}");
                for piece in PASSWORD_PIECES {
                    assert!(!text.contains(piece), "{what} shows {piece:?}: {text}");
                }
                if *parses {
                    let server = format!("host=127.0.0.1 port={closed} user=postgres");
                    assert!(text.contains(&server), "{what}: {text}");
                } else {
                    assert!(text.contains("invalid database URL"), "{what}: {text}");
                }
            }
        }
    }

    // The password is read whole: with trust authentication, the server takes the login.
    let server: tokio_postgres::Config = server_url().parse().expect("the test server's URL");
    let Some(tokio_postgres::config::Host::Tcp(host)) = server.get_hosts().first() else {
        return; // a Unix socket: no URL of this form reaches it
    };
    let port = server.get_ports().first().copied().unwrap_or(5432);
    let t = TestSchema::new("cli_odd_password");
    for password in ODD_PASSWORDS {
        let url = format!(
            "postgresql://{}:{password}@{host}:{port}/{}",
            server.get_user().unwrap_or("postgres"),
            server.get_dbname().unwrap_or("postgres")
        );
        let out = notifyscope()
            .args(["doctor", "--schema", &t.name, "--database-url", &url])
            .finish()
            .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("✓ database connection"),
            "{password}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Commands other than the monitors print what they are for and nothing else: no log line
/// unless `--log` asks for one. Their JSON gives durations to a tenth of a millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_print_only_what_they_are_for() {
    let t = TestSchema::new("cli_quiet");
    let mut run = run_pipeline(&t).await;
    // Without --database-url each finds the running instance, which it used to log.
    for args in [
        &["send", "message"][..],
        &["send", "--via-bot", "message"],
        &["doctor"],
        &["selftest"],
        &["outbox", "list"],
        &["dead-letters", "list"],
    ] {
        let out = notifyscope_for(&t).args(args).finish().await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!out.stdout.is_empty(), "{args:?}");
        assert_eq!(stderr, "", "{args:?}");
    }
    let out = notifyscope_for(&t)
        .args(["outbox", "list", "--log", "info"])
        .finish()
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("using the running instance"), "{stderr}");

    let out = notifyscope_for(&t)
        .args(["doctor", "--json"])
        .finish()
        .await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let up = &report["instances"][0]["up_s"];
    let decimals = up.to_string().split('.').nth(1).map_or(0, str::len);
    assert!(up.is_number() && decimals <= 4, "up_s {up}");

    run.until("a line", |_| true).await;
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

/// The options a `--help` lists, e.g. `--schema`: at the start of a line of their own, not
/// named in a description wrapped onto the next line.
fn listed_options(help: &str) -> Vec<&str> {
    help.lines()
        .filter(|l| l.len() - l.trim_start().len() <= "      ".len())
        .map(|l| {
            let l = l.trim_start();
            l.strip_prefix("-h, ").unwrap_or(l)
        })
        .filter(|l| l.starts_with("--"))
        .filter_map(|l| l.split([' ', '=']).next())
        .collect()
}

/// Each subcommand's help lists the options it uses, and says so where one does nothing.
#[tokio::test]
async fn help_lists_what_each_command_uses() {
    let help = |command: &'static str| async move {
        let out = notifyscope().args([command, "--help"]).finish().await;
        assert!(out.status.success(), "{command} --help");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let watch = help("watch").await;
    let options = listed_options(&watch);
    for used in [
        "--database-url",
        "--channel",
        "--schema",
        "--table",
        "--record",
    ] {
        assert!(
            options.contains(&used),
            "watch --help lacks {used}: {watch}"
        );
    }
    let words = watch.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        !watch.contains("created") && words.contains("watch only reads it"),
        "watch never creates the schema: {watch}"
    );

    let replay = help("replay").await;
    let mut options = listed_options(&replay);
    options.sort_unstable();
    assert_eq!(
        options,
        [
            "--config",
            "--help",
            "--history",
            "--log",
            "--no-color",
            "--no-mouse",
            "--theme",
        ],
        "{replay}"
    );
    assert!(replay.contains("<FILE>"), "{replay}");

    let bench = help("bench").await;
    // The option's help: on its line, or on the lines under it.
    let said = |option: &str| {
        let lines: Vec<&str> = bench.lines().collect();
        lines.iter().enumerate().any(|(at, l)| {
            l.trim_start().starts_with(option)
                && lines[at..]
                    .iter()
                    .take(2)
                    .any(|l| l.contains("Not used by bench"))
        })
    };
    assert!(
        said("--channel") && said("--schema"),
        "bench says --channel and --schema do nothing: {bench}"
    );
    let run = help("run").await;
    let words = run.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("creates and migrates it at start"), "{run}");
}
