//! Every failure mode of the failure table, induced for real against PostgreSQL, and the
//! check that must name it; `doctor` and `watch` through the binary.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use common::diagnosis::{failing, warning_or_worse, Rig, BACKLOG_AGE, DEADLINE};
use common::process::{notifyscope, notifyscope_for, run_pipeline, stage, Finish, Running};
use common::{server_url, TestSchema, WAIT};
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use notifyscope::contract::{Envelope, Snowflake};
use notifyscope::diagnose::{Check, CheckId};
use notifyscope::pipeline::publish::{self, PublisherHandle};
use notifyscope::pipeline::synthetic::{self, SimKind};
use notifyscope::store::{Database, Identifier};
use notifyscope::trace::{Status, Trace, TraceKind};
use tokio_util::sync::CancellationToken;

fn publisher_only(database: &Database, channel: &Identifier, trace: &Trace) -> PublisherHandle {
    let (publisher, _task) = publish::spawn_publisher(
        database.pool(2).expect("pool"),
        channel.clone(),
        trace.clone(),
        100,
        CancellationToken::new(),
    );
    publisher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_from_inside_the_runtime_is_named() {
    let t = TestSchema::new("d_runtime");
    let mut rig = Rig::test(&t, true).await;
    let result = rig
        .pipeline()
        .publisher()
        .publish_blocking(synthetic::message("wrong runtime").to_record());
    assert!(result.is_err());
    let c = rig.until("runtime", failing).await;
    assert!(
        c.evidence
            .iter()
            .any(|e| e.contains("inside the async runtime")),
        "{c:?}"
    );
    rig.others_fine(&["runtime"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_message_never_handled_is_named() {
    let t = TestSchema::new("d_async");
    let mut rig = Rig::test(&t, true).await;
    // What a handler that forgets to await its publish leaves behind: received, then nothing.
    let msg = synthetic::message("never awaited");
    rig.trace.emit(Some(msg.message.message_id), msg.received());
    let c = rig.until("async_context", failing).await;
    assert_eq!(c.message_ids, vec![msg.message.message_id]);
    rig.others_fine(&["async_context"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_named_with_its_error() {
    let t = TestSchema::new("d_malformed");
    let mut rig = Rig::test(&t, true).await;
    t.client()
        .await
        .execute(
            "SELECT pg_notify($1, '{\"v\":1,\"event_type\":')",
            &[&t.name],
        )
        .await
        .expect("notify");
    let c = rig.until("malformed", failing).await;
    assert!(
        c.evidence.iter().any(|e| e.contains("not valid JSON")),
        "{c:?}"
    );
    // The rejected payload is kept as a dead letter: a message given up until someone acts.
    let given_up = rig.until("given_up", failing).await;
    assert!(
        given_up.summary.starts_with("1 dead letter"),
        "{given_up:?}"
    );
    rig.others_fine(&["malformed", "given_up"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_named() {
    let (mut rig, pg, _) = Rig::private_cluster().await;
    rig.until("database", |s| s == Status::Ok).await;
    pg.stop().await;
    let c = rig.until("database", failing).await;
    assert!(!c.evidence.is_empty(), "{c:?}");
    for unrelated in ["runtime", "self_filter", "content_intent", "malformed"] {
        let status = rig
            .checks
            .borrow()
            .checks
            .iter()
            .find(|c| c.id == unrelated)
            .map(|c| c.status);
        assert_eq!(status, Some(Status::Ok), "{unrelated}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_listener_and_publishing_before_it_are_named() {
    let t = TestSchema::new("d_nolistener");
    let mut rig = Rig::test(&t, false).await;
    let publisher = publisher_only(&t.database(), &t.channel(), &rig.trace);
    let receipt = publisher
        .publish(synthetic::message("nobody listens").to_record())
        .await
        .expect("published");
    let listener = rig.until("listener", failing).await;
    assert!(listener.summary.contains("no listener"), "{listener:?}");
    let early = rig.until("publish_before_listener", warning_or_worse).await;
    assert_eq!(early.message_ids, vec![receipt.message_id]);
    let backlog = rig.until("backlog", warning_or_worse).await;
    assert!(
        backlog.summary.starts_with("1 unprocessed outbox row"),
        "{backlog:?}"
    );
    rig.others_fine(&["listener", "publish_before_listener", "backlog"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_message_that_silently_vanishes_is_named() {
    let t = TestSchema::new("d_silent");
    let mut rig = Rig::test(&t, true).await;
    // A valid event announced without its outbox row: ingestion never sees it, and no
    // component reports an error.
    let envelope = Envelope::new(synthetic::message("announced only").to_record());
    t.client()
        .await
        .execute("SELECT pg_notify($1, $2)", &[&t.name, &envelope.to_json()])
        .await
        .expect("notify");
    let c = rig.until("silent_errors", failing).await;
    assert_eq!(c.message_ids, vec![envelope.message.message_id]);
    rig.others_fine(&["silent_errors"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_skips_everything_is_named() {
    let t = TestSchema::new("d_selffilter");
    let mut rig = Rig::test(&t, true).await;
    for _ in 0..5 {
        rig.pipeline().simulated().inject(SimKind::Own).await;
    }
    let c = rig.until("self_filter", failing).await;
    assert!(c.summary.contains("own_message 5"), "{c:?}");
    assert_eq!(c.message_ids.len(), 5);
    rig.others_fine(&["self_filter"]);
    rig.stop().await;
}

/// A message published straight to the outbox (the `d` key) never met the filter: it does not
/// hide a filter that skips everything that came through the bot path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_straight_to_the_outbox_is_no_evidence_about_the_filter() {
    let t = TestSchema::new("d_direct");
    let mut rig = Rig::test(&t, true).await;
    let (_, direct) = rig.pipeline().test_events().direct().await;
    direct.expect("published straight to the outbox");
    for _ in 0..3 {
        rig.pipeline().simulated().inject(SimKind::Own).await;
    }
    let c = rig.until("self_filter", failing).await;
    assert!(c.summary.contains("3 of 3 messages skipped"), "{c:?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_on_a_wrong_case_channel_is_named() {
    let t = TestSchema::new("d_channel");
    let mut rig = Rig::test(&t, true).await;
    let wrong = Identifier::channel(&notifyscope::pipeline::test_events::wrong_case(&t.name))
        .expect("valid");
    let publisher = publisher_only(&t.database(), &wrong, &Trace::new());
    publisher
        .publish(synthetic::message("to the wrong channel").to_record())
        .await
        .expect("published");
    let c = rig.until("channel", failing).await;
    let evidence = c.evidence.join("\n");
    assert!(
        evidence.contains(&format!("NOTIFY on {:?}", wrong.as_str())),
        "{evidence}"
    );
    // The outbox row waits for a listener that does not exist.
    tokio::time::timeout(WAIT, async {
        loop {
            let has_outbox_evidence = rig.checks.borrow().checks.iter().any(|c| {
                c.id == "channel"
                    && c.evidence
                        .iter()
                        .any(|e| e.contains("nobody ingests that channel"))
            });
            if has_outbox_evidence {
                break;
            }
            rig.checks.changed().await.expect("diagnosis");
        }
    })
    .await
    .expect("outbox evidence for the wrong channel");
    rig.others_fine(&["channel"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_messages_without_content_name_the_intent() {
    let t = TestSchema::new("d_intent");
    let mut rig = Rig::test(&t, true).await;
    let sent = rig.pipeline().simulated().inject(SimKind::Empty).await;
    let c = rig.until("content_intent", failing).await;
    assert_eq!(c.message_ids, vec![sent[0].0]);
    rig.others_fine(&["content_intent"]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_stuck_in_a_transaction_fills_the_queue_and_is_named() {
    // The NOTIFY queue is shared by the whole cluster: a private one keeps other tests clear.
    let (mut rig, pg, database) = Rig::private_cluster().await;

    let stuck = database
        .connect_plain("stuck-listener")
        .await
        .expect("connect");
    // LISTEN takes effect at commit, so it needs a transaction of its own before the one
    // left open.
    stuck
        .batch_execute("LISTEN stuck_channel")
        .await
        .expect("listen");
    stuck
        .batch_execute("BEGIN; SELECT 1;")
        .await
        .expect("idle in transaction");
    let stuck_pid: i32 = {
        let other = database.connect_plain("notifier").await.expect("connect");
        other
            .batch_execute(
                "SELECT pg_notify('stuck_channel', i::text || repeat('x', 1000)) \
                 FROM generate_series(1, 20000) AS i",
            )
            .await
            .expect("notify");
        other
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'stuck-listener'",
                &[],
            )
            .await
            .expect("pid")
            .get(0)
    };
    let c = rig.until("notify_queue", warning_or_worse).await;
    assert!(c.summary.contains(&format!("pid {stuck_pid}")), "{c:?}");
    assert!(c.summary.contains("idle in transaction"), "{c:?}");
    rig.others_fine(&["notify_queue"]);
    drop(stuck);
    rig.stop().await;
    pg.stop().await;
}

/// What the burst's messages really went through, from the pipeline's own trace: when each
/// was notified and ingested.
#[derive(Default)]
struct BurstTimes {
    notified: HashMap<Snowflake, DateTime<Utc>>,
    /// When the commit that ingested it was over.
    ingested: HashMap<Snowflake, DateTime<Utc>>,
    missed: u64,
}

fn follow_burst(trace: &Trace) -> Arc<Mutex<BurstTimes>> {
    let times = Arc::new(Mutex::new(BurstTimes::default()));
    let mut events = trace.subscribe();
    let sink = times.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let mut times = sink.lock().expect("lock");
            match (&e.kind, e.message_id) {
                (TraceKind::Notified { .. }, Some(id)) => {
                    times.notified.entry(id).or_insert(e.at);
                }
                (TraceKind::Ingested { .. }, Some(id)) => {
                    times.ingested.entry(id).or_insert(e.at);
                }
                (TraceKind::Lagged { missed }, _) => times.missed += missed,
                _ => {}
            }
        }
    });
    times
}

/// The age a backlog summary states ("…, oldest 1.3 s old"), in seconds.
fn stated_age(summary: &str) -> f64 {
    summary
        .split("oldest ")
        .nth(1)
        .and_then(|rest| rest.split(" s old").next())
        .and_then(|age| age.parse().ok())
        .unwrap_or_else(|| panic!("no age in the backlog summary: {summary}"))
}

/// A healthy burst raises no false alarm. The backlog (warned at 1 s) and the deadline of a
/// notified message (2 s) are thresholds a loaded machine may really pass during 10,000
/// messages; so a warning of either counts against the pipeline only when what it says did
/// not happen: a backlog "oldest N s old" with N under the threshold, or with no message that
/// waited N s between the test's asking for its publish and the end of its ingestion; a
/// notified message "neither ingested nor reported" that was ingested within the deadline of
/// its NOTIFY (less the diagnosis's tick of a second). Any other warning fails the test
/// whatever the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_burst_of_ten_thousand_raises_nothing_untrue() {
    let t = TestSchema::new("d_healthy");
    let mut rig = Rig::test(&t, true).await;
    rig.until("listener", |s| s == Status::Ok).await;
    let times = follow_burst(&rig.trace);
    let mut watcher = rig.checks.clone();
    let shared_server = rig.shared_server;
    let collect = tokio::spawn(async move {
        let mut raised: Vec<Check> = Vec::new();
        while watcher.changed().await.is_ok() {
            for c in watcher.borrow_and_update().checks.iter() {
                // The queue is the whole server's: other sessions may fill it.
                let ours = !(shared_server && c.id == CheckId::NotifyQueue);
                if ours && c.status >= Status::Warn {
                    raised.push(c.clone());
                }
            }
        }
        raised
    });
    let publisher = rig.pipeline().publisher().clone();
    // Each message with the moment the test asked for its publish: its outbox row cannot
    // have been pending before.
    let asked: Vec<(Snowflake, DateTime<Utc>)> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let p = publisher.clone();
            async move {
                let m = synthetic::message(format!("burst {i}")).to_record();
                let id = m.message_id;
                let at = Utc::now();
                p.publish(m).await.expect("published");
                (id, at)
            }
        })
        .buffer_unordered(512)
        .collect()
        .await;
    assert_eq!(asked.len(), 10_000);
    let rows = format!("SELECT count(*) FROM \"{}\".discord_messages", t.name);
    tokio::time::timeout(WAIT, async {
        while t.count(&rows).await < 10_000 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("all ingested");
    // Two more rounds of checks after the burst.
    for _ in 0..2 {
        rig.checks.changed().await.expect("diagnosis");
    }
    rig.stop.cancel();
    let raised = collect.await.expect("collector");
    // The trace of every ingestion, to judge by.
    tokio::time::timeout(WAIT, async {
        while times.lock().expect("lock").ingested.len() < asked.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every ingestion traced");
    let times = std::mem::take(&mut *times.lock().expect("lock"));
    assert_eq!(times.missed, 0, "the test's trace reader fell behind");
    // The longest any outbox row can have been pending: from the test's asking for its publish
    // to the end of the commit that ingested it.
    let longest_wait = asked
        .iter()
        .filter_map(|(id, at)| Some(*times.ingested.get(id)? - *at))
        .max()
        .and_then(|d| d.to_std().ok())
        .unwrap_or_default();
    let tick = Duration::from_secs(1);
    for c in &raised {
        match c.id {
            CheckId::Backlog => {
                let stated = stated_age(&c.summary);
                // The summary rounds to a tenth of a second.
                assert!(
                    stated >= BACKLOG_AGE.as_secs_f64() - 0.05,
                    "false alarm: backlog {:?} ({}) under its threshold of {BACKLOG_AGE:?}",
                    c.status,
                    c.summary
                );
                assert!(
                    longest_wait.as_secs_f64() >= stated - 0.05,
                    "false alarm: backlog {:?} ({}), yet no message waited more than {:?} \
                     from its publish to its ingestion",
                    c.status,
                    c.summary,
                    longest_wait
                );
            }
            CheckId::SilentErrors => {
                for id in &c.message_ids {
                    let (Some(notified), Some(ingested)) =
                        (times.notified.get(id), times.ingested.get(id))
                    else {
                        panic!("message {id} named by {c:?} was not notified and ingested");
                    };
                    let took = (*ingested - *notified).to_std().unwrap_or_default();
                    assert!(
                        took + tick >= DEADLINE,
                        "false alarm: {} ({:?}), yet message {id} was ingested {took:?} \
                         after its NOTIFY",
                        c.summary,
                        c.status
                    );
                }
            }
            _ => panic!(
                "a healthy burst raised {}: {:?} {}",
                c.id, c.status, c.summary
            ),
        }
    }
    if let Some(p) = rig.pipeline {
        p.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_healthy_with_a_pipeline_and_names_a_stopped_listener() {
    let t = TestSchema::new("d_doctor");
    let run = run_pipeline(&t).await;

    let doctor = |json: bool, timeout: &str| {
        let mut cmd = notifyscope();
        cmd.args([
            "doctor",
            "--timeout",
            timeout,
            "--schema",
            &t.name,
            "--channel",
            &t.name,
        ])
        .args(["--database-url", &server_url()]);
        if json {
            cmd.arg("--json");
        }
        cmd
    };
    let out = doctor(false, "30").finish().await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with('✓') || l.starts_with('!')),
        "{text}"
    );
    assert!(text.contains("round trip"), "{text}");

    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());

    let out = doctor(false, "3").finish().await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("✗ listener running: no listener"), "{text}");
    assert!(text.contains("stopped at ingestion"), "{text}");

    let out = doctor(true, "3").finish().await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["healthy"], false);
    let listener = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "listener"))
        .expect("listener check");
    assert_eq!(listener["status"], "fail");
}

#[tokio::test]
async fn doctor_without_a_database_could_not_run() {
    let out = notifyscope()
        .args([
            "doctor",
            "--database-url",
            "host=127.0.0.1 port=1 user=x dbname=y",
        ])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("✗ database connection"));
}

/// Doctor that cannot connect names the server once and says what to check, not that the
/// pipeline reconnects by itself.
#[tokio::test]
async fn doctor_that_cannot_connect_says_what_to_check() {
    let out = notifyscope()
        .args([
            "doctor",
            "--database-url",
            "host=127.0.0.1 port=1 user=x dbname=y",
        ])
        .finish()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert_eq!(
        stdout.matches("host=127.0.0.1 port=1").count(),
        1,
        "{stdout}"
    );
    assert!(
        stdout.contains("the database cannot be reached") && stdout.contains("pg_isready"),
        "{stdout}"
    );
    assert!(!stdout.contains("reconnects by itself"), "{stdout}");
}

/// On a schema with no tables there is no round trip, so the listener line does not promise
/// one; on a migrated schema without a listener, the round trip it promises follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_promises_a_round_trip_only_when_one_follows() {
    let t = TestSchema::new("d_bare");
    let doctor = || {
        let mut cmd = notifyscope();
        cmd.args(["doctor", "--timeout", "1", "--schema", &t.name])
            .args(["--channel", &t.name, "--database-url", &server_url()]);
        cmd
    };
    let out = doctor().finish().await;
    let bare = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(bare.contains("has no notifyscope tables"), "{bare}");
    assert!(!bare.contains("round trip"), "{bare}");

    t.database().migrate().await.expect("migrated");
    let out = doctor().finish().await;
    let migrated = String::from_utf8_lossy(&out.stdout).to_string();
    let promise = migrated
        .find("the round trip below decides")
        .unwrap_or_else(|| panic!("no listener, a round trip to decide: {migrated}"));
    assert!(
        migrated[promise..].contains("\n✗ round trip: publish → NOTIFY → ingested"),
        "{migrated}"
    );
    assert!(migrated.contains("the probe was removed"), "{migrated}");
    let rows = t
        .count(&format!("SELECT count(*) FROM \"{}\".event_outbox", t.name))
        .await;
    assert_eq!(rows, 0, "no probe left behind: {migrated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_plain_sql_pipeline_without_writing() {
    let t = TestSchema::new("d_watch");
    let sql = t.client().await;
    sql.batch_execute(&format!(
        "CREATE SCHEMA \"{s}\"; CREATE TABLE \"{s}\".discord_messages (message_id BIGINT PRIMARY KEY, content TEXT NOT NULL); \
         INSERT INTO \"{s}\".discord_messages VALUES (1, 'before')",
        s = t.name
    ))
    .await
    .expect("their table");
    let mut cmd = notifyscope();
    cmd.args([
        "watch",
        "--headless",
        "--json",
        "--schema",
        &t.name,
        "--channel",
        &t.name,
    ])
    .args(["--database-url", &server_url()]);
    let mut watching = Running::start(cmd);
    watching
        .until("database up", |v| stage(v) == "database_up")
        .await;
    tokio::time::timeout(WAIT, async {
        while !watching.stderr().contains("watching channel") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("watch listening");

    sql.execute(
        "SELECT pg_notify($1, '{\"message_id\": 4242, \"content\": \"hi\"}')",
        &[&t.name],
    )
    .await
    .expect("notify");
    let notified = watching.until("notified", |v| stage(v) == "notified").await;
    assert_eq!(notified["message_id"], "4242");
    sql.execute(
        &format!(
            "INSERT INTO \"{}\".discord_messages VALUES (4242, 'hi')",
            t.name
        ),
        &[],
    )
    .await
    .expect("their ingestion");
    let row = watching
        .until("row observed", |v| stage(v) == "row_observed")
        .await;
    assert_eq!(row["message_id"], "4242");
    assert!(row["latency_ms"].as_f64().is_some(), "{row}");
    let status = watching.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());

    // Nothing was created or written in their schema.
    let tables: Vec<String> = sql
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&t.name],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["discord_messages"]);
    let rows = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages",
            t.name
        ))
        .await;
    assert_eq!(rows, 2);
}

/// With `discord_messages` locked under a running pipeline, doctor still answers within its
/// time, names the session holding the lock, and leaves no probe in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_answers_under_a_lock_naming_its_holder() {
    let t = TestSchema::new("d_locked");
    let run = run_pipeline(&t).await;
    let locker = t.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE discord_messages IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locked");
    let holder: i32 = locker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let out = notifyscope()
        .args(["doctor", "--timeout", "5", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()])
        .finish_within(Duration::from_secs(15))
        .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let round_trip = text
        .lines()
        .find(|l| l.contains("round trip"))
        .unwrap_or_else(|| panic!("a round trip line: {text}"));
    assert!(
        round_trip.contains(&format!("pid {holder} "))
            && round_trip.contains("AccessExclusiveLock"),
        "{text}"
    );
    assert!(
        text.contains(&format!("blocked by pid {holder} ")),
        "the lock check names the holder: {text}"
    );
    let rows = t
        .count(&format!("SELECT count(*) FROM \"{}\".event_outbox", t.name))
        .await;
    assert_eq!(rows, 0, "no probe left behind: {text}");
    locker.batch_execute("COMMIT").await.expect("released");
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}

/// A message given up keeps a check failing, in doctor and in watch, for as long as it is
/// there; once retried, the check holds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_up_message_fails_a_check_until_it_is_retried() {
    let t = TestSchema::new("d_given_up");
    t.database().migrate().await.expect("migrated");
    let sql = t.client().await;
    sql.execute(
        "INSERT INTO event_outbox (event_id, event_type, channel, message_id, payload, \
           attempts, last_error, error_class, dead_at) \
         VALUES (gen_random_uuid(), 'discord.message_created', $1, 77, '{}', 12, \
           'permission denied for table discord_messages', 'permission', now() - interval '2 hours')",
        &[&t.name],
    )
    .await
    .expect("a given-up row");
    let doctor = || {
        let mut cmd = notifyscope();
        cmd.args(["doctor", "--timeout", "1", "--schema", &t.name])
            .args(["--channel", &t.name, "--database-url", &server_url()]);
        cmd
    };
    let out = doctor().finish().await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "✗ no message given up: 1 outbox row given up, the oldest given up 120 min ago"
        ),
        "{text}"
    );

    let mut cmd = notifyscope();
    cmd.args(["watch", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()]);
    let mut watching = Running::start(cmd);
    let report = watching
        .until("a health report", |v| stage(v) == "health_report")
        .await;
    let given_up = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "given_up"))
        .unwrap_or_else(|| panic!("a given_up check: {report}"));
    assert_eq!(given_up["status"], "fail", "{given_up}");
    let status = watching.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());

    let retried = notifyscope()
        .args([
            "outbox",
            "retry",
            "--all-stuck",
            "--yes",
            "--schema",
            &t.name,
        ])
        .args(["--channel", &t.name, "--database-url", &server_url()])
        .finish()
        .await;
    assert!(retried.status.success(), "{retried:?}");
    let out = doctor().finish().await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("✓ no message given up"), "{text}");
}

/// Another application's traffic on `events`, a usual channel name, beside a pipeline on a
/// channel of its own: not a neighbour of that channel, so no wrong-channel row and no alarm,
/// and the pipeline's own messages are all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_applications_events_channel_raises_no_alarm() {
    let t = TestSchema::new("d_others");
    let run = run_pipeline(&t).await;
    let sql = t.client().await;
    for i in 0..50 {
        sql.execute(
            "SELECT pg_notify('events', $1)",
            &[&format!("{{\"another_application\": {i}}}")],
        )
        .await
        .expect("their NOTIFY");
    }
    let sent = notifyscope_for(&t)
        .args(["send", "--via-bot", "burst"])
        .finish()
        .await;
    assert!(sent.status.success(), "{sent:?}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages",
            t.name
        ))
        .await
        < 100
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A diagnosis tick after the traffic.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, stdout, _) = run.signal_and_exit(Signal::SIGTERM).await;
    assert!(status.success());
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !lines.iter().any(|v| stage(v) == "neighbour_notified"),
        "their traffic was taken for a wrong channel"
    );
    let last_channel = lines
        .iter()
        .rev()
        .filter(|v| stage(v) == "health_report")
        .find_map(|v| {
            v["checks"]
                .as_array()?
                .iter()
                .find(|c| c["check"] == "channel")
                .cloned()
        })
        .expect("a channel check");
    assert_eq!(last_channel["status"], "ok", "{last_channel}");
    let ingested = lines.iter().filter(|v| stage(v) == "ingested").count();
    assert!(ingested >= 100, "{ingested} ingested rows traced");
}
