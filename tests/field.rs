//! What goes wrong in the field while every part runs, each named by a check of its own:
//! a listener whose process stopped reading (a foreign `psql` stopped with SIGSTOP), commits
//! queued for the NOTIFY lock (`pgbench` NOTIFYing in many clients, beside a busy server
//! that raises no alarm), payloads close to NOTIFY's limit, and `doctor` on the settings
//! that close an idle LISTEN connection. Each test judges only what it caused: its own
//! channel, its own backends by application name.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::freeze::FreezingProxy;
use common::process::{notifyscope, pipeline_command_on, run_pipeline, stage, Finish, Running};
use common::{clean_up, server_url, TestSchema};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The tests that load the server with NOTIFYing commits take turns, so that one's queue
/// for the NOTIFY lock (one for the whole server) is not judged by the other.
static NOTIFY_LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A client program of PostgreSQL's (`psql`, `pgbench`): on PATH, or beside the server's
/// binaries (Debian keeps them in /usr/lib/postgresql/*/bin).
fn client_program(name: &str) -> PathBuf {
    let beside = notifyscope::store::embedded::find_server_binaries()
        .map(|dir| dir.join(name))
        .filter(|p| p.is_file());
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.or(beside).unwrap_or_else(|| {
        panic!(
            "{name} is needed and found neither on PATH nor under /usr/lib/postgresql/*/bin: \
             install the PostgreSQL client (Debian: postgresql-client)"
        )
    })
}

/// The check `id` of a `health_report` line.
fn check<'a>(report: &'a Value, id: &str) -> Option<&'a Value> {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == id))
}

fn is_report_where(v: &Value, id: &str, pred: impl Fn(&Value) -> bool) -> bool {
    stage(v) == "health_report" && check(v, id).is_some_and(pred)
}

fn status(c: &Value) -> &str {
    c["status"].as_str().unwrap_or_default()
}

fn summary(c: &Value) -> &str {
    c["summary"].as_str().unwrap_or_default()
}

/// `watch` on the test's channel, with a table of theirs to watch; once it listens.
async fn watching(t: &TestSchema) -> Running {
    t.their_table().await;
    let mut cmd = notifyscope();
    cmd.args(["watch", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()]);
    let mut watch = Running::start(cmd);
    watch
        .until("database up", |v| stage(v) == "database_up")
        .await;
    tokio::time::timeout(common::WAIT, async {
        while !watch.stderr().contains("watching channel") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("watch listening");
    watch
}

/// A process the test started and stopped: woken and killed however the test ends.
struct Foreign(Child);

impl Foreign {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id().map_or(0, |id| id as i32))
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let pid = self.pid();
        if pid.as_raw() > 0 {
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// The backend pid and wait event of the session named `application`, once `pred` holds of
/// its (state, wait event, query).
async fn backend_of(
    sql: &tokio_postgres::Client,
    application: &str,
    what: &str,
    pred: impl Fn(&str, &str, &str) -> bool,
) -> i32 {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let rows = sql
            .query(
                "SELECT pid, coalesce(state, ''), coalesce(wait_event, ''), coalesce(query, '') \
                 FROM pg_stat_activity WHERE application_name = $1",
                &[&application],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = rows.iter().find(|r| {
            pred(
                r.get::<_, &str>(1),
                r.get::<_, &str>(2),
                r.get::<_, &str>(3),
            )
        }) {
            return row.get(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session {application} never showed {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A foreign listener (`psql`) that LISTENs on the test's channel and is then stopped with
/// SIGSTOP: once the notifications sent to it fill its socket, its backend waits in
/// `ClientWrite`, and the check names its pid, its application and for how long, while
/// `run` goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_listener_is_named_with_its_pid_application_and_time() {
    let t = TestSchema::new("f_stall");
    let mut run = run_pipeline(&t).await;
    let sql = t.client().await;
    let application = format!("{}_psql", t.name);

    let mut psql = Command::new(client_program("psql"));
    psql.arg(format!("{} application_name={application}", server_url()))
        .args(["-X", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut psql = Foreign(psql.spawn().expect("psql starts"));
    let mut stdin = psql.0.stdin.take().expect("psql's stdin");
    stdin
        .write_all(format!("LISTEN \"{}\";\n", t.name).as_bytes())
        .await
        .expect("LISTEN sent to psql");
    stdin.flush().await.expect("flushed");
    backend_of(&sql, &application, "an idle LISTEN", |state, _, query| {
        state == "idle" && query.starts_with("LISTEN")
    })
    .await;
    kill(psql.pid(), Signal::SIGSTOP).expect("psql stopped");

    // Batches of large notifications until the socket is full and its backend waits to
    // write; a few MB on loopback.
    let mut sent = 0;
    let backend = loop {
        sql.execute(
            "SELECT count(pg_notify($1, repeat('x', 7900) || g)) FROM generate_series(1, 100) g",
            &[&t.name],
        )
        .await
        .expect("notifications sent");
        sent += 100;
        let waiting: Option<i32> = sql
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                   AND state = 'idle' AND wait_event = 'ClientWrite'",
                &[&application],
            )
            .await
            .expect("pg_stat_activity")
            .map(|r| r.get(0));
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(sent < 20_000, "psql's backend never waited to write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let report = run
        .until("the stopped listener failing", |v| {
            is_report_where(v, "stalled_listener", |c| {
                status(c) == "fail" && summary(c).contains(&format!("pid {backend} "))
            })
        })
        .await;
    let c = check(&report, "stalled_listener").expect("check");
    let said = summary(c);
    let blocked = format!("pid {backend} ({application}) blocked ");
    assert!(
        said.starts_with(&blocked)
            && said.ends_with(&format!(
                " s: its process does not read the notifications on {}",
                t.name
            )),
        "{c}"
    );
    let seconds: u64 = said[blocked.len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("for how long");
    assert!(seconds >= 10, "{c}");
    assert_eq!(c["name"], "listeners read their notifications", "{c}");

    drop(psql);
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}

/// The rate of NOTIFYing commits a NOTIFY lock check names: `…; NOTIFYing commits: 2310/s
/// heard on …`.
fn heard_rate(summary: &str) -> Option<f64> {
    summary
        .split("NOTIFYing commits: ")
        .nth(1)?
        .split("/s")
        .next()?
        .parse()
        .ok()
}

/// A pgbench script of one transaction: one NOTIFY on `channel`.
fn notify_script(t: &TestSchema) -> PathBuf {
    let path = t.runtime_dir().join("notify.sql");
    std::fs::write(&path, format!("SELECT pg_notify('{}', 'x');\n", t.name))
        .expect("pgbench script written");
    path
}

/// `pgbench` NOTIFYing on the test's channel, as application `t.name`, for `seconds`, with
/// `extra` arguments.
fn pgbench(t: &TestSchema, clients: u32, seconds: u32, extra: &[&str]) -> Foreign {
    let mut cmd = Command::new(client_program("pgbench"));
    cmd.args(["-n", "-c", &clients.to_string(), "-j", "2"])
        .args(["-T", &seconds.to_string()])
        .args(extra)
        .arg("-f")
        .arg(notify_script(t))
        .arg(server_url())
        .env("PGAPPNAME", &t.name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    Foreign(cmd.spawn().expect("pgbench starts"))
}

/// Many clients committing one NOTIFY each queue for the NOTIFY lock: the check names the
/// queue, the rate of NOTIFYing commits and who waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_queued_for_the_notify_lock_are_named_with_their_rate() {
    let _turn = NOTIFY_LOAD.lock().await;
    let t = TestSchema::new("f_lock");
    let mut watch = watching(&t).await;
    let bench = pgbench(&t, 16, 100, &[]);
    // A look a second catches the queue in one snapshot of a few, so the warning may take
    // a while: twenty snapshots are judged together.
    let started = tokio::time::Instant::now();
    let names_ours = |c: &Value| {
        c["evidence"].as_array().is_some_and(|e| {
            e.iter().any(|l| {
                l.as_str()
                    .is_some_and(|l| l.contains(&format!("× {} (database", t.name)))
            })
        })
    };
    let report = loop {
        let report = watch
            .until("a health report", |v| {
                is_report_where(v, "notify_lock", |_| true)
            })
            .await;
        let queued = check(&report, "notify_lock")
            .is_some_and(|c| matches!(status(c), "warn" | "fail") && names_ours(c));
        if queued {
            break report;
        }
        assert!(
            started.elapsed() < Duration::from_secs(100),
            "no queue for the NOTIFY lock named in 100 s of 16 clients NOTIFYing; last: {}",
            check(&report, "notify_lock")
                .map(Value::to_string)
                .unwrap_or_default()
        );
    };
    drop(bench);
    let c = check(&report, "notify_lock").expect("check");
    let said = summary(c);
    assert!(
        said.starts_with("up to ") && said.contains(" commits waiting for the lock, in "),
        "{c}"
    );
    let heard = heard_rate(said).unwrap_or_else(|| panic!("a rate of NOTIFYing commits in {c}"));
    assert!(
        heard > 0.0 && said.contains(&format!("/s heard on {} (about ", t.name)),
        "{c}"
    );
    assert!(said.ends_with(" commits/s in this database)"), "{c}");
    assert!(
        c["hint"].as_str().is_some_and(|h| h.contains("batch")),
        "{c}"
    );
    let status = watch.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}

/// A busy healthy server raises no alarm: eight clients NOTIFYing 6,000 times a second,
/// whose commits now and then wait behind one another for a moment, leave the NOTIFY
/// lock's check ok throughout, while it sees the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_healthy_server_raises_no_notify_lock_alarm() {
    let _turn = NOTIFY_LOAD.lock().await;
    let t = TestSchema::new("f_busy");
    let mut watch = watching(&t).await;
    let started = tokio::time::Instant::now();
    let bench = pgbench(&t, 8, 20, &["-R", "6000"]);
    let mut seen_busy = false;
    // Ten seconds of snapshots of a server under the load, each judged.
    while started.elapsed() < Duration::from_secs(18) {
        let report = watch
            .until("a health report", |v| {
                is_report_where(v, "notify_lock", |_| true)
            })
            .await;
        let c = check(&report, "notify_lock").expect("check");
        assert!(
            matches!(status(c), "ok" | "unknown"),
            "a busy healthy server raised an alarm: {c}"
        );
        seen_busy |= heard_rate(summary(c)).is_some_and(|r| r >= 1000.0);
    }
    drop(bench);
    assert!(seen_busy, "the check never saw the NOTIFY traffic");
    let status = watch.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}

/// A payload in the contract's shape with `content` of `len` bytes, `id` its message.
fn payload(id: u64, len: usize) -> String {
    format!(
        "{{\"message_id\": \"{id}\", \"content\": \"{}\"}}",
        "y".repeat(len)
    )
}

/// Small payloads are fine; payloads of about 7,500 bytes warn with the distribution of
/// sizes seen, since the next longer message fails in pg_notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_near_the_notify_limit_warn_with_their_sizes() {
    let t = TestSchema::new("f_size");
    let mut watch = watching(&t).await;
    let sql = t.client().await;
    for id in 1..=20 {
        sql.execute("SELECT pg_notify($1, $2)", &[&t.name, &payload(id, 200)])
            .await
            .expect("notify");
    }
    let report = watch
        .until("the small payloads judged", |v| {
            is_report_where(v, "payload_size", |c| {
                summary(c).contains(&format!("of 20 payloads on {} ", t.name))
            })
        })
        .await;
    let c = check(&report, "payload_size").expect("check");
    assert_eq!(status(c), "ok", "{c}");

    for id in 21..=23 {
        sql.execute("SELECT pg_notify($1, $2)", &[&t.name, &payload(id, 7450)])
            .await
            .expect("notify");
    }
    let report = watch
        .until("the large payloads warned of", |v| {
            is_report_where(v, "payload_size", |c| status(c) == "warn")
        })
        .await;
    let c = check(&report, "payload_size").expect("check");
    let said = summary(c);
    let largest = payload(23, 7450).len();
    assert_eq!(
        said,
        format!(
            "3 of 23 payloads on {} in the last 60 s above 7000 bytes, the largest {largest} \
             of 7999: a longer message fails in pg_notify",
            t.name
        ),
        "{c}"
    );
    let evidence: Vec<&str> = c["evidence"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        evidence.contains(&"bytes under 1000: 20, 1000–3999: 0, 4000–7000: 0, above 7000: 3"),
        "{c}"
    );
    assert!(
        evidence.iter().any(
            |l| l.starts_with("sizes in the last 60 s: 23 payloads; median ")
                && l.ends_with(&format!(", max {largest} bytes of 7999"))
        ),
        "{c}"
    );
    let status = watch.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}

/// A role of the test's own, dropped however the test ends.
struct Role(String);

impl Drop for Role {
    fn drop(&mut self) {
        clean_up(format!("DROP ROLE IF EXISTS \"{}\"", self.0));
    }
}

/// The line of `doctor`'s report for the connection settings.
async fn settings_line(t: &TestSchema, url: &str) -> String {
    let out = notifyscope()
        .args(["doctor", "--timeout", "1", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", url])
        .finish()
        .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.contains("server settings keep a LISTEN open"))
        .unwrap_or_else(|| panic!("no line on the connection settings in {text}"))
        .to_owned()
}

/// `doctor` says that an idle_session_timeout of the pipeline's role will cut its LISTEN
/// connection, and that a connection string without keepalives, to a server that sends its
/// own only after two hours, leaves it to the network; the server's other settings are
/// untouched (the role is the test's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_settings_that_cut_an_idle_listen_connection() {
    let t = TestSchema::new("f_settings");
    let role = Role(format!("{}_role", t.name));
    t.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE \"{r}\" LOGIN; ALTER ROLE \"{r}\" SET idle_session_timeout = '60s'",
            r = role.0
        ))
        .await
        .expect("a role of the test's own");

    let base = server_url();
    let as_role = match base.split_whitespace().find(|kv| kv.starts_with("user=")) {
        Some(user) => base.replace(user, &format!("user={}", role.0)),
        None => format!("{base} user={}", role.0),
    };
    let line = settings_line(&t, &as_role).await;
    assert!(
        line.starts_with(&format!(
            "✗ server settings keep a LISTEN open: idle_session_timeout is 1min (set for role {})",
            role.0
        )),
        "{line}"
    );
    assert!(line.contains("ALTER ROLE"), "{line}");

    let line = settings_line(&t, &base).await;
    assert!(
        line.starts_with("✓ server settings keep a LISTEN open: idle_session_timeout is off"),
        "{line}"
    );
    let no_keepalives = format!("{base} keepalives=0");
    let line = settings_line(&t, &no_keepalives).await;
    let server_idle: u64 = t
        .client()
        .await
        .query_one("SELECT current_setting('tcp_keepalives_idle')::int8", &[])
        .await
        .expect("tcp_keepalives_idle")
        .get::<_, i64>(0)
        .try_into()
        .unwrap_or(0);
    if server_idle > 350 {
        assert!(
            line.starts_with("! server settings keep a LISTEN open: no keepalive within 350 s"),
            "{line}"
        );
        assert!(line.contains("keepalives off"), "{line}");
    }
}

/// A connection that goes silent on the way to the server (a proxy that stops forwarding,
/// as a load balancer that dropped the flow) is named by the check while it is recent:
/// whose connection, to where, silent for how long doing what, and that it was replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gone_silent_is_named_with_where_and_how_long() {
    let proxy = FreezingProxy::start().await;
    let t = TestSchema::new("f_silent");
    let mut cmd = pipeline_command_on(&t, &proxy.url());
    cmd.args(["--demo-rate", "20"]);
    let mut run = Running::start(cmd);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let report = run
        .until("a healthy report of the connections", |v| {
            is_report_where(v, "silent_connections", |c| status(c) == "ok")
        })
        .await;
    let c = check(&report, "silent_connections").expect("check");
    assert_eq!(summary(c), "none missed its deadline", "{c}");

    proxy.freeze();
    let report = run
        .until("the silent connection named", |v| {
            is_report_where(v, "silent_connections", |c| status(c) != "ok")
        })
        .await;
    let c = check(&report, "silent_connections").expect("check");
    let said = summary(c);
    let to = format!(" connection to 127.0.0.1:{} went silent for ", proxy.port);
    assert!(said.contains(&to), "{c}");
    let seconds: f64 = said
        .split(&to)
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("for how long, in {c}"));
    assert!(seconds >= 1.0, "{c}");
    assert!(said.contains(" s during "), "{c}");
    assert_eq!(status(c), "warn", "{c}");
    assert!(said.ends_with("; replaced"), "{c}");
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}
