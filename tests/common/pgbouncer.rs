//! A real PgBouncer in front of the test server, as users' managed databases have one: Debian's
//! `pgbouncer`, started on a free port of 127.0.0.1 as the postgres user (it refuses to run as
//! root), in session or transaction mode, refusing the `options` startup parameter or told to
//! ignore it. Stopped and its directory removed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How PgBouncer hands server connections to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// One server connection for the whole client session: LISTEN works.
    Session,
    /// A server connection per transaction: LISTEN and session state do not survive.
    Transaction,
}

/// What PgBouncer does with the `options` startup parameter (where libpq's `-c` settings go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupOptions {
    /// PgBouncer's default: a client that sends it is refused.
    Refused,
    /// `ignore_startup_parameters = options`: accepted and dropped, a common setting.
    Ignored,
}

pub struct Bouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

/// Where Debian installs it; `.ci/run` installs the package when it is missing.
const BINARY: &str = "/usr/sbin/pgbouncer";

impl Bouncer {
    /// PgBouncer in `mode` in front of the test server, accepting connections when this
    /// returns. Fails the test in one line when PgBouncer is not installed.
    pub fn start(mode: PoolMode, options: StartupOptions) -> Bouncer {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "this test needs PgBouncer ({BINARY}): apt-get install pgbouncer, or run .ci/run"
        );
        let (host, port) = super::server_host_port();
        let listen = free_port();
        let dir = std::env::temp_dir().join(format!(
            "notifyscope-pgbouncer-{}-{listen}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("PgBouncer's directory");
        let ignored = match options {
            StartupOptions::Refused => "extra_float_digits",
            StartupOptions::Ignored => "extra_float_digits,options",
        };
        let mode = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        let ini = format!(
            "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {listen}\nunix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
             pool_mode = {mode}\n\
             ignore_startup_parameters = {ignored}\nmax_client_conn = 200\ndefault_pool_size = 20\n\
             admin_users = postgres\nstats_period = 1\nlogfile = {log}\n",
            log = dir.join("pgbouncer.log").display(),
            users = dir.join("userlist.txt").display()
        );
        // Trust: the server decides; PgBouncer only wants to know the user.
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").expect("user list");
        let ini_path = dir.join("pgbouncer.ini");
        std::fs::write(&ini_path, ini).expect("PgBouncer's configuration");
        // The postgres user must read the configuration and write its log.
        let _ = Command::new("chown")
            .args(["-R", "postgres", &dir.display().to_string()])
            .status();
        let child = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                BINARY,
                &ini_path.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("PgBouncer starts (runuser -u postgres)");
        let bouncer = Bouncer {
            port: listen,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PgBouncer did not listen on {listen} within 10 s: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// The test server's URL with PgBouncer's address in place of the server's.
    pub fn url(&self) -> String {
        super::url_at("127.0.0.1", self.port)
    }

    /// Transactions PgBouncer passed to the server for database `test` so far, from its
    /// admin console (`SHOW STATS`): what went through it rather than around it.
    pub async fn transactions(&self) -> i64 {
        let url = format!(
            "host=127.0.0.1 port={} user=postgres dbname=pgbouncer",
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("PgBouncer's admin console");
        tokio::spawn(connection);
        let rows = client.simple_query("SHOW STATS").await.expect("SHOW STATS");
        rows.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .filter(|row| row.get("database") == Some("test"))
            .filter_map(|row| row.get("total_xact_count")?.parse::<i64>().ok())
            .sum()
    }

    /// What PgBouncer logged, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
