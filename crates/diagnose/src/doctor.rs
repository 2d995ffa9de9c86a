//! `doctor`'s examination: one look at a pipeline's database, judged. The connection and the
//! server's version, the schema, a round-trip probe on a migrated schema (publish → NOTIFY →
//! ingested, naming the stage where it stopped), and the checks the snapshot decides, by the
//! live diagnosis's own rules (listener, NOTIFY queue, lock waits, backlog, stray channels);
//! the server settings that would close an idle LISTEN connection; then the configuration, and the instances of notifyscope connected. The queries are the
//! store's ([`Examiner`]); printing and the exit code are the command's.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::doctor_checks::{self, check, unjudged, Probe};
use notifyscope_model::check::{Check, CheckId};
use notifyscope_model::contract::{self, NotifyPayload, Snowflake};
use notifyscope_model::present::counted;
use notifyscope_model::sim::DOCTOR_PROBE_AUTHOR;
use notifyscope_model::trace::{Status, Trace, TraceKind};
use notifyscope_model::trace::{TraceEvent, WriteStage};
use notifyscope_pipeline::listening::ListeningConnection;
use notifyscope_pipeline::{publish, synthetic};
use notifyscope_store::errors::table_named;
use notifyscope_store::examine::{
    Examiner, Instance, LockHolder, ProbeRow, LOOK_LOCK_TIMEOUT, LOOK_STATEMENT_TIMEOUT,
};
use notifyscope_store::snapshot::{LockScope, LockWait, Snapshot};
use notifyscope_store::{error_chain, Database, ErrorClass, Identifier, StoreError, APP_NAME};

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

/// The pipeline's tables a write takes a lock on.
const WRITTEN: [&str; 2] = ["event_outbox", "discord_messages"];

/// Examines the pipeline of `channel` on `pipeline` (on its direct URL when it has one,
/// saying what its `--database-url` goes through). Every query has a lock and a statement
/// timeout, and the round trip its own deadline: doctor answers whatever holds a table.
pub async fn examine(
    pipeline: &Database,
    channel: &Identifier,
    options: &DoctorOptions,
) -> DoctorReport {
    let database = pipeline.direct();
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
    if pipeline.has_direct() {
        let pooler = pipeline.transaction_pooler().await;
        checks.push(doctor_checks::beside_direct(
            pipeline.redacted(),
            &pooler,
            role,
        ));
    }
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
    // Before the round trip, whose own listening session must not count as a listener.
    let mut snapshot = examiner
        .snapshot(channel, migrated, &[], &LockScope::pipeline())
        .await;
    // Who holds a lock a write would wait for: one look, for the lock check and the probe.
    let holders = match migrated {
        true => examiner.lock_holders(&WRITTEN).await.unwrap_or_default(),
        false => Vec::new(),
    };
    add_own_waits(&examiner, &holders, &mut snapshot).await;
    // The database's refusals of the pipeline's writes, for the live writes rule.
    let mut refusals = Vec::new();
    let round_trip = match migrated {
        true => {
            let trip = round_trip(
                database,
                &examiner,
                &holders,
                channel,
                options.timeout,
                &mut refusals,
            );
            Some(trip.await)
        }
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
        // Writes, locks, queue, backlog, given-up messages and stray channels: judged exactly
        // as the live diagnosis judges them.
        checks.extend(crate::snapshot_checks(channel, role, snapshot, &refusals));
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
    let settings = examiner.connection_settings().await;
    let client = database.config();
    let client_idle = client
        .get_keepalives()
        .then(|| client.get_keepalives_idle());
    checks.push(doctor_checks::connection_settings(
        &settings,
        client_idle,
        role,
    ));
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

/// A write of the pipeline made now would wait for each holder of a lock on its tables:
/// doctor's own session stands for that write, waiting as long as the lock has been held,
/// so the live lock rule judges it even when no pipeline runs to wait.
async fn add_own_waits(examiner: &Examiner, holders: &[LockHolder], snapshot: &mut Snapshot) {
    if holders.is_empty() {
        return;
    }
    let Ok(pid) = examiner.pid().await else {
        return;
    };
    for holder in holders {
        if snapshot
            .lock_waits
            .iter()
            .any(|w| w.blocker.pid == holder.blocker.pid)
        {
            continue;
        }
        snapshot.lock_waits.push(LockWait {
            pid,
            application_name: format!("{APP_NAME} doctor (a write now)"),
            mode: "RowExclusiveLock".into(),
            relation: holder.relation.clone(),
            waiting_s: holder.blocker.seconds,
            blocker: holder.blocker.clone(),
        });
    }
}

/// `pid N (application, user U, state for S s, statement X) holds MODE on TABLE`.
fn held(holder: &LockHolder) -> String {
    format!(
        "{} holds {} on {}",
        holder.blocker, holder.mode, holder.relation
    )
}

/// Publishes a probe message and follows it: NOTIFY heard, row ingested. Ingestion takes the
/// probe through its insert but never stores it, and deletes its outbox row; when the probe
/// stops on the way, doctor removes it (or leaves it to the ingestion that holds it, which
/// removes it). It is not published while a lock or a missing grant would stop it. The
/// database's refusals met on the way go to `refusals`; `holders` are the locks a write
/// would wait for, as doctor found them just before.
async fn round_trip(
    database: &Database,
    examiner: &Examiner,
    holders: &[LockHolder],
    channel: &Identifier,
    timeout: Duration,
    refusals: &mut Vec<TraceEvent>,
) -> (Check, Option<Probe>) {
    let fail = |summary: String, hint: &str| check(CheckId::RoundTrip, Status::Fail, summary, hint);
    let role = database.role();
    // What a probe would meet, asked first: a probe that cannot get through would only be
    // one more message stuck.
    if let Some(first) = holders.first() {
        let summary = format!(
            "not tried: a write would wait on a lock: {}{}",
            held(first),
            match holders.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            }
        );
        return (fail(summary, CheckId::LockWaits.hint()), None);
    }
    if let Ok(missing) = examiner.missing_grants().await {
        if let Some((table, privilege)) = missing.0.first() {
            let who = role.unwrap_or("the role");
            for (table, privilege) in &missing.0 {
                let part = match table.as_str() {
                    "event_outbox" if *privilege == "INSERT" => WriteStage::Publish,
                    _ => WriteStage::Ingest,
                };
                refusals.push(TraceEvent {
                    at: Utc::now(),
                    message_id: None,
                    kind: TraceKind::DatabaseRefused {
                        part,
                        class: ErrorClass::Permission,
                        error: format!("{who} has no {privilege} privilege on {table}"),
                        retry_in_ms: None,
                    },
                });
            }
            let summary =
                format!("not tried: {who} may not {privilege} on {table}, so the probe would stop");
            let hint = ErrorClass::Permission.fix(role, Some(table));
            return (fail(summary, &hint), None);
        }
    }
    // What fails here is doctor's own connection: the fix of its class, not the running
    // pipeline's.
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
    let limited = database
        .with_setting(
            "lock_timeout",
            &format!("{}ms", LOOK_LOCK_TIMEOUT.as_millis()),
        )
        .with_setting(
            "statement_timeout",
            &format!("{}ms", LOOK_STATEMENT_TIMEOUT.as_millis()),
        );
    let pool = match limited.pool(1) {
        Ok(p) => p,
        Err(e) => return (fail(error_chain(&e), &e.class().fix(role, None)), None),
    };
    let stop = CancellationToken::new();
    let trace = Trace::new();
    let mut published_events = trace.subscribe();
    let (publisher, task) = publish::spawn_publisher(pool, channel.clone(), trace, 1, stop.clone());
    let mut probe = synthetic::message("notifyscope doctor: round-trip probe").to_record();
    probe.author_id = DOCTOR_PROBE_AUTHOR;
    probe.author_name = "notifyscope-doctor".into();
    let id = probe.message_id;
    let started = Instant::now();
    let published_at = Utc::now();
    // The publisher retries a refused write for minutes; doctor waits its own timeout.
    let receipt = tokio::time::timeout(timeout, publisher.publish(probe)).await;
    stop.cancel();
    task.abort();
    while let Some(event) = published_events.try_recv() {
        if matches!(event.kind, TraceKind::DatabaseRefused { .. }) {
            refusals.push((*event).clone());
        }
    }
    let receipt = match receipt {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let summary = format!("publishing the probe failed: {e}");
            return (fail(summary, CheckId::Database.hint()), None);
        }
        Err(_) => {
            let last = refusals.iter().rev().find_map(|e| match &e.kind {
                TraceKind::DatabaseRefused { class, error, .. } => Some((*class, error.clone())),
                _ => None,
            });
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
    let outbox = receipt.outbox_id;
    let mut probe = Probe {
        id,
        outbox_id: outbox,
        published_at,
        heard_at: None,
        ingested_at: None,
    };
    probe.heard_at = wait_notified(&mut heard, id, deadline).await.then(Utc::now);
    let row = wait_ingested(examiner, outbox, deadline).await;
    if let Ok(ProbeRow::Waiting {
        processed: true, ..
    }) = row
    {
        // Ingested by a version that stores every message: not ours to keep.
        if let Err(e) = examiner.remove_stored_probe(id).await {
            tracing::warn!(error = %error_chain(&e), "could not remove the probe message");
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let ingested = matches!(
        row,
        Ok(ProbeRow::Gone
            | ProbeRow::Waiting {
                processed: true,
                ..
            })
    );
    if ingested {
        probe.ingested_at = Some(Utc::now());
        let _ = examiner.remove_probe(outbox).await;
        let summary = format!("probe message {id} ingested in {ms:.0} ms (outbox {outbox})");
        return (
            check(CheckId::RoundTrip, Status::Ok, summary, ""),
            Some(probe),
        );
    }
    // Stopped: why, then the probe removed or left to the ingestion that holds it.
    let holders = examiner.lock_holders(&WRITTEN).await.unwrap_or_default();
    let secs = timeout.as_secs();
    let (stopped, hint) = match (&row, holders.first()) {
        (_, Some(holder)) => (
            format!("stopped at ingestion: it waits on a lock: {}", held(holder)),
            CheckId::LockWaits.hint().to_owned(),
        ),
        (
            Ok(ProbeRow::Waiting {
                last_error: Some(error),
                error_class,
                attempts,
                ..
            }),
            None,
        ) => {
            let class = error_class
                .as_deref()
                .and_then(ErrorClass::from_name)
                .unwrap_or(ErrorClass::Other);
            refusals.push(TraceEvent {
                at: Utc::now(),
                message_id: Some(id),
                kind: TraceKind::DatabaseRefused {
                    part: WriteStage::Ingest,
                    class,
                    error: error.clone(),
                    retry_in_ms: None,
                },
            });
            (
                format!(
                    "stopped at ingestion: the database refused its insert ({}, {}): {error}",
                    class.describe(),
                    counted(usize::try_from(*attempts).unwrap_or(0), "attempt")
                ),
                class.fix(role, table_named(error).or(Some("discord_messages"))),
            )
        }
        (Err(e), None) => (
            format!("its outbox row could not be read: {}", error_chain(e)),
            e.class().fix(role, Some("event_outbox")),
        ),
        _ if probe.heard_at.is_some() => (
            format!(
                "its NOTIFY was heard on {channel}, but it was not ingested: stopped at ingestion"
            ),
            CheckId::Listener.hint().to_owned(),
        ),
        _ => (
            format!("no NOTIFY arrived on {channel}: stopped at NOTIFY"),
            CheckId::Channel.hint().to_owned(),
        ),
    };
    let left = match examiner.remove_probe(outbox).await {
        Ok(true) => "the probe was removed".to_owned(),
        Ok(false) => format!(
            "the probe (outbox {outbox}) is held by an ingestion in progress, which deletes it without storing it when it gets through"
        ),
        Err(e) => format!(
            "the probe (outbox {outbox}) could not be removed ({}); ingestion deletes it without storing it",
            error_chain(&e)
        ),
    };
    let summary =
        format!("probe message {id} published (outbox {outbox}), not ingested within {secs} s; {stopped}; {left}");
    (fail(summary, &hint), Some(probe))
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

/// Where the probe's outbox row is once ingestion took it (gone, or marked by an older
/// version), or at `deadline`; the error of the look-up when it never succeeded.
async fn wait_ingested(
    examiner: &Examiner,
    outbox_id: i64,
    deadline: Instant,
) -> Result<ProbeRow, StoreError> {
    let mut last = None;
    loop {
        let row = examiner.probe_row(outbox_id).await;
        let done = matches!(
            row,
            Ok(ProbeRow::Gone
                | ProbeRow::Waiting {
                    processed: true,
                    ..
                })
        );
        if row.is_ok() || last.is_none() {
            last = Some(row);
        }
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last.unwrap_or(Ok(ProbeRow::Gone))
}
