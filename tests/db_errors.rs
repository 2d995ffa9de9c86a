//! Database errors named for what they are, each fault induced for real: a revoked grant and
//! a locked table while messages flow are named by the "writes" check (never blamed on the
//! payloads), retried on their schedule, and lose nothing once they end; doctor prints the
//! error of a query it could not run; a stop says what it could not drain.

mod common;

use std::time::{Duration, Instant};

use common::diagnosis::{failing, Rig};
use common::faults::{all_arrived_once, keep_sending, turned};
use common::process::{notifyscope, pipeline_command_on, stage, Finish, Running};
use common::{is_inserted, server_url, Seen, TestSchema, WAIT};
use nix::sys::signal::Signal;
use notifyscope::pipeline::synthetic;
use notifyscope::pipeline::Undrained;
use notifyscope::store::Database;
use notifyscope::trace::{Status, TraceKind};
use tokio_util::sync::CancellationToken;

/// A login role that owns the test's schema, dropped with everything it owns at the end.
struct TestRole {
    name: String,
}

impl TestRole {
    async fn create(t: &TestSchema) -> TestRole {
        let name = format!("r{}", &t.name[1..]);
        t.client()
            .await
            .batch_execute(&format!(
                "CREATE ROLE \"{name}\" LOGIN; CREATE SCHEMA \"{}\" AUTHORIZATION \"{name}\"",
                t.name
            ))
            .await
            .expect("role and schema created");
        TestRole { name }
    }

    /// The test's schema, reached as this role.
    fn database(&self, t: &TestSchema) -> Database {
        Database::new(&self.url(), t.schema()).expect("URL parses")
    }

    /// The test server's URL with this role as the user.
    fn url(&self) -> String {
        let url = server_url();
        if url.contains("://") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}user={}", self.name)
        } else {
            format!("{url} user={}", self.name)
        }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        common::clean_up(format!(
            "DROP OWNED BY \"{name}\" CASCADE; DROP ROLE IF EXISTS \"{name}\"",
            name = self.name
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_insert_grant_is_named_and_every_message_arrives_once_it_is_back() {
    let t = TestSchema::new("e_grant");
    let role = TestRole::create(&t).await;
    let mut rig = Rig::start_with(role.database(&t), t.channel(), |c| c.control = false).await;
    let mut seen = Seen::new(rig.trace.subscribe());
    rig.until("writes", |s| s == Status::Ok).await;
    let stop = CancellationToken::new();
    let sender = keep_sending(rig.pipeline().publisher().clone(), stop.clone());
    seen.until_count("messages flowing", 5, is_inserted).await;

    let admin = t.client().await;
    admin
        .batch_execute(&format!(
            "REVOKE INSERT ON discord_messages FROM \"{}\"",
            role.name
        ))
        .await
        .expect("revoked");
    let revoked = Instant::now();
    let writes = rig.until("writes", failing).await;
    assert!(
        revoked.elapsed() < Duration::from_secs(10),
        "named within seconds"
    );
    assert!(
        writes
            .summary
            .contains("ingestion may not write discord_messages"),
        "{writes:?}"
    );
    assert!(writes.summary.contains("permission denied"), "{writes:?}");
    assert!(
        writes.hint.contains("GRANT") && writes.hint.contains(&role.name),
        "the fix names the grant and the role: {}",
        writes.hint
    );

    // The fault lasts ten seconds while messages keep coming.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(revoked.elapsed())).await;
    admin
        .batch_execute(&format!(
            "GRANT INSERT ON discord_messages TO \"{}\"",
            role.name
        ))
        .await
        .expect("granted again");
    stop.cancel();
    let ids = sender.await.expect("sender");
    assert!(ids.len() > 100, "messages were sent during the fault");
    all_arrived_once(&t, &mut seen, &ids).await;

    seen.drain();
    assert_eq!(
        seen.count(|e| turned(e, "malformed", Status::Fail)),
        0,
        "the payloads were never blamed"
    );
    let retried = seen.count(|e| {
        matches!(
            &e.kind,
            TraceKind::IngestFailed {
                class: Some(notifyscope::store::ErrorClass::Permission),
                permanent: false,
                ..
            }
        )
    });
    assert!(retried > 0, "the refused rows were retried, not given up");
    rig.until("writes", |s| s != Status::Fail).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_locked_past_lock_timeout_is_named_and_drains_when_released() {
    let t = TestSchema::new("e_lock");
    let mut rig = Rig::start_with(t.database(), t.channel(), |c| {
        c.control = false;
        c.lock_timeout = Duration::from_secs(1);
    })
    .await;
    let mut seen = Seen::new(rig.trace.subscribe());
    rig.until("writes", |s| s == Status::Ok).await;
    let stop = CancellationToken::new();
    let sender = keep_sending(rig.pipeline().publisher().clone(), stop.clone());
    seen.until_count("messages flowing", 5, is_inserted).await;

    // What a plain CREATE INDEX takes: inserts wait, reads go on.
    let locker = t.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE discord_messages IN SHARE MODE")
        .await
        .expect("locked");
    let locked = Instant::now();
    let writes = rig.until("writes", failing).await;
    assert!(
        writes
            .summary
            .contains("ingestion waited on a lock on discord_messages"),
        "{writes:?}"
    );
    assert!(writes.hint.contains("pg_blocking_pids"), "{}", writes.hint);
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(locked.elapsed())).await;
    locker.batch_execute("COMMIT").await.expect("released");
    stop.cancel();
    let ids = sender.await.expect("sender");
    all_arrived_once(&t, &mut seen, &ids).await;

    seen.drain();
    for innocent in ["database", "malformed"] {
        assert_eq!(
            seen.count(|e| turned(e, innocent, Status::Fail)),
            0,
            "{innocent} was never blamed for the lock"
        );
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_says_what_it_could_not_drain() {
    let common::PipelineRig { t, pipeline, .. } =
        common::PipelineRig::start_on(TestSchema::new("e_drain"), |c| {
            c.control = false;
            c.lock_timeout = Duration::from_millis(500);
        })
        .await;
    let locker = t.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE discord_messages IN SHARE MODE")
        .await
        .expect("locked");
    for i in 0..3 {
        pipeline
            .publisher()
            .publish(synthetic::message(format!("stuck {i}")).to_record())
            .await
            .expect("published to the outbox");
    }
    let report = pipeline.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.undrained, Undrained::Rows(3));
    assert!(
        report.lines()[0].starts_with("3 event(s) not ingested before the drain timeout"),
        "{:?}",
        report.lines()
    );
    assert!(report.crashed.is_empty());
    locker.batch_execute("COMMIT").await.expect("released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_prints_the_error_of_a_query_it_may_not_run() {
    let t = TestSchema::new("e_doctor");
    let role = TestRole::create(&t).await;
    role.database(&t).migrate().await.expect("migrated");
    t.client()
        .await
        .batch_execute(&format!(
            "REVOKE SELECT ON event_outbox FROM \"{}\"",
            role.name
        ))
        .await
        .expect("revoked");
    let out = notifyscope()
        .args(["doctor", "--timeout", "2", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &role.url()])
        .finish_within(WAIT)
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "outbox drained: not judged: reading event_outbox failed (permission denied)"
        ) && stdout.contains("permission denied for table event_outbox"),
        "the real error of the query: {stdout}"
    );
    assert!(!stdout.contains("not queried yet"), "{stdout}");
    assert_ne!(out.status.code(), Some(0), "{stdout}");
}

/// With INSERT on discord_messages revoked, doctor names the grant as the screen does, not
/// a missing listener, and publishes no probe that could only get stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_revoked_grant_and_leaves_no_probe() {
    let t = TestSchema::new("e_grant");
    let role = TestRole::create(&t).await;
    role.database(&t).migrate().await.expect("migrated");
    t.client()
        .await
        .batch_execute(&format!(
            "REVOKE INSERT ON \"{}\".discord_messages FROM \"{}\"",
            t.name, role.name
        ))
        .await
        .expect("revoked");
    // The pipeline runs, as in the field: its listener is up while its inserts are refused.
    let mut run = Running::start(pipeline_command_on(&t, &role.url()));
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let out = notifyscope()
        .args(["doctor", "--timeout", "3", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &role.url()])
        .finish_within(WAIT)
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let writes = stdout
        .lines()
        .find(|l| l.contains("the database accepts our writes"))
        .unwrap_or_else(|| panic!("a writes check: {stdout}"));
    assert!(
        writes.starts_with('✗') && writes.contains("INSERT") && writes.contains("discord_messages"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GRANT SELECT, INSERT, UPDATE ON discord_messages"),
        "{stdout}"
    );
    assert!(!stdout.contains("start the LISTEN subscriber"), "{stdout}");
    let rows = t
        .count(&format!("SELECT count(*) FROM \"{}\".event_outbox", t.name))
        .await;
    assert_eq!(rows, 0, "no probe left behind: {stdout}");
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_log_filter_is_an_error_naming_it() {
    // With a database, so that only the filter can make it exit 2.
    let out = notifyscope()
        .args([
            "doctor",
            "--log",
            "notifyscope=loud",
            "--database-url",
            &server_url(),
        ])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--log") && stderr.contains("notifyscope=loud"),
        "{stderr}"
    );

    let out = notifyscope()
        .env("RUST_LOG", "notifyscope=loud")
        .args(["doctor", "--database-url", &server_url()])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RUST_LOG") && stderr.contains("notifyscope=loud"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_list_shows_each_rows_schedule() {
    let t = TestSchema::new("e_outbox_list");
    t.database().migrate().await.expect("migrated");
    t.client()
        .await
        .execute(
            "INSERT INTO event_outbox (event_id, event_type, channel, message_id, payload, \
                                       attempts, next_attempt_at, error_class, last_error, dead_at) \
             VALUES (gen_random_uuid(), 'discord.message_created', $1, 101, '{}', 0, NULL, NULL, NULL, NULL), \
                    (gen_random_uuid(), 'discord.message_created', $1, 102, '{}', 3, \
                     now() + interval '1 hour', 'permission', 'permission denied for table discord_messages', NULL), \
                    (gen_random_uuid(), 'discord.message_created', $1, 103, '{}', 5, NULL, \
                     'constraint', 'violates check constraint', now())",
            &[&t.name],
        )
        .await
        .expect("rows");
    let list = |json: bool| {
        let mut cmd = notifyscope();
        cmd.args(["outbox", "list", "--schema", &t.name, "--channel", &t.name])
            .args(["--database-url", &server_url()]);
        if json {
            cmd.arg("--json");
        }
        cmd.finish()
    };
    let out = list(true).await;
    assert_eq!(out.status.code(), Some(0));
    let listing: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON document");
    let rows = listing["rows"].as_array().expect("rows");
    let state = |i: usize| rows[i]["state"].as_str().unwrap_or_default();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (state(0), state(1), state(2)),
        ("waiting", "retrying", "dead")
    );
    assert_eq!(rows[1]["message_id"], "102");
    assert_eq!(rows[1]["attempts"], 3);
    assert_eq!(rows[1]["error_class"], "permission");
    assert!(rows[1]["next_attempt_at"].is_string());
    assert!(rows[2]["dead_at"].is_string());

    let out = list(false).await;
    let table = String::from_utf8_lossy(&out.stdout);
    let retrying = table
        .lines()
        .find(|l| l.contains("102"))
        .expect("the retrying row");
    assert!(
        retrying.contains("retrying")
            && (retrying.contains("in 3600 s") || retrying.contains("in 3599 s")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("103") && l.contains("never")),
        "{table}"
    );
}
