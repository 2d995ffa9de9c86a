//! One-shot looks at a pipeline's database, for `doctor` and `selftest`: which server answers,
//! whether notifyscope's tables are there, which instances of notifyscope are connected,
//! the diagnosis snapshot, and whether messages reached `discord_messages` (or where they
//! stopped). Every query of those commands is here, on one connection of their own.

use serde::Serialize;
use tokio_postgres::Client;

use crate::snapshot::{self, LockScope, Snapshot};
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

impl Examiner {
    pub async fn connect(database: &Database) -> Result<Self, StoreError> {
        Ok(Examiner {
            client: database.connect_plain(APP_NAME).await?,
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
