//! One-shot looks at a pipeline's database, for `doctor` and `selftest`: which server answers,
//! whether notifyscope's tables are there, which instances of notifyscope are connected,
//! the diagnosis snapshot, and whether messages reached `discord_messages` (or where they
//! stopped). Every query of those commands is here, on one connection of their own.

use serde::Serialize;
use tokio_postgres::Client;

use std::time::Duration;

use crate::snapshot::{self, Blocker, LockScope, Snapshot};
use crate::{Database, Identifier, StoreError, APP_NAME, LISTENER_APP_NAME};
use notifyscope_model::contract::Snowflake;

/// A connection for looking, as notifyscope's application name.
pub struct Examiner {
    client: Client,
}

/// Which of notifyscope's tables the schema has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    pub event_outbox: bool,
    pub discord_messages: bool,
    /// The history of the migrations applied.
    pub schema_history: bool,
}

impl Tables {
    /// The pipeline's two tables: the outbox and the one it is ingested into.
    pub fn pipeline(self) -> bool {
        self.event_outbox && self.discord_messages
    }

    /// Those and the migrations' history: `notifyscope run` migrated this schema.
    pub fn migrated(self) -> bool {
        self.pipeline() && self.schema_history
    }
}

/// One notifyscope process on the database, as `pg_stat_activity` shows it: its sessions
/// share an instance name (`shards 0..2 of 4` with --shard-range, empty without).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub instance: String,
    /// Its LISTEN sessions (one per running pipeline).
    pub listener_pids: Vec<i32>,
    pub sessions: i64,
    /// Client addresses (`local` for a Unix socket): the machines it runs on.
    pub clients: Vec<String>,
    /// Seconds since its oldest session started.
    #[serde(serialize_with = "notifyscope_model::round::thousandth")]
    pub up_s: f64,
}

/// The latest outbox row of a message: how far it got.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxTrail {
    pub id: i64,
    pub processed: bool,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Every instance of notifyscope connected to the database, other than the asking session.
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

/// How long a look waits for a lock, and how long one statement may run: whatever holds a
/// table, a look answers with the lock instead of waiting for it.
pub const LOOK_LOCK_TIMEOUT: Duration = Duration::from_secs(1);
pub const LOOK_STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);

/// A session that holds a lock a write of the pipeline would wait for.
#[derive(Debug, Clone, PartialEq)]
pub struct LockHolder {
    pub relation: String,
    pub mode: String,
    pub blocker: Blocker,
}

/// What the role may not do to the pipeline's tables, as `table: privilege` pairs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MissingGrants(pub Vec<(String, &'static str)>);

/// Where doctor's probe row is: gone (ingested and removed, or never written), or still in
/// the outbox with what ingestion made of it.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeRow {
    Gone,
    Waiting {
        processed: bool,
        attempts: i32,
        last_error: Option<String>,
        error_class: Option<String>,
    },
}

/// A server setting as this session has it, and where it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: String,
    /// As `SHOW` gives it, with its unit: `60s`, `0`, `7200`. The tcp settings show the
    /// socket's own value when the server leaves it to the system.
    pub shown: String,
    /// In the setting's base unit (`ms` or `s`), when it is a number.
    pub value: Option<f64>,
    pub unit: String,
    /// `pg_settings.source`: `default`, `configuration file`, `user` (ALTER ROLE),
    /// `database`, `database user`, `client`, `session`, ….
    pub source: String,
}

/// What the server does to this session's connection when it sits idle: the settings
/// that may close a LISTEN connection, and whether it goes over TCP.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSettings {
    /// Those of `idle_session_timeout`, `tcp_keepalives_idle`, `tcp_keepalives_interval`,
    /// `tcp_keepalives_count` and `tcp_user_timeout` this server has.
    pub settings: Vec<Setting>,
    /// Over TCP; a Unix socket has no network to cut it, and no keepalives.
    pub tcp: bool,
}

impl ConnectionSettings {
    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.name == name)
    }
}

/// The settings that decide whether an idle connection stays open, as this session has them
/// (a role's or a database's own settings included).
const CONNECTION_SETTINGS: &str = "SELECT name, current_setting(name), \
        CASE WHEN vartype IN ('integer', 'real') THEN setting::float8 END, \
        coalesce(unit, ''), source, inet_server_addr() IS NOT NULL \
    FROM pg_settings \
    WHERE name IN ('idle_session_timeout', 'tcp_keepalives_idle', 'tcp_keepalives_interval', \
                   'tcp_keepalives_count', 'tcp_user_timeout') \
    ORDER BY name";

/// Modes that conflict with the `RowExclusiveLock` an insert or update takes.
const BLOCKS_WRITES: &str =
    "ARRAY['ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock']";

impl Examiner {
    pub async fn connect(database: &Database) -> Result<Self, StoreError> {
        let client = database.connect_plain(APP_NAME).await?;
        client
            .batch_execute(&format!(
                "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
                LOOK_LOCK_TIMEOUT.as_millis(),
                LOOK_STATEMENT_TIMEOUT.as_millis()
            ))
            .await?;
        Ok(Examiner { client })
    }

    /// This session's backend pid.
    pub async fn pid(&self) -> Result<i32, StoreError> {
        Ok(self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0))
    }

    /// Sessions holding a lock on one of `tables` that a write would wait for. pg_locks takes
    /// no table lock, so this answers while the tables are locked.
    pub async fn lock_holders(&self, tables: &[&str]) -> Result<Vec<LockHolder>, StoreError> {
        let sql = format!(
            "SELECT l.relation::regclass::text, l.mode, a.pid, coalesce(a.application_name, ''), \
                    coalesce(a.usename::text, ''), coalesce(a.state, ''), coalesce(a.query, ''), \
                    coalesce(extract(epoch FROM now() - coalesce(a.xact_start, a.state_change)), 0)::float8 \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.granted AND l.pid <> pg_backend_pid() AND l.mode = ANY({BLOCKS_WRITES}) \
               AND l.relation = ANY(ARRAY(SELECT to_regclass(t)::oid FROM unnest($1::text[]) AS t)) \
             ORDER BY a.pid"
        );
        let tables: Vec<&str> = tables.to_vec();
        let rows = self.client.query(&sql, &[&tables]).await?;
        Ok(rows
            .iter()
            .map(|r| LockHolder {
                relation: r.get(0),
                mode: r.get(1),
                blocker: Blocker {
                    pid: r.get(2),
                    application_name: r.get(3),
                    user: r.get(4),
                    state: r.get(5),
                    statement: snapshot::statement_shown(r.get::<_, &str>(6)),
                    seconds: r.get(7),
                },
            })
            .collect())
    }

    /// The grants the pipeline's writes need that the role lacks: inserting and marking
    /// outbox rows, inserting messages.
    pub async fn missing_grants(&self) -> Result<MissingGrants, StoreError> {
        const NEEDED: [(&str, &str); 4] = [
            ("event_outbox", "INSERT"),
            ("event_outbox", "UPDATE"),
            ("event_outbox", "DELETE"),
            ("discord_messages", "INSERT"),
        ];
        let mut missing = Vec::new();
        for (table, privilege) in NEEDED {
            let granted: Option<bool> = self
                .client
                .query_one(
                    "SELECT has_table_privilege(to_regclass($1), $2)",
                    &[&table, &privilege],
                )
                .await?
                .get(0);
            if granted == Some(false) {
                missing.push((table.to_owned(), privilege));
            }
        }
        Ok(MissingGrants(missing))
    }

    /// Where outbox row `id` (doctor's probe) is.
    pub async fn probe_row(&self, id: i64) -> Result<ProbeRow, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT processed_at IS NOT NULL, attempts, last_error, error_class \
                 FROM event_outbox WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(match row {
            None => ProbeRow::Gone,
            Some(r) => ProbeRow::Waiting {
                processed: r.get(0),
                attempts: r.get(1),
                last_error: r.get(2),
                error_class: r.get(3),
            },
        })
    }

    /// Removes doctor's probe from the outbox unless an ingestion holds it (that ingestion
    /// removes it itself when it gets through). Whether the row is gone now.
    pub async fn remove_probe(&self, outbox_id: i64) -> Result<bool, StoreError> {
        self.client
            .execute(
                "DELETE FROM event_outbox WHERE id IN \
                   (SELECT id FROM event_outbox WHERE id = $1 FOR UPDATE SKIP LOCKED)",
                &[&outbox_id],
            )
            .await?;
        Ok(self.probe_row(outbox_id).await? == ProbeRow::Gone)
    }

    /// Removes the probe message an ingestion of an older version stored in the table.
    pub async fn remove_stored_probe(&self, message: Snowflake) -> Result<(), StoreError> {
        self.client
            .execute(
                "DELETE FROM discord_messages WHERE message_id = $1 AND synthetic \
                   AND author_id = $2",
                &[
                    &message.as_i64(),
                    &notifyscope_model::sim::DOCTOR_PROBE_AUTHOR.as_i64(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The settings that may close an idle connection, as this session (the pipeline's role
    /// on its database) has them.
    pub async fn connection_settings(&self) -> Result<ConnectionSettings, StoreError> {
        let rows = self.client.query(CONNECTION_SETTINGS, &[]).await?;
        Ok(ConnectionSettings {
            tcp: rows.first().is_some_and(|r| r.get(5)),
            settings: rows
                .iter()
                .map(|r| Setting {
                    name: r.get(0),
                    shown: r.get(1),
                    value: r.get(2),
                    unit: r.get(3),
                    source: r.get(4),
                })
                .collect(),
        })
    }

    /// `SHOW server_version`.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        Ok(self
            .client
            .query_one("SHOW server_version", &[])
            .await?
            .get(0))
    }

    /// Which of notifyscope's tables the schema (the search path) has.
    pub async fn tables(&self) -> Result<Tables, StoreError> {
        let row = self
            .client
            .query_one(
                "SELECT to_regclass('event_outbox') IS NOT NULL, \
                        to_regclass('discord_messages') IS NOT NULL, \
                        to_regclass('notifyscope_schema_history') IS NOT NULL",
                &[],
            )
            .await?;
        Ok(Tables {
            event_outbox: row.get(0),
            discord_messages: row.get(1),
            schema_history: row.get(2),
        })
    }

    /// How many migrations were applied.
    pub async fn migrations_applied(&self) -> Result<i64, StoreError> {
        Ok(self
            .client
            .query_one("SELECT count(*) FROM notifyscope_schema_history", &[])
            .await?
            .get(0))
    }

    /// Every instance of notifyscope connected to the database, other than this session.
    pub async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let ours = vec![APP_NAME, LISTENER_APP_NAME];
        let rows = self
            .client
            .query(INSTANCES, &[&LISTENER_APP_NAME, &ours])
            .await?;
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

    /// The diagnosis's snapshot (see [`snapshot::snapshot`]).
    pub async fn snapshot(
        &self,
        channel: &Identifier,
        with_outbox: bool,
        look_up: &[Snowflake],
        locks: &LockScope,
    ) -> Snapshot {
        snapshot::snapshot(&self.client, channel, with_outbox, look_up, locks).await
    }

    /// Of `ids`, those in `discord_messages`.
    pub async fn ingested(&self, ids: &[Snowflake]) -> Result<Vec<Snowflake>, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|id| id.as_i64()).collect();
        let rows = self
            .client
            .query(
                "SELECT message_id FROM discord_messages WHERE message_id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Snowflake::from_i64(r.get(0)))
            .collect())
    }

    /// The latest outbox row of message `id`, if it reached the outbox.
    pub async fn outbox_trail(&self, id: Snowflake) -> Result<Option<OutboxTrail>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT id, processed_at IS NOT NULL, attempts, last_error FROM event_outbox \
                 WHERE message_id = $1 ORDER BY id DESC LIMIT 1",
                &[&id.as_i64()],
            )
            .await?;
        Ok(row.map(|r| OutboxTrail {
            id: r.get(0),
            processed: r.get(1),
            attempts: r.get(2),
            last_error: r.get(3),
        }))
    }
}
