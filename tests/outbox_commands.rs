//! Acting on the outbox, the dead letters and blocking sessions, through the binary as a user
//! over ssh would (`outbox retry|purge`, `dead-letters list|retry|delete`, `backend
//! cancel|terminate`) and through the library the screen calls: rows in every state made by
//! hand in the test's own schema, and each command judged by what it changed and what it
//! left alone.

mod common;

use std::collections::HashSet;
use std::process::Output;
use std::time::Duration;

use common::process::{notifyscope, run_pipeline, stage, Finish};
use common::{server_url, TestSchema, WAIT};
use notifyscope::contract::Envelope;
use notifyscope::pipeline::synthetic;
use notifyscope::store::backends::{cancel_backend, terminate_backend, SignalOutcome};
use serde_json::Value;

/// The states an outbox row is made in.
#[derive(Clone, Copy, Debug)]
enum Row {
    Waiting,
    Retrying,
    GivenUp,
    Ingested,
}

/// An outbox row of `channel` in `state` with a valid payload; its id and message id.
async fn row(t: &TestSchema, channel: &str, state: Row) -> (i64, i64) {
    let envelope = Envelope::new(synthetic::message(format!("{state:?} row")).to_record());
    let message_id = envelope.message.message_id.as_i64();
    let (attempts, later, class, dead, processed) = match state {
        Row::Waiting => (0, false, None, false, false),
        Row::Retrying => (3, true, Some("permission"), false, false),
        Row::GivenUp => (5, false, Some("constraint"), true, false),
        Row::Ingested => (1, false, None, false, true),
    };
    let id = t
        .client()
        .await
        .query_one(
            "INSERT INTO event_outbox (event_id, event_type, channel, message_id, payload, \
                                       attempts, next_attempt_at, error_class, last_error, \
                                       dead_at, processed_at) \
             VALUES ($1, 'discord.message_created', $2, $3, $4::text::jsonb, $5, \
                     CASE WHEN $6 THEN now() + interval '1 hour' END, $7::text, \
                     CASE WHEN $7::text IS NOT NULL THEN 'it failed: ' || $7::text END, \
                     CASE WHEN $8 THEN now() END, CASE WHEN $9 THEN now() END) \
             RETURNING id",
            &[
                &envelope.event_id,
                &channel,
                &message_id,
                &envelope.to_json(),
                &attempts,
                &later,
                &class,
                &dead,
                &processed,
            ],
        )
        .await
        .expect("outbox row")
        .get(0);
    (id, message_id)
}

/// A rejected notification of `channel` kept in dead_letters; its id.
async fn dead_letter(t: &TestSchema, channel: &str, payload: &str) -> i64 {
    t.client()
        .await
        .query_one(
            "INSERT INTO dead_letters (channel, sender_pid, payload, error) \
             VALUES ($1, 4242, $2, 'rejected by hand') RETURNING id",
            &[&channel, &payload],
        )
        .await
        .expect("dead letter")
        .get(0)
}

/// Every outbox row as `id state attempts next dead class error processed`, to compare
/// before and after.
async fn outbox_rows(t: &TestSchema) -> Vec<String> {
    t.client()
        .await
        .query(
            "SELECT concat_ws(' ', id, channel, attempts, next_attempt_at IS NOT NULL, \
                    dead_at IS NOT NULL, error_class, last_error, processed_at IS NOT NULL) \
             FROM event_outbox ORDER BY id",
            &[],
        )
        .await
        .expect("outbox rows")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn letter_ids(t: &TestSchema) -> Vec<i64> {
    t.client()
        .await
        .query("SELECT id FROM dead_letters ORDER BY id", &[])
        .await
        .expect("dead letters")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `notifyscope ARGS` on the test's schema and channel, stdin not a terminal.
async fn run(t: &TestSchema, args: &[&str]) -> Output {
    let mut cmd = notifyscope();
    cmd.args(args)
        .args(["--schema", &t.name, "--channel", &t.name])
        .args(["--database-url", &server_url()]);
    cmd.finish_within(WAIT).await
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

/// The reasons of the rows left alone, by id.
fn reasons(v: &Value) -> Vec<(i64, String)> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            let reason = match r["reason"].as_str().expect("reason") {
                "state" => r["state"].as_str().expect("state").to_owned(),
                other => other.to_owned(),
            };
            (r["id"].as_i64().expect("id"), reason)
        })
        .collect()
}

async fn migrated(test: &str) -> TestSchema {
    let t = TestSchema::new(test);
    t.database().migrate().await.expect("migrated");
    t
}

fn other_channel(t: &TestSchema) -> String {
    format!("{}_other", t.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_has_the_running_pipeline_ingest_given_up_and_retrying_rows_at_once() {
    let t = TestSchema::new("oc_retry");
    let mut pipeline = run_pipeline(&t).await;
    let (given_up, _) = row(&t, &t.name, Row::GivenUp).await;
    let (retrying, _) = row(&t, &t.name, Row::Retrying).await;
    let (ingested, _) = row(&t, &t.name, Row::Ingested).await;
    let (elsewhere, _) = row(&t, &other_channel(&t), Row::GivenUp).await;
    let missing = elsewhere + 1000;
    let before_elsewhere = outbox_rows(&t).await;

    let out = run(
        &t,
        &[
            "outbox",
            "retry",
            "--id",
            &given_up.to_string(),
            &retrying.to_string(),
            &ingested.to_string(),
            &elsewhere.to_string(),
            &missing.to_string(),
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "some named ids were not stuck");
    let report = json(&out);
    assert_eq!(report["applied"], true);
    assert_eq!(report["requeued_count"], 2);
    assert_eq!(ids(&report["requeued"]), vec![given_up, retrying]);
    assert_eq!(report["requeued"][0]["was"], "dead");
    assert_eq!(report["requeued"][0]["attempts"], 5);
    assert_eq!(report["requeued"][1]["was"], "retrying");
    assert_eq!(
        reasons(&report["not_handled"]),
        vec![
            (ingested, "ingested".to_owned()),
            (elsewhere, "other_channel".to_owned()),
            (missing, "not_found".to_owned()),
        ]
    );
    assert_eq!(report["woke_ingestion"], true);

    // The retrying row was due in an hour and the given-up one never: both are ingested
    // now, after one wake-up that names the newest of them.
    let mut done = HashSet::new();
    let mut woken = false;
    pipeline
        .until("both rows ingested after the wake-up", |v| {
            if stage(v) == "notified" && v["outbox_id"] == retrying && v["by_ref"] == true {
                woken = true;
            }
            if stage(v) == "ingested" {
                done.insert(v["outbox_id"].as_i64().unwrap_or_default());
            }
            woken && done.contains(&given_up) && done.contains(&retrying)
        })
        .await;
    let kept = t
        .client()
        .await
        .query_one(
            "SELECT last_error FROM event_outbox WHERE id = $1",
            &[&given_up],
        )
        .await
        .expect("row");
    assert_eq!(
        kept.get::<_, Option<String>>(0).as_deref(),
        Some("it failed: constraint"),
        "the last error stays for history"
    );
    let after = outbox_rows(&t).await;
    for id in [ingested, elsewhere] {
        let line = |rows: &[String]| {
            rows.iter()
                .find(|r| r.starts_with(&format!("{id} ")))
                .cloned()
        };
        assert_eq!(line(&after), line(&before_elsewhere), "row {id} untouched");
    }
    pipeline
        .signal_and_wait(nix::sys::signal::Signal::SIGTERM)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_all_stuck_resets_only_the_stuck_rows_of_the_channel() {
    let t = migrated("oc_retry_all").await;
    let (waiting, _) = row(&t, &t.name, Row::Waiting).await;
    let (retrying, _) = row(&t, &t.name, Row::Retrying).await;
    let (given_up, _) = row(&t, &t.name, Row::GivenUp).await;
    let (ingested, _) = row(&t, &t.name, Row::Ingested).await;
    let (elsewhere, _) = row(&t, &other_channel(&t), Row::GivenUp).await;
    let before = outbox_rows(&t).await;

    let out = run(&t, &["outbox", "retry", "--all-stuck", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("requeued 2 outbox rows") && text.contains("woke ingestion"),
        "{text}"
    );
    let after = outbox_rows(&t).await;
    let line = |rows: &[String], id: i64| {
        rows.iter()
            .find(|r| r.starts_with(&format!("{id} ")))
            .cloned()
            .expect("row kept")
    };
    for id in [retrying, given_up] {
        let class = if id == retrying {
            "permission"
        } else {
            "constraint"
        };
        assert_eq!(
            line(&after, id),
            format!("{id} {} 0 f f it failed: {class} f", t.name),
            "attempts 0, due now, not given up, no class; the last error kept"
        );
    }
    for id in [waiting, ingested, elsewhere] {
        assert_eq!(line(&after, id), line(&before, id), "row {id} untouched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_given_up_rows_and_undelivered_ones_only_when_forced_by_id() {
    let t = migrated("oc_purge").await;
    let (dead_1, _) = row(&t, &t.name, Row::GivenUp).await;
    let (dead_2, _) = row(&t, &t.name, Row::GivenUp).await;
    let (waiting, _) = row(&t, &t.name, Row::Waiting).await;
    let (retrying, _) = row(&t, &t.name, Row::Retrying).await;
    let (ingested, _) = row(&t, &t.name, Row::Ingested).await;
    let (elsewhere, _) = row(&t, &other_channel(&t), Row::GivenUp).await;
    t.client()
        .await
        .batch_execute(
            "INSERT INTO discord_messages (message_id, channel_id, author_id, author_name, \
                                           content, created_at, event_id) \
             VALUES (1, 2, 3, 'ada', 'kept', now(), gen_random_uuid())",
        )
        .await
        .expect("a message");
    let remaining = || async { ids_of(&t, "SELECT id FROM event_outbox ORDER BY id").await };

    let out = run(&t, &["outbox", "purge", "--all-dead", "--yes", "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!(report["purged_count"], 2);
    assert_eq!(ids(&report["purged"]), vec![dead_1, dead_2]);
    assert_eq!(
        remaining().await,
        vec![waiting, retrying, ingested, elsewhere]
    );

    let undelivered = [waiting.to_string(), retrying.to_string()];
    let mut named = vec!["outbox", "purge", "--id"];
    named.extend(undelivered.iter().map(String::as_str));
    named.push("--yes");
    let out = run(&t, &named).await;
    assert_eq!(out.status.code(), Some(1), "named rows left alone");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("waiting: a message not delivered yet")
            && text.contains("retrying: a message not delivered yet")
            && text.contains("--force"),
        "{text}"
    );
    assert_eq!(
        remaining().await,
        vec![waiting, retrying, ingested, elsewhere]
    );

    named.push("--force");
    let out = run(&t, &named).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOT DELIVERED: its message is lost"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(remaining().await, vec![ingested, elsewhere]);
    assert_eq!(
        t.count("SELECT count(*) FROM discord_messages").await,
        1,
        "discord_messages is never touched"
    );
}

async fn ids_of(t: &TestSchema, sql: &str) -> Vec<i64> {
    t.client()
        .await
        .query(sql, &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changes_without_a_terminal_unless_yes_is_given() {
    let t = migrated("oc_refuse").await;
    row(&t, &t.name, Row::GivenUp).await;
    row(&t, &t.name, Row::Retrying).await;
    let letter = dead_letter(&t, &t.name, "{\"v\":1}").await;
    let before = (outbox_rows(&t).await, letter_ids(&t).await);
    for args in [
        &["outbox", "retry", "--all-stuck"][..],
        &["outbox", "purge", "--all-dead"],
        &["dead-letters", "retry", "--all"],
        &["dead-letters", "delete", "--all", "--json"],
    ] {
        let out = run(&t, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("stdin is not a terminal") && stderr.contains("--yes"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing reported as done");
        assert_eq!(
            (outbox_rows(&t).await, letter_ids(&t).await),
            before,
            "{args:?} changed nothing"
        );
    }
    assert_eq!(letter_ids(&t).await, vec![letter]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_shows_both_kinds_apart() {
    let t = migrated("oc_list").await;
    let long = format!("{{\"v\":1,\"pad\":\"{}\"}}", "x".repeat(3000));
    let letter = dead_letter(&t, &t.name, &long).await;
    dead_letter(&t, &other_channel(&t), "{}").await;
    let (given_up, message_id) = row(&t, &t.name, Row::GivenUp).await;
    row(&t, &t.name, Row::Waiting).await;
    row(&t, &t.name, Row::Retrying).await;

    let out = run(&t, &["dead-letters", "list", "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let listing = json(&out);
    let letters = &listing["rejected_notifications"];
    assert_eq!(letters["total"], 1);
    assert_eq!(ids(&letters["rows"]), vec![letter]);
    let shown = &letters["rows"][0];
    assert_eq!(shown["sender_pid"], 4242);
    assert_eq!(shown["error"], "rejected by hand");
    assert_eq!(shown["payload_bytes"], long.len());
    let payload = shown["payload"].as_str().expect("payload");
    assert!(
        payload.chars().count() <= 1024 && payload.ends_with('…'),
        "shortened: {} columns",
        payload.chars().count()
    );
    assert!(shown["received_at"].is_string());
    let outbox = &listing["outbox_given_up"];
    assert_eq!(outbox["total"], 1);
    assert_eq!(ids(&outbox["rows"]), vec![given_up]);
    assert_eq!(outbox["rows"][0]["message_id"], message_id.to_string());
    assert_eq!(outbox["rows"][0]["state"], "dead");

    let out = run(&t, &["dead-letters", "list"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rejected notifications (dead_letters, by --id)")
            && text.contains("outbox rows given up (event_outbox with dead_at, by --outbox-id): 1")
            && text.contains("rejected by hand"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_retry_resends_a_fixed_payload_and_a_broken_one_is_recorded_again() {
    let t = TestSchema::new("oc_resend");
    let mut pipeline = run_pipeline(&t).await;
    let broken = r#"{"v":1,"event_type":"discord.message_created","note":"still broken"}"#;
    let fixed_envelope = Envelope::new(synthetic::message("fixed by hand").to_record());
    let fixed_message = fixed_envelope.message.message_id.to_string();
    let still_broken = dead_letter(&t, &t.name, broken).await;
    let fixed = dead_letter(&t, &t.name, &fixed_envelope.to_json()).await;
    let (given_up, _) = row(&t, &t.name, Row::GivenUp).await;

    let out = run(&t, &["dead-letters", "retry", "--all", "--yes", "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let letters = &report["rejected_notifications"];
    assert_eq!(letters["count"], 2);
    assert_eq!(ids(&letters["rows"]), vec![still_broken, fixed]);
    assert_eq!(letters["rows"][0]["passes_contract"], false);
    assert!(letters["rows"][0]["contract_error"].is_string());
    assert_eq!(letters["rows"][1]["passes_contract"], true);
    assert_eq!(report["outbox_given_up"]["count"], 1);
    assert_eq!(ids(&report["outbox_given_up"]["requeued"]), vec![given_up]);

    // The listener judges both again: the fixed one passes, the broken one is rejected.
    let (mut heard_fixed, mut rejected, mut ingested) = (false, false, false);
    pipeline
        .until("both judged and the given-up row ingested", |v| {
            heard_fixed |= stage(v) == "notified" && v["message_id"] == fixed_message.as_str();
            rejected |= stage(v) == "notify_rejected" && v["payload"] == broken;
            ingested |= stage(v) == "ingested" && v["outbox_id"] == given_up;
            heard_fixed && rejected && ingested
        })
        .await;
    // The broken one is recorded again, as a new row; the old rows are gone.
    let recorded = tokio::time::timeout(WAIT, async {
        loop {
            let rows = t
                .client()
                .await
                .query("SELECT id, payload FROM dead_letters ORDER BY id", &[])
                .await
                .expect("dead letters");
            if !rows.is_empty() {
                return rows
                    .iter()
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                    .collect::<Vec<_>>();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the rejected payload recorded again");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].1, broken);
    assert!(recorded[0].0 > fixed, "a new row: {recorded:?}");
    pipeline
        .signal_and_wait(nix::sys::signal::Signal::SIGTERM)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_delete_takes_letters_and_given_up_rows_by_id_and_nothing_else() {
    let t = migrated("oc_delete").await;
    let letter = dead_letter(&t, &t.name, "not json").await;
    let kept_letter = dead_letter(&t, &t.name, "not json either").await;
    let elsewhere_letter = dead_letter(&t, &other_channel(&t), "{}").await;
    let (given_up, _) = row(&t, &t.name, Row::GivenUp).await;
    let (waiting, _) = row(&t, &t.name, Row::Waiting).await;
    let missing = elsewhere_letter + 1000;

    let out = run(
        &t,
        &[
            "dead-letters",
            "delete",
            "--id",
            &letter.to_string(),
            &elsewhere_letter.to_string(),
            &missing.to_string(),
            "--outbox-id",
            &given_up.to_string(),
            &waiting.to_string(),
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "some named ids were left alone");
    let report = json(&out);
    let letters = &report["rejected_notifications"];
    assert_eq!(ids(&letters["rows"]), vec![letter]);
    assert_eq!(
        reasons(&letters["not_handled"]),
        vec![
            (elsewhere_letter, "other_channel".to_owned()),
            (missing, "not_found".to_owned())
        ]
    );
    let outbox = &report["outbox_given_up"];
    assert_eq!(outbox["count"], 1);
    assert_eq!(ids(&outbox["purged"]), vec![given_up]);
    assert_eq!(
        reasons(&outbox["not_handled"]),
        vec![(waiting, "waiting".to_owned())]
    );
    assert_eq!(letter_ids(&t).await, vec![kept_letter, elsewhere_letter]);
    assert_eq!(
        ids_of(&t, "SELECT id FROM event_outbox ORDER BY id").await,
        vec![waiting]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_a_change_could_not_run() {
    let out = notifyscope()
        .args(["outbox", "retry", "--all-stuck", "--yes", "--json"])
        .args(["--database-url", "host=127.0.0.1 port=1 user=postgres"])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outbox retry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A session of the test holding an ACCESS EXCLUSIVE lock on the schema's
/// discord_messages, by `sql` (run to its end in a task); its pid and that task.
async fn lock_holder(
    t: &TestSchema,
    sql: &'static str,
) -> (
    i32,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    std::sync::Arc<tokio_postgres::Client>,
) {
    let holder = std::sync::Arc::new(t.client().await);
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let running = holder.clone();
    let task = tokio::spawn(async move { running.batch_execute(sql).await });
    let table = format!("\"{}\".discord_messages", t.name);
    let checker = t.client().await;
    tokio::time::timeout(WAIT, async {
        loop {
            let held: bool = checker
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 \
                       AND relation = $2::text::regclass AND mode = 'AccessExclusiveLock' \
                       AND granted)",
                    &[&pid, &table],
                )
                .await
                .expect("pg_locks")
                .get(0);
            if held {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lock is held");
    (pid, task, holder)
}

/// Waits until the lock on the schema's discord_messages is granted to a session of its own.
async fn lock_is_free(t: &TestSchema) {
    let waiter = t.client().await;
    tokio::time::timeout(
        WAIT,
        waiter.batch_execute(
            "BEGIN; SET LOCAL lock_timeout = '50s'; \
             LOCK TABLE discord_messages IN ACCESS EXCLUSIVE MODE; ROLLBACK",
        ),
    )
    .await
    .expect("the lock is released in time")
    .expect("the lock is granted");
}

/// A session on another database of the same server.
async fn session_elsewhere() -> (tokio_postgres::Client, i32) {
    let mut config: tokio_postgres::Config = server_url().parse().expect("URL");
    let other = if config.get_dbname() == Some("postgres") {
        "template1"
    } else {
        "postgres"
    };
    config.dbname(other);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("another database reachable");
    tokio::spawn(connection);
    let pid = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    (client, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_terminate_end_a_lock_holder_of_this_database_only() {
    let t = migrated("oc_backend").await;
    let ours = t.client().await;

    // A statement that holds the lock while it runs: cancelled, it fails, its implicit
    // transaction ends and the lock with it; the session stays.
    let (pid, statement, holder) = lock_holder(
        &t,
        "LOCK TABLE discord_messages IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)",
    )
    .await;
    assert_eq!(
        cancel_backend(&ours, pid).await.expect("asked"),
        SignalOutcome::Sent
    );
    let cancelled = tokio::time::timeout(WAIT, statement)
        .await
        .expect("the statement ends")
        .expect("task");
    let e = cancelled.expect_err("the statement was cancelled");
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    lock_is_free(&t).await;
    holder
        .query_one("SELECT 1", &[])
        .await
        .expect("a cancelled session stays");

    // A transaction left open with the lock: ended, its lock is gone.
    let (pid, _, holder) = lock_holder(
        &t,
        "BEGIN; LOCK TABLE discord_messages IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    assert_eq!(
        terminate_backend(&ours, pid).await.expect("asked"),
        SignalOutcome::Sent
    );
    lock_is_free(&t).await;
    assert!(
        holder.query_one("SELECT 1", &[]).await.is_err(),
        "the session is gone"
    );

    // A session of another database is refused, and lives on.
    let (elsewhere, other_pid) = session_elsewhere().await;
    for outcome in [
        cancel_backend(&ours, other_pid).await.expect("asked"),
        terminate_backend(&ours, other_pid).await.expect("asked"),
    ] {
        assert!(
            matches!(outcome, SignalOutcome::OtherDatabase { database: Some(_) }),
            "{outcome:?}"
        );
        assert!(!outcome.worked());
    }
    elsewhere
        .query_one("SELECT 1", &[])
        .await
        .expect("the other database's session lives on");
    let own: i32 = ours
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert_eq!(
        terminate_backend(&ours, own).await.expect("asked"),
        SignalOutcome::OwnSession
    );
    assert_eq!(
        cancel_backend(&ours, i32::MAX).await.expect("asked"),
        SignalOutcome::NoSuchBackend
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_terminate_through_the_binary_asks_first_and_refuses_other_databases() {
    let t = migrated("oc_backend_cli").await;
    let (pid, _, holder) = lock_holder(
        &t,
        "BEGIN; LOCK TABLE discord_messages IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let terminate = |pid: i32, yes: bool| {
        let mut cmd = notifyscope();
        cmd.args(["backend", "terminate", &pid.to_string(), "--json"])
            .args(["--database-url", &server_url()]);
        if yes {
            cmd.arg("--yes");
        }
        cmd.finish()
    };
    let out = terminate(pid, false).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    holder
        .query_one("SELECT 1", &[])
        .await
        .expect("not terminated without --yes");

    let out = terminate(pid, true).await;
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!(report["outcome"], "sent");
    assert_eq!(report["signal"], "terminate");
    // Its last statement (`SELECT 1` above) by its first word only.
    assert_eq!(report["session"]["statement"], "SELECT …");
    lock_is_free(&t).await;

    let (elsewhere, other_pid) = session_elsewhere().await;
    let out = terminate(other_pid, true).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["outcome"], "other_database");
    elsewhere
        .query_one("SELECT 1", &[])
        .await
        .expect("the other database's session lives on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_question_decides() {
    let t = migrated("oc_tty").await;
    let (given_up, _) = row(&t, &t.name, Row::GivenUp).await;
    let command = format!(
        "{} outbox purge --all-dead --schema {s} --channel {s} --database-url '{}'; \
         echo exit=$?; sleep 600",
        common::binary(),
        server_url(),
        s = t.name
    );
    let remaining = || async { ids_of(&t, "SELECT id FROM event_outbox ORDER BY id").await };

    let tmux = common::tmux::Tmux::start(&command, 200, 40);
    tmux.wait("the question", |s| {
        s.iter().any(|l| l.contains("Delete them? [y/N]"))
    });
    let screen = tmux.screen().join("\n");
    assert!(
        screen.contains(&format!("delete 1 outbox row of channel {}", t.name)),
        "{screen}"
    );
    tmux.keys("n");
    tmux.keys("Enter");
    tmux.wait("declined", |s| s.iter().any(|l| l.contains("exit=2")));
    assert_eq!(
        remaining().await,
        vec![given_up],
        "declined: nothing changed"
    );
    drop(tmux);

    let tmux = common::tmux::Tmux::start(&command, 200, 40);
    tmux.wait("the question", |s| {
        s.iter().any(|l| l.contains("Delete them? [y/N]"))
    });
    tmux.keys("y");
    tmux.keys("Enter");
    tmux.wait("done", |s| s.iter().any(|l| l.contains("exit=0")));
    assert!(remaining().await.is_empty(), "confirmed: deleted");
}
