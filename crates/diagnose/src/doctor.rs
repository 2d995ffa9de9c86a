//! `doctor`'s examination: one look at a pipeline's database, judged. The connection and the
//! server's version, the schema, a round-trip probe on a migrated schema (publish → NOTIFY →
//! ingested, naming the stage where it stopped), and the checks the snapshot decides, by the
//! live diagnosis's own rules (listener, NOTIFY queue, lock waits, backlog, stray channels);
//! then the configuration, and the instances of notifyscope connected. The queries are the
//! store's ([`Examiner`]); printing and the exit code are the command's.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::doctor_checks::{self, check, unjudged, Probe};
use notifyscope_model::check::{Check, CheckId};
use notifyscope_model::contract::{self, NotifyPayload, Snowflake};
use notifyscope_model::trace::{Status, Trace, TraceKind};
use notifyscope_pipeline::listen::ListeningConnection;
use notifyscope_pipeline::{publish, synthetic};
use notifyscope_store::errors::table_named;
use notifyscope_store::examine::{Examiner, Instance};
use notifyscope_store::snapshot::LockScope;
use notifyscope_store::{error_chain, Database, Identifier, StoreError, APP_NAME};

/// What doctor is told besides where to look.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// How long the round trip may take.
    pub timeout: Duration,
    /// The bot token, when one is set, and the variable it was read from (named in the
    /// report).
    pub token: Option<String>,
    pub token_env: String,
    /// Another Discord API to check the token with.
    pub discord_api_url: Option<String>,
}

/// What doctor found.
#[derive(Debug, Clone)]
pub struct DoctorReport {
    /// In the order they are shown.
    pub checks: Vec<Check>,
    /// notifyscope's processes on the database, other than doctor.
    pub instances: Vec<Instance>,
    /// Doctor could connect at all (when not, it could not run).
    pub connected: bool,
}

impl DoctorReport {
    /// Nothing failed and everything was judged.
    pub fn healthy(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| matches!(c.status, Status::Fail | Status::Unknown))
    }
}

/// Examines the pipeline of `channel` on `database`.
pub async fn examine(
    database: &Database,
    channel: &Identifier,
    options: &DoctorOptions,
) -> DoctorReport {
    let role = database.role();
    let examiner = match Examiner::connect(database).await {
        Ok(examiner) => examiner,
        Err(e) => {
            return DoctorReport {
                checks: vec![doctor_checks::unreachable(&e, role)],
                instances: Vec::new(),
                connected: false,
            }
        }
    };
    let mut checks = Vec::new();
    let version = examiner.server_version().await;
    checks.push(doctor_checks::version(version, database.redacted(), role));
    let tables = examiner.tables().await;
    let migrated = matches!(tables, Ok(t) if t.migrated());
    let applied = match migrated {
        true => Some(examiner.migrations_applied().await),
        false => None,
    };
    checks.push(doctor_checks::schema(
        database.schema(),
        &tables,
        applied,
        role,
    ));
    let snapshot = examiner
        .snapshot(channel, migrated, &[], &LockScope::pipeline())
        .await;
    let round_trip = match migrated {
        true => Some(round_trip(database, &examiner, channel, options.timeout).await),
        false => None,
    };
    let probe = round_trip.as_ref().and_then(|(_, probe)| probe.as_ref());
    checks.push(doctor_checks::listener(&snapshot, channel, migrated, probe));
    checks.extend(round_trip.map(|(check, _)| check));
    // The outbox may be what the role cannot read (or what a lock holds): its error, while
    // the listeners and the queue are judged without it.
    let outbox_unread = snapshot.outbox_error.clone();
    if let Some(failed) = &snapshot.error {
        checks.push(unjudged(
            CheckId::NotifyQueue,
            "the status query",
            failed,
            snapshot.error_class,
            role,
        ));
    } else {
        // Queue, backlog and stray channels: judged exactly as the live diagnosis judges them.
        checks.extend(crate::snapshot_checks(channel, snapshot));
    }
    if let Some(unread) = outbox_unread {
        checks.push(unjudged(
            CheckId::Backlog,
            "event_outbox",
            &unread.error,
            Some(unread.class),
            role,
        ));
    }
    let token = options.token.as_deref();
    let api = options.discord_api_url.as_deref();
    checks.push(doctor_checks::config(channel, token, &options.token_env, api).await);
    let instances = examiner.instances().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not list the instances in pg_stat_activity");
        Vec::new()
    });
    DoctorReport {
        checks,
        instances,
        connected: true,
    }
}

/// Publishes a probe message and follows it: NOTIFY heard, row ingested. The check, and the
/// probe when it was published.
async fn round_trip(
    database: &Database,
    examiner: &Examiner,
    channel: &Identifier,
    timeout: Duration,
) -> (Check, Option<Probe>) {
    let fail = |summary: String, hint: &str| check(CheckId::RoundTrip, Status::Fail, summary, hint);
    // What fails here is doctor's own connection: the fix of its class, not the running
    // pipeline's.
    let role = database.role();
    let mut heard = match ListeningConnection::open(database, APP_NAME).await {
        Ok(c) => c,
        Err(e) => {
            let summary = format!("cannot open a listening connection: {}", error_chain(&e));
            return (fail(summary, &e.class().fix(role, None)), None);
        }
    };
    if let Err(e) = heard.listen(channel).await {
        let e = StoreError::from(e);
        let summary = format!("LISTEN {channel} failed: {}", error_chain(&e));
        return (fail(summary, &e.class().fix(role, None)), None);
    }
    let pool = match database.pool(1) {
        Ok(p) => p,
        Err(e) => return (fail(error_chain(&e), &e.class().fix(role, None)), None),
    };
    let stop = CancellationToken::new();
    let trace = Trace::new();
    let mut refusals = trace.subscribe();
    let (publisher, task) = publish::spawn_publisher(pool, channel.clone(), trace, 1, stop.clone());
    let probe = synthetic::message("notifyscope doctor: round-trip probe").to_record();
    let id = probe.message_id;
    let started = Instant::now();
    let published_at = Utc::now();
    // The publisher retries a refused write for minutes; doctor waits its own timeout.
    let receipt = tokio::time::timeout(timeout, publisher.publish(probe)).await;
    stop.cancel();
    task.abort();
    let receipt = match receipt {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let summary = format!("publishing the probe failed: {e}");
            return (fail(summary, CheckId::Database.hint()), None);
        }
        Err(_) => {
            let mut last = None;
            while let Some(event) = refusals.try_recv() {
                if let TraceKind::DatabaseRefused { class, error, .. } = &event.kind {
                    last = Some((*class, error.clone()));
                }
            }
            let check = match last {
                Some((class, error)) => fail(
                    format!(
                        "the database refused the probe's outbox write ({}): {error}",
                        class.describe()
                    ),
                    &class.fix(role, table_named(&error).or(Some("event_outbox"))),
                ),
                None => fail(
                    format!(
                        "publishing the probe did not finish within {} s",
                        timeout.as_secs()
                    ),
                    CheckId::Database.hint(),
                ),
            };
            return (check, None);
        }
    };
    let deadline = started + timeout;
    let mut probe = Probe {
        id,
        outbox_id: receipt.outbox_id,
        published_at,
        heard_at: None,
        ingested_at: None,
    };
    probe.heard_at = wait_notified(&mut heard, id, deadline).await.then(Utc::now);
    probe.ingested_at = match wait_ingested(examiner, id, deadline).await {
        Ok(ingested) => ingested.then(Utc::now),
        Err(error) => {
            let summary = format!(
                "probe message {id} published, but discord_messages cannot be read: {error}"
            );
            let check = fail(summary, "grant the role SELECT on discord_messages");
            return (check, Some(probe));
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let outbox = receipt.outbox_id;
    let check = match (probe.heard_at.is_some(), probe.ingested_at.is_some()) {
        (_, true) => check(
            CheckId::RoundTrip,
            Status::Ok,
            format!("probe message {id} ingested in {ms:.0} ms (outbox {outbox})"),
            "",
        ),
        (notified, false) => {
            let (what, stage, hint) = if notified {
                (
                    format!("and its NOTIFY heard on {channel}, but not ingested"),
                    "ingestion",
                    CheckId::Listener.hint(),
                )
            } else {
                (
                    format!("but no NOTIFY arrived on {channel}"),
                    "NOTIFY",
                    CheckId::Channel.hint(),
                )
            };
            fail(
                format!(
                    "probe message {id} published (outbox {outbox}) {what} within {} s: stopped at {stage}",
                    timeout.as_secs()
                ),
                hint,
            )
        }
    };
    (check, Some(probe))
}

/// Whether the NOTIFY of message `id` arrives before `deadline`.
async fn wait_notified(heard: &mut ListeningConnection, id: Snowflake, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), heard.notifications.recv()).await {
            Ok(Some(Ok(n))) => {
                let ours = matches!(
                    contract::parse_notify(n.payload()),
                    Ok(p) if p.message_id() == Some(id) && !matches!(p, NotifyPayload::Probe { .. })
                );
                if ours {
                    return true;
                }
            }
            _ => return false,
        }
    }
    false
}

/// Whether message `id` is in `discord_messages` before `deadline`; the error of the look-up
/// when it never succeeded.
async fn wait_ingested(
    examiner: &Examiner,
    id: Snowflake,
    deadline: Instant,
) -> Result<bool, String> {
    let mut lookup_error = None;
    while Instant::now() < deadline {
        match examiner.ingested(&[id]).await {
            Ok(found) if !found.is_empty() => return Ok(true),
            Ok(_) => {}
            Err(e) => lookup_error = Some(error_chain(&e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lookup_error.map_or(Ok(false), Err)
}
