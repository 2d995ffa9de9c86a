//! Shared test support: a schema (and NOTIFY channel) of its own for every test, on the
//! PostgreSQL server named by NOTIFYSCOPE_TEST_DATABASE_URL (default: 127.0.0.1:5432, user
//! postgres, database test), and helpers that wait for trace events instead of sleeping.

#![allow(dead_code)]

pub mod cluster;
pub mod diagnosis;
pub mod fake_discord;
pub mod faults;
pub mod freeze;
pub mod pgbouncer;
pub mod process;
pub mod tmux;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notifyscope::store::{Database, Identifier};
use notifyscope::trace::{TraceEvent, TraceKind, TraceReceiver};

pub const WAIT: Duration = Duration::from_secs(60);

/// The binary under test: NOTIFYSCOPE_BIN (CI points it at the release build) or the one
/// cargo built for the tests.
pub fn binary() -> String {
    std::env::var("NOTIFYSCOPE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_notifyscope").into())
}

/// The variable naming the test server, and the server used without it.
pub const SERVER_VARIABLE: &str = "NOTIFYSCOPE_TEST_DATABASE_URL";
pub const DEFAULT_SERVER: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// The test server's URL. The first call checks that it answers; when it does not, the test
/// binary stops at once with one line that says what to do, instead of every test panicking
/// with a connection error.
pub fn server_url() -> String {
    let url = std::env::var(SERVER_VARIABLE).unwrap_or_else(|_| DEFAULT_SERVER.into());
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    static SAID: std::sync::Once = std::sync::Once::new();
    let checked = CHECKED.get_or_init(|| {
        let url = url.clone();
        std::thread::spawn(move || server_check(&url))
            .join()
            .unwrap_or_else(|_| Err("the server check panicked".into()))
    });
    if let Err(line) = checked {
        SAID.call_once(|| {
            use std::io::Write;
            // Straight to stderr: the test harness would swallow a captured print.
            let _ = writeln!(std::io::stderr(), "\n{line}\n");
            std::process::exit(1);
        });
    }
    url
}

/// Host and port of the test server, from its `key=value` URL (host 127.0.0.1 and port
/// 5432 when it names none).
pub fn server_host_port() -> (String, u16) {
    let url = server_url();
    let value = |key: &str| {
        url.split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    assert!(
        !url.contains("://"),
        "these tests need the test server's URL in key=value form: {url}"
    );
    let host = value("host").unwrap_or_else(|| "127.0.0.1".into());
    let port = value("port").and_then(|p| p.parse().ok()).unwrap_or(5432);
    (host, port)
}

/// The test server's URL with `host` and `port` in place of its own.
pub fn url_at(host: &str, port: u16) -> String {
    let rest: Vec<String> = server_url()
        .split_whitespace()
        .filter(|part| !part.starts_with("host=") && !part.starts_with("port="))
        .map(str::to_owned)
        .collect();
    format!("host={host} port={port} {}", rest.join(" "))
}

/// Connects to `url` and asks `SELECT 1`; the line to show when that fails.
pub fn server_check(url: &str) -> Result<(), String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| say_no_server(url, &format!("the URL does not parse: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let connect = async {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client.query_one("SELECT 1", &[]).await.map(|_| ())
        };
        match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(say_no_server(url, &notifyscope::store::error_chain(&e))),
            Err(_) => Err(say_no_server(url, "no answer within 10 s")),
        }
    })
}

fn say_no_server(url: &str, error: &str) -> String {
    let shown = if url.contains("password") {
        "(a URL with a password, not shown)"
    } else {
        url
    };
    format!(
        "notifyscope tests: no PostgreSQL answers at {SERVER_VARIABLE}={shown:?} ({error}); \
         the tests need one (by default {DEFAULT_SERVER:?}, trust authentication): start it, \
         point {SERVER_VARIABLE} at one, or run .ci/run, which starts or installs PostgreSQL"
    )
}

/// Fails the test at once, in one line, when PostgreSQL's server binaries are missing: the
/// tests that make a private cluster (to stop it, crash it or fill its NOTIFY queue, or the
/// binary's embedded database) need `initdb` and `postgres`, found where the embedded cluster
/// itself looks for them. The shared test server is not enough for those tests.
pub fn require_server_binaries() {
    if notifyscope::store::embedded::find_server_binaries().is_none() {
        panic!(
            "this test needs PostgreSQL's server binaries (initdb, postgres) for a private \
             cluster, and finds none on PATH or under /usr/lib/postgresql/*/bin: install them \
             (apt-get install postgresql) or put their bin directory on PATH"
        );
    }
}

/// Where the tests' runtime directories (`XDG_RUNTIME_DIR`) are made.
fn runtime_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("runtime")
}

/// `dir` made (mode 0700, as a login session's runtime directory is) when missing.
fn runtime_dir_at(dir: PathBuf) -> PathBuf {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .expect("runtime directory made");
    dir
}

/// An empty runtime directory of its own: a binary spawned with it finds no instance that
/// another test started.
pub fn fresh_runtime_dir() -> PathBuf {
    static SPAWNED: AtomicU64 = AtomicU64::new(0);
    let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
    runtime_dir_at(runtime_root().join(format!("{}-{n}", std::process::id())))
}

/// A schema named after the test plus a random suffix, dropped when the value is dropped. Its
/// name doubles as the test's NOTIFY channel, since notifications are database-wide. The
/// processes of one test share a runtime directory named after it, as the shells of one user
/// do (see [`TestSchema::runtime_dir`]).
pub struct TestSchema {
    pub name: String,
}

impl TestSchema {
    pub fn new(test: &str) -> Self {
        let suffix: u32 = rand::random();
        TestSchema {
            name: format!("t_{test}_{suffix:08x}"),
        }
    }

    pub fn schema(&self) -> Identifier {
        Identifier::schema(&self.name).expect("valid schema name")
    }

    pub fn channel(&self) -> Identifier {
        Identifier::channel(&self.name).expect("valid channel name")
    }

    pub fn database(&self) -> Database {
        Database::new(&server_url(), self.schema()).expect("test database URL parses")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        self.database()
            .connect_plain("notifyscope-test")
            .await
            .expect("test database reachable")
    }

    /// The runtime directory (`XDG_RUNTIME_DIR`) of this test's processes: an instance
    /// started with it is found by the commands started with it, and by no other test's.
    pub fn runtime_dir(&self) -> PathBuf {
        runtime_dir_at(runtime_root().join(&self.name))
    }

    /// Their `discord_messages` in the test's schema, as a bot's own ingestion would have
    /// made it (no notifyscope tables beside it); a client on the test database.
    pub async fn their_table(&self) -> tokio_postgres::Client {
        let sql = self.client().await;
        sql.batch_execute(&format!(
            "CREATE SCHEMA \"{s}\"; CREATE TABLE \"{s}\".discord_messages \
               (message_id BIGINT PRIMARY KEY, content TEXT NOT NULL)",
            s = self.name
        ))
        .await
        .expect("their table");
        sql
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .expect("count query")
            .get(0)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(runtime_root().join(&self.name));
        clean_up(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
    }
}

/// Runs `sql` on the test server from a thread of its own, ignoring the outcome: for the
/// clean-up in `Drop`, which runs inside the test's runtime and may not block it.
pub fn clean_up(sql: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            if let Ok((client, conn)) =
                tokio_postgres::connect(&server_url(), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                let _ = client.batch_execute(&sql).await;
            }
        });
    })
    .join();
}

/// Reads a trace stream and keeps everything it saw.
pub struct Seen {
    rx: TraceReceiver,
    pub events: Vec<Arc<TraceEvent>>,
}

impl Seen {
    pub fn new(rx: TraceReceiver) -> Self {
        Seen {
            rx,
            events: Vec::new(),
        }
    }

    /// Waits until `pred` holds for the events seen so far.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&[Arc<TraceEvent>]) -> bool) {
        let result = tokio::time::timeout(WAIT, async {
            while !pred(&self.events) {
                match self.rx.recv().await {
                    Some(ev) => {
                        if let TraceKind::Lagged { missed } = ev.kind {
                            panic!("test trace consumer lagged by {missed} events");
                        }
                        self.events.push(ev);
                    }
                    None => panic!("trace closed while waiting for {what}"),
                }
            }
        })
        .await;
        if result.is_err() {
            let tail: Vec<String> = self
                .events
                .iter()
                .rev()
                .take(10)
                .map(|e| e.to_json())
                .collect();
            panic!("timed out waiting for {what}; last events: {tail:#?}");
        }
    }

    /// Waits for the first event (from now on or already seen) matching `pred`.
    pub async fn first(
        &mut self,
        what: &str,
        pred: impl Fn(&TraceEvent) -> bool,
    ) -> Arc<TraceEvent> {
        self.until(what, |evs| evs.iter().any(|e| pred(e))).await;
        self.events
            .iter()
            .find(|e| pred(e))
            .cloned()
            .expect("found")
    }

    /// Takes in every event already sent, without waiting.
    pub fn drain(&mut self) {
        while let Some(ev) = self.rx.try_recv() {
            self.events.push(ev);
        }
    }

    pub fn count(&self, pred: impl Fn(&TraceEvent) -> bool) -> usize {
        self.events.iter().filter(|e| pred(e)).count()
    }

    pub async fn until_count(&mut self, what: &str, n: usize, pred: impl Fn(&TraceEvent) -> bool) {
        self.until(what, |evs| evs.iter().filter(|e| pred(e)).count() >= n)
            .await;
    }
}

/// A test's own schema with the whole pipeline on it (listener up), and every event it
/// traced from the start.
pub struct PipelineRig {
    pub t: TestSchema,
    pub trace: notifyscope::trace::Trace,
    pub seen: Seen,
    pub pipeline: notifyscope::pipeline::Pipeline,
}

impl PipelineRig {
    /// The pipeline on a new schema (and channel) named after `test`.
    pub async fn start(test: &str) -> Self {
        Self::start_on(TestSchema::new(test), |_| {}).await
    }

    /// The pipeline on `t`, its settings changed by `configure` first.
    pub async fn start_on(
        t: TestSchema,
        configure: impl FnOnce(&mut notifyscope::pipeline::PipelineConfig),
    ) -> Self {
        let trace = notifyscope::trace::Trace::new();
        let seen = Seen::new(trace.subscribe());
        let mut config = notifyscope::pipeline::PipelineConfig::new(t.database(), t.channel());
        configure(&mut config);
        let pipeline = start_pipeline(config, &trace).await;
        PipelineRig {
            t,
            trace,
            seen,
            pipeline,
        }
    }
}

/// The whole pipeline on `config`, once its listener is up.
pub async fn start_pipeline(
    config: notifyscope::pipeline::PipelineConfig,
    trace: &notifyscope::trace::Trace,
) -> notifyscope::pipeline::Pipeline {
    let mut pipeline = notifyscope::pipeline::Pipeline::start(config, trace.clone())
        .await
        .expect("pipeline starts");
    pipeline
        .wait_listening(WAIT)
        .await
        .expect("listener comes up");
    pipeline
}

pub fn is_stage(ev: &TraceEvent, name: &str) -> bool {
    ev.kind.name() == name
}

pub fn is_inserted(ev: &TraceEvent) -> bool {
    matches!(
        ev.kind,
        TraceKind::Ingested {
            outcome: notifyscope::trace::IngestOutcome::Inserted,
            ..
        }
    )
}

pub fn is_duplicate(ev: &TraceEvent) -> bool {
    matches!(
        ev.kind,
        TraceKind::Ingested {
            outcome: notifyscope::trace::IngestOutcome::Duplicate,
            ..
        }
    )
}
