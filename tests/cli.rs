//! The binary as a user runs it: `run --headless --json`, `send`, signals, exit codes.

mod common;

use std::process::Stdio;

use common::{server_url, TestSchema, WAIT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_notifyscope");

fn notifyscope() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFYSCOPE_CHANNEL")
        .env_remove("NOTIFYSCOPE_SCHEMA")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("notifyscope starts");
        let stdout = child.stdout.take().expect("stdout");
        Running {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Reads JSON lines until one satisfies `pred`; returns it.
    async fn until(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("read stdout")
                    .unwrap_or_else(|| panic!("stdout ended before {what}"));
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if pred(&value) {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    async fn signal_and_wait(mut self, signal: Signal) -> std::process::ExitStatus {
        let pid = Pid::from_raw(self.child.id().expect("running") as i32);
        kill(pid, signal).expect("signal sent");
        // Keep reading so that a full pipe never blocks the shutdown.
        let drain = async { while let Ok(Some(_)) = self.lines.next_line().await {} };
        let (status, ()) =
            tokio::time::timeout(WAIT, async { tokio::join!(self.child.wait(), drain) })
                .await
                .expect("exits after the signal");
        status.expect("exit status")
    }
}

fn stage(v: &Value) -> &str {
    v["stage"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_json_prints_one_ingested_line_per_sent_message() {
    let t = TestSchema::new("cli_json");
    let mut cmd = notifyscope();
    cmd.args([
        "run",
        "--headless",
        "--json",
        "--schema",
        &t.name,
        "--channel",
        &t.name,
    ])
    .args(["--database-url", &server_url()]);
    let mut run = Running::start(cmd);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;

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
        .output()
        .await
        .expect("send runs");
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
    let mut cmd = notifyscope();
    cmd.args(["run", "--headless", "--json"]);
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
        .output()
        .await
        .expect("send runs");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let mut ingested = 0;
    run.until("20 ingested", |v| {
        ingested += usize::from(stage(v) == "ingested");
        ingested == 20
    })
    .await;
    let status = run.signal_and_wait(Signal::SIGINT).await;
    assert!(status.success(), "{status}");
    assert!(
        !std::path::Path::new(&socket_dir).exists(),
        "temporary cluster left behind in {socket_dir}"
    );
}

#[tokio::test]
async fn without_a_terminal_the_monitor_points_to_headless() {
    let out = notifyscope()
        .args(["--database-url", &server_url()])
        .output()
        .await
        .expect("runs");
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
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
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
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to host=127.0.0.1 port=1"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
