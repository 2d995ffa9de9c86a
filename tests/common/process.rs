//! Runs the notifyscope binary as a user would and reads its JSON lines; and every other
//! subprocess a test starts. No test waits on a subprocess without a limit: a command that
//! should finish by itself is run with [`Finish::finish`] (or [`finish_blocking`] outside
//! the runtime), a long-running one is read through [`Running`], and either, when the limit
//! passes, kills the process and fails the test with what it printed so far.

use std::future::Future;
use std::io::Read;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::{binary, WAIT};

/// How long a subcommand that ends by itself (`send`, `doctor`, `bench`, `tmux …`) may run
/// before the test kills it: twice the trace waits, far beyond what any of them needs on a
/// loaded machine, so that it fires only on a hang.
pub const SUBCOMMAND_WAIT: Duration = Duration::from_secs(2 * WAIT.as_secs());

/// How much of each stream a failure shows: the end, where a hang usually says why.
const SHOWN_TAIL: usize = 4000;

/// The command line, for messages.
fn shown(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.is_empty() {
        return "(nothing)".into();
    }
    match text.char_indices().rev().nth(SHOWN_TAIL) {
        Some((cut, _)) => format!("…{}", &text[cut..]),
        None => text.to_owned(),
    }
}

/// The failure of a subprocess that outran its limit, and was killed.
fn outran(shown: &str, limit: Duration, stdout: &[u8], stderr: &[u8]) -> String {
    format!(
        "`{shown}` was still running (or its output still open) after {} s, so the test \
         killed it.\n--- its stdout so far ---\n{}\n--- its stderr so far ---\n{}",
        limit.as_secs(),
        tail(stdout),
        tail(stderr)
    )
}

/// A pipe read to its end into a buffer that can be looked at any time.
type Captured = Arc<Mutex<Vec<u8>>>;

fn taken(buffer: &Captured) -> Vec<u8> {
    std::mem::take(&mut *buffer.lock().unwrap_or_else(|e| e.into_inner()))
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(pipe: Option<R>) -> (Captured, JoinHandle<()>) {
    let buffer = Captured::default();
    let sink = buffer.clone();
    let reader = tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, reader)
}

/// Waits for `child` to exit and its output to end, within `limit`; past it, kills the child
/// and says what it printed so far.
async fn collect(mut child: Child, shown: &str, limit: Duration) -> Result<Output, String> {
    let (stdout, mut stdout_reader) = capture(child.stdout.take());
    let (stderr, mut stderr_reader) = capture(child.stderr.take());
    let ended = tokio::time::timeout(limit, async {
        let status = child.wait().await;
        let _ = (&mut stdout_reader).await;
        let _ = (&mut stderr_reader).await;
        status
    })
    .await;
    match ended {
        Ok(Ok(status)) => Ok(Output {
            status,
            stdout: taken(&stdout),
            stderr: taken(&stderr),
        }),
        Ok(Err(e)) => Err(format!("`{shown}`: waiting for it failed: {e}")),
        Err(_) => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            // What it wrote before it died is still in the pipes.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = (&mut stdout_reader).await;
                let _ = (&mut stderr_reader).await;
            })
            .await;
            stdout_reader.abort();
            stderr_reader.abort();
            Err(outran(shown, limit, &taken(&stdout), &taken(&stderr)))
        }
    }
}

/// A subprocess's run to its end, started already.
pub type Finishing = std::pin::Pin<Box<dyn Future<Output = Output> + Send + 'static>>;

/// `Command::output`, but never a wait without end.
pub trait Finish {
    /// Starts the command at once and resolves to its exit status and everything it printed,
    /// once it exits by itself within [`SUBCOMMAND_WAIT`]. A command that does not start, or
    /// is still running then (it is killed), fails the test with its output so far.
    fn finish(&mut self) -> Finishing;

    /// [`Finish::finish`] with a limit of the caller's.
    fn finish_within(&mut self, limit: Duration) -> Finishing;
}

impl Finish for Command {
    fn finish(&mut self) -> Finishing {
        self.finish_within(SUBCOMMAND_WAIT)
    }

    fn finish_within(&mut self, limit: Duration) -> Finishing {
        let shown = shown(self.as_std());
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        Box::pin(async move {
            let child = child.unwrap_or_else(|e| panic!("`{shown}` does not start: {e}"));
            collect(child, &shown, limit)
                .await
                .unwrap_or_else(|failure| panic!("{failure}"))
        })
    }
}

/// Why a blocking subprocess gave no output.
#[derive(Debug)]
pub enum Unfinished {
    /// It could not be started (not installed, say).
    NotStarted(std::io::Error),
    /// It outran its limit and was killed; the message says what it printed.
    Killed(String),
}

/// [`Finish::finish`] for a `std` command, outside the runtime (tmux): within `limit`, or
/// killed, stdin closed as `output` closes it.
pub fn try_finish_blocking(
    cmd: &mut std::process::Command,
    limit: Duration,
) -> Result<Output, Unfinished> {
    let shown = shown(cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Unfinished::NotStarted)?;
    collect_blocking(child, &shown, limit).map_err(Unfinished::Killed)
}

/// [`try_finish_blocking`] within [`SUBCOMMAND_WAIT`], failing the test when the command
/// does not start or does not end.
pub fn finish_blocking(cmd: &mut std::process::Command) -> Output {
    match try_finish_blocking(cmd, SUBCOMMAND_WAIT) {
        Ok(output) => output,
        Err(Unfinished::NotStarted(e)) => panic!("`{}` does not start: {e}", shown(cmd)),
        Err(Unfinished::Killed(failure)) => panic!("{failure}"),
    }
}

/// Waits for a `std` child the test started itself (for its pid, say) within
/// [`SUBCOMMAND_WAIT`], or kills it and fails the test.
pub fn reap_blocking(child: std::process::Child, what: &str) -> Output {
    collect_blocking(child, what, SUBCOMMAND_WAIT).unwrap_or_else(|failure| panic!("{failure}"))
}

fn capture_blocking<R: Read + Send + 'static>(
    pipe: Option<R>,
    done: std::sync::mpsc::Sender<()>,
) -> Captured {
    let buffer = Captured::default();
    let sink = buffer.clone();
    std::thread::spawn(move || {
        if let Some(mut pipe) = pipe {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        }
        let _ = done.send(());
    });
    buffer
}

fn collect_blocking(
    mut child: std::process::Child,
    shown: &str,
    limit: Duration,
) -> Result<Output, String> {
    let deadline = Instant::now() + limit;
    let (done, pipes_closed) = std::sync::mpsc::channel();
    let stdout = capture_blocking(child.stdout.take(), done.clone());
    let stderr = capture_blocking(child.stderr.take(), done);
    let pipes_closed_by = |deadline: Instant| {
        (0..2).all(|_| {
            pipes_closed
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        })
    };
    // Polled rather than waited on: the child stays ours to kill until it is reaped here.
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("`{shown}`: waiting for it failed: {e}")),
        }
    };
    match status {
        Some(status) if pipes_closed_by(deadline) => Ok(Output {
            status,
            stdout: taken(&stdout),
            stderr: taken(&stderr),
        }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            // What it wrote before it died is still in the pipes.
            pipes_closed_by(Instant::now() + Duration::from_secs(2));
            Err(outran(shown, limit, &taken(&stdout), &taken(&stderr)))
        }
    }
}

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

/// A long-running notifyscope (`run`, `watch`, a bot) read line by line. Every wait on it is
/// bounded by [`WAIT`]: past it the process is killed and the test fails with its stdout and
/// stderr so far.
pub struct Running {
    child: Child,
    shown: String,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far.
    pub stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Self {
        let shown = shown(cmd.as_std());
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("`{shown}` does not start: {e}"));
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
            shown,
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

    /// Kills the process and fails the test: it did not do `what` within [`WAIT`].
    fn outran(&mut self, what: &str) -> ! {
        let stderr = self.stderr();
        killed_after(&mut self.child, &self.shown, what, &self.stdout, &stderr)
    }

    /// The next stdout line, whatever it holds; `None` when stdout ended.
    pub async fn next_line(&mut self) -> Option<String> {
        match tokio::time::timeout(WAIT, self.lines.next_line()).await {
            Ok(line) => {
                let line = line.expect("read stdout")?;
                self.stdout.push(line.clone());
                Some(line)
            }
            Err(_) => self.outran("a line on stdout"),
        }
    }

    /// Reads JSON lines until one satisfies `pred`; returns it.
    pub async fn until(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let lines = &mut self.lines;
        let stdout = &mut self.stdout;
        let result = tokio::time::timeout(WAIT, async {
            loop {
                let line = lines.next_line().await.expect("read stdout")?;
                stdout.push(line.clone());
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
            Err(_) => self.outran(what),
        }
    }

    /// Waits for the process to exit by itself, reading the rest of its output.
    pub async fn exit(mut self) -> (std::process::ExitStatus, String, String) {
        let lines = &mut self.lines;
        let child = &mut self.child;
        let mut rest = Vec::new();
        let status = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push(line);
            }
            child.wait().await
        })
        .await;
        self.stdout.extend(rest);
        let status = match status {
            Ok(status) => status.expect("exit status"),
            Err(_) => self.outran("the process to exit"),
        };
        // The stderr reader finishes once the pipe closes.
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.stderr_reader).await;
        let stderr = self.stderr();
        (status, self.stdout.join("\n"), stderr)
    }

    /// Closes the reading end of its stdout, as `| head -1` does once it has its line, and
    /// waits for the process to exit: its status and stderr.
    pub async fn close_stdout_and_exit(self) -> (std::process::ExitStatus, String) {
        let Running {
            mut child,
            shown,
            lines,
            stdout,
            stderr,
            stderr_reader,
        } = self;
        drop(lines);
        let status = match tokio::time::timeout(WAIT, child.wait()).await {
            Ok(status) => status.expect("exit status"),
            Err(_) => {
                let stderr = stderr.lock().expect("lock").clone();
                killed_after(
                    &mut child,
                    &shown,
                    "the process to exit once its stdout is closed",
                    &stdout,
                    &stderr,
                )
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), stderr_reader).await;
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

/// Kills `child` and fails the test: it did not do `what` within [`WAIT`].
fn killed_after(child: &mut Child, shown: &str, what: &str, stdout: &[String], stderr: &str) -> ! {
    let _ = child.start_kill();
    panic!(
        "timed out after {} s waiting for {what}, so the test killed `{shown}`.\n\
         --- its stdout so far ---\n{}\n--- its stderr so far ---\n{}",
        WAIT.as_secs(),
        tail(stdout.join("\n").as_bytes()),
        tail(stderr.as_bytes())
    )
}
