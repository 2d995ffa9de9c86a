//! The runtime file of a running `notifyscope run`: where its pipeline is (the database
//! without its password, the schema, the channel) and the secret its control channel asks
//! for, so that `send`, `doctor`, `selftest`, `watch` and `outbox` on the same machine find it
//! without options.
//!
//! One file per process, `<pid>.json`, in the user's runtime directory
//! (`$XDG_RUNTIME_DIR/notifyscope`, else `/tmp/notifyscope-<uid>`), which only the user may
//! enter; each file is readable by the user only and appears whole (written under another
//! name, then renamed). The process removes its file at exit; a crash leaves it, so readers
//! skip and delete the files of processes that are gone.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::{geteuid, Pid};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{Database, Identifier, DEFAULT_CHANNEL, DEFAULT_SCHEMA};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the runtime directory {} {why}, so it is not safe for the instances' secrets: \
         remove it (a running notifyscope makes it again), or give --database-url",
        path.display()
    )]
    Unsafe { path: PathBuf, why: String },
}

impl InstanceError {
    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstanceError + 'a {
        move |source| InstanceError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

/// The secret a running instance's control channel asks for. Any role that may connect can
/// NOTIFY on the control channel, so a request has to prove that its sender could read the
/// instance's runtime file. 256 random bits, as hex; never printed, logged or traced.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ControlSecret(String);

impl ControlSecret {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        ControlSecret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether `offered` is this secret, in a time that does not tell how much of it matched.
    pub fn admits(&self, offered: &ControlSecret) -> bool {
        self.0.as_bytes().ct_eq(offered.0.as_bytes()).into()
    }
}

impl fmt::Debug for ControlSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlSecret(hidden)")
    }
}

/// What the runtime file of a running instance says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    /// The connection string without password (for the embedded cluster, its socket).
    pub database: String,
    pub embedded: bool,
    pub schema: String,
    pub channel: String,
    pub secret: ControlSecret,
    /// When the process started, in clock ticks after boot (`/proc/<pid>/stat`), to tell it
    /// from a later process that was given the same pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

impl InstanceRecord {
    /// This process, running the pipeline of `channel` on `database`, with a new secret.
    pub fn new(database: &Database, channel: &Identifier, embedded: bool) -> Self {
        let pid = std::process::id();
        InstanceRecord {
            pid,
            started_at: Utc::now(),
            database: database.connection_string().to_owned(),
            embedded,
            schema: database.schema().to_string(),
            channel: channel.to_string(),
            secret: ControlSecret::generate(),
            process_start: process_start(pid),
        }
    }

    /// Whether this instance serves the pipeline of `channel` on `database`.
    pub fn serves(&self, database: &Database, channel: &Identifier) -> bool {
        self.database == database.connection_string()
            && self.schema == database.schema().as_str()
            && self.channel == channel.as_str()
    }

    /// One line for a list: pid, start, database, schema and channel.
    pub fn describe(&self) -> String {
        format!(
            "pid {}, started {}, database {}{}, schema {}, channel {}",
            self.pid,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.database,
            if self.embedded { " (embedded)" } else { "" },
            self.schema,
            self.channel
        )
    }

    /// The `send` command line, ready to paste into another shell on this machine, that puts
    /// a test message through this instance's bot path. The embedded cluster's socket lives in
    /// a temporary directory, so the pid names it best; another database is named by its
    /// connection string (and the schema and channel when they are not the defaults), which
    /// still finds the instance's secret after a restart with the same settings. Never a
    /// password: the file holds none.
    pub fn send_command(&self) -> String {
        let mut line = String::from("notifyscope send --via-bot message");
        if self.embedded {
            line.push_str(&format!(" --instance {}", self.pid));
            return line;
        }
        line.push_str(&format!(" --database-url {}", shell_word(&self.database)));
        if self.schema != DEFAULT_SCHEMA {
            line.push_str(&format!(" --schema {}", shell_word(&self.schema)));
        }
        if self.channel != DEFAULT_CHANNEL {
            line.push_str(&format!(" --channel {}", shell_word(&self.channel)));
        }
        line
    }
}

/// `text` as one shell word: as is when nothing in it is special to a shell, else in single
/// quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The start time of process `pid` in clock ticks after boot, where `/proc` tells it.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let (_, after_name) = stat.rsplit_once(')')?;
    // Field 22 is the start time; fields after the name begin with field 3.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that wrote a runtime file still runs.
fn still_running(pid: u32, recorded_start: Option<u64>) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) => {}
        // Another user's process has the pid now: ours is gone.
        Err(Errno::ESRCH | Errno::EPERM) => return false,
        Err(_) => return true,
    }
    match (recorded_start, process_start(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// The directory of the runtime files.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// `$XDG_RUNTIME_DIR/notifyscope`, else `/tmp/notifyscope-<uid>`.
    pub fn location() -> PathBuf {
        match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            Some(dir) if dir.is_absolute() => dir.join("notifyscope"),
            _ => PathBuf::from(format!("/tmp/notifyscope-{}", geteuid().as_raw())),
        }
    }

    /// The directory, made (mode 0700) when missing.
    pub fn create() -> Result<Self, InstanceError> {
        let path = Self::location();
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(InstanceError::io("creating the runtime directory", &path)(
                    e,
                ))
            }
        }
        Self::checked(path)
    }

    /// The directory, or `None` when no instance ever made it.
    pub fn open() -> Result<Option<Self>, InstanceError> {
        let path = Self::location();
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            _ => Self::checked(path).map(Some),
        }
    }

    /// Only the user may write there: in /tmp anybody could have made it first.
    fn checked(path: PathBuf) -> Result<Self, InstanceError> {
        let meta = fs::symlink_metadata(&path)
            .map_err(InstanceError::io("reading the runtime directory", &path))?;
        let uid = geteuid().as_raw();
        let mode = meta.mode() & 0o777;
        let why = if !meta.is_dir() {
            Some("is not a directory".to_owned())
        } else if meta.uid() != uid {
            Some(format!("belongs to uid {}, not to uid {uid}", meta.uid()))
        } else if mode & 0o022 != 0 {
            Some(format!("may be written by others (mode {mode:03o})"))
        } else {
            None
        };
        match why {
            Some(why) => Err(InstanceError::Unsafe { path, why }),
            None => Ok(RuntimeDir { path }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `record` as `<pid>.json` (mode 0600), whole or not at all; the returned file
    /// removes it when dropped.
    pub fn write(&self, record: &InstanceRecord) -> Result<InstanceFile, InstanceError> {
        let path = self.path.join(format!("{}.json", record.pid));
        let failed = InstanceError::io("writing the runtime file", &path);
        let written = (|| {
            let mut file = tempfile::Builder::new()
                .prefix(".")
                .suffix(".tmp")
                .permissions(fs::Permissions::from_mode(0o600))
                .tempfile_in(&self.path)?;
            serde_json::to_writer(&mut file, record)?;
            file.write_all(b"\n")?;
            file.persist(&path).map_err(|e| e.error)?;
            Ok::<_, io::Error>(())
        })();
        written.map_err(failed)?;
        Ok(InstanceFile { path })
    }

    /// The instances whose process still runs, oldest first. The file of a process that is
    /// gone is deleted; one that cannot be read is skipped with a warning.
    pub fn live_instances(&self) -> Result<Vec<InstanceRecord>, InstanceError> {
        let entries = fs::read_dir(&self.path).map_err(InstanceError::io(
            "reading the runtime directory",
            &self.path,
        ))?;
        let uid = geteuid().as_raw();
        let mut live = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(pid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() && meta.uid() == uid => {}
                _ => continue,
            }
            match read_record(&path) {
                Ok(record) if record.pid != pid => tracing::warn!(
                    file = %path.display(),
                    "skipping a runtime file that names another process ({})",
                    record.pid
                ),
                Ok(record) if still_running(pid, record.process_start) => live.push(record),
                Ok(_) => remove_stale(&path, pid),
                Err(_) if !still_running(pid, None) => remove_stale(&path, pid),
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "skipping a runtime file that cannot be read"
                ),
            }
        }
        live.sort_by_key(|r| (r.started_at, r.pid));
        Ok(live)
    }
}

fn read_record(path: &Path) -> Result<InstanceRecord, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn remove_stale(path: &Path, pid: u32) {
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(
            "removed the runtime file of pid {pid}, which is no longer running notifyscope"
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            file = %path.display(),
            error = %e,
            "could not remove the runtime file of a process that is gone"
        ),
    }
}

/// The runtime directory and the instances running there; none when it does not exist.
pub fn live_instances() -> Result<(PathBuf, Vec<InstanceRecord>), InstanceError> {
    match RuntimeDir::open()? {
        Some(dir) => {
            let live = dir.live_instances()?;
            Ok((dir.path, live))
        }
        None => Ok((RuntimeDir::location(), Vec::new())),
    }
}

/// The runtime file of this process, removed when dropped.
#[derive(Debug)]
pub struct InstanceFile {
    path: PathBuf,
}

impl InstanceFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(
                    file = %self.path.display(),
                    error = %e,
                    "could not remove the runtime file"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(database: &str, schema: &str, channel: &str, embedded: bool) -> InstanceRecord {
        let database =
            Database::new(database, Identifier::schema(schema).expect("valid")).expect("parses");
        InstanceRecord::new(
            &database,
            &Identifier::channel(channel).expect("valid"),
            embedded,
        )
    }

    #[test]
    fn the_send_command_names_the_instance_and_never_a_password() {
        let embedded = record(
            "host=/tmp/notifyscope-pg-x port=5432 user=notifyscope dbname=postgres",
            "public",
            "events",
            true,
        );
        assert_eq!(
            embedded.send_command(),
            format!(
                "notifyscope send --via-bot message --instance {}",
                std::process::id()
            )
        );

        let defaults = record(
            "postgresql://ada:s3cret@db.example:6543/app",
            "public",
            "events",
            false,
        );
        assert_eq!(
            defaults.send_command(),
            "notifyscope send --via-bot message --database-url \
             'host=db.example port=6543 user=ada dbname=app'"
        );

        let other = record(
            "host=db.example user=ada dbname=app password=hunter2",
            "bus",
            "Ev$",
            false,
        );
        let line = other.send_command();
        assert_eq!(
            line,
            "notifyscope send --via-bot message --database-url \
             'host=db.example port=5432 user=ada dbname=app' --schema bus --channel 'Ev$'"
        );
        assert!(!line.contains("hunter2") && !defaults.send_command().contains("s3cret"));
    }

    #[test]
    fn a_secret_admits_only_itself_and_never_shows() {
        let secret = ControlSecret::generate();
        assert_eq!(secret.0.len(), 64);
        assert!(secret.admits(&secret.clone()));
        assert!(!secret.admits(&ControlSecret::generate()));
        assert!(!secret.admits(&ControlSecret(String::new())));
        assert_eq!(format!("{secret:?}"), "ControlSecret(hidden)");
        let instance = record("host=h user=u", "public", "events", false);
        assert!(!format!("{instance:?}").contains(&instance.secret.0));
    }

    #[test]
    fn this_process_is_running_and_a_reused_pid_is_not() {
        let pid = std::process::id();
        let start = process_start(pid);
        assert!(start.is_some(), "/proc tells the start of this process");
        assert!(still_running(pid, start));
        assert!(!still_running(pid, start.map(|s| s + 1)));
        assert!(!still_running(0, None));
    }
}
