//! `watch` sees inside their bot: a Python bot (examples/instrumented_bot.py) that skips
//! every 5th message (its author is a bot) and whose publish raises on every 7th is watched
//! through its JSON log in a file, through discord.py's plain log on standard input, and
//! through OpenTelemetry exported by the Python SDK over OTLP/HTTP. Its published messages
//! are real NOTIFYs and rows in the test's schema, sent through psql.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::process::{notifyscope_for, stage, Running};
use common::{server_url, TestSchema};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Messages the bot handles in each test.
const MESSAGES: u64 = 35;
const FAILURE: &str =
    "ConnectionDoesNotExistError: connection was closed in the middle of operation";

fn bot_script() -> String {
    format!(
        "{}/examples/instrumented_bot.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Message ids of their own for each test: runs share the server and its notifications.
fn first_id() -> u64 {
    1_300_000_000_000_000_000 + u64::from(rand::random::<u32>()) * 1000
}

/// The bot's command: its report, its ids, and psql to the test's schema and channel.
fn bot(t: &TestSchema, report: &str, first: u64) -> std::process::Command {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(bot_script())
        .args(["--report", report, "--messages", &MESSAGES.to_string()])
        .args(["--first-id", &first.to_string(), "--channel", &t.name])
        .args([
            "--database-url",
            &format!("{} options=-csearch_path={}", server_url(), t.name),
        ]);
    cmd
}

/// `watch` on the test's schema and channel with `extra` options.
fn watch(t: &TestSchema, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = notifyscope_for(t);
    cmd.args(["watch", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()])
        .args(extra);
    cmd
}

async fn until_stderr(run: &Running, text: &str) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !run.stderr().contains(text) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {text:?} on watch's stderr: {}", run.stderr()));
}

/// What the trace said of each message of the bot, from one source.
#[derive(Debug, Default)]
struct Seen {
    received: BTreeMap<u64, ()>,
    skipped: BTreeMap<u64, String>,
    published: BTreeMap<u64, ()>,
    failed: BTreeMap<u64, String>,
    rows: BTreeMap<u64, ()>,
    /// Failures that named no message.
    unnamed_failures: Vec<String>,
}

impl Seen {
    fn read(&mut self, v: &Value, source: &str) {
        let id = v["message_id"].as_str().and_then(|s| s.parse::<u64>().ok());
        let from_source = v["source"] == source;
        match (stage(v), id) {
            ("received", Some(id)) if from_source => {
                self.received.insert(id, ());
            }
            ("skipped", Some(id)) if from_source => {
                self.skipped
                    .insert(id, v["reason"].as_str().unwrap_or_default().to_owned());
            }
            ("publish_reported", Some(id)) if from_source => {
                self.published.insert(id, ());
            }
            ("publish_failed", Some(id)) if from_source => {
                self.failed
                    .insert(id, v["error"].as_str().unwrap_or_default().to_owned());
            }
            ("publish_failed", None) if from_source => self
                .unnamed_failures
                .push(v["error"].as_str().unwrap_or_default().to_owned()),
            ("row_observed", Some(id)) => {
                self.rows.insert(id, ());
            }
            _ => {}
        }
    }

    /// Every message's outcome is in: its skip, its failure or its publish; and the row of
    /// the first one published, which their NOTIFY and table tell.
    fn complete(&self, first: u64) -> bool {
        self.rows.contains_key(&(first + 1))
            && (1..=MESSAGES).all(|n| {
                let id = first + n;
                self.skipped.contains_key(&id)
                    || self.failed.contains_key(&id)
                    || self.published.contains_key(&id)
            })
    }

    /// At least 90 % received; each skip with its reason and each failure with its error,
    /// by message id.
    fn judge(&self, first: u64) {
        let received = (1..=MESSAGES)
            .filter(|n| self.received.contains_key(&(first + n)))
            .count() as u64;
        assert!(
            received * 10 >= MESSAGES * 9,
            "{received} of {MESSAGES} received: {self:?}"
        );
        for n in 1..=MESSAGES {
            let id = first + n;
            if n % 5 == 0 {
                assert_eq!(
                    self.skipped.get(&id).map(String::as_str),
                    Some("author is a bot"),
                    "message {n}: {self:?}"
                );
            } else if n % 7 == 0 {
                assert_eq!(
                    self.failed.get(&id).map(String::as_str),
                    Some(FAILURE),
                    "message {n}: {self:?}"
                );
            } else {
                assert!(self.published.contains_key(&id), "message {n}: {self:?}");
            }
        }
    }
}

/// The silent-errors check of a health report, when it fails naming a received message whose
/// publish failed with the bot's error.
fn names_the_failure(v: &Value) -> bool {
    stage(v) == "health_report"
        && v["checks"].as_array().is_some_and(|checks| {
            checks.iter().any(|c| {
                c["check"] == "silent_errors"
                    && c["status"] == "fail"
                    && c["evidence"].as_array().is_some_and(|e| {
                        e.iter().any(|line| {
                            line.as_str().is_some_and(|l| {
                                l.contains("received; publish failed: ") && l.ends_with(FAILURE)
                            })
                        })
                    })
            })
        })
}

/// A check of a health report: its status and summary.
fn check<'a>(report: &'a Value, id: &str) -> (&'a str, &'a str) {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == id))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default(),
                c["summary"].as_str().unwrap_or_default(),
            )
        })
        .unwrap_or_default()
}

/// Reads watch's output until every message's outcome is in and the diagnosis names the
/// failure; what it saw. The filter is judged by their skip reasons, and every message
/// their bot received was handled.
async fn read_until_judged(run: &mut Running, source: &str, first: u64) -> Seen {
    let mut seen = Seen::default();
    let mut judged = None;
    run.until("every outcome and the failure named", |v| {
        seen.read(v, source);
        if names_the_failure(v) {
            judged = Some(v.clone());
        }
        judged.is_some() && seen.complete(first)
    })
    .await;
    let report = judged.expect("a health report");
    let (status, summary) = check(&report, "self_filter");
    assert!(
        status == "ok" && summary.contains("author is a bot"),
        "{status}: {summary}"
    );
    let (status, summary) = check(&report, "async_context");
    assert_eq!(status, "ok", "{summary}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_json_log_in_a_file_shows_every_stage_by_message() {
    let t = TestSchema::new("bl_json");
    t.their_table().await;
    let dir = tempfile::tempdir().expect("a directory");
    let log = dir.path().join("bot.log");
    let log_arg = log.to_str().expect("a UTF-8 path");
    let mut run = Running::start(watch(&t, &["--bot-log", log_arg]));
    until_stderr(&run, "watching channel").await;
    until_stderr(&run, "waiting for their bot's log").await;
    let first = first_id();
    let status = bot(&t, "json", first)
        .args(["--log-file", log_arg])
        .status()
        .expect("the bot runs");
    assert!(status.success());
    let seen = read_until_judged(&mut run, "bot_log", first).await;
    seen.judge(first);
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_py_plain_log_on_stdin_names_the_swallowed_exception() {
    let t = TestSchema::new("bl_stdin");
    t.their_table().await;
    let first = first_id();
    let mut bot = bot(&t, "discordpy", first)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the bot runs");
    let log = bot.stdout.take().expect("the bot's stdout");
    let mut cmd = watch(&t, &["--bot-log", "-"]);
    cmd.stdin(Stdio::from(log));
    let mut run = Running::start(cmd);
    let mut failures = Vec::new();
    run.until("the swallowed exception named", |v| {
        if stage(v) == "publish_failed" && v["source"] == "bot_log" {
            failures.push(v["error"].as_str().unwrap_or_default().to_owned());
        }
        failures.len() >= 4
    })
    .await;
    assert!(failures.iter().all(|f| f == FAILURE), "{failures:?}");
    run.until("the silent-errors check failing on it", |v| {
        stage(v) == "health_report"
            && v["checks"].as_array().is_some_and(|checks| {
                checks.iter().any(|c| {
                    c["check"] == "silent_errors"
                        && c["status"] == "fail"
                        && c["evidence"].to_string().contains(FAILURE)
                })
            })
    })
    .await;
    assert!(bot.wait().expect("the bot ends").success());
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
}

/// The Python packages of the OpenTelemetry test, or a failure that says how to get them.
fn require_opentelemetry() {
    let found = std::process::Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "this test needs Python's OpenTelemetry SDK and OTLP/HTTP exporter: \
         python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_opentelemetry_spans_show_every_stage_by_message() {
    require_opentelemetry();
    let t = TestSchema::new("bl_otlp");
    t.their_table().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut run = Running::start(watch(&t, &["--otlp", &addr]));
    until_stderr(&run, "watching channel").await;
    until_stderr(&run, "receiving their bot's OpenTelemetry").await;
    // Bad input is answered, and the receiver goes on.
    let garbage = exchange(
        &addr,
        b"POST /v1/traces HTTP/1.1\r\nhost: a\r\ncontent-type: application/x-protobuf\r\n\
          content-length: 9\r\nconnection: close\r\n\r\n\xff\xff\xff\xff\x0f\x00\x01\x02\x03",
    )
    .await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let huge = exchange(
        &addr,
        b"POST /v1/traces HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\n\
          content-length: 999999999\r\nconnection: close\r\n\r\n{",
    )
    .await;
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    let first = first_id();
    let status = bot(&t, "otlp", first)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .status()
        .expect("the bot runs");
    assert!(status.success());
    let seen = read_until_judged(&mut run, "otlp", first).await;
    seen.judge(first);
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
}

/// A raw request to `addr` and the answer.
async fn exchange(addr: &str, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the receiver accepts");
    stream.write_all(raw).await.expect("sent");
    let mut answer = Vec::new();
    tokio::time::timeout(common::WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_otlp_address_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let t = TestSchema::new("bl_busy");
    t.their_table().await;
    let out = tokio::time::timeout(common::WAIT, watch(&t, &["--otlp", &addr]).output())
        .await
        .expect("watch refuses the address at once, not watching on without it")
        .expect("watch runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--otlp {addr}")), "{stderr}");
}
