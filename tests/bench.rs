//! `notifyscope bench` and the batched fast path: the bench loses nothing and cleans up after
//! itself, and a lone message is never held back waiting for a batch to fill.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::process::{notifyscope, Finish};
use common::{is_stage, server_url, PipelineRig, TestSchema, WAIT};
use indicatif::ProgressBar;
use notifyscope::bench::{self, BenchOptions};
use notifyscope::pipeline::bot_path::Handled;
use notifyscope::pipeline::publish::NotifyMode;
use notifyscope::pipeline::synthetic;
use notifyscope::trace::TraceKind;
use tokio_util::sync::CancellationToken;

async fn schema_exists(name: &str) -> bool {
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("test database reachable");
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&name],
        )
        .await
        .expect("catalog query")
        .get::<_, i64>(0)
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_loses_nothing_and_drops_its_schema() {
    let report = bench::run(
        &server_url(),
        None,
        BenchOptions::new(1000),
        ProgressBar::hidden(),
        CancellationToken::new(),
    )
    .await
    .expect("bench runs");
    assert_eq!(report.messages, 1000);
    assert_eq!(report.rows, 1000);
    assert_eq!(report.lost, 0);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.publish_failed, 0);
    assert!(report.passed());
    // Every message was seen at every stage of the per-event path.
    for stage in ["publish", "notify", "ingest", "total"] {
        assert_eq!(report.stages[stage].count, 1000, "{stage}");
    }
    assert!(report.p50_ms <= report.p95_ms && report.p95_ms <= report.p99_ms);
    assert!(report.p99_ms <= report.max_ms);
    assert!(report.schema.starts_with("notifyscope_bench_"));
    assert!(!schema_exists(&report.schema).await, "schema left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_bench_with_one_notify_per_batch_loses_nothing() {
    let mut options = BenchOptions::new(300);
    options.rate = Some(300.0);
    options.notify = NotifyMode::PerBatch;
    options.publishers = 8;
    let report = bench::run(
        &server_url(),
        None,
        options,
        ProgressBar::hidden(),
        CancellationToken::new(),
    )
    .await
    .expect("bench runs");
    assert_eq!((report.rows, report.lost, report.duplicates), (300, 0, 0));
    assert_eq!(report.notify, "per-batch");
    assert_eq!(report.rate, Some(300.0));
    // One NOTIFY per committed batch: at most one per message, and ingestion saw them all.
    assert!(report.stages["notify"].count <= 300);
    assert_eq!(report.stages["total"].count, 300);
    assert!(!schema_exists(&report.schema).await, "schema left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_command_prints_one_json_object() {
    let out = notifyscope()
        .args(["bench", "--messages", "500", "--json"])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}: {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
    for key in notifyscope::bench::JSON_KEYS {
        assert!(v[key].is_number(), "{key} in {v}");
    }
    assert_eq!(v["messages"], 500);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["duplicates"], 0);
    let schema = v["schema"].as_str().expect("schema named");
    assert!(!schema_exists(schema).await, "schema left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_reports_every_window_and_judges_drift() {
    let out = notifyscope()
        .args([
            "bench",
            "--duration",
            "4s",
            "--report-every",
            "1s",
            "--rate",
            "150",
        ])
        .args(["--outbox-retention", "0", "--publishers", "16", "--json"])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}: {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["mode"], "soak");
    let windows = v["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 4, "{v:#}");
    // Paced at 150 a second: never ahead of the pace, and not far behind it.
    let sent = paced_windows(&v, 150.0);
    assert!(sent >= 300, "about 150 a second for 4 s, not {sent}");
    for w in windows {
        for key in [
            "per_s",
            "p50_ms",
            "p99_ms",
            "rss_mib",
            "cpu_percent",
            "outbox_mib",
        ] {
            assert!(w[key].is_number(), "{key} in {w}");
        }
        assert!(w["outbox_rows"].as_i64().is_some_and(|n| n > 0), "{w}");
    }
    // Every message sent arrived, once.
    assert_eq!(v["rows"], v["sent"]);
    assert_eq!(
        (v["lost"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        v["drift"]["failures"].as_array().is_some_and(Vec::is_empty),
        "{v:#}"
    );
    assert!(v["drift"]["rss_allowed_mib"].is_number(), "{v:#}");
    let schema = v["schema"].as_str().expect("schema named");
    assert!(!schema_exists(schema).await, "schema left behind");

    // A duration that is not a whole number of windows ends with it, its last window short:
    // 4 s, then 1 s, not a second full window of 4 s.
    let out = notifyscope()
        .args([
            "bench",
            "--duration",
            "5s",
            "--report-every",
            "4s",
            "--rate",
            "50",
        ])
        .args(["--publishers", "4", "--json"])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON object ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let sent = paced_windows(&v, 50.0);
    let ends = window_ends(&v);
    assert_eq!(ends.len(), 2, "{v:#}");
    // A window closes when its time has come, never before; a loaded machine only makes it
    // later. The last one's time is the end of the duration, 1 s after the first.
    assert!(ends[0] >= 4.0 - EARLY && ends[1] >= 5.0 - EARLY, "{ends:?}");
    // Short: nearer the 1 s it was given than a full window of 4 s. However late the first
    // window closed, the last one still ends with the duration, so only a last close more
    // than 1.5 s later than the first could fail this, and only a run that ignored its
    // duration could pass it with a last window of 4 s.
    let last = ends[1] - ends[0];
    assert!(
        last < 2.5,
        "the last window lasted {last:.2} s: a full 4 s window, not the 1 s left of the \
         duration ({ends:?})"
    );
    assert!(
        v["sent"].as_u64().is_some_and(|all| all >= sent),
        "the run's count includes the windows' ({sent}): {v:#}"
    );
}

/// Allowance for the float rounding of a window's end.
const EARLY: f64 = 0.001;

/// When each window of a soak report ended, in seconds from the start.
fn window_ends(v: &serde_json::Value) -> Vec<f64> {
    v["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| w["end_s"].as_f64().expect("end_s"))
        .collect()
}

/// Checks what each window of a soak report says against its own span, and returns the
/// messages sent in all windows. Counts, not the machine's speed: by the end of a window no
/// more messages can have been sent than were due at `rate` (one is due at once, one more may
/// have started a moment before the clock the windows are timed by); a window measured its
/// rate over no more than its span (`ingested / per_s`); windows end in order.
fn paced_windows(v: &serde_json::Value, rate: f64) -> u64 {
    let windows = v["windows"].as_array().expect("windows");
    let ends = window_ends(v);
    let mut sent = 0;
    let mut start = 0.0;
    for (w, end) in windows.iter().zip(&ends) {
        assert!(*end > start, "windows end in order: {ends:?}");
        sent += w["sent"].as_u64().expect("sent");
        let due = rate * end + 2.0;
        assert!(
            sent as f64 <= due,
            "{sent} sent by {end:.3} s, more than the {due:.0} due at {rate}/s: {w}"
        );
        let ingested = w["ingested"].as_f64().expect("ingested");
        let per_s = w["per_s"].as_f64().expect("per_s");
        if ingested > 0.0 {
            let measured = ingested / per_s;
            assert!(
                measured <= end - start + EARLY,
                "a window that spans {:.3} s measured its rate over {measured:.3} s: {w}",
                end - start
            );
        }
        start = *end;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_needs_a_rate_and_a_real_duration() {
    for args in [
        vec!["bench", "--duration", "10m"],
        vec!["bench", "--duration", "0", "--rate", "10"],
        vec!["bench", "--duration", "soon", "--rate", "10"],
    ] {
        let out = notifyscope()
            .args(&args)
            .args(["--database-url", &server_url()])
            .finish()
            .await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--rate") || stderr.contains("length of time"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_refuses_a_rate_that_is_not_positive() {
    let mut options = BenchOptions::new(10);
    options.rate = Some(0.0);
    let err = bench::run(
        &server_url(),
        None,
        options,
        ProgressBar::hidden(),
        CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("--rate"), "{err}");
}

/// One message at a time, each sent only after the previous one is in `discord_messages`:
/// a publisher that waited for a batch to fill would never commit, and ingestion that waited
/// for more rows would never insert. The periodic sweep is an hour away, so only the
/// NOTIFY of each lone commit can have woken ingestion.
async fn lone_messages_are_not_held_back(notify: NotifyMode) {
    let t = TestSchema::new(match notify {
        NotifyMode::PerEvent => "lone_event",
        NotifyMode::PerBatch => "lone_batch",
    });
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(t, |config| {
        config.notify = notify;
        config.ingest_sweep = Duration::from_secs(3600);
        config.control = false;
    })
    .await;

    for i in 0..5 {
        let msg = synthetic::message(format!("lone message {i}"));
        let id = msg.message.message_id;
        let handled = tokio::time::timeout(WAIT, pipeline.handle_message(msg))
            .await
            .expect("the publisher commits a batch of one without waiting for more")
            .expect("handled");
        let Handled::Published(receipt) = handled else {
            panic!("not published: {handled:?}");
        };
        let ingested = seen
            .first("the lone message ingested", |e| {
                e.message_id == Some(id) && is_stage(e, "ingested")
            })
            .await;
        let TraceKind::Ingested { outbox_id, .. } = ingested.kind else {
            unreachable!("matched on the stage name");
        };
        assert_eq!(outbox_id, receipt.outbox_id);
        let notified = seen.count(|e| {
            is_stage(e, "notified")
                && matches!(e.kind, TraceKind::Notified { outbox_id: Some(o), .. } if o == receipt.outbox_id)
        });
        assert_eq!(notified, 1, "its own commit's NOTIFY woke ingestion");
    }
    assert_eq!(
        t.count("SELECT count(*) FROM discord_messages").await,
        5,
        "every lone message has its row"
    );
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_message_is_ingested_without_waiting_for_a_batch() {
    lone_messages_are_not_held_back(NotifyMode::PerEvent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_message_is_ingested_without_waiting_for_a_batch_per_batch_notify() {
    lone_messages_are_not_held_back(NotifyMode::PerBatch).await;
}

/// With one NOTIFY per batch, a burst still arrives whole: the wake-up names the batch's last
/// row, and ingestion claims every row up to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_batch_notify_announces_each_batch_once() {
    let PipelineRig {
        t,
        mut seen,
        pipeline,
        ..
    } = PipelineRig::start_on(TestSchema::new("batch_notify"), |config| {
        config.notify = NotifyMode::PerBatch;
        config.ingest_sweep = Duration::from_secs(3600);
        config.control = false;
    })
    .await;

    let publisher = pipeline.publisher().clone();
    let sends: Vec<_> = (0..2000)
        .map(|i| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                publisher
                    .publish(synthetic::message(format!("burst {i}")).to_record())
                    .await
                    .expect("published")
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for send in sends {
        receipts.push(send.await.expect("send task"));
    }
    seen.until_count("2000 ingested", 2000, |e| is_stage(e, "ingested"))
        .await;
    // Receipts of one batch share its commit time; its NOTIFY names its last row.
    let mut batches: HashMap<_, Vec<_>> = HashMap::new();
    for r in &receipts {
        batches.entry(r.committed_at).or_default().push(r);
    }
    for batch in batches.values() {
        let last = batch.iter().map(|r| r.outbox_id).max().expect("not empty");
        let announced: Vec<_> = batch.iter().filter(|r| r.notify_bytes > 0).collect();
        assert_eq!(announced.len(), 1, "one NOTIFY per committed batch");
        assert_eq!(announced[0].outbox_id, last);
        assert!(announced[0].by_ref);
    }
    // A batch's rows may be ingested before its own NOTIFY arrives (woken by an earlier one).
    seen.until_count("every batch's NOTIFY", batches.len(), |e| {
        is_stage(e, "notified")
    })
    .await;
    seen.drain();
    assert_eq!(seen.count(|e| is_stage(e, "notified")), batches.len());
    assert_eq!(t.count("SELECT count(*) FROM discord_messages").await, 2000);
    pipeline.shutdown(Duration::from_secs(5)).await;
}
