//! Connections that go silent: a proxy between notifyscope and the server stops forwarding
//! the connections open at one moment, without a reset, as a NAT gateway or a load balancer
//! that dropped the flows does; new connections still work. The pipeline (and `watch`)
//! must find the silent connections by their deadlines, name them, replace them, lose
//! nothing, and stop on SIGTERM in time.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::freeze::FreezingProxy;
use common::process::{
    notifyscope_for, pipeline_command, pipeline_command_on, stage, Finish, Running,
};
use common::TestSchema;
use nix::sys::signal::Signal;
use serde_json::Value;

fn message_id(v: &Value) -> Option<i64> {
    v["message_id"].as_str().and_then(|s| s.parse().ok())
}

async fn rows(t: &TestSchema) -> i64 {
    t.count(&format!(
        "SELECT count(*) FROM \"{}\".discord_messages",
        t.name
    ))
    .await
}

/// Waits until `count` gives at least `at_least`, at most `within` after `since`.
async fn until_at_least<F, Fut>(
    what: &str,
    since: Instant,
    within: Duration,
    at_least: i64,
    count: F,
    context: impl Fn() -> String,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    loop {
        let n = count().await;
        if n >= at_least {
            return;
        }
        assert!(
            since.elapsed() < within,
            "{what}: {n} of {at_least} after {:?}\n{}",
            since.elapsed(),
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_recovers_from_frozen_connections_names_them_and_loses_nothing() {
    let proxy = FreezingProxy::start().await;
    let t = TestSchema::new("s_run");
    let mut cmd = pipeline_command_on(&t, &proxy.url());
    cmd.args(["--demo-rate", "50"]);
    let mut run = Running::start(cmd);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let mut published = HashSet::new();
    let mut ingested = 0;
    run.until("20 ingested", |v| {
        if stage(v) == "published" {
            published.extend(message_id(v));
        }
        ingested += usize::from(stage(v) == "ingested");
        ingested >= 20
    })
    .await;

    proxy.freeze();
    let frozen_at = Instant::now();
    let connections_at_freeze = proxy.connections();
    // What was committed before the freeze has arrived by now, or is stuck with it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rows(&t).await;
    until_at_least(
        "rows after the freeze",
        frozen_at,
        Duration::from_secs(30),
        before + 50,
        || rows(&t),
        || run.stderr(),
    )
    .await;
    assert!(
        proxy.connections() > connections_at_freeze,
        "the silent connections were replaced by new ones"
    );
    // The listener, idle since the freeze, finds its connection silent by its heartbeat.
    let mut early = Vec::new();
    run.until("the listener's connection named silent", |v| {
        early.push(v.clone());
        stage(v) == "connection_silent" && v["role"] == "listener"
    })
    .await;
    assert!(
        frozen_at.elapsed() < Duration::from_secs(30),
        "the listener's silence named after {:?}",
        frozen_at.elapsed()
    );

    let stopping = Instant::now();
    let (status, stdout, stderr) = run.signal_and_exit(Signal::SIGTERM).await;
    let stopped_in = stopping.elapsed();
    assert!(status.success(), "{stderr}");
    // The drain timeout (10 s) and 5 s more.
    assert!(
        stopped_in < Duration::from_secs(15),
        "stopped in {stopped_in:?}\n{stderr}"
    );
    let lines: Vec<Value> = early
        .into_iter()
        .chain(stdout.lines().filter_map(|l| serde_json::from_str(l).ok()))
        .collect();
    let silent: Vec<&Value> = lines
        .iter()
        .filter(|v| stage(v) == "connection_silent")
        .collect();
    assert!(!silent.is_empty(), "no connection_silent event\n{stderr}");
    for v in &silent {
        assert_eq!(v["target"], format!("127.0.0.1:{}", proxy.port), "{v}");
        assert!(
            v["silent_ms"].as_f64().is_some_and(|ms| ms >= 1000.0),
            "{v}"
        );
        assert!(v["replaced"].as_bool() == Some(true), "{v}");
    }
    let roles: HashSet<&str> = silent.iter().filter_map(|v| v["role"].as_str()).collect();
    assert!(roles.contains("listener"), "{roles:?}");
    published.extend(
        lines
            .iter()
            .filter(|v| stage(v) == "published")
            .filter_map(message_id),
    );
    // Every published message has its row, or waits in the outbox.
    let sql = t.client().await;
    let ids: Vec<i64> = published.iter().copied().collect();
    let found: i64 = sql
        .query_one(
            &format!(
                "SELECT count(DISTINCT id) FROM (\
                   SELECT message_id AS id FROM \"{s}\".discord_messages \
                   WHERE message_id = ANY($1) \
                   UNION ALL SELECT message_id FROM \"{s}\".event_outbox \
                   WHERE message_id = ANY($1) AND processed_at IS NULL) AS kept",
                s = t.name
            ),
            &[&ids],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(found, ids.len() as i64, "published messages lost");
    let doubled: i64 = sql
        .query_one(
            &format!(
                "SELECT count(*) - count(DISTINCT message_id) FROM \"{}\".discord_messages",
                t.name
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(doubled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_recovers_from_frozen_connections_and_names_them() {
    let proxy = FreezingProxy::start().await;
    let t = TestSchema::new("s_watch");
    // The pipeline runs straight to the server; watch looks at it through the proxy.
    let mut pipeline = pipeline_command(&t);
    pipeline.args(["--demo-rate", "20"]);
    let mut run = Running::start(pipeline);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let mut cmd = notifyscope_for(&t);
    cmd.args(["watch", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &proxy.url()]);
    let mut watching = Running::start(cmd);
    let mut seen = 0;
    watching
        .until("rows seen", |v| {
            seen += usize::from(stage(v) == "row_observed");
            seen >= 10
        })
        .await;
    proxy.freeze();
    let frozen_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut silent = Vec::new();
    let mut rows_after = 0;
    watching
        .until("rows seen again", |v| {
            if stage(v) == "connection_silent" {
                silent.push(v.clone());
            }
            rows_after += usize::from(stage(v) == "row_observed" && !silent.is_empty());
            rows_after >= 10 && silent.iter().any(|v| v["role"] == "watch listener")
        })
        .await;
    assert!(
        frozen_at.elapsed() < Duration::from_secs(30),
        "rows seen again after {:?}",
        frozen_at.elapsed()
    );
    for v in &silent {
        assert_eq!(v["target"], format!("127.0.0.1:{}", proxy.port), "{v}");
    }
    let stopping = Instant::now();
    let status = watching.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
    assert!(stopping.elapsed() < Duration::from_secs(15));
    run.signal_and_wait(Signal::SIGTERM).await;
}

/// SIGTERM while the connections are frozen: the stop takes the drain timeout and at most
/// 5 s more, and says what it left in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stall_stops_in_time_and_says_what_was_left() {
    let proxy = FreezingProxy::start().await;
    let t = TestSchema::new("s_stop");
    let mut cmd = pipeline_command_on(&t, &proxy.url());
    cmd.args(["--demo-rate", "50", "--drain-timeout", "4"]);
    let mut run = Running::start(cmd);
    let mut ingested = 0;
    run.until("10 ingested", |v| {
        ingested += usize::from(stage(v) == "ingested");
        ingested >= 10
    })
    .await;
    proxy.freeze();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = Instant::now();
    let (_, _, stderr) = run.signal_and_exit(Signal::SIGTERM).await;
    let stopped_in = stopping.elapsed();
    assert!(
        stopped_in < Duration::from_secs(9),
        "stopped in {stopped_in:?}\n{stderr}"
    );
    let last: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("notifyscope: "))
        .collect();
    assert!(
        last.iter().any(|l| l.contains("outbox")),
        "the stop says what was left in the outbox: {last:?}\n{stderr}"
    );
}

/// doctor through a path that accepts connections and never answers: it says so within its
/// limits, naming the address, instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_database_that_went_silent() {
    let proxy = FreezingProxy::start().await;
    proxy.freeze_all();
    let t = TestSchema::new("s_doctor");
    let started = Instant::now();
    let out = notifyscope_for(&t)
        .args([
            "doctor",
            "--timeout",
            "2",
            "--db-deadline",
            "2",
            "--schema",
            &t.name,
        ])
        .args(["--channel", &t.name, "--database-url", &proxy.url()])
        .finish_within(Duration::from_secs(30))
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        stdout.contains("✗ database connection")
            && stdout.contains(&format!("127.0.0.1:{}", proxy.port))
            && stdout.contains("went silent"),
        "{stdout}"
    );
}

/// A server that ends sessions idle for 3 s (`idle_session_timeout`): the listener, busy
/// receiving notifications, still sends its heartbeat, so it is never ended for silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_listener_still_sends_its_heartbeat() {
    let t = TestSchema::new("s_busy");
    let url = format!(
        "{} options='-c idle_session_timeout=3000'",
        common::server_url()
    );
    let mut cmd = pipeline_command_on(&t, &url);
    cmd.args(["--demo-rate", "20", "--db-deadline", "4"]);
    let mut run = Running::start(cmd);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let mut notified = 0;
    let mut down = Vec::new();
    // About 10 s of steady traffic, longer than three idle timeouts.
    run.until("200 notifications", |v| {
        if stage(v) == "listener_down" {
            down.push(v.clone());
        }
        notified += usize::from(stage(v) == "notified");
        notified >= 200
    })
    .await;
    assert!(down.is_empty(), "{down:?}\n{}", run.stderr());
    run.signal_and_wait(Signal::SIGTERM).await;
}
