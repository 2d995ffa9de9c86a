//! `--metrics ADDR`: the Prometheus endpoint of `run` and `watch`, scraped over HTTP as
//! Prometheus would.

mod common;

use std::time::Duration;

use common::process::{notifyscope, notifyscope_for, pipeline_command, stage, Finish, Running};
use common::{server_url, TestSchema, WAIT};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` on 127.0.0.1:port: the status line and the body.
async fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics endpoint answers");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of the sample `name{labels}` (exactly as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `ready` holds for the exposition; returns it.
async fn scrape_until(port: u16, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(port, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        if ready(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last scrape:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_watch_serve_stages_latencies_and_checks() {
    let t = TestSchema::new("metrics");
    let port = free_port();
    let mut cmd = pipeline_command(&t);
    cmd.args(["--metrics", &format!("127.0.0.1:{port}")]);
    let mut run = Running::start(cmd);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;

    let watch_port = free_port();
    let mut watch = notifyscope();
    watch
        .args(["watch", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()])
        .args(["--metrics", &format!("127.0.0.1:{watch_port}")]);
    let mut watch = Running::start(watch);
    watch
        .until("watch connected", |v| stage(v) == "database_up")
        .await;

    for kind in ["message", "message", "own"] {
        let out = notifyscope_for(&t)
            .args(["send", "--via-bot", kind, "--schema", &t.name])
            .args(["--channel", &t.name, "--database-url", &server_url()])
            .finish()
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let body = scrape_until(port, "two messages ingested and the checks judged", |b| {
        sample(b, "notifyscope_ingested_total{outcome=\"inserted\"}") == Some(2.0)
            && sample(b, "notifyscope_check_status{check=\"listener\"}") == Some(0.0)
    })
    .await;
    assert_eq!(
        sample(&body, "notifyscope_events_total{stage=\"received\"}"),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "notifyscope_skipped_total{reason=\"own_message\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "notifyscope_stage_latency_seconds_count{stage=\"total\"}"
        ),
        Some(2.0),
        "{body}"
    );
    assert!(
        body.contains("notifyscope_stage_latency_seconds_bucket{stage=\"publish\",le=\"0.005\"}"),
        "latencies are histograms: {body}"
    );
    assert_eq!(
        sample(&body, "notifyscope_listener_up"),
        Some(1.0),
        "{body}"
    );
    assert!(
        sample(&body, "notifyscope_outbox_backlog").is_some(),
        "{body}"
    );
    assert!(
        sample(&body, "notifyscope_notify_queue_usage").is_some(),
        "{body}"
    );

    // watch counts what it saw of the same pipeline, and judges its own checks.
    let watched = scrape_until(watch_port, "watch saw both NOTIFYs", |b| {
        sample(b, "notifyscope_events_total{stage=\"notified\"}") >= Some(2.0)
            && b.contains("notifyscope_check_status{check=\"listener\"}")
    })
    .await;
    assert!(
        sample(&watched, "notifyscope_events_total{stage=\"row_observed\"}") >= Some(2.0),
        "{watched}"
    );

    let (status, _) = get(port, "/nothing").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let status = watch.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_port_in_use_is_refused_before_anything_starts() {
    let t = TestSchema::new("metrics_taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let out = pipeline_command(&t)
        .args(["--metrics", &addr.to_string()])
        .finish()
        .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--metrics {addr}: cannot listen there")),
        "{stderr}"
    );
    assert_eq!(
        t.count(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{}'",
            t.name
        ))
        .await,
        0,
        "nothing was created"
    );
}
