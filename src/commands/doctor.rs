//! `notifyscope doctor`: a one-shot diagnosis for ssh sessions and CI. One line per check
//! (✓ ! ✗ with the fix), or one JSON document; exit 0 when healthy, 1 when a check fails, 2
//! when it could not run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::{DoctorArgs, SharedArgs};
use crate::commands::wiring::pipeline_database;
use crate::contract::{self, NotifyPayload, Snowflake};
use crate::diagnose::{self, Check, CheckId, LockScope};
use crate::pipeline::bot::Token;
use crate::pipeline::listen::ListeningConnection;
use crate::pipeline::publish;
use crate::pipeline::synthetic;
use crate::present::counted;
use crate::store::errors::table_named;
use crate::store::{error_chain, Database, ErrorClass, Identifier, APP_NAME, LISTENER_APP_NAME};
use crate::trace::{Status, Trace, TraceKind};

#[derive(Serialize)]
struct Report<'a> {
    healthy: bool,
    database: &'a str,
    channel: &'a str,
    checks: &'a [Check],
    instances: &'a [Instance],
}

/// One notifyscope process on the database, as `pg_stat_activity` shows it: its sessions
/// share an instance name (`shards 0..2 of 4` with --shard-range, empty without).
#[derive(Debug, Serialize)]
struct Instance {
    instance: String,
    /// Its LISTEN sessions (one per running pipeline).
    listener_pids: Vec<i32>,
    sessions: i64,
    /// Client addresses (`local` for a Unix socket): the machines it runs on.
    clients: Vec<String>,
    /// Seconds since its oldest session started.
    up_s: f64,
}

/// Every instance of notifyscope connected to the database, other than this doctor.
const INSTANCES: &str = "SELECT \
        trim(substr(application_name, length(split_part(application_name, ' ', 1)) + 1)), \
        coalesce(array_agg(pid ORDER BY pid) FILTER (WHERE split_part(application_name, ' ', 1) = $1 \
                 AND query ILIKE 'listen%'), '{}'), \
        count(*), \
        array_agg(DISTINCT coalesce(host(client_addr), 'local')), \
        coalesce(extract(epoch FROM now() - min(backend_start)), 0)::float8 \
    FROM pg_stat_activity \
    WHERE datname = current_database() AND pid <> pg_backend_pid() \
      AND split_part(application_name, ' ', 1) = ANY($2::text[]) \
    GROUP BY 1 ORDER BY 1";

async fn instances(client: &tokio_postgres::Client) -> Result<Vec<Instance>, String> {
    let ours = vec![APP_NAME, LISTENER_APP_NAME];
    let rows = client
        .query(INSTANCES, &[&LISTENER_APP_NAME, &ours])
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(rows
        .iter()
        .map(|r| Instance {
            instance: r.get(0),
            listener_pids: r.get(1),
            sessions: r.get(2),
            clients: r.get(3),
            up_s: r.get(4),
        })
        .collect())
}

fn uptime(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

fn instance_line(i: &Instance) -> String {
    let name = if i.instance.is_empty() {
        "without a shard range"
    } else {
        &i.instance
    };
    let listener = match i.listener_pids.as_slice() {
        [] => "no listener".to_owned(),
        pids => format!(
            "listener pid {}",
            pids.iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{name}: {listener}, {} from {}, up {}",
        counted(usize::try_from(i.sessions).unwrap_or(0), "session"),
        i.clients.join(", "),
        uptime(i.up_s)
    )
}

fn check(id: CheckId, status: Status, summary: String, hint: &str) -> Check {
    Check {
        id,
        name: id.name().into(),
        status,
        summary,
        evidence: vec![],
        hint: hint.into(),
        since: Utc::now(),
        message_ids: vec![],
        target: None,
    }
}

/// Exit 2 when the doctor could not run at all (bad arguments, no database URL).
pub async fn run(shared: SharedArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    match examine(shared, args).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!(
                "notifyscope: doctor could not run: {}",
                error_chain(e.as_ref())
            );
            Ok(ExitCode::from(2))
        }
    }
}

async fn examine(shared: SharedArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let (channel, database) = pipeline_database(&shared, "doctor", " of the pipeline to check")?;
    let schema = database.schema().clone();
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut checks = Vec::new();

    let client = match database.connect_plain(APP_NAME).await {
        Ok(c) => c,
        Err(e) => {
            let class = e.class();
            // The error names the server once ("cannot connect to host=…"); the fix says
            // what to check, since doctor itself is the one that cannot connect.
            checks.push(check(
                CheckId::Database,
                Status::Fail,
                format!("{}: {}", class.describe(), error_chain(&e)),
                &class.fix(database.role(), None),
            ));
            print(&checks, &[], &database, &channel, args.json);
            return Ok(ExitCode::from(2));
        }
    };
    checks.push(version_check(&client, &database).await);
    let (schema_check, migrated) = schema_check(&client, &schema, database.role()).await;
    checks.push(schema_check);
    let snapshot =
        diagnose::snapshot(&client, &channel, migrated, &[], &LockScope::pipeline()).await;
    // The outbox may be what the role cannot read (or what a lock holds): its error, while
    // the listeners and the queue are judged without it.
    let outbox_unread = snapshot.outbox_error.clone();
    checks.push(listener_check(&snapshot, &channel, migrated));

    if migrated {
        checks.push(round_trip(&database, &client, &channel, timeout).await);
    }

    if let Some(failed) = &snapshot.error {
        checks.push(unjudged(
            CheckId::NotifyQueue,
            "the status query",
            failed,
            snapshot.error_class,
            database.role(),
        ));
    } else {
        // Queue, backlog and stray channels: judged exactly as the live diagnosis judges them.
        checks.extend(diagnose::snapshot_checks(&channel, snapshot));
    }
    if let Some(unread) = outbox_unread {
        checks.push(unjudged(
            CheckId::Backlog,
            "event_outbox",
            &unread.error,
            Some(unread.class),
            database.role(),
        ));
    }

    checks.push(config_check(&channel, &args).await);

    let seen = match instances(&client).await {
        Ok(seen) => seen,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the instances in pg_stat_activity");
            Vec::new()
        }
    };
    print(&checks, &seen, &database, &channel, args.json);
    Ok(exit_code(&checks))
}

/// 1 when a check failed; else 2 when a check could not be judged (a query doctor needed
/// was refused); 0 when all is well.
fn exit_code(checks: &[Check]) -> ExitCode {
    if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::from(1)
    } else if checks.iter().any(|c| c.status == Status::Unknown) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// A check doctor could not judge, with the real error of the query it needed.
fn unjudged(
    id: CheckId,
    what: &str,
    error: &str,
    class: Option<ErrorClass>,
    role: Option<&str>,
) -> Check {
    let class = class.unwrap_or(ErrorClass::Other);
    check(
        id,
        Status::Unknown,
        format!(
            "not judged: reading {what} failed ({}): {error}",
            class.describe()
        ),
        &class.fix(role, table_named(error)),
    )
}

/// The database answers, and with which version.
async fn version_check(client: &tokio_postgres::Client, database: &Database) -> Check {
    match client.query_one("SHOW server_version", &[]).await {
        Ok(row) => check(
            CheckId::Database,
            Status::Ok,
            format!(
                "PostgreSQL {} answers at {}",
                row.get::<_, &str>(0),
                database.redacted()
            ),
            CheckId::Database.hint(),
        ),
        Err(e) => unjudged(
            CheckId::Database,
            "the server version",
            &error_chain(&e),
            Some(ErrorClass::of(&e)),
            database.role(),
        ),
    }
}

/// notifyscope's tables and migrations in `schema`; whether they are there.
async fn schema_check(
    client: &tokio_postgres::Client,
    schema: &Identifier,
    role: Option<&str>,
) -> (Check, bool) {
    let tables = client
        .query_one(
            "SELECT to_regclass('event_outbox') IS NOT NULL AND to_regclass('discord_messages') IS NOT NULL \
                AND to_regclass('notifyscope_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| r.get::<_, bool>(0));
    let migrated = matches!(tables, Ok(true));
    let schema_check = if let Err(e) = &tables {
        check(
            CheckId::Schema,
            Status::Fail,
            format!("cannot look at schema {schema}: {}", error_chain(e)),
            "grant the role USAGE on the schema (and SELECT on its tables)",
        )
    } else if migrated {
        match client
            .query_one("SELECT count(*) FROM notifyscope_schema_history", &[])
            .await
        {
            Ok(row) => check(
                CheckId::Schema,
                Status::Ok,
                format!(
                    "schema {schema}: event_outbox, discord_messages, {} applied",
                    counted(
                        usize::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                        "migration"
                    )
                ),
                "",
            ),
            Err(e) => unjudged(
                CheckId::Schema,
                "notifyscope_schema_history",
                &error_chain(&e),
                Some(ErrorClass::of(&e)),
                role,
            ),
        }
    } else {
        check(
            CheckId::Schema,
            Status::Fail,
            format!("schema {schema} has no notifyscope tables"),
            "start `notifyscope run` with the same --database-url and --schema; it migrates at start",
        )
    };
    (schema_check, migrated)
}

/// A backend whose last query is LISTEN on the channel.
fn listener_check(
    snapshot: &diagnose::Snapshot,
    channel: &Identifier,
    round_trip_follows: bool,
) -> Check {
    let describe = |b: &diagnose::Backend| {
        format!(
            "pid {} ({})",
            b.pid,
            if b.application_name.is_empty() {
                "no application_name"
            } else {
                &b.application_name
            }
        )
    };
    let listening: Vec<String> = snapshot.listeners.iter().map(describe).collect();
    let elsewhere: Vec<String> = snapshot
        .other_listeners
        .iter()
        .map(|b| format!("{} on {:?}", describe(b), b.query))
        .collect();
    if let Some(error) = &snapshot.error {
        return unjudged(
            CheckId::Listener,
            "pg_stat_activity",
            error,
            snapshot.error_class,
            None,
        );
    }
    if listening.is_empty() {
        check(
            CheckId::Listener,
            Status::Fail,
            format!(
                "no listener: no backend shows LISTEN {channel} as its last query{} \
                 (a listener that ran other queries since is invisible here{})",
                if elsewhere.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; notifyscope listeners elsewhere: {}",
                        elsewhere.join(", ")
                    )
                },
                if round_trip_follows {
                    "; the round trip below decides"
                } else {
                    ""
                }
            ),
            CheckId::Listener.hint(),
        )
    } else {
        check(
            CheckId::Listener,
            Status::Ok,
            format!("{} listening: {}", listening.len(), listening.join(", ")),
            CheckId::Listener.hint(),
        )
    }
}

/// Publishes a probe message and follows it: NOTIFY heard, row ingested.
async fn round_trip(
    database: &Database,
    client: &tokio_postgres::Client,
    channel: &Identifier,
    timeout: Duration,
) -> Check {
    let fail = |summary: String, hint: &str| check(CheckId::RoundTrip, Status::Fail, summary, hint);
    // What fails here is doctor's own connection: the fix of its class, not the running
    // pipeline's.
    let role = database.role();
    let mut heard = match ListeningConnection::open(database, APP_NAME).await {
        Ok(c) => c,
        Err(e) => {
            return fail(
                format!("cannot open a listening connection: {}", error_chain(&e)),
                &e.class().fix(role, None),
            )
        }
    };
    if let Err(e) = heard.listen(channel).await {
        return fail(
            format!("LISTEN {channel} failed: {}", error_chain(&e)),
            &ErrorClass::of(&e).fix(role, None),
        );
    }
    let stop = CancellationToken::new();
    let pool = match database.pool(1) {
        Ok(p) => p,
        Err(e) => return fail(error_chain(&e), &e.class().fix(role, None)),
    };
    let trace = Trace::new();
    let mut refusals = trace.subscribe();
    let (publisher, task) = publish::spawn_publisher(pool, channel.clone(), trace, 1, stop.clone());
    let probe = synthetic::message("notifyscope doctor: round-trip probe").to_record();
    let id = probe.message_id;
    let started = Instant::now();
    // The publisher retries a refused write for minutes; doctor waits its own timeout.
    let receipt = tokio::time::timeout(timeout, publisher.publish(probe)).await;
    stop.cancel();
    task.abort();
    let receipt = match receipt {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return fail(
                format!("publishing the probe failed: {e}"),
                CheckId::Database.hint(),
            )
        }
        Err(_) => {
            let mut last = None;
            while let Some(event) = refusals.try_recv() {
                if let TraceKind::DatabaseRefused { class, error, .. } = &event.kind {
                    last = Some((*class, error.clone()));
                }
            }
            return match last {
                Some((class, error)) => fail(
                    format!(
                        "the database refused the probe's outbox write ({}): {error}",
                        class.describe()
                    ),
                    &class.fix(
                        database.role(),
                        table_named(&error).or(Some("event_outbox")),
                    ),
                ),
                None => fail(
                    format!(
                        "publishing the probe did not finish within {} s",
                        timeout.as_secs()
                    ),
                    CheckId::Database.hint(),
                ),
            };
        }
    };
    let deadline = started + timeout;
    let notified = wait_notified(&mut heard, id, deadline).await;
    let ingested = match wait_ingested(client, id, deadline).await {
        Ok(ingested) => ingested,
        Err(error) => {
            return fail(
                format!(
                    "probe message {id} published, but discord_messages cannot be read: {error}"
                ),
                "grant the role SELECT on discord_messages",
            )
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match (notified, ingested) {
        (_, true) => check(
            CheckId::RoundTrip,
            Status::Ok,
            format!(
                "probe message {id} ingested in {ms:.0} ms (outbox {})",
                receipt.outbox_id
            ),
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
                    "probe message {id} published (outbox {}) {what} within {} s: stopped at {stage}",
                    receipt.outbox_id,
                    timeout.as_secs()
                ),
                hint,
            )
        }
    }
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
    client: &tokio_postgres::Client,
    id: Snowflake,
    deadline: Instant,
) -> Result<bool, String> {
    let mut lookup_error = None;
    while Instant::now() < deadline {
        match client
            .query_opt(
                "SELECT 1 FROM discord_messages WHERE message_id = $1",
                &[&id.as_i64()],
            )
            .await
        {
            Ok(Some(_)) => return Ok(true),
            Ok(None) => {}
            Err(e) => lookup_error = Some(error_chain(&e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lookup_error.map_or(Ok(false), Err)
}

async fn config_check(channel: &Identifier, args: &DoctorArgs) -> Check {
    let token = std::env::var(&args.discord_token_env)
        .ok()
        .and_then(Token::new);
    let case_note = if channel.as_str() != channel.as_str().to_lowercase() {
        format!(
            "; channel {channel:?} has capitals: a plain `LISTEN {channel}` elsewhere listens on {:?}",
            channel.as_str().to_lowercase()
        )
    } else {
        String::new()
    };
    let Some(token) = token else {
        return check(
            CheckId::Config,
            Status::Ok,
            format!("channel {channel} is a valid identifier; no token in ${} (simulated source only){case_note}", args.discord_token_env),
            "",
        );
    };
    match crate::pipeline::bot::check_token(&token, args.discord_api_url.as_deref()).await {
        Ok(user) => check(
            CheckId::Config,
            Status::Ok,
            format!("channel {channel} is a valid identifier; Discord accepts the token (bot {user}){case_note}"),
            "",
        ),
        Err(crate::pipeline::bot::BotError::Unreachable { api, error }) => check(
            CheckId::Config,
            Status::Warn,
            format!("the Discord API at {api} is unreachable, token not checked: {error}"),
            "check the network or --discord-api-url",
        ),
        Err(e) => check(CheckId::Config, Status::Fail, e.to_string(), "set the bot token from the Developer Portal's Bot page"),
    }
}

fn print(
    checks: &[Check],
    instances: &[Instance],
    database: &Database,
    channel: &Identifier,
    json: bool,
) {
    if json {
        let report = Report {
            // Healthy exactly when the exit code is 0: nothing failed, nothing unjudged.
            healthy: !checks
                .iter()
                .any(|c| matches!(c.status, Status::Fail | Status::Unknown)),
            database: database.redacted(),
            channel: channel.as_str(),
            checks,
            instances,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return;
    }
    for c in checks {
        if c.status == Status::Ok || c.hint.is_empty() {
            println!("{} {}: {}", c.status.symbol(), c.name, c.summary);
        } else {
            println!(
                "{} {}: {} — {}",
                c.status.symbol(),
                c.name,
                c.summary,
                c.hint
            );
        }
    }
    if !instances.is_empty() {
        // One line like the checks', so that every line of the report reads the same way.
        let listed: Vec<String> = instances.iter().map(instance_line).collect();
        println!(
            "{} instances of notifyscope on this database: {}",
            Status::Ok.symbol(),
            listed.join("; ")
        );
    }
}
