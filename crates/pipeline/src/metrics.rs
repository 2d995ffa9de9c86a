//! Prometheus metrics (`--metrics ADDR`): a consumer of the trace stream and of the
//! diagnosis reports, like the screen and the recording. It counts what the trace says,
//! times the stages of each message, keeps gauges of the latest report, and serves them as
//! text on `GET /metrics`. It writes nothing but its answers on that socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{self, Request, Response};
use notifyscope_model::check::Report;
use notifyscope_model::trace::latency::{Stage, StageClock};
use notifyscope_model::trace::{Status, TraceEvent, TraceKind, TraceReceiver};

/// Every trace event, by its stage name.
pub const EVENTS: &str = "notifyscope_events_total";
/// Skipped messages, by reason.
pub const SKIPPED: &str = "notifyscope_skipped_total";
/// Error events, by kind (the stage name) and database error class where there is one.
pub const ERRORS: &str = "notifyscope_errors_total";
/// Ingestion results, by outcome (`inserted`, `duplicate`).
pub const INGESTED: &str = "notifyscope_ingested_total";
/// Seconds a message spent in a stage: `publish` (bot path → outbox commit), `notify`
/// (outbox commit → NOTIFY received), `ingest` (outbox commit → row commit), `total` (bot
/// path → row commit), and in `watch`, `row` (NOTIFY → row seen).
pub const STAGE_SECONDS: &str = "notifyscope_stage_latency_seconds";
/// Unprocessed outbox rows of the channel.
pub const BACKLOG: &str = "notifyscope_outbox_backlog";
/// Messages of the channel given up: outbox rows no longer tried and dead letters.
pub const GIVEN_UP: &str = "notifyscope_given_up";
/// `pg_notification_queue_usage()`, 0 to 1.
pub const QUEUE_USAGE: &str = "notifyscope_notify_queue_usage";
/// 1 while the LISTEN connection is up.
pub const LISTENER_UP: &str = "notifyscope_listener_up";
/// 1 while the database answers the pipeline.
pub const DATABASE_UP: &str = "notifyscope_database_up";
/// 1 while a gateway shard is connected, by shard.
pub const GATEWAY_UP: &str = "notifyscope_gateway_up";
/// One gauge per health check: 0 ok, 1 warn, 2 fail, -1 unknown.
pub const CHECK_STATUS: &str = "notifyscope_check_status";
/// Connections of the pipeline that went silent past their deadline and were dropped, by
/// role (`publisher`, `ingestion`, `listener`, …).
pub const SILENT: &str = "notifyscope_connections_silent_total";
/// Trace events this consumer fell behind on and missed.
pub const MISSED: &str = "notifyscope_trace_missed_total";

/// Histogram buckets of the stage latencies, in seconds: a healthy pipeline answers in
/// milliseconds, a retried row in minutes.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    300.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics {addr}: cannot listen there: {error}")]
    Bind { addr: SocketAddr, error: String },
    #[error("--metrics: a metrics recorder is installed already: {0}")]
    Recorder(String),
}

/// The metrics endpoint, bound before anything starts so that a taken port is an error at
/// once, not after the database came up.
pub struct Exporter {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl Exporter {
    /// Binds `addr` and installs the process's metrics recorder.
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| MetricsError::Bind {
                addr,
                error: e.to_string(),
            })?;
        let handle = builder()
            .install_recorder()
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
        Ok(Exporter { listener, handle })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `/metrics` and records `events` and `reports` until `stop`.
    pub fn spawn(
        self,
        events: TraceReceiver,
        reports: watch::Receiver<Arc<Report>>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        if let Some(addr) = self.local_addr() {
            tracing::info!("metrics at http://{addr}/metrics");
        }
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let scraped = self.handle.clone();
            let serve = http::serve(
                self.listener,
                Arc::new(move |request| answer(request, &scraped)),
                // A scrape has no body; a request with one is answered by the handler (405),
                // unless it is large.
                64 * 1024,
                stop.clone(),
            );
            let record = record_stream(events, reports, stop.clone());
            let upkeep = async {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            };
            tokio::select! {
                () = serve => {}
                () = record => {}
                () = upkeep => {}
                () = stop.cancelled() => {}
            }
        })
    }
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(STAGE_SECONDS.into()), &BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// `GET /metrics` gets the text format.
fn answer(request: Request, handle: &PrometheusHandle) -> Response {
    if !matches!(request.method, Method::GET | Method::HEAD) {
        return Response::text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.path.as_str() {
        "/metrics" => Response::new(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        "/" => Response::text(StatusCode::OK, "notifyscope: metrics at /metrics\n"),
        _ => Response::text(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        ),
    }
}

async fn record_stream(
    mut events: TraceReceiver,
    mut reports: watch::Receiver<Arc<Report>>,
    stop: CancellationToken,
) {
    let mut clock = StageClock::default();
    let mut reports_open = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => record(&event, &mut clock),
                None => return,
            },
            changed = reports.changed(), if reports_open => {
                if changed.is_err() {
                    reports_open = false;
                    continue;
                }
                let report = reports.borrow_and_update().clone();
                record_report(&report);
            }
        }
    }
}

fn stage_latency(stage: Stage, seconds: f64) {
    metrics::histogram!(STAGE_SECONDS, "stage" => stage.as_str()).record(seconds);
}

/// Counts one trace event and times the stages it ends.
pub fn record(event: &TraceEvent, clock: &mut StageClock) {
    let kind = &event.kind;
    metrics::counter!(EVENTS, "stage" => kind.name()).increment(1);
    if kind.is_error() {
        let class = match kind {
            TraceKind::IngestFailed { class, .. } => class.map(|c| c.as_str()).unwrap_or(""),
            TraceKind::DatabaseRefused { class, .. } => class.as_str(),
            _ => "",
        };
        metrics::counter!(ERRORS, "kind" => kind.name(), "class" => class).increment(1);
    }
    for (stage, seconds) in clock.observe(event) {
        stage_latency(stage, seconds);
    }
    match kind {
        TraceKind::Skipped { reason, .. } => {
            // A foreign bot's free text would make a series per sentence: one label for all.
            let label = reason.rule_name().unwrap_or("theirs");
            metrics::counter!(SKIPPED, "reason" => label).increment(1);
        }
        TraceKind::Ingested { outcome, .. } => {
            metrics::counter!(INGESTED, "outcome" => outcome.as_str()).increment(1);
        }
        TraceKind::DatabaseUp { .. } => metrics::gauge!(DATABASE_UP).set(1.0),
        TraceKind::DatabaseDown { .. } => metrics::gauge!(DATABASE_UP).set(0.0),
        TraceKind::ListenerUp { .. } => metrics::gauge!(LISTENER_UP).set(1.0),
        TraceKind::ListenerDown { .. } => metrics::gauge!(LISTENER_UP).set(0.0),
        TraceKind::GatewayReady { shard, .. } | TraceKind::GatewayResumed { shard } => {
            metrics::gauge!(GATEWAY_UP, "shard" => shard.to_string()).set(1.0);
        }
        TraceKind::GatewayDown {
            shard: Some(shard), ..
        } => {
            metrics::gauge!(GATEWAY_UP, "shard" => shard.to_string()).set(0.0);
        }
        TraceKind::ConnectionSilent { role, .. } => {
            metrics::counter!(SILENT, "role" => role.clone()).increment(1);
        }
        TraceKind::Lagged { missed } => metrics::counter!(MISSED).increment(*missed),
        _ => {}
    }
}

/// The gauges of one diagnosis report.
pub fn record_report(report: &Report) {
    if let Some(backlog) = report.backlog {
        metrics::gauge!(BACKLOG).set(backlog as f64);
    }
    if let Some(given_up) = report.given_up {
        metrics::gauge!(GIVEN_UP).set(given_up as f64);
    }
    if let Some(usage) = report.queue_usage {
        metrics::gauge!(QUEUE_USAGE).set(usage);
    }
    for check in &report.checks {
        let value = match check.status {
            Status::Ok => 0.0,
            Status::Warn => 1.0,
            Status::Fail => 2.0,
            Status::Unknown => -1.0,
        };
        metrics::gauge!(CHECK_STATUS, "check" => check.id.as_str()).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta, Utc};
    use notifyscope_model::check::CheckId;
    use notifyscope_model::contract::Snowflake;
    use notifyscope_model::trace::{IngestOutcome, SkipReason};

    #[test]
    fn the_endpoint_answers_scrapes_only() {
        let handle = builder().build_recorder().handle();
        let ask = |method: Method, path: &str, body: &'static [u8]| {
            answer(
                Request {
                    method,
                    path: path.into(),
                    headers: Default::default(),
                    body: body.into(),
                },
                &handle,
            )
            .status
        };
        assert_eq!(ask(Method::GET, "/metrics", b""), StatusCode::OK);
        assert_eq!(ask(Method::HEAD, "/metrics", b""), StatusCode::OK);
        assert_eq!(ask(Method::GET, "/nothing", b""), StatusCode::NOT_FOUND);
        assert_eq!(
            ask(Method::POST, "/metrics", b"x=1"),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    fn event(at: DateTime<Utc>, id: u64, kind: TraceKind) -> TraceEvent {
        TraceEvent {
            at,
            message_id: Some(Snowflake(id)),
            kind,
        }
    }

    /// The exposition text after `f` records into a recorder of its own.
    fn rendered(f: impl FnOnce()) -> String {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    fn line<'a>(text: &'a str, starts: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(starts))
    }

    #[test]
    fn stages_are_counted_and_timed_per_message() {
        let t0 = Utc::now();
        let ms = |n| t0 + TimeDelta::milliseconds(n);
        let text = rendered(|| {
            let mut clock = StageClock::default();
            let received = TraceKind::Received {
                channel_id: Snowflake(2),
                guild_id: None,
                author_id: Snowflake(3),
                author_name: "ada".into(),
                content_bytes: 5,
                source: notifyscope_model::trace::Source::Simulated,
            };
            record(&event(ms(0), 1, received.clone()), &mut clock);
            record(
                &event(
                    ms(3),
                    1,
                    TraceKind::Published {
                        source: notifyscope_model::trace::Source::Simulated,
                        event_id: uuid::Uuid::nil(),
                        outbox_id: 1,
                        channel: "events".into(),
                        bytes: 100,
                        by_ref: false,
                    },
                ),
                &mut clock,
            );
            record(
                &event(
                    ms(20),
                    1,
                    TraceKind::Ingested {
                        outbox_id: 1,
                        outcome: IngestOutcome::Inserted,
                        latency_ms: 17.0,
                    },
                ),
                &mut clock,
            );
            record(&event(ms(30), 2, received), &mut clock);
            record(
                &event(
                    ms(31),
                    2,
                    TraceKind::Skipped {
                        source: notifyscope_model::trace::Source::Simulated,
                        reason: SkipReason::OwnMessage,
                        author_name: "bot".into(),
                        channel_id: Snowflake(2),
                    },
                ),
                &mut clock,
            );
        });
        assert_eq!(
            line(&text, "notifyscope_events_total{stage=\"received\"}"),
            Some("notifyscope_events_total{stage=\"received\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("notifyscope_skipped_total{reason=\"own_message\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("notifyscope_ingested_total{outcome=\"inserted\"} 1"),
            "{text}"
        );
        // 3 ms to publish, 20 ms in all: in the 5 ms and 25 ms buckets, not below.
        for (bucket, count) in [
            ("stage=\"publish\",le=\"0.0025\"", 0),
            ("stage=\"publish\",le=\"0.005\"", 1),
            ("stage=\"total\",le=\"0.01\"", 0),
            ("stage=\"total\",le=\"0.025\"", 1),
        ] {
            let want = format!("notifyscope_stage_latency_seconds_bucket{{{bucket}}} {count}");
            assert!(text.contains(&want), "missing {want} in {text}");
        }
    }

    #[test]
    fn errors_carry_their_kind_and_class() {
        let text = rendered(|| {
            let mut clock = StageClock::default();
            record(
                &event(
                    Utc::now(),
                    1,
                    TraceKind::IngestFailed {
                        outbox_id: 1,
                        error: "permission denied".into(),
                        attempts: 1,
                        permanent: false,
                        class: Some(notifyscope_store::ErrorClass::Permission),
                        next_attempt_at: None,
                    },
                ),
                &mut clock,
            );
        });
        assert!(
            text.contains(
                "notifyscope_errors_total{kind=\"ingest_failed\",class=\"permission\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn silent_connections_are_counted_by_role() {
        let silent = |role: &str| TraceEvent {
            at: Utc::now(),
            message_id: None,
            kind: TraceKind::ConnectionSilent {
                role: role.into(),
                target: "host=db port=5432".into(),
                silent_ms: 12_000.0,
                during: "commit".into(),
                replaced: true,
            },
        };
        let text = rendered(|| {
            let mut clock = StageClock::default();
            record(&silent("publisher"), &mut clock);
            record(&silent("publisher"), &mut clock);
            record(&silent("listener"), &mut clock);
        });
        for want in [
            "notifyscope_connections_silent_total{role=\"publisher\"} 2",
            "notifyscope_connections_silent_total{role=\"listener\"} 1",
            "notifyscope_errors_total{kind=\"connection_silent\",class=\"\"} 3",
        ] {
            assert!(text.contains(want), "missing {want} in {text}");
        }
    }

    #[test]
    fn each_check_is_a_gauge_of_its_status() {
        let check = |id: CheckId, status| notifyscope_model::check::Check {
            id,
            name: id.name().into(),
            status,
            summary: String::new(),
            evidence: vec![],
            hint: String::new(),
            since: Utc::now(),
            message_ids: vec![],
            target: None,
        };
        let text = rendered(|| {
            record_report(&Report {
                checks: vec![
                    check(CheckId::Listener, Status::Fail),
                    check(CheckId::Backlog, Status::Warn),
                    check(CheckId::NotifyQueue, Status::Ok),
                    check(CheckId::ContentIntent, Status::Unknown),
                ],
                backlog: Some(12),
                given_up: Some(2),
                queue_usage: Some(0.25),
            });
        });
        for want in [
            "notifyscope_check_status{check=\"listener\"} 2",
            "notifyscope_check_status{check=\"backlog\"} 1",
            "notifyscope_check_status{check=\"notify_queue\"} 0",
            "notifyscope_check_status{check=\"content_intent\"} -1",
            "notifyscope_outbox_backlog 12",
            "notifyscope_given_up 2",
            "notifyscope_notify_queue_usage 0.25",
        ] {
            assert!(text.contains(want), "missing {want} in {text}");
        }
    }
}
