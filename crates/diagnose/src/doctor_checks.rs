//! The judgements of `doctor` that the live diagnosis has no evidence for (the server's
//! version, the schema, the configuration, a query doctor may not run), and its listener
//! check, which the live rule decides from the snapshot and the round trip's probe.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{DiagnoseConfig, Diagnosis};
use notifyscope_model::check::{Check, CheckId};
use notifyscope_model::contract::Snowflake;
use notifyscope_model::present::counted;
use notifyscope_model::trace::{Status, TraceEvent, TraceKind};
use notifyscope_pipeline::bot::{self, BotError, Token};
use notifyscope_store::errors::table_named;
use notifyscope_store::examine::{ConnectionSettings, Tables};
use notifyscope_store::snapshot::{Backend, Snapshot};
use notifyscope_store::{error_chain, ErrorClass, Identifier, StoreError};

pub(crate) fn check(id: CheckId, status: Status, summary: String, hint: &str) -> Check {
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

/// A check doctor could not judge, with the real error of the query it needed.
pub(crate) fn unjudged(
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

/// Doctor itself cannot connect: the error names the server once; the fix says what to
/// check, since doctor is the one that cannot connect.
pub(crate) fn unreachable(e: &StoreError, role: Option<&str>) -> Check {
    if let StoreError::TransactionPooler { target, evidence } = e {
        return check(
            CheckId::Database,
            Status::Fail,
            format!(
                "{target} is reached through a transaction pooler ({evidence}): LISTEN, \
                 migrations and this examination need a session of their own"
            ),
            "give the server itself with --direct-database-url (publishing and ingestion \
             stay on the pooler), or point --database-url at the server or at the pooler's \
             session-mode port",
        );
    }
    let class = e.class();
    check(
        CheckId::Database,
        Status::Fail,
        format!("{}: {}", class.describe(), error_chain(e)),
        &class.fix(role, None),
    )
}

/// What `--database-url` goes through when a direct URL is given beside it: a transaction
/// pooler, which then carries only publishing and ingestion, or sessions that last, which
/// need no direct URL.
pub(crate) fn beside_direct(
    target: &str,
    pooler: &Result<Option<String>, StoreError>,
    role: Option<&str>,
) -> Check {
    match pooler {
        Ok(Some(evidence)) => check(
            CheckId::Database,
            Status::Ok,
            format!(
                "{target} is a transaction pooler ({evidence}): publishing and ingestion go \
                 through it, LISTEN, migrations and this examination through \
                 --direct-database-url"
            ),
            "",
        ),
        Ok(None) => check(
            CheckId::Database,
            Status::Ok,
            format!(
                "{target} keeps its sessions (no transaction pooler): it could take LISTEN \
                 itself, --direct-database-url is not needed"
            ),
            "",
        ),
        Err(e) => {
            let class = e.class();
            check(
                CheckId::Database,
                Status::Fail,
                format!("--database-url: {}: {}", class.describe(), error_chain(e)),
                &class.fix(role, None),
            )
        }
    }
}

/// The database answers, and with which version.
pub(crate) fn version(
    version: Result<String, StoreError>,
    redacted: &str,
    role: Option<&str>,
) -> Check {
    match version {
        Ok(version) => check(
            CheckId::Database,
            Status::Ok,
            format!("PostgreSQL {version} answers at {redacted}"),
            CheckId::Database.hint(),
        ),
        Err(e) => unjudged(
            CheckId::Database,
            "the server version",
            &error_chain(&e),
            Some(e.class()),
            role,
        ),
    }
}

/// notifyscope's tables and migrations in `schema`: `tables` as found, `applied` the count
/// of migrations (asked only when they are there).
pub(crate) fn schema(
    schema: &Identifier,
    tables: &Result<Tables, StoreError>,
    applied: Option<Result<i64, StoreError>>,
    role: Option<&str>,
) -> Check {
    match (tables, applied) {
        (Err(e), _) => check(
            CheckId::Schema,
            Status::Fail,
            format!("cannot look at schema {schema}: {}", error_chain(e)),
            "grant the role USAGE on the schema (and SELECT on its tables)",
        ),
        (Ok(_), Some(Ok(applied))) => check(
            CheckId::Schema,
            Status::Ok,
            format!(
                "schema {schema}: event_outbox, discord_messages, {} applied",
                counted(usize::try_from(applied).unwrap_or(0), "migration")
            ),
            "",
        ),
        (Ok(_), Some(Err(e))) => unjudged(
            CheckId::Schema,
            "notifyscope_schema_history",
            &error_chain(&e),
            Some(e.class()),
            role,
        ),
        (Ok(_), None) => check(
            CheckId::Schema,
            Status::Fail,
            format!("schema {schema} has no notifyscope tables"),
            "start `notifyscope run` with the same --database-url and --schema; it migrates at start",
        ),
    }
}

/// The round trip's message, followed: when it was published, its NOTIFY heard and its row
/// found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    pub id: Snowflake,
    pub outbox_id: i64,
    pub published_at: DateTime<Utc>,
    pub heard_at: Option<DateTime<Utc>>,
    pub ingested_at: Option<DateTime<Utc>>,
}

impl Probe {
    /// What the probe showed, as the trace of a watched pipeline would show it.
    fn events(&self, channel: &Identifier) -> Vec<TraceEvent> {
        let event = |at, kind| TraceEvent {
            at,
            message_id: Some(self.id),
            kind,
        };
        let heard = self.heard_at.map(|at| {
            let notified = TraceKind::Notified {
                channel: channel.as_str().to_owned(),
                sender_pid: 0,
                outbox_id: Some(self.outbox_id),
                by_ref: false,
                bytes: 0,
                payload: String::new(),
            };
            event(at, notified)
        });
        let ingested = self.ingested_at.map(|at| {
            let latency = (at - self.published_at).num_microseconds().unwrap_or(0) as f64 / 1e3;
            let observed = TraceKind::RowObserved {
                table: "discord_messages".into(),
                latency_ms: Some(latency),
            };
            event(at, observed)
        });
        heard.into_iter().chain(ingested).collect()
    }
}

/// Whether a listener ingests the channel, by the live rule for a pipeline seen from outside
/// (as `watch` judges one): a backend whose last query is `LISTEN channel`, or else the
/// probe's row reaching the table after its NOTIFY; doctor waited for the probe already, so
/// the rule's deadline is over. Said as doctor says it: the listeners by pid, or `no
/// listener` with what decides (`round_trip`: a round trip is shown after this check).
pub(crate) fn listener(
    snapshot: &Snapshot,
    channel: &Identifier,
    round_trip: bool,
    probe: Option<&Probe>,
) -> Check {
    if let Some(error) = &snapshot.error {
        return unjudged(
            CheckId::Listener,
            "pg_stat_activity",
            error,
            snapshot.error_class,
            None,
        );
    }
    let mut config = DiagnoseConfig::new(channel.clone());
    config.watch_only = true;
    config.deadline = Duration::ZERO;
    let mut diagnosis = Diagnosis::new(config);
    diagnosis.observe_snapshot(snapshot.clone());
    for event in probe.map(|p| p.events(channel)).unwrap_or_default() {
        diagnosis.observe(&event);
    }
    let Some(judged) = diagnosis.check(CheckId::Listener, Utc::now()) else {
        return check(
            CheckId::Listener,
            Status::Unknown,
            "not judged".into(),
            CheckId::Listener.hint(),
        );
    };
    let summary = if !snapshot.listeners.is_empty() {
        let listening: Vec<String> = snapshot.listeners.iter().map(describe).collect();
        format!("{} listening: {}", listening.len(), listening.join(", "))
    } else if judged.status == Status::Ok {
        judged.summary.clone()
    } else {
        no_listener(snapshot, channel, round_trip)
    };
    Check { summary, ..judged }
}

/// `pid 42 (notifyscope-listener)`.
fn describe(b: &Backend) -> String {
    format!(
        "pid {} ({})",
        b.pid,
        if b.application_name.is_empty() {
            "no application_name"
        } else {
            &b.application_name
        }
    )
}

fn no_listener(snapshot: &Snapshot, channel: &Identifier, round_trip: bool) -> String {
    let elsewhere: Vec<String> = snapshot
        .other_listeners
        .iter()
        .map(|b| format!("{} on {:?}", describe(b), b.query))
        .collect();
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
        if round_trip {
            "; the round trip below decides"
        } else {
            ""
        }
    )
}

/// How long a NAT gateway or a load balancer keeps an idle flow: AWS's Network Load
/// Balancer forgets one after 350 s, and many are shorter. A keepalive sooner keeps it.
const NETWORK_IDLE: Duration = Duration::from_secs(350);

/// Whether the server keeps a LISTEN connection open while it waits for notifications: no
/// `idle_session_timeout` closes it (a failure: it would, every so often), and over TCP one
/// side sends keepalives before a load balancer forgets the idle flow (a warning: it may).
/// `client_idle` is when the pipeline's connection string sends its first keepalive (`None`:
/// it sends none): its own keepalives count.
pub(crate) fn connection_settings(
    settings: &Result<ConnectionSettings, StoreError>,
    client_idle: Option<Duration>,
    role: Option<&str>,
) -> Check {
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            return unjudged(
                CheckId::ConnectionSettings,
                "pg_settings",
                &error_chain(e),
                Some(e.class()),
                role,
            )
        }
    };
    let evidence: Vec<String> = settings
        .settings
        .iter()
        .map(|s| format!("{} = {} ({})", s.name, s.shown, set_where(&s.source, role)))
        .collect();
    let with_evidence = |mut c: Check| {
        c.evidence = evidence.clone();
        c
    };
    if let Some(idle) = settings
        .get("idle_session_timeout")
        .filter(|s| s.value.is_some_and(|v| v > 0.0))
    {
        return with_evidence(check(
            CheckId::ConnectionSettings,
            Status::Fail,
            format!(
                "idle_session_timeout is {} ({}): the server closes a session that sends no \
                 query for that long, and a LISTEN connection that only receives \
                 notifications sends none (notifyscope's own listener sends one every half \
                 --db-deadline; a bot's listener usually does not)",
                idle.shown,
                set_where(&idle.source, role)
            ),
            CheckId::ConnectionSettings.hint(),
        ));
    }
    if !settings.tcp {
        return with_evidence(check(
            CheckId::ConnectionSettings,
            Status::Ok,
            "idle_session_timeout is off; a Unix socket, with no network to cut it".into(),
            "",
        ));
    }
    let server_idle = settings
        .get("tcp_keepalives_idle")
        .and_then(|s| s.value)
        .filter(|v| *v > 0.0)
        .map(Duration::from_secs_f64);
    let sooner = [server_idle, client_idle].into_iter().flatten().min();
    let server_said = match server_idle {
        Some(d) => format!("the server's tcp_keepalives_idle is {} s", d.as_secs()),
        None => "the server's tcp_keepalives_idle is the system's".into(),
    };
    let client_said = match client_idle {
        Some(d) => format!("the connection string's keepalives_idle {} s", d.as_secs()),
        None => "the connection string turns keepalives off".into(),
    };
    match sooner {
        Some(d) if d <= NETWORK_IDLE => with_evidence(check(
            CheckId::ConnectionSettings,
            Status::Ok,
            format!(
                "idle_session_timeout is off; a keepalive after {} s of silence \
                 ({server_said}, {client_said}), within the {} s a load balancer keeps an \
                 idle flow",
                d.as_secs(),
                NETWORK_IDLE.as_secs()
            ),
            "",
        )),
        _ => with_evidence(check(
            CheckId::ConnectionSettings,
            Status::Warn,
            format!(
                "no keepalive within {} s of silence ({server_said}, {client_said}): a NAT \
                 gateway or load balancer that forgets idle flows (AWS NLB: 350 s) cuts a \
                 LISTEN connection without a word to either side",
                NETWORK_IDLE.as_secs()
            ),
            "send keepalives sooner: keepalives_idle=60 in the listener's connection string, \
             or ALTER ROLE … SET tcp_keepalives_idle = 60 for its role",
        )),
    }
}

/// Where a setting comes from, for people (`pg_settings.source`).
fn set_where(source: &str, role: Option<&str>) -> String {
    match source {
        "default" => "the default".into(),
        "configuration file" => "in the server's configuration".into(),
        "user" => match role {
            Some(role) => format!("set for role {role}"),
            None => "set for the role".into(),
        },
        "database" => "set for this database".into(),
        "database user" => "set for the role in this database".into(),
        "client" => "asked for by the connection string".into(),
        other => format!("from {other}"),
    }
}

/// The channel's name, and the bot token (from `token_env`) when one is set: whether
/// Discord accepts it.
pub(crate) async fn config(
    channel: &Identifier,
    token: Option<&str>,
    token_env: &str,
    api_url: Option<&str>,
) -> Check {
    let token = token.and_then(|t| Token::new(t.to_owned()));
    let lower = channel.as_str().to_lowercase();
    let case_note = if channel.as_str() != lower {
        format!(
            "; channel {channel:?} has capitals: a plain `LISTEN {channel}` elsewhere listens on {lower:?}"
        )
    } else {
        String::new()
    };
    let Some(token) = token else {
        return check(
            CheckId::Config,
            Status::Ok,
            format!("channel {channel} is a valid identifier; no token in ${token_env} (simulated source only){case_note}"),
            "",
        );
    };
    match bot::check_token(&token, api_url).await {
        Ok(user) => check(
            CheckId::Config,
            Status::Ok,
            format!("channel {channel} is a valid identifier; Discord accepts the token (bot {user}){case_note}"),
            "",
        ),
        Err(BotError::Unreachable { api, error }) => check(
            CheckId::Config,
            Status::Warn,
            format!("the Discord API at {api} is unreachable, token not checked: {error}"),
            "check the network or --discord-api-url",
        ),
        Err(e) => check(
            CheckId::Config,
            Status::Fail,
            e.to_string(),
            "set the bot token from the Developer Portal's Bot page",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(listeners: Vec<Backend>) -> Snapshot {
        Snapshot {
            at: Some(Utc::now()),
            listeners,
            ..Snapshot::default()
        }
    }

    fn probe(heard: bool, ingested: bool) -> Probe {
        let at = Utc::now() - chrono::TimeDelta::seconds(2);
        Probe {
            id: Snowflake(7),
            outbox_id: 1,
            published_at: at,
            heard_at: heard.then_some(at),
            ingested_at: ingested.then_some(at),
        }
    }

    #[test]
    fn a_listen_in_pg_stat_activity_is_a_listener() {
        let listening = Backend {
            pid: 42,
            application_name: "notifyscope-listener".into(),
            state: "idle".into(),
            query: "LISTEN events".into(),
            seconds_in_state: 1.0,
        };
        let c = listener(
            &snapshot(vec![listening]),
            &Identifier::fixed("events"),
            false,
            None,
        );
        assert_eq!(c.status, Status::Ok);
        assert_eq!(c.summary, "1 listening: pid 42 (notifyscope-listener)");
    }

    #[test]
    fn the_probe_decides_when_no_listen_is_visible() {
        let channel = Identifier::fixed("events");
        let ingested = listener(&snapshot(vec![]), &channel, true, Some(&probe(true, true)));
        assert_eq!(ingested.status, Status::Ok, "{ingested:?}");
        assert!(
            ingested.summary.contains("reached the table"),
            "{ingested:?}"
        );
        let lost = listener(&snapshot(vec![]), &channel, true, Some(&probe(true, false)));
        assert_eq!(lost.status, Status::Fail, "{lost:?}");
        assert!(
            lost.summary.starts_with("no listener")
                && lost.summary.ends_with("the round trip below decides)"),
            "{lost:?}"
        );
        // Without a probe nothing proves it either way: the live rule warns.
        let unproven = listener(&snapshot(vec![]), &channel, false, None);
        assert_eq!(unproven.status, Status::Warn, "{unproven:?}");
        assert!(!unproven.summary.contains("round trip"), "{unproven:?}");
    }
}
