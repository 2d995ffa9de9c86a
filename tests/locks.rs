//! The diagnosis stays sighted while another session holds a lock the pipeline needs: the
//! lock check names the blocker, the other checks keep updating, nothing says the database
//! does not answer, and everything drains once the lock is gone. Also for a pipeline that is
//! not ours, seen from `watch`: its lock waits, an honest listener check, and row latency
//! timed from its own NOTIFY. Every fault is induced for real on the shared server, and each
//! test judges only its own schema's tables and backends.

mod common;

use std::time::{Duration, Instant};

use common::diagnosis::{warning_or_worse, Rig};
use common::faults::{all_arrived_once, keep_sending, turned};
use common::process::{notifyscope, stage, Running};
use common::{is_inserted, server_url, Seen, TestSchema};
use nix::sys::signal::Signal;
use notifyscope::contract::Snowflake;
use notifyscope::trace::Status;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Holds `mode` on `table` of the test's schema in a transaction left open; the blocker's pid.
async fn hold_lock(t: &TestSchema, table: &str, mode: &str) -> (tokio_postgres::Client, i32) {
    let locker = t.client().await;
    let pid: i32 = locker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    // Its last statement, as pg_stat_activity shows it, is the LOCK.
    locker.batch_execute("BEGIN").await.expect("begun");
    locker
        .batch_execute(&format!("LOCK TABLE {table} IN {mode} MODE"))
        .await
        .expect("locked");
    (locker, pid)
}

/// Messages through the bot path while a lock is held, then the lock released: the lock
/// check names the blocker within seconds, reports keep coming every second, the database
/// is never blamed, and afterwards every message is in the table exactly once.
async fn lock_while_messages_flow(test: &str, table: &str) {
    let t = TestSchema::new(test);
    let mut rig = Rig::test(&t, true).await;
    let mut seen = Seen::new(rig.trace.subscribe());
    rig.until("lock_waits", |s| s == Status::Ok).await;
    let stop = CancellationToken::new();
    // Under a lock on the outbox a publish waits; it is retried and lands once the lock is
    // gone.
    let sending = keep_sending(rig.pipeline().publisher().clone(), stop.clone());
    seen.until_count("messages flowing", 3, is_inserted).await;

    let (locker, blocker) = hold_lock(&t, table, "ACCESS EXCLUSIVE").await;
    let locked = Instant::now();
    let mut reports = rig.checks.clone();
    reports.borrow_and_update();
    let check = rig.until("lock_waits", warning_or_worse).await;
    assert!(
        locked.elapsed() < Duration::from_secs(6),
        "named within seconds, took {:?}",
        locked.elapsed()
    );
    assert!(
        check.summary.contains(&format!("blocked by pid {blocker}")),
        "{check:?}"
    );
    assert!(check.summary.contains(table), "{check:?}");
    // What the health pane's action would stop: the blocker, by its pid.
    assert!(
        matches!(
            check.target,
            Some(notifyscope::diagnose::CheckTarget::Backend { pid, .. }) if pid == blocker
        ),
        "{check:?}"
    );
    assert!(check.summary.contains("AccessExclusiveLock") || check.summary.contains("Lock"));
    assert!(
        check.summary.contains("statement LOCK …"),
        "the blocker's statement by its first word only: {check:?}"
    );
    // The other checks keep being judged each second while the lock is held.
    let watching = Instant::now();
    let mut updates = 0;
    while watching.elapsed() < Duration::from_secs(3) {
        if tokio::time::timeout(Duration::from_secs(2), reports.changed())
            .await
            .is_ok()
        {
            updates += 1;
        }
    }
    assert!(updates >= 2, "reports kept coming: {updates} in 3 s");
    for c in rig.checks.borrow().checks.iter() {
        assert!(
            !c.summary.contains("does not answer"),
            "check {} blames the database: {}",
            c.id,
            c.summary
        );
    }

    locker.batch_execute("COMMIT").await.expect("released");
    stop.cancel();
    let ids: Vec<Snowflake> = sending.await.expect("sender");
    all_arrived_once(&t, &mut seen, &ids).await;
    rig.until("lock_waits", |s| s == Status::Ok).await;
    seen.drain();
    assert_eq!(
        seen.count(|e| turned(e, "database", Status::Fail)),
        0,
        "the database was never said to be down"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_discord_messages_names_its_holder_and_blinds_nothing_else() {
    lock_while_messages_flow("l_messages", "discord_messages").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_the_outbox_names_its_holder_and_blinds_nothing_else() {
    lock_while_messages_flow("l_outbox", "event_outbox").await;
}

/// A pipeline of plain SQL in the test's schema: its own table, its own payload shape.
async fn foreign_pipeline(t: &TestSchema) -> tokio_postgres::Client {
    let sql = t.client().await;
    sql.batch_execute(&format!(
        "CREATE SCHEMA \"{s}\"; CREATE TABLE \"{s}\".discord_messages \
           (message_id BIGINT PRIMARY KEY, content TEXT NOT NULL, \
            stored_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
        s = t.name
    ))
    .await
    .expect("their table");
    sql
}

fn watch_command(t: &TestSchema) -> tokio::process::Command {
    let mut cmd = notifyscope();
    cmd.args(["watch", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()]);
    cmd
}

async fn watching(t: &TestSchema) -> Running {
    let mut run = Running::start(watch_command(t));
    run.until("database up", |v| stage(v) == "database_up")
        .await;
    tokio::time::timeout(common::WAIT, async {
        while !run.stderr().contains("watching channel") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("watch listening");
    run
}

fn health(v: &Value, check: &str) -> Option<String> {
    (stage(v) == "health_changed" && v["check"] == check).then(|| v["status"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_names_the_session_that_blocks_a_foreign_writer() {
    let t = TestSchema::new("l_watch");
    let sql = foreign_pipeline(&t).await;
    let mut run = watching(&t).await;
    let (locker, blocker) = hold_lock(&t, "discord_messages", "SHARE").await;
    // Their ingestion: an insert that waits on the lock.
    let writer = t.client().await;
    let insert = tokio::spawn(async move {
        writer
            .execute(
                "INSERT INTO discord_messages (message_id, content) VALUES (7, 'held')",
                &[],
            )
            .await
    });
    let lock = run
        .until("the lock check", |v| {
            health(v, "lock_waits").is_some_and(|s| s != "\"ok\"")
        })
        .await;
    let summary = lock["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("blocked by pid {blocker}")),
        "{lock}"
    );
    assert!(summary.contains("discord_messages"), "{lock}");
    assert!(summary.contains("RowExclusiveLock"), "{lock}");
    locker.batch_execute("COMMIT").await.expect("released");
    let released = Instant::now();
    insert
        .await
        .expect("insert task")
        .expect("their insert went through");
    run.until("the lock check clear", |v| {
        health(v, "lock_waits").is_some_and(|s| s == "\"ok\"")
    })
    .await;
    assert!(
        released.elapsed() < Duration::from_secs(4),
        "clear within a tick or two of the release, took {:?}",
        released.elapsed()
    );
    drop(sql);
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_a_listener_never_says_the_listener_is_fine() {
    let t = TestSchema::new("l_nolisten");
    let sql = foreign_pipeline(&t).await;
    let mut run = watching(&t).await;
    sql.execute(
        "SELECT pg_notify($1, '{\"message_id\": 99, \"content\": \"nobody ingests\"}')",
        &[&t.name],
    )
    .await
    .expect("notify");
    // Until the deadline proves it, the check may say it does not know; never that all is
    // well.
    let failed = run
        .until("the listener check to fail", |v| {
            if let Some(status) = health(v, "listener") {
                assert_ne!(status, "\"ok\"", "listener ok without evidence: {v}");
                status == "\"fail\""
            } else {
                false
            }
        })
        .await;
    assert!(
        failed["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("never reached the table"),
        "{failed}"
    );
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
}

/// Watch times each foreign row from its own NOTIFY. What the figure must be follows from
/// the order of events, not from how fast this machine is: watch takes the NOTIFY in before
/// it reports it, the test inserts the row only `wait` after reading that report, and watch
/// reports the row before the test reads it. So the figure is no more than the time from the
/// test's NOTIFY to its reading of the row, and no less than most of `wait` (a look that
/// began before the insert and still saw its row takes off only a moment; half of `wait` is
/// far more than any look lasts). A figure taken from an earlier message's NOTIFY, from the
/// look instead of the NOTIFY, or in the wrong unit fails; a slow machine does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_times_a_foreign_row_from_its_own_notify() {
    let t = TestSchema::new("l_latency");
    let sql = foreign_pipeline(&t).await;
    let mut run = watching(&t).await;
    for (id, wait_ms) in [(11_i64, 500_u64), (12, 1000), (13, 200)] {
        let announced = Instant::now();
        sql.execute(
            "SELECT pg_notify($1, json_build_object('message_id', $2::int8)::text)",
            &[&t.name, &id],
        )
        .await
        .expect("notify");
        let is_id = |v: &Value| v["message_id"].as_str() == Some(id.to_string().as_str());
        run.until("the NOTIFY taken in", |v| {
            stage(v) == "notified" && is_id(v)
        })
        .await;
        let known = Instant::now();
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        sql.execute(
            "INSERT INTO discord_messages (message_id, content) VALUES ($1, 'x')",
            &[&id],
        )
        .await
        .expect("their insert");
        let row = run
            .until("the row observed", |v| {
                stage(v) == "row_observed" && is_id(v)
            })
            .await;
        let at_most = announced.elapsed().as_secs_f64() * 1e3;
        let waited = (Instant::now() - known).as_secs_f64() * 1e3;
        let latency = row["latency_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("message {id}: the row not timed from its NOTIFY: {row}"));
        assert!(
            latency <= at_most,
            "message {id}: watch says {latency:.1} ms, but only {at_most:.1} ms passed from \
             the NOTIFY to the report of its row"
        );
        assert!(
            latency >= wait_ms as f64 / 2.0,
            "message {id}: watch says {latency:.1} ms, though the row was inserted {wait_ms} ms \
             after watch reported the NOTIFY (the test saw the row {waited:.1} ms after that)"
        );
    }
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
}
