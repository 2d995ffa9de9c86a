//! The pipeline behind a real PgBouncer, as a managed database has one. In session mode,
//! whether PgBouncer refuses the `options` startup parameter or drops it, every message
//! arrives and nothing is written outside `--schema`. A transaction pooler is refused at
//! start, naming it, before anything is written.

mod common;

use std::time::Duration;

use common::pgbouncer::{Bouncer, PoolMode, StartupOptions};
use common::process::{notifyscope_for, pipeline_command_on, stage, Finish, Running};
use common::server_url;
use common::TestSchema;
use nix::sys::signal::Signal;

/// Messages sent by `send message` through `url`, then waits for their rows.
async fn all_arrive_through(t: &TestSchema, url: &str, bouncer: &Bouncer) {
    let mut run = Running::start(pipeline_command_on(t, url));
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let sent = notifyscope_for(t)
        .args(["send", "message", "--count", "50", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", url])
        .finish()
        .await;
    assert!(
        sent.status.success(),
        "{sent:?}\nPgBouncer: {}",
        bouncer.log()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = t
            .count(&format!(
                "SELECT count(*) FROM \"{}\".discord_messages",
                t.name
            ))
            .await;
        if rows == 50 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rows} of 50 messages arrived through PgBouncer; its log: {}\nrun: {}",
            bouncer.log(),
            run.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}

/// Tables of notifyscope anywhere but the test's schema: a connection that lost its
/// search_path would have created or written them in `public` or the user's own schema.
async fn tables_outside(t: &TestSchema) -> i64 {
    t.count(&format!(
        "SELECT count(*) FROM pg_tables WHERE tablename IN \
           ('event_outbox', 'discord_messages', 'dead_letters', 'notifyscope_schema_history') \
         AND schemaname NOT LIKE 't\\_%' AND schemaname <> '{}'",
        t.name
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_that_refuses_options_delivers_every_message() {
    let bouncer = Bouncer::start(PoolMode::Session, StartupOptions::Refused);
    let t = TestSchema::new("p_refused");
    let before = tables_outside(&t).await;
    all_arrive_through(&t, &bouncer.url(), &bouncer).await;
    assert_eq!(tables_outside(&t).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_that_drops_options_delivers_every_message_in_the_schema() {
    let bouncer = Bouncer::start(PoolMode::Session, StartupOptions::Ignored);
    let t = TestSchema::new("p_ignored");
    let before = tables_outside(&t).await;
    all_arrive_through(&t, &bouncer.url(), &bouncer).await;
    assert_eq!(tables_outside(&t).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_through_a_transaction_pooler_is_refused_naming_it() {
    let bouncer = Bouncer::start(PoolMode::Transaction, StartupOptions::Ignored);
    let t = TestSchema::new("p_txn");
    let started = std::time::Instant::now();
    let out = notifyscope_for(&t)
        .args(["run", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &bouncer.url()])
        .finish_within(Duration::from_secs(20))
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "{stderr}");
    assert!(
        stderr.contains("transaction pooler")
            && stderr.contains("--direct-database-url")
            && stderr.contains("session mode"),
        "{stderr}"
    );
    // Nothing was migrated through it.
    let tables = t
        .count(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{}'",
            t.name
        ))
        .await;
    assert_eq!(tables, 0, "{stderr}");
}

/// Publishing and ingestion through PgBouncer in transaction mode, LISTEN and migrations on
/// the direct URL: every published message is ingested, in the test's schema only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_beside_a_direct_url_delivers_every_message() {
    let bouncer = Bouncer::start(PoolMode::Transaction, StartupOptions::Ignored);
    let t = TestSchema::new("p_direct");
    let before = tables_outside(&t).await;
    let mut cmd = pipeline_command_on(&t, &bouncer.url());
    cmd.args(["--direct-database-url", &server_url(), "--demo-rate", "100"])
        .args(["--workers", "4"]);
    let mut run = Running::start(cmd);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let through_before = bouncer.transactions().await;
    let mut published = 0;
    run.until("300 messages published", |v| {
        published += usize::from(stage(v) == "published");
        published >= 300
    })
    .await;
    let (status, stdout, stderr) = run.signal_and_exit(Signal::SIGTERM).await;
    assert!(
        status.success(),
        "{stderr}
PgBouncer: {}",
        bouncer.log()
    );
    let published = stdout
        .lines()
        .filter(|l| l.contains("\"stage\":\"published\""))
        .count()
        .max(published);
    let rows = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages",
            t.name
        ))
        .await;
    let waiting = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".event_outbox WHERE processed_at IS NULL",
            t.name
        ))
        .await;
    assert_eq!(
        rows + waiting,
        published as i64,
        "{published} published, {rows} ingested, {waiting} waiting\n{stderr}"
    );
    assert!(rows >= 300, "{rows} ingested\n{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    // The outbox writes and the ingestion went through the pooler, a transaction or more
    // per batch.
    let through = bouncer.transactions().await - through_before;
    assert!(through >= 20, "{through} transactions through PgBouncer");
    assert_eq!(tables_outside(&t).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_transaction_pooler() {
    let bouncer = Bouncer::start(PoolMode::Transaction, StartupOptions::Ignored);
    let t = TestSchema::new("p_doctor");
    let out = notifyscope_for(&t)
        .args(["doctor", "--timeout", "2", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &bouncer.url()])
        .finish()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("✗ database connection") && stdout.contains("transaction pooler"),
        "{stdout}"
    );
    assert!(stdout.contains("session-mode port"), "{stdout}");
    assert!(stdout.contains("--direct-database-url"), "{stdout}");

    // Beside a direct URL, the pooler on --database-url is named as what it carries.
    let out = notifyscope_for(&t)
        .args(["doctor", "--timeout", "2", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &bouncer.url()])
        .args(["--direct-database-url", &server_url()])
        .finish()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("port={} ", bouncer.port))
            && stdout.contains("is a transaction pooler"),
        "{stdout}"
    );

    // A transaction pooler given as the direct URL is named too.
    let out = notifyscope_for(&t)
        .args(["doctor", "--timeout", "2", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()])
        .args(["--direct-database-url", &bouncer.url()])
        .finish()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("transaction pooler"), "{stdout}");
}

/// Their listener LISTENs through a transaction pooler, as the seed's asyncpg listener did:
/// pg_stat_activity shows a backend whose last query is the LISTEN, and nothing arrives.
/// watch does not call that listener healthy, and names the pooler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_names_a_listener_that_listens_through_a_transaction_pooler() {
    let bouncer = Bouncer::start(PoolMode::Transaction, StartupOptions::Ignored);
    let t = TestSchema::new("p_watch");
    let sql = t.their_table().await;
    let (theirs, connection) = tokio_postgres::connect(&bouncer.url(), tokio_postgres::NoTls)
        .await
        .expect("their listener connects through PgBouncer");
    tokio::spawn(connection);
    theirs
        .batch_execute(&format!("LISTEN \"{}\"", t.name))
        .await
        .expect("their LISTEN");

    let mut cmd = notifyscope_for(&t);
    cmd.args(["watch", "--headless", "--json", "--schema", &t.name])
        .args([
            "--channel",
            &t.name,
            "--database-url",
            &common::server_url(),
        ]);
    let mut watching = Running::start(cmd);
    watching
        .until("database up", |v| stage(v) == "database_up")
        .await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while !watching.stderr().contains("watching channel") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("watch listening");
    for id in 1..=3 {
        sql.execute(
            "SELECT pg_notify($1, $2)",
            &[
                &t.name,
                &format!("{{\"message_id\": {id}, \"content\": \"hi\"}}"),
            ],
        )
        .await
        .expect("notify");
    }
    let report = watching
        .until("the listener failing", |v| {
            stage(v) == "health_report"
                && v["checks"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["check"] == "listener" && c["status"] == "fail")
                })
        })
        .await;
    let listener = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "listener"))
        .expect("listener check");
    let summary = listener["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("last query is LISTEN"), "{listener}");
    assert!(
        listener["hint"]
            .as_str()
            .is_some_and(|h| h.contains("transaction pooler")),
        "{listener}"
    );
    let status = watching.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());
}
