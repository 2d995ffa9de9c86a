//! A private PostgreSQL for one test, on 127.0.0.1 at a port of its own: for what the shared
//! test server cannot show (a server without TLS or one that insists on it, passwords, a
//! failover between two servers). initdb and the server run as the postgres account when the
//! tests run as root, as the embedded cluster does.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

/// pg_hba.conf that lets every local and 127.0.0.1 session in without a password.
pub const TRUST: &str = "local all all trust\nhost all all 127.0.0.1/32 trust\n";

/// A private PostgreSQL listening on 127.0.0.1 at a port of its own, set up for one test;
/// stopped and removed when dropped.
pub struct PrivateServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// PostgreSQL refuses to run as root: then the cluster belongs to this account.
fn server_account() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| nix::unistd::User::from_name(name).ok().flatten())
}

fn as_account(cmd: &mut std::process::Command, account: &Option<nix::unistd::User>) {
    if let Some(user) = account {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        cmd.env("HOME", &user.dir);
    }
}

fn give(path: &Path, account: &Option<nix::unistd::User>, mode: u32) {
    if let Some(user) = account {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).expect("chown");
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl PrivateServer {
    /// initdb, then `settings` added to postgresql.conf, `hba` as pg_hba.conf, `files`
    /// written into the data directory (owner-only), and the server started.
    pub async fn start(settings: &str, hba: &str, files: Vec<(&'static str, Vec<u8>)>) -> Self {
        super::require_server_binaries();
        let settings = settings.to_owned();
        let hba = hba.to_owned();
        tokio::task::spawn_blocking(move || Self::start_blocking(&settings, &hba, &files))
            .await
            .expect("private server set up")
    }

    fn start_blocking(settings: &str, hba: &str, files: &[(&str, Vec<u8>)]) -> Self {
        let bin = notifyscope::store::embedded::find_server_binaries().expect("server binaries");
        let account = server_account();
        let dir = tempfile::Builder::new()
            .prefix("notifyscope-cluster-")
            .tempdir()
            .expect("temporary directory");
        give(dir.path(), &account, 0o700);
        let data = dir.path().join("data");
        let mut initdb = std::process::Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "notifyscope",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        as_account(&mut initdb, &account);
        let out = super::process::finish_blocking(&mut initdb);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        writeln!(conf, "\n{settings}").expect("settings written");
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf written");
        for (name, content) in files {
            let path = data.join(name);
            std::fs::write(&path, content).expect("file written");
            give(&path, &account, 0o600);
        }
        // A port that was free a moment ago; another process may take it first, so a server
        // that cannot bind it is started again on another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = dir.path().join(format!("postgres-{port}.log"));
            let log_file = std::fs::File::create(&log).expect("log file");
            give(&log, &account, 0o600);
            let mut postgres = std::process::Command::new(bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log file"))
                .stderr(log_file)
                .process_group(0);
            as_account(&mut postgres, &account);
            let mut child = postgres.spawn().expect("postgres starts");
            if wait_ready(&mut child, &data) {
                return PrivateServer {
                    child: Some(child),
                    port,
                    dir,
                };
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains("could not bind") || text.contains("could not create listen"),
                "the private server did not start: {text}"
            );
        }
        panic!("no free port for the private server after 5 tries");
    }

    /// Runs `sql` as the superuser over the server's Unix socket.
    pub async fn execute(&self, sql: &str) {
        let url = format!(
            "host={} port={} user=notifyscope dbname=postgres",
            self.dir.path().display(),
            self.port
        );
        notifyscope::store::Database::new(&url, notifyscope::store::Identifier::fixed("public"))
            .expect("URL parses")
            .connect_plain("notifyscope-test")
            .await
            .expect("the private server's socket")
            .batch_execute(sql)
            .await
            .expect("set-up SQL");
    }

    /// The server over TCP as `user`, with `extra` settings.
    pub fn url(&self, user: &str, extra: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres {extra}",
            self.port
        )
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
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
}

/// Whether the server accepts connections; false when it exited first.
fn wait_ready(child: &mut Child, data: &Path) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let ready = std::fs::read_to_string(data.join("postmaster.pid"))
            .map(|pid| pid.lines().any(|l| l.trim() == "ready"))
            .unwrap_or(false);
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the private server was not ready within {WAIT:?}");
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}
