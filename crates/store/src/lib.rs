//! The database: connection settings, schema migrations (`migrations/`), pools, NOTIFY
//! ([`notify`]), the private embedded cluster ([`embedded`]), the runtime file that tells
//! other processes on the machine where a running instance's pipeline is ([`instance`]), the
//! queries over the outbox that more than one stage needs, and the actions people take on
//! stored rows ([`outbox`], [`dead_letters`]) and on other sessions ([`backends`]), the
//! server's views the diagnosis reads ([`snapshot`], [`examine`]). It sits on the model only
//! and knows nothing of the pipeline's stages or the trace stream.

pub mod action;
pub mod backends;
pub mod conninfo;
pub mod dead_letters;
pub mod deadline;
pub mod embedded;
pub mod errors;
pub mod examine;
pub mod instance;
pub mod notify;
pub mod outbox;
mod session;
pub mod snapshot;
pub mod statement;
pub mod tcp;
pub mod tls;
mod url;

pub use conninfo::Connection;
pub use errors::ErrorClass;
pub use notifyscope_model::identifier::{Identifier, IdentifierError};
pub use statement::{Sessions, Sql, Transactions};

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Client, Config};

use conninfo::{Libpq, PoolConnect};
use session::transaction_pooler;
use url::{
    connection_string, may_hold_password, redact, with_credentials_encoded, without_input_fragments,
};

/// The schema of the pipeline's tables when none is given.
pub const DEFAULT_SCHEMA: &str = "public";
/// The NOTIFY channel of the event bus when none is given.
pub const DEFAULT_CHANNEL: &str = "events";

/// Application name of pooled connections (publisher, ingestion) in `pg_stat_activity`.
pub const APP_NAME: &str = "notifyscope";
/// Application name of the dedicated LISTEN connection.
pub const LISTENER_APP_NAME: &str = "notifyscope-listener";

/// PostgreSQL keeps at most this many bytes of an `application_name`.
const APPLICATION_NAME_MAX: usize = 63;

/// The part of an application name before the instance that follows it
/// (`notifyscope-listener shards 0..2 of 4` → `notifyscope-listener`).
pub fn base_application_name(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

/// The instance an application name of ours carries after its base, if any.
pub fn instance_of_application_name(name: &str) -> Option<&str> {
    name.split_once(' ')
        .map(|(_, rest)| rest.trim())
        .filter(|r| !r.is_empty())
}

mod embedded_migrations {
    refinery::embed_migrations!("src/migrations");
}

/// A database error. Each text carries its causes and `source()` returns none, so that every
/// way of printing it (`{}`, [`error_chain`], anyhow's `{:#}`) says each part once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What is wrong in the URL; never the URL itself, which may hold a password.
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error(transparent)]
    BadIdentifier(#[from] IdentifierError),
    #[error("cannot connect to {target}: {}", error_chain(.error))]
    Connect {
        target: String,
        error: tokio_postgres::Error,
    },
    #[error("{}", error_chain(.0))]
    Db(tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("schema migration failed: {0}")]
    Migration(String),
    /// A session's state (its search path, a LISTEN) does not last from one statement to the
    /// next: a pooler hands each transaction to another server session.
    #[error(
        "{target} is reached through a transaction pooler (such as PgBouncer with pool_mode = \
         transaction): {evidence}. LISTEN, migrations and the diagnosis need a session of \
         their own: give the server itself with --direct-database-url (DIRECT_DATABASE_URL), \
         and publishing and ingestion go through the pooler; or connect to a pooler in \
         session mode"
    )]
    TransactionPooler { target: String, evidence: String },
    /// A connection that did not answer within its deadline; it was dropped.
    #[error("{0}")]
    Silent(deadline::Silence),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Db(e)
    }
}

impl StoreError {
    /// What kind of error this is (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        crate::errors::class_of_store(self)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Db(e),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// Where the pipeline's tables live: a server and a schema in it.
#[derive(Clone)]
pub struct Database {
    config: Config,
    schema: Identifier,
    redacted: String,
    /// Where to connect and as whom, without the password (see [`Database::connection_string`]).
    connection_string: String,
    /// Which process of several this is (e.g. `shards 0..2 of 4`); it follows the base of
    /// every application name, so that `pg_stat_activity` tells the instances apart.
    instance: Option<String>,
    /// TLS, the password file and the other libpq settings the driver does not read itself.
    libpq: Arc<Libpq>,
    /// What every session sets, as name and SQL value: the search path first, then the
    /// settings of [`Database::with_setting`]. Sent as `SET` statements once connected, or as
    /// `SET LOCAL` in every transaction behind a transaction pooler; never as the `options`
    /// startup parameter, which connection poolers refuse or drop.
    settings: Vec<(String, String)>,
    /// Whether a transaction pooler was found between this process and the server, asked
    /// once per process and URL.
    pooling: Arc<tokio::sync::OnceCell<Option<String>>>,
    /// The server itself (`--direct-database-url`), for what needs a session of its own
    /// when this URL goes through a transaction pooler.
    direct: Option<Box<Database>>,
    /// How long a statement, checkout or commit may go unanswered before its connection
    /// counts as silent (see [`deadline`]).
    deadline: Duration,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Database {
    /// `url` is a `postgresql://` URL or a `key=value` string, as libpq accepts, with libpq's
    /// TLS keys, password file and environment variables (see [`conninfo`]).
    pub fn new(url: &str, schema: Identifier) -> Result<Self, StoreError> {
        let url = with_credentials_encoded(url);
        // Out before the driver parses the rest, which would refuse or misread them.
        let (url, libpq_settings) = conninfo::take_settings(&url);
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            // The parser's own words ("invalid connection string") say nothing; its cause
            // names the part, e.g. "invalid value for option `port`".
            let detail = e.source().map_or_else(|| e.to_string(), error_chain);
            StoreError::BadUrl(without_input_fragments(&detail, may_hold_password(&url)))
        })?;
        let mut libpq = Libpq::resolve(libpq_settings, &|name| std::env::var(name).ok())
            .map_err(StoreError::BadUrl)?;
        libpq.application_name = config.get_application_name().map(str::to_owned);
        if config.get_hosts().is_empty() {
            // libpq's default: the local socket directory of Debian's packages.
            config.host("/var/run/postgresql");
        }
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "postgres".into());
            config.user(user);
        }
        let connection_string = connection_string(&config);
        let settings = vec![("search_path".to_owned(), schema.quoted())];
        config
            .ssl_mode(conninfo::driver_mode(libpq.tls.mode))
            .application_name(libpq.application_base(APP_NAME));
        libpq.tcp.apply(&mut config);
        if let Some(timeout) = libpq.connect_timeout {
            config.connect_timeout(timeout);
        }
        let redacted = redact(&config, &schema);
        Ok(Database {
            config,
            schema,
            redacted,
            connection_string,
            instance: None,
            libpq: Arc::new(libpq),
            settings,
            pooling: Arc::default(),
            direct: None,
            deadline: deadline::DEFAULT_DEADLINE,
        })
    }

    /// Every statement, checkout and commit answers within `deadline`, or its connection is
    /// dropped and replaced.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self.direct = self.direct.map(|d| Box::new(d.with_deadline(deadline)));
        self
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Host and port (each of several), for saying which connection went silent.
    pub fn address(&self) -> String {
        let hosts = self.config.get_hosts().iter().map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        });
        let ports = self.config.get_ports();
        hosts
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                format!("{host}:{port}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What needs a session of its own (LISTEN, migrations, the diagnosis's session views,
    /// actions on other backends) connects to `url`, the server itself, while publishing and
    /// ingestion may go through a transaction pooler on this one.
    pub fn with_direct(mut self, url: &str) -> Result<Self, StoreError> {
        let mut direct = Database::new(url, self.schema.clone())?;
        direct.instance = self.instance.clone();
        direct.deadline = self.deadline;
        let name = direct.application_name(&direct.libpq.application_base(APP_NAME));
        direct.config.application_name(name);
        direct.settings = self.settings.clone();
        self.direct = Some(Box::new(direct));
        Ok(self)
    }

    /// The database for what needs a session of its own: the direct one when given, else
    /// this one.
    pub fn direct(&self) -> &Database {
        self.direct.as_deref().unwrap_or(self)
    }

    /// Whether a direct URL was given beside this one.
    pub fn has_direct(&self) -> bool {
        self.direct.is_some()
    }

    pub fn schema(&self) -> &Identifier {
        &self.schema
    }

    /// Host, port, user, database and the URL's own `options` as a `key=value` string that
    /// connects again, with libpq's defaults written out and never the password: for other
    /// processes to find this database, and to tell whether two URLs name the same one.
    pub fn connection_string(&self) -> &str {
        &self.connection_string
    }

    /// Every connection's application name carries `instance` after its base.
    pub fn with_instance(mut self, instance: &str) -> Self {
        let instance = instance.trim();
        self.instance = (!instance.is_empty()).then(|| instance.to_owned());
        let pooled = self.application_name(APP_NAME);
        self.config.application_name(pooled);
        self.direct = self.direct.map(|d| Box::new(d.with_instance(instance)));
        self
    }

    /// `base` followed by this process's instance, cut to what PostgreSQL keeps.
    pub fn application_name(&self, base: &str) -> String {
        let mut name = match &self.instance {
            Some(instance) => format!("{base} {instance}"),
            None => base.to_owned(),
        };
        if name.len() > APPLICATION_NAME_MAX {
            let mut end = APPLICATION_NAME_MAX;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        name
    }

    /// Every connection refuses writes (`default_transaction_read_only`): for watching a
    /// pipeline that belongs to someone else.
    pub fn read_only(mut self) -> Self {
        self.settings
            .push(("default_transaction_read_only".to_owned(), "on".to_owned()));
        self.redacted.push_str(" read-only");
        self.direct = self.direct.map(|d| Box::new(d.read_only()));
        self
    }

    /// The statements that make a new session this database's: its schema first in the
    /// search path, then its settings. Run on every connection before anything else where
    /// sessions last.
    pub fn session_setup(&self) -> String {
        self.set_statements("SET")
    }

    fn set_statements(&self, set: &str) -> String {
        self.settings
            .iter()
            .map(|(name, value)| format!("{set} {name} = {value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Makes `client`, a new connection to this database, its session: the search path and
    /// the settings. Once per process it first makes sure that the session lasts, which it
    /// does not behind a transaction pooler: there, a `SET` would stay with a server session
    /// that the pooler hands to other clients, so nothing is set, and the connection is
    /// refused unless a direct URL takes what needs a session (see [`Transactions`]).
    pub async fn prepare_session(&self, client: &Client) -> Result<(), StoreError> {
        match self.sessions_of(client).await? {
            Sessions::Kept => Ok(client.batch_execute(&self.session_setup()).await?),
            Sessions::Shared if self.direct.is_some() => Ok(()),
            Sessions::Shared => Err(self.pooler_error()),
        }
    }

    /// Whether this URL's connections keep their server sessions, asked once per process.
    async fn sessions_of(&self, client: &Client) -> Result<Sessions, StoreError> {
        let pooler = self
            .pooling
            .get_or_try_init(|| transaction_pooler(self, client))
            .await?;
        Ok(match pooler {
            Some(_) => Sessions::Shared,
            None => Sessions::Kept,
        })
    }

    fn pooler_error(&self) -> StoreError {
        StoreError::TransactionPooler {
            target: self.redacted.clone(),
            evidence: self.pooling.get().cloned().flatten().unwrap_or_default(),
        }
    }

    /// Whether this URL goes through a transaction pooler, and the evidence: asked on a
    /// connection of its own the first time (never an error for the pooler itself).
    pub async fn transaction_pooler(&self) -> Result<Option<String>, StoreError> {
        if self.pooling.get().is_none() {
            let client = self.connect_unprepared(APP_NAME).await?;
            self.sessions_of(&client).await?;
        }
        Ok(self.pooling.get().cloned().flatten())
    }

    /// How the work on this URL's pools opens its transactions and prepares its
    /// statements: found out on a connection of its own the first time. Behind a
    /// transaction pooler without a direct URL, the error that names the pooler.
    pub async fn transactions(&self) -> Result<Transactions, StoreError> {
        let sessions = match self.transaction_pooler().await? {
            None => Sessions::Kept,
            Some(_) if self.direct.is_some() => Sessions::Shared,
            Some(_) => return Err(self.pooler_error()),
        };
        let begin = match sessions {
            Sessions::Kept => "BEGIN".to_owned(),
            Sessions::Shared => format!("BEGIN; {}", self.set_statements("SET LOCAL")),
        };
        Ok(Transactions::new(
            begin,
            sessions,
            self.deadline,
            self.address(),
        ))
    }

    /// Host, port, user, database and schema; never the password.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A connection of its own; the caller drives the returned connection future.
    /// TLS as the URL's `sslmode` says, the password from `PGPASSWORD` or the password file
    /// when the URL has none.
    pub async fn connect(
        &self,
        application_name: &str,
    ) -> Result<(Client, Connection), StoreError> {
        let mut config = self.config.clone();
        config.application_name(
            self.application_name(&self.libpq.application_base(application_name)),
        );
        // connect_timeout bounds reaching an address; the handshake after it (TLS, login)
        // must come within the deadline, or a server that accepts and never answers (a
        // silent proxy) would hold the connection attempt forever.
        let limit = self.libpq.connect_timeout.unwrap_or_default() + self.deadline;
        let connecting = async {
            self.libpq
                .connect(config)
                .await
                .map_err(|error| StoreError::Connect {
                    target: self.redacted.clone(),
                    error,
                })
        };
        deadline::within(limit, &self.address(), "connection setup", connecting).await
    }

    /// A connection whose messages nobody needs (no LISTEN on it).
    pub async fn connect_plain(&self, application_name: &str) -> Result<Client, StoreError> {
        let client = self.connect_unprepared(application_name).await?;
        self.prepare_session(&client).await?;
        Ok(client)
    }

    /// A connection driven by a task of its own, before [`Database::prepare_session`].
    async fn connect_unprepared(&self, application_name: &str) -> Result<Client, StoreError> {
        let (client, connection) = self.connect(application_name).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "database connection closed");
            }
        });
        Ok(client)
    }

    /// Connections made as [`Database::connect`] makes them.
    pub fn pool(&self, max_size: usize) -> Result<Pool, StoreError> {
        let mut config = self.config.clone();
        config.application_name(self.application_name(&self.libpq.application_base(APP_NAME)));
        let manager = Manager::from_connect(
            config,
            PoolConnect(self.libpq.clone()),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let database = self.clone();
        Pool::builder(manager)
            .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                let database = database.clone();
                Box::pin(async move {
                    match database.prepare_session(client).await {
                        Ok(()) => Ok(()),
                        Err(StoreError::Db(e)) => Err(deadpool_postgres::HookError::Backend(e)),
                        Err(e) => Err(deadpool_postgres::HookError::message(e.to_string())),
                    }
                })
            }))
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.deadline))
            // A new connection may take what connect_timeout allows it (5 s unless the URL
            // says); 0 there is no limit, here as in libpq.
            .create_timeout(self.libpq.connect_timeout)
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))
    }

    /// A pool whose sessions commit without waiting for the WAL flush
    /// (`synchronous_commit = off`). Only for work that is safe to lose in a server crash:
    /// ingestion, whose lost commit leaves the outbox row unprocessed, so the message is
    /// ingested again after recovery (the insert is idempotent). Never for the outbox writes.
    pub fn pool_with_async_commit(&self, max_size: usize) -> Result<Pool, StoreError> {
        self.with_setting("synchronous_commit", "off")
            .pool(max_size)
    }

    /// Every session of this database sets `name` to `value` (a server setting such as
    /// `lock_timeout`). Both are fixed strings of this program, never user input.
    pub fn with_setting(&self, name: &str, value: &str) -> Database {
        let mut changed = self.clone();
        changed
            .settings
            .push((name.to_owned(), format!("'{value}'")));
        changed.direct = changed
            .direct
            .map(|d| Box::new(d.with_setting(name, value)));
        changed
    }

    /// The database role the pipeline connects as.
    pub fn role(&self) -> Option<&str> {
        self.config.get_user()
    }

    /// Creates the schema when missing and applies pending migrations. Several processes may
    /// start at once on one schema: an advisory lock lets one migrate while the others wait.
    /// On the direct URL when one is given: migrations need a session.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(direct) = &self.direct {
            return Box::pin(direct.migrate()).await;
        }
        let mut client = self.connect_plain(APP_NAME).await?;
        client
            .batch_execute("SELECT pg_advisory_lock(hashtext('notifyscope.migrate'))")
            .await?;
        // CREATE SCHEMA IF NOT EXISTS needs the CREATE right on the database even when the
        // schema exists, which an application role often lacks: look first.
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&self.schema.as_str()],
            )
            .await?
            .get(0);
        if !exists {
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    self.schema.quoted()
                ))
                .await?;
        }
        let result = embedded_migrations::migrations::runner()
            .set_migration_table_name("notifyscope_schema_history")
            .run_async(&mut client)
            .await;
        client
            .batch_execute("SELECT pg_advisory_unlock(hashtext('notifyscope.migrate'))")
            .await?;
        let report = result.map_err(|e| StoreError::Migration(e.to_string()))?;
        for m in report.applied_migrations() {
            tracing::info!(schema = %self.schema, migration = %m, "applied migration");
        }
        Ok(())
    }
}

/// Where an unprocessed row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// Waiting for ingestion to claim it.
    Waiting,
    /// Failed; claimed again at `next_attempt_at`.
    Retrying,
    /// Given up: a dead letter.
    Dead,
}

impl RowState {
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Waiting => "waiting",
            RowState::Retrying => "retrying",
            RowState::Dead => "dead",
        }
    }

    /// The value of [`STATE`].
    pub(crate) fn of_sql(text: &str) -> Self {
        match text {
            "dead" => RowState::Dead,
            "retrying" => RowState::Retrying,
            _ => RowState::Waiting,
        }
    }
}

/// The [`RowState`] of an unprocessed row (SQL, text).
pub(crate) const ROW_STATE: &str = "CASE WHEN dead_at IS NOT NULL THEN 'dead' \
                      WHEN next_attempt_at > now() THEN 'retrying' ELSE 'waiting' END";

/// An outbox row still waiting for ingestion: neither processed nor given up (SQL).
pub const PENDING: &str = "processed_at IS NULL AND dead_at IS NULL";

/// Outbox rows of `channel` not yet ingested and not given up.
pub async fn backlog(client: &Client, channel: &Identifier) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM event_outbox WHERE {PENDING} AND channel = $1"),
            &[&channel.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

/// The error with its whole chain of causes on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_follows_every_application_name() {
        let plain = Database::new("host=h user=u", Identifier::fixed("public")).expect("parses");
        assert_eq!(plain.application_name(LISTENER_APP_NAME), LISTENER_APP_NAME);
        let sharded = plain.with_instance("shards 0..2 of 4");
        assert_eq!(
            sharded.application_name(LISTENER_APP_NAME),
            "notifyscope-listener shards 0..2 of 4"
        );
        assert_eq!(
            sharded.config().get_application_name(),
            Some("notifyscope shards 0..2 of 4")
        );
        assert_eq!(
            base_application_name("notifyscope-listener shards 0..2 of 4"),
            LISTENER_APP_NAME
        );
        assert_eq!(
            instance_of_application_name("notifyscope shards 0..2 of 4"),
            Some("shards 0..2 of 4")
        );
        assert_eq!(instance_of_application_name("notifyscope"), None);
        let long = sharded.with_instance(&"x".repeat(80));
        assert_eq!(long.application_name(APP_NAME).len(), 63);
    }

    #[test]
    fn identifiers() {
        assert!(Identifier::channel("events").is_ok());
        assert!(Identifier::channel("Events_2$").is_ok());
        for bad in ["2events", "ev ents", "ev\"ents"] {
            assert!(
                matches!(
                    Identifier::channel(bad),
                    Err(IdentifierError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Identifier::channel(""),
            Err(IdentifierError::Empty { .. })
        ));
        assert!(matches!(
            Identifier::channel(&"a".repeat(64)),
            Err(IdentifierError::TooLong { .. })
        ));
        assert_eq!(
            Identifier::channel("Events").expect("valid").quoted(),
            "\"Events\""
        );
    }

    #[test]
    fn redaction_hides_the_password() {
        let db = Database::new(
            "postgresql://ada:s3cret@db.example:6543/app",
            Identifier::schema("s").expect("valid"),
        )
        .expect("parses");
        assert!(!format!("{db:?}").contains("s3cret"));
        assert_eq!(
            db.redacted(),
            "host=db.example port=6543 user=ada dbname=app (schema s)"
        );
        let kv = Database::new(
            "host=/tmp/x user=u password=hunter2",
            Identifier::schema("s").expect("valid"),
        )
        .expect("parses");
        assert!(!kv.redacted().contains("hunter2"));
    }

    #[test]
    fn the_connection_string_names_the_server_without_the_password() {
        let schema = || Identifier::schema("s").expect("valid");
        let url =
            Database::new("postgresql://ada:s3cret@db.example/app", schema()).expect("parses");
        let kv = Database::new(
            "host=db.example port=5432 user=ada dbname=app password=hunter2",
            schema(),
        )
        .expect("parses");
        assert_eq!(
            url.connection_string(),
            "host=db.example port=5432 user=ada dbname=app"
        );
        assert_eq!(url.connection_string(), kv.connection_string());
        let odd = Database::new(
            "host=/tmp/x user=ada options='-c work_mem=64MB' password=hunter2",
            schema(),
        )
        .expect("parses");
        let text = odd.connection_string();
        assert_eq!(
            text,
            "host=/tmp/x port=5432 user=ada dbname=ada options='-c work_mem=64MB'"
        );
        let again = Database::new(text, schema()).expect("parses again");
        assert_eq!(again.connection_string(), text);
        let several = Database::new(
            "host=a,b port=5432,5433 user=ada dbname=app target_session_attrs=read-write",
            schema(),
        )
        .expect("parses");
        assert_eq!(
            several.connection_string(),
            "host=a,b port=5432,5433 user=ada dbname=app target_session_attrs=read-write"
        );
        assert!(several.redacted().starts_with("host=a,b port=5432,5433 "));
    }

    /// A password as generated ones often are, with the characters a URL gives a meaning to.
    const ODD_PASSWORD: &str = "p@ss:w/rd@x";

    #[test]
    fn a_password_with_at_colon_and_slash_is_read_whole_from_a_url() {
        let schema = || Identifier::schema("s").expect("valid");
        for url in [
            format!("postgresql://ada:{ODD_PASSWORD}@db.example:6543/app"),
            format!("postgres://ada:{ODD_PASSWORD}@db.example:6543/app?connect_timeout=3"),
            format!("host=db.example port=6543 user=ada password={ODD_PASSWORD} dbname=app"),
            format!("host=db.example port=6543 user=ada password='{ODD_PASSWORD}' dbname=app"),
        ] {
            let db = Database::new(&url, schema()).expect("parses");
            assert_eq!(
                db.config().get_password(),
                Some(ODD_PASSWORD.as_bytes()),
                "{url}"
            );
            assert_eq!(
                db.redacted(),
                "host=db.example port=6543 user=ada dbname=app (schema s)",
                "{url}"
            );
        }
        // A password percent-encoded as URLs want it still reads the same.
        let encoded = Database::new(
            "postgresql://ada:p%40ss%3Aw%2Frd%40x@db.example:6543/app",
            schema(),
        )
        .expect("parses");
        assert_eq!(
            encoded.config().get_password(),
            Some(ODD_PASSWORD.as_bytes())
        );
        // An `@` among the parameters is theirs, with or without a password before.
        for url in [
            "postgresql://db.example/app?user=ada@example",
            "postgresql://x:y@db.example/app?user=ada@example",
        ] {
            let db = Database::new(url, schema()).expect("parses");
            assert_eq!(db.role(), Some("ada@example"), "{url}");
            assert!(db.redacted().starts_with("host=db.example "), "{url}");
        }
        // A user name with an `@` (as some hosted servers want) before the password.
        let hosted =
            Database::new("postgresql://ada@server:pw@db.example/app", schema()).expect("parses");
        assert_eq!(hosted.role(), Some("ada@server"));
        assert_eq!(hosted.config().get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn a_connection_string_that_does_not_parse_never_shows_the_password() {
        let schema = || Identifier::schema("s").expect("valid");
        let fragments = ["p@ss", "ss:w", "w/rd", "rd@x", "pss", "wrd"];
        for url in [
            format!("postgresql://ada:{ODD_PASSWORD}@db.example:port/app"),
            format!("postgresql://ada:{ODD_PASSWORD}@[db.example/app"),
            format!("host=db.example port=port user=ada password={ODD_PASSWORD}"),
            format!("host=db.example user=ada password='{ODD_PASSWORD}"),
            // Spaces in a password not quoted: the rest is read as more `key=value` pairs.
            "host=db.example user=ada password=p@ss w/rd=x".to_owned(),
            "host=db.example user=ada password=p@ss w/rd host=h".to_owned(),
        ] {
            let Err(StoreError::BadUrl(detail)) = Database::new(&url, schema()) else {
                panic!("{url} parses");
            };
            for fragment in fragments {
                assert!(!detail.contains(fragment), "{url}: {detail}");
            }
            assert!(!detail.is_empty(), "{url}");
        }
        // Without a password, an unknown option is named.
        let Err(StoreError::BadUrl(detail)) = Database::new("host=db.example dbnme=app", schema())
        else {
            panic!("parses");
        };
        assert_eq!(detail, "unknown option `dbnme`");
    }

    #[test]
    fn bad_url_is_an_error() {
        let err = Database::new("postgresql://[", Identifier::schema("s").expect("valid"));
        assert!(matches!(err, Err(StoreError::BadUrl(_))));
    }
}
