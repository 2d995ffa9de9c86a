//! `notifyscope doctor`: a one-shot diagnosis for ssh sessions and CI. One line per check
//! (✓ ! ✗ with the fix), or one JSON document; exit 0 when healthy, 1 when a check fails, 2
//! when it could not run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::{DoctorArgs, SharedArgs};
use crate::contract::{self, NotifyPayload};
use crate::diagnose::{self, Check, CHECKS};
use crate::pipeline::bot::Token;
use crate::pipeline::listen::ListeningConnection;
use crate::pipeline::publish;
use crate::pipeline::synthetic;
use crate::store::{error_chain, Database, Identifier, APP_NAME};
use crate::trace::Status;
use crate::trace::Trace;

#[derive(Serialize)]
struct Report<'a> {
    healthy: bool,
    database: &'a str,
    channel: &'a str,
    checks: &'a [Check],
}

fn check(id: &str, name: &str, status: Status, summary: String, hint: &str) -> Check {
    Check {
        id: id.into(),
        name: name.into(),
        status,
        summary,
        evidence: vec![],
        hint: hint.into(),
        since: Utc::now(),
        message_ids: vec![],
    }
}

fn hint_of(id: &str) -> &'static str {
    CHECKS
        .iter()
        .find(|(i, ..)| *i == id)
        .map(|(_, _, h)| *h)
        .unwrap_or("")
}

/// Exit 2 when the doctor could not run at all (bad arguments, no database URL).
pub async fn run(shared: SharedArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    match examine(shared, args).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("notifyscope: doctor could not run: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn examine(shared: SharedArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let channel = Identifier::channel(&shared.channel)?;
    let schema = Identifier::schema(&shared.schema)?;
    let url = shared.database_url.clone().ok_or_else(|| {
        anyhow!("doctor needs --database-url (or DATABASE_URL) of the pipeline to check")
    })?;
    let database = Database::new(&url, schema.clone())?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut checks = Vec::new();

    let client = match database.connect_plain(APP_NAME).await {
        Ok(c) => c,
        Err(e) => {
            checks.push(check(
                "database",
                "database connection",
                Status::Fail,
                format!("{}: {}", database.redacted(), error_chain(&e)),
                hint_of("database"),
            ));
            print(&checks, &database, &channel, args.json);
            return Ok(ExitCode::from(2));
        }
    };
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    checks.push(check(
        "database",
        "database connection",
        Status::Ok,
        format!("PostgreSQL {version} answers at {}", database.redacted()),
        hint_of("database"),
    ));

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
            "schema",
            "schema and migrations present",
            Status::Fail,
            format!("cannot look at schema {schema}: {}", error_chain(e)),
            "grant the role USAGE on the schema (and SELECT on its tables)",
        )
    } else if migrated {
        let applied: i64 = client
            .query_one("SELECT count(*) FROM notifyscope_schema_history", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        check(
            "schema",
            "schema and migrations present",
            Status::Ok,
            format!(
                "schema {schema}: event_outbox, discord_messages, {applied} migration(s) applied"
            ),
            "",
        )
    } else {
        check(
            "schema",
            "schema and migrations present",
            Status::Fail,
            format!("schema {schema} has no notifyscope tables"),
            "start `notifyscope run` with the same --database-url and --schema; it migrates at start",
        )
    };
    checks.push(schema_check);

    let snapshot = diagnose::snapshot(&client, &channel, migrated, &[]).await;
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
    checks.push(if listening.is_empty() {
        check(
            "listener",
            "listener running",
            Status::Fail,
            format!(
                "no listener: no backend shows LISTEN {channel} as its last query{} \
                 (a listener that ran other queries since is invisible here; the round trip below decides)",
                if elsewhere.is_empty() {
                    String::new()
                } else {
                    format!("; notifyscope listeners elsewhere: {}", elsewhere.join(", "))
                }
            ),
            hint_of("listener"),
        )
    } else {
        check(
            "listener",
            "listener running",
            Status::Ok,
            format!("{} listening: {}", listening.len(), listening.join(", ")),
            hint_of("listener"),
        )
    });

    if migrated {
        checks.push(round_trip(&database, &client, &channel, timeout).await);
    }

    // Queue, backlog and stray channels: judged exactly as the live diagnosis judges them.
    checks.extend(diagnose::snapshot_checks(&channel, snapshot));

    checks.push(config_check(&channel, &args).await);

    print(&checks, &database, &channel, args.json);
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Publishes a probe message and follows it: NOTIFY heard, row ingested.
async fn round_trip(
    database: &Database,
    client: &tokio_postgres::Client,
    channel: &Identifier,
    timeout: Duration,
) -> Check {
    let name = "round trip: publish → NOTIFY → ingested";
    let fail = |summary: String, hint: &str| check("round_trip", name, Status::Fail, summary, hint);
    let mut heard = match ListeningConnection::open(database, APP_NAME).await {
        Ok(c) => c,
        Err(e) => {
            return fail(
                format!("cannot open a listening connection: {}", error_chain(&e)),
                hint_of("database"),
            )
        }
    };
    if let Err(e) = heard.listen(channel).await {
        return fail(
            format!("LISTEN {channel} failed: {}", error_chain(&e)),
            hint_of("database"),
        );
    }
    let stop = CancellationToken::new();
    let pool = match database.pool(1) {
        Ok(p) => p,
        Err(e) => return fail(error_chain(&e), hint_of("database")),
    };
    let (publisher, task) =
        publish::spawn_publisher(pool, channel.clone(), Trace::new(), 1, stop.clone());
    let probe = synthetic::message("notifyscope doctor: round-trip probe").to_record();
    let id = probe.message_id;
    let started = Instant::now();
    let receipt = publisher.publish(probe).await;
    stop.cancel();
    let _ = task.await;
    let receipt = match receipt {
        Ok(r) => r,
        Err(e) => {
            return fail(
                format!("publishing the probe failed: {e}"),
                hint_of("database"),
            )
        }
    };
    let deadline = started + timeout;
    let mut notified = false;
    while !notified && Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), heard.notifications.recv()).await {
            Ok(Some(Ok(n))) => {
                notified = matches!(contract::parse_notify(n.payload()), Ok(p) if p.message_id() == Some(id) && !matches!(p, NotifyPayload::Probe { .. }));
            }
            _ => break,
        }
    }
    let mut ingested = false;
    let mut lookup_error = None;
    while Instant::now() < deadline {
        match client
            .query_opt(
                "SELECT 1 FROM discord_messages WHERE message_id = $1",
                &[&id.as_i64()],
            )
            .await
        {
            Ok(Some(_)) => {
                ingested = true;
                break;
            }
            Ok(None) => {}
            Err(e) => lookup_error = Some(error_chain(&e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let (false, Some(error)) = (ingested, lookup_error) {
        return fail(
            format!("probe message {id} published, but discord_messages cannot be read: {error}"),
            "grant the role SELECT on discord_messages",
        );
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match (notified, ingested) {
        (_, true) => check(
            "round_trip",
            name,
            Status::Ok,
            format!("probe message {id} ingested in {ms:.0} ms (outbox {})", receipt.outbox_id),
            "",
        ),
        (true, false) => fail(
            format!(
                "probe message {id} published (outbox {}) and its NOTIFY heard on {channel}, but not ingested within {} s: stopped at ingestion",
                receipt.outbox_id,
                timeout.as_secs()
            ),
            hint_of("listener"),
        ),
        (false, false) => fail(
            format!(
                "probe message {id} published (outbox {}) but no NOTIFY arrived on {channel} within {} s: stopped at NOTIFY",
                receipt.outbox_id,
                timeout.as_secs()
            ),
            hint_of("channel"),
        ),
    }
}

async fn config_check(channel: &Identifier, args: &DoctorArgs) -> Check {
    let name = "configuration";
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
            "config",
            name,
            Status::Ok,
            format!("channel {channel} is a valid identifier; no token in ${} (simulated source only){case_note}", args.discord_token_env),
            "",
        );
    };
    match crate::pipeline::bot::check_token(&token, args.discord_api_url.as_deref()).await {
        Ok(user) => check(
            "config",
            name,
            Status::Ok,
            format!("channel {channel} is a valid identifier; Discord accepts the token (bot {user}){case_note}"),
            "",
        ),
        Err(crate::pipeline::bot::BotError::Unreachable { api, error }) => check(
            "config",
            name,
            Status::Warn,
            format!("the Discord API at {api} is unreachable, token not checked: {error}"),
            "check the network or --discord-api-url",
        ),
        Err(e) => check("config", name, Status::Fail, e.to_string(), "set the bot token from the Developer Portal's Bot page"),
    }
}

fn print(checks: &[Check], database: &Database, channel: &Identifier, json: bool) {
    if json {
        let report = Report {
            healthy: !checks.iter().any(|c| c.status == Status::Fail),
            database: database.redacted(),
            channel: channel.as_str(),
            checks,
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
}
