//! Runs the notifyscope binary as a user would and reads its JSON lines.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::{binary, WAIT};

/// The binary with none of the variables it reads inherited from the test's environment, and
/// an empty runtime directory of its own: it finds no running instance unless the test gives
/// it one (`.env("XDG_RUNTIME_DIR", …)` after this, or [`notifyscope_for`]).
pub fn notifyscope() -> Command {
    let mut cmd = without_inherited_settings();
    cmd.env("XDG_RUNTIME_DIR", super::fresh_runtime_dir());
    cmd
}

fn without_inherited_settings() -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFYSCOPE_CHANNEL")
        .env_remove("NOTIFYSCOPE_SCHEMA")
        .env_remove("DISCORD_TOKEN")
        .env_remove("DISCORD_API_URL")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The binary as another shell of the user who runs `t`'s pipeline: it shares `t`'s runtime
/// directory, so it finds the instance that [`pipeline_command`] started.
pub fn notifyscope_for(t: &super::TestSchema) -> Command {
    let mut cmd = without_inherited_settings();
    cmd.env("XDG_RUNTIME_DIR", t.runtime_dir());
    cmd
}

/// `notifyscope run --headless --json` on the test's schema, channel and database, in the
/// test's runtime directory.
pub fn pipeline_command(t: &super::TestSchema) -> Command {
    pipeline_command_on(t, &super::server_url())
}

/// [`pipeline_command`] with the database reached at `database_url` (e.g. through a proxy).
pub fn pipeline_command_on(t: &super::TestSchema, database_url: &str) -> Command {
    let mut cmd = notifyscope_for(t);
    cmd.args([
        "run",
        "--headless",
        "--json",
        "--schema",
        &t.name,
        "--channel",
        &t.name,
    ])
    .args(["--database-url", database_url]);
    cmd
}

/// [`pipeline_command`] started, once its listener is up.
pub async fn run_pipeline(t: &super::TestSchema) -> Running {
    let mut run = Running::start(pipeline_command(t));
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    run
}

pub fn stage(v: &Value) -> &str {
    v["stage"].as_str().unwrap_or_default()
}

pub struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far.
    pub stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("notifyscope starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                eprint!("{text}");
                sink.lock().expect("lock").push_str(&text);
            }
        });
        Running {
            child,
            lines: BufReader::new(stdout).lines(),
            stdout: Vec::new(),
            stderr,
            stderr_reader,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// The next stdout line, whatever it holds; `None` when stdout ended.
    pub async fn next_line(&mut self) -> Option<String> {
        let line = self.lines.next_line().await.expect("read stdout")?;
        self.stdout.push(line.clone());
        Some(line)
    }

    /// Reads JSON lines until one satisfies `pred`; returns it.
    pub async fn until(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let result = tokio::time::timeout(WAIT, async {
            loop {
                let line = self.lines.next_line().await.expect("read stdout")?;
                self.stdout.push(line.clone());
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if pred(&value) {
                    return Some(value);
                }
            }
        })
        .await;
        match result {
            Ok(Some(v)) => v,
            Ok(None) => panic!("stdout ended before {what}; stderr: {}", self.stderr()),
            Err(_) => panic!("timed out waiting for {what}; stderr: {}", self.stderr()),
        }
    }

    /// Waits for the process to exit by itself, reading the rest of its output.
    pub async fn exit(mut self) -> (std::process::ExitStatus, String, String) {
        let mut rest = Vec::new();
        let status = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                rest.push(line);
            }
            self.child.wait().await
        })
        .await
        .expect("exits")
        .expect("exit status");
        self.stdout.extend(rest);
        // The stderr reader finishes once the pipe closes.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.stderr_reader).await;
        let stderr = self.stderr.lock().expect("lock").clone();
        (status, self.stdout.join("\n"), stderr)
    }

    /// Closes the reading end of its stdout, as `| head -1` does once it has its line, and
    /// waits for the process to exit: its status and stderr.
    pub async fn close_stdout_and_exit(self) -> (std::process::ExitStatus, String) {
        let Running {
            mut child,
            lines,
            stderr,
            stderr_reader,
            ..
        } = self;
        drop(lines);
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .expect("exits once its stdout is closed")
            .expect("exit status");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stderr_reader).await;
        let stderr = stderr.lock().expect("lock").clone();
        (status, stderr)
    }

    pub async fn signal_and_wait(self, signal: Signal) -> std::process::ExitStatus {
        self.signal_and_exit(signal).await.0
    }

    /// Sends `signal`, then waits as [`Running::exit`] does: status, all of stdout, stderr.
    pub async fn signal_and_exit(
        self,
        signal: Signal,
    ) -> (std::process::ExitStatus, String, String) {
        let pid = Pid::from_raw(self.child.id().expect("running") as i32);
        kill(pid, signal).expect("signal sent");
        self.exit().await
    }
}
