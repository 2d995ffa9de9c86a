//! The embedded default database: a private PostgreSQL cluster made with the server binaries
//! already on the machine, in a temporary directory, reachable only through a Unix socket,
//! removed at exit.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster belongs to and runs as
//! an unprivileged account (`postgres` when it exists, else `nobody`).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use std::os::unix::process::CommandExt;
use tempfile::TempDir;

/// The socket file is named after the port; with no TCP listener any number will do.
const SOCKET_PORT: u16 = 5432;
const SUPERUSER: &str = "notifyscope";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: `apt-get install postgresql`, \
         Fedora: `dnf install postgresql-server`, macOS: `brew install postgresql`) or pass \
         --database-url"
    )]
    NoBinaries,
    #[error(
        "running as root and found no unprivileged account (postgres or nobody) to run PostgreSQL"
    )]
    NoUnprivilegedUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("initdb failed: {0}")]
    Initdb(String),
    #[error("the embedded PostgreSQL did not start: {0}")]
    Start(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// A running private cluster; stopped and (unless kept) removed when dropped.
pub struct EmbeddedPostgres {
    child: Option<Child>,
    url: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Holds the temporary directory; `None` when the user chose a directory to keep.
    _temp: Option<tempfile::TempDir>,
}

impl EmbeddedPostgres {
    /// Creates (or reuses, for a kept `data_dir`) a cluster and starts it.
    pub async fn start(data_dir: Option<PathBuf>) -> Result<Self, EmbeddedError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(data_dir))
            .await
            .map_err(|e| EmbeddedError::Start(e.to_string()))?
    }

    fn start_blocking(keep_dir: Option<PathBuf>) -> Result<Self, EmbeddedError> {
        let bin = find_server_binaries().ok_or(EmbeddedError::NoBinaries)?;
        let run_as = unprivileged_user()?;
        let (temp, base) = base_dir(keep_dir)?;
        let data_dir = base.join("data");
        let log_path = base.join("postgres.log");
        // The cluster trusts whoever reaches its socket, so only its owner may: the socket
        // lives in this directory.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&base, fs::Permissions::from_mode(0o700))
                .map_err(io(format!("restricting {}", base.display())))?;
        }
        if let Some(user) = &run_as {
            chown(&base, user)?;
        }
        if !data_dir.join("PG_VERSION").exists() {
            initdb(&bin, &data_dir, &run_as)?;
        }
        let child = spawn_server(&bin, &base, &data_dir, &log_path, &run_as)?;
        let url = format!(
            "host={} port={SOCKET_PORT} user={SUPERUSER} dbname=postgres",
            base.display()
        );
        let mut embedded = EmbeddedPostgres {
            child: Some(child),
            url,
            data_dir,
            log_path,
            _temp: temp,
        };
        embedded.wait_ready(&base)?;
        Ok(embedded)
    }

    /// The connection string, in libpq key=value form (there is no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn wait_ready(&mut self, socket_dir: &Path) -> Result<(), EmbeddedError> {
        let socket = socket_dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(EmbeddedError::Start(format!(
                        "postgres exited ({status}): {}",
                        self.log_tail()
                    )));
                }
            }
            // The socket appears once the server accepts connections; the lock file's last
            // line says "ready" at the same time.
            let ready = socket.exists()
                && fs::read_to_string(self.data_dir.join("postmaster.pid"))
                    .map(|pid| pid.lines().any(|l| l.trim() == "ready"))
                    .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbeddedError::Start(format!(
                    "not ready after 60 s: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.log_path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(2000)));
            let _ = f.read_to_string(&mut text);
        }
        tail(&text)
    }

    /// Fast shutdown (in-flight transactions are rolled back; committed data is safe).
    pub async fn stop(mut self) {
        if let Some(child) = self.child.take() {
            let _ = tokio::task::spawn_blocking(move || stop_child(child)).await;
        }
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`), as in a crash: every process exits at
    /// once, with no checkpoint and WAL not yet flushed lost; the next start on the same
    /// directory replays the WAL. For proving what survives a crash; the data stays.
    pub async fn stop_immediate(mut self) -> Result<(), EmbeddedError> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || stop_child_immediate(child, &data_dir))
            .await
            .map_err(|e| EmbeddedError::Start(e.to_string()))?
    }
}

/// The kept directory (created when missing), or a new temporary one removed with its guard.
fn base_dir(keep_dir: Option<PathBuf>) -> Result<(Option<TempDir>, PathBuf), EmbeddedError> {
    match keep_dir {
        Some(dir) => {
            fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            let dir = fs::canonicalize(&dir).map_err(io(format!("resolving {}", dir.display())))?;
            Ok((None, dir))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("notifyscope-pg-")
                .tempdir()
                .map_err(io("creating a temporary directory"))?;
            let base = temp.path().to_path_buf();
            Ok((Some(temp), base))
        }
    }
}

fn initdb(bin: &Path, data_dir: &Path, run_as: &Option<User>) -> Result<(), EmbeddedError> {
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdin(Stdio::null());
    as_user(&mut initdb, run_as);
    let out = initdb.output().map_err(io("running initdb"))?;
    if !out.status.success() {
        return Err(EmbeddedError::Initdb(tail(&String::from_utf8_lossy(
            &out.stderr,
        ))));
    }
    Ok(())
}

/// The server on a Unix socket in `base` only, logging to `log_path`.
fn spawn_server(
    bin: &Path,
    base: &Path,
    data_dir: &Path,
    log_path: &Path,
    run_as: &Option<User>,
) -> Result<Child, EmbeddedError> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    if let Some(user) = run_as {
        chown(log_path, user)?;
    }
    let log_err = log.try_clone().map_err(io("opening the server log"))?;
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(data_dir)
        .arg("-k")
        .arg(base)
        .args(["-p", &SOCKET_PORT.to_string(), "-c", "listen_addresses="])
        .args(["-c", "unix_socket_permissions=0700"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: Ctrl-C in the terminal reaches us, and we stop the server
        // only after draining.
        .process_group(0);
    as_user(&mut postgres, run_as);
    postgres.spawn().map_err(io("starting postgres"))
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

fn stop_child(mut child: Child) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn stop_child_immediate(mut child: Child, data_dir: &Path) -> Result<(), EmbeddedError> {
    let bin = find_server_binaries().ok_or(EmbeddedError::NoBinaries)?;
    let run_as = unprivileged_user()?;
    let mut pg_ctl = Command::new(bin.join("pg_ctl"));
    pg_ctl
        .arg("stop")
        .arg("-D")
        .arg(data_dir)
        .args(["-m", "immediate", "-w", "-t", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // pg_ctl, like the server, refuses to run as root.
    as_user(&mut pg_ctl, &run_as);
    let stopped = pg_ctl.output().map(|out| out.status.success());
    if !matches!(stopped, Ok(true)) {
        // Without a working pg_ctl: the signal it sends for an immediate stop.
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        }
    }
    child.wait().map_err(io("waiting for postgres to exit"))?;
    Ok(())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn as_user(cmd: &mut Command, user: &Option<User>) {
    if let Some(user) = user {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        cmd.env("HOME", &user.dir);
    }
}

fn chown(path: &Path, user: &User) -> Result<(), EmbeddedError> {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| EmbeddedError::Io {
        what: format!("giving {} to {}", path.display(), user.name),
        source: e.into(),
    })
}

/// `None` when we are not root and can run the server ourselves.
fn unprivileged_user() -> Result<Option<User>, EmbeddedError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = User::from_name(name) {
            return Ok(Some(user));
        }
    }
    Err(EmbeddedError::NoUnprivilegedUser)
}

/// A directory holding both `initdb` and `postgres`: PATH first, then Debian's versioned
/// directories, newest first.
pub fn find_server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Some(dir);
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Some(dir);
    }
    [
        "/usr/local/pgsql/bin",
        "/opt/homebrew/bin",
        "/usr/local/bin",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|d| has_both(d))
}
