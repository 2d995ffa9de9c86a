//! The whole pipeline in one process: bot path (filter → publish), LISTEN subscriber and
//! ingestion workers, all reporting on one trace. The pipeline writes the trace and never
//! reads it back; it knows nothing of the diagnosis, the screen or the commands. Beside it:
//! its sources (the serenity [`bot`], the [`synthetic`] source and its [`control`] channel),
//! the tap of a pipeline someone else runs ([`watched`]), the operator's actions
//! ([`operate`]), and the outputs that read the trace ([`recording`], [`metrics`], over the
//! one small [`http`] server).

pub mod bot;
pub mod bot_path;
pub mod bot_sources;
pub mod control;
pub mod filter;
pub mod http;
pub mod ingest;
pub mod listen;
pub mod listening;
pub mod metrics;
pub mod operate;
pub mod publish;
pub mod recording;
pub mod retention;
pub mod retry;
mod silence;
pub mod synthetic;
pub mod test_events;
pub mod watched;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bot_path::{BotPath, Handled};
use crate::control::{control_channel, SimulatedSource};
use crate::filter::{Filter, FilterConfig, IncomingMessage};
use crate::ingest::{IngestConfig, IngestWaker};
use crate::listen::{ControlRoute, ListenerConfig, ListenerError, ListenerHandle, ListenerState};
use crate::publish::{PublishError, PublisherHandle};
use crate::retention::RetentionConfig;
use crate::retry::RetrySchedule;
use crate::test_events::TestEvents;
use notifyscope_model::trace::{Trace, TraceKind};
use notifyscope_store::instance::ControlSecret;
use notifyscope_store::{Database, Identifier, StoreError, Transactions};

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub database: Database,
    pub channel: Identifier,
    pub filter: FilterConfig,
    /// Ingestion workers in this process.
    pub workers: usize,
    pub queue_capacity: usize,
    pub ingest_batch: usize,
    /// The database is the private embedded cluster.
    pub embedded: bool,
    /// Serve `send --via-bot` requests on the control channel.
    pub control: bool,
    /// What a control request must carry to be carried out; a new random one by default,
    /// which `run` writes to its runtime file for `send` to read.
    pub control_secret: ControlSecret,
    /// Neighbouring channels to LISTEN on as well, to catch traffic on the wrong channel.
    pub watch_channels: Vec<Identifier>,
    /// How committed batches are announced: a NOTIFY per event (the default, so that every
    /// payload can be watched) or one per batch (the fast path).
    pub notify: publish::NotifyMode,
    /// Ingestion commits without waiting for the WAL flush. A commit lost in a server crash
    /// leaves its outbox rows unprocessed, so they are ingested again after recovery; the
    /// outbox writes themselves always wait for the flush.
    pub ingest_async_commit: bool,
    /// How often ingestion looks for rows whose NOTIFY never came.
    pub ingest_sweep: Duration,
    /// When ingestion tries a failed row again, and when it gives it up.
    pub retry: RetrySchedule,
    /// How long a statement of the publisher or of ingestion waits for a lock before the
    /// database refuses it (`lock_timeout`): a table locked by a migration or a forgotten
    /// transaction then shows as a named, retried error instead of a silent stall.
    pub lock_timeout: Duration,
    /// How long processed outbox rows and dead letters are kept.
    pub retention: RetentionConfig,
}

/// The default [`PipelineConfig::lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

impl PipelineConfig {
    pub fn new(database: Database, channel: Identifier) -> Self {
        PipelineConfig {
            database,
            channel,
            filter: FilterConfig::default(),
            workers: 2,
            queue_capacity: publish::DEFAULT_QUEUE_CAPACITY,
            ingest_batch: ingest::DEFAULT_BATCH,
            embedded: false,
            control: true,
            control_secret: ControlSecret::generate(),
            watch_channels: Vec::new(),
            notify: publish::NotifyMode::default(),
            ingest_async_commit: true,
            ingest_sweep: ingest::DEFAULT_SWEEP,
            retry: RetrySchedule::default(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            retention: RetentionConfig::default(),
        }
    }
}

pub struct Pipeline {
    trace: Trace,
    publisher: PublisherHandle,
    bot_path: Arc<BotPath>,
    simulated: SimulatedSource,
    listener: ListenerHandle,
    waker: IngestWaker,
    /// The publisher's and the ingestion workers' pool, on `--database-url`.
    publishing: Pool,
    /// Everything else (listener's fetches, control replies, pruner, actions, counts): on
    /// the direct URL when one is given, else the publisher's pool.
    pool: Pool,
    channel: Identifier,
    /// How long a connection may stay silent (see [`Database::with_deadline`]).
    deadline: Duration,
    /// Where sessions last, for a count on a connection of its own at the stop.
    database: Database,
    stop_publisher: CancellationToken,
    stop_consumers: CancellationToken,
    publisher_task: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    pruner: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Migrates the schema and starts publisher, listener and ingestion workers. Returns once
    /// they are running; the listener may still be connecting (see [`Pipeline::wait_listening`]).
    pub async fn start(config: PipelineConfig, trace: Trace) -> Result<Self, StoreError> {
        let database = config.database.clone();
        database.migrate().await?;
        let database = database
            .with_setting(
                "lock_timeout",
                &format!("{}ms", config.lock_timeout.as_millis().max(1)),
            )
            // The outbox starts empty and grows: a generic plan cached by a prepared
            // statement while it was empty scans it whole for as long as the connection
            // lives (statistics that would replace the plan may never come: autovacuum can
            // be off). Planning each execution costs microseconds; a scan of a big outbox
            // per ingested batch costs the latency of every message.
            .with_setting("plan_cache_mode", "force_custom_plan")
            // A connection that goes silent inside a transaction leaves that transaction
            // open on the server, holding the rows it claimed or inserted; the server ends
            // it after the deadline, so that a retry on a new connection goes through.
            .with_setting(
                "idle_in_transaction_session_timeout",
                &format!("{}ms", database.deadline().as_millis().max(1)),
            );
        // Through a transaction pooler (with a direct URL beside it), the publisher and the
        // workers set their search path and settings in each transaction.
        let transactions = database.transactions().await?;
        // The publisher holds one connection at a time, each worker one, plus dead letters.
        let publishing = database.pool(config.workers + 3)?;
        let pool = if database.has_direct() {
            database.direct().pool(3)?
        } else {
            publishing.clone()
        };
        trace.emit(
            None,
            TraceKind::DatabaseUp {
                url: database.redacted().to_owned(),
                embedded: config.embedded,
            },
        );

        let stop_publisher = CancellationToken::new();
        let stop_consumers = CancellationToken::new();
        let (publisher, publisher_task) = publish::spawn_publisher_with(
            publishing.clone(),
            transactions.clone(),
            config.channel.clone(),
            trace.clone(),
            config.queue_capacity,
            config.notify,
            stop_publisher.clone(),
        );
        let (waker, workers) = start_ingestion(
            &config,
            &database,
            &publishing,
            transactions,
            &trace,
            &stop_consumers,
        )?;
        let filter = Filter::new(config.filter.clone());
        // The simulated bot's id until a real gateway says READY with the real one.
        filter.set_bot_user_id(crate::synthetic::SIM_BOT);
        let bot_path = Arc::new(BotPath::new(
            trace.clone(),
            Arc::new(filter),
            publisher.clone(),
        ));
        let pruner = retention::spawn_pruner(
            pool.clone(),
            config.channel.clone(),
            config.retention.clone(),
            trace.clone(),
            stop_consumers.clone(),
        );
        let simulated = SimulatedSource::new(bot_path.clone());
        let listener_config = listener_config(&config, &database, &pool, &simulated);
        let deadline = database.deadline();
        let sessions = database.direct().clone();
        let listener = listen::spawn_listener(
            database.direct().clone(),
            pool.clone(),
            listener_config,
            trace.clone(),
            waker.clone(),
            stop_consumers.clone(),
        );
        Ok(Pipeline {
            trace,
            publisher,
            bot_path,
            simulated,
            listener,
            waker,
            publishing,
            pool,
            channel: config.channel,
            deadline,
            database: sessions,
            stop_publisher,
            stop_consumers,
            publisher_task,
            workers,
            pruner,
        })
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn publisher(&self) -> &PublisherHandle {
        &self.publisher
    }

    /// Test events that bypass the bot path (the screen's test keys).
    pub fn test_events(&self) -> TestEvents {
        TestEvents::new(
            self.pool.clone(),
            self.publisher.clone(),
            self.channel.clone(),
        )
    }

    pub fn filter(&self) -> &Arc<Filter> {
        self.bot_path.filter()
    }

    /// A pool for work beside the pipeline's own (counts, checks): on the direct URL when
    /// one is given.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Acting on this pipeline's outbox and dead letters, and on its database's sessions.
    pub fn operator(&self) -> operate::Operator {
        operate::Operator::new(self.pool.clone(), self.channel.clone())
    }

    pub fn listener_state(&self) -> ListenerState {
        self.listener.state()
    }

    pub fn listener_watch(&self) -> tokio::sync::watch::Receiver<ListenerState> {
        self.listener.subscribe()
    }

    /// Waits for `[init] Listener running`: LISTEN active and the self-probe answered.
    pub async fn wait_listening(&mut self, timeout: Duration) -> Result<i32, ListenerError> {
        self.listener.wait_up(timeout).await
    }

    /// The bot path: trace the message, apply the filter, publish what passes.
    pub async fn handle_message(&self, msg: IncomingMessage) -> Result<Handled, PublishError> {
        self.bot_path.handle(msg).await
    }

    pub fn bot_path(&self) -> &Arc<BotPath> {
        &self.bot_path
    }

    /// Test messages through the bot path (keys, demo traffic, `send --via-bot`).
    pub fn simulated(&self) -> &SimulatedSource {
        &self.simulated
    }

    /// Stops taking events, commits what is queued, lets ingestion finish the backlog (up to
    /// `drain`), then stops the listener and the workers. Says what it could not drain and
    /// which task had crashed. Done within `drain` plus a few seconds whatever the database
    /// does: a connection that went silent holds no step longer than that.
    pub async fn shutdown(self, drain: Duration) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        let started = Instant::now();
        let end = started + drain + SHUTDOWN_GRACE;
        let left = || end.saturating_duration_since(Instant::now());
        self.stop_publisher.cancel();
        let mut publisher_task = self.publisher_task;
        match tokio::time::timeout(left().saturating_sub(SHUTDOWN_GRACE), &mut publisher_task).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => report.crashed.push(format!("the publisher: {e}")),
            Err(_) => {
                publisher_task.abort();
                report.unpublished = true;
            }
        }
        let deadline = self.deadline;
        loop {
            // Each count on a connection that answers within what is left of the drain.
            let wait = deadline.min(left().saturating_sub(SHUTDOWN_GRACE / 2));
            let remaining = count_backlog(&self.pool, &self.channel, wait).await;
            match remaining {
                Ok(0) => break,
                Ok(n) if started.elapsed() >= drain => {
                    report.undrained = Undrained::Rows(n);
                    break;
                }
                Ok(_) => {}
                Err(_) if started.elapsed() >= drain || wait.is_zero() => {
                    // The pool's connections may all be silent: the last count on a new one.
                    let fresh = count_fresh(&self.database, &self.channel, left());
                    report.undrained = match fresh.await {
                        Ok(0) => Undrained::Nothing,
                        Ok(n) => Undrained::Rows(n),
                        Err(e) => Undrained::Unknown(notifyscope_store::error_chain(&e)),
                    };
                    break;
                }
                // A silent connection was dropped: the next count takes a new one.
                Err(_) => {}
            }
            self.waker.wake();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop_consumers.cancel();
        for (n, worker) in self.workers.into_iter().enumerate() {
            if let Some(Err(e)) = join_within(worker, left()).await {
                report.crashed.push(format!("ingestion worker {n}: {e}"));
            }
        }
        if let Some(Err(e)) = join_within(self.listener.into_task(), left()).await {
            report.crashed.push(format!("the listener: {e}"));
        }
        if let Some(pruner) = self.pruner {
            if let Some(Err(e)) = join_within(pruner, left()).await {
                report.crashed.push(format!("the pruner: {e}"));
            }
        }
        self.pool.close();
        self.publishing.close();
        report.log();
        report
    }
}

/// What a stop may take beyond its drain time: the last count of the outbox and the end of
/// the tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(2500);

/// Unprocessed rows of `channel`, on a connection that answers within `wait`.
async fn count_backlog(
    pool: &Pool,
    channel: &Identifier,
    wait: Duration,
) -> Result<i64, StoreError> {
    let client = tokio::time::timeout(wait, pool.get())
        .await
        .map_err(|_| StoreError::Pool(format!("no connection within {wait:?}")))??;
    notifyscope_store::deadline::on_pooled(
        pool,
        client,
        wait,
        "the database",
        "outbox count",
        async |client| notifyscope_store::backlog(client, channel).await,
    )
    .await
}

/// Unprocessed rows of `channel`, on a connection of its own that answers within `wait`.
async fn count_fresh(
    database: &Database,
    channel: &Identifier,
    wait: Duration,
) -> Result<i64, StoreError> {
    let counting = async {
        let client = database.connect_plain(notifyscope_store::APP_NAME).await?;
        notifyscope_store::backlog(&client, channel).await
    };
    notifyscope_store::deadline::within(wait, &database.address(), "outbox count", counting).await
}

/// Waits for `task` up to `wait`, then aborts it: `None` when it did not end in time.
async fn join_within(
    mut task: JoinHandle<()>,
    wait: Duration,
) -> Option<Result<(), tokio::task::JoinError>> {
    match tokio::time::timeout(wait, &mut task).await {
        Ok(result) => Some(result),
        Err(_) => {
            task.abort();
            None
        }
    }
}

/// What an orderly stop could not do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShutdownReport {
    pub undrained: Undrained,
    /// The publisher's queue was not all committed when the drain time ran out: those
    /// events never reached the outbox.
    pub unpublished: bool,
    /// Tasks that had panicked, with the panic.
    pub crashed: Vec<String>,
}

/// Whether ingestion caught up before the stop.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Undrained {
    #[default]
    Nothing,
    /// Outbox rows still waiting when the drain time ran out; they stay in the outbox and
    /// are ingested by the next start (or by another process sharing it).
    Rows(i64),
    /// The backlog could not be counted.
    Unknown(String),
}

impl ShutdownReport {
    pub fn is_clean(&self) -> bool {
        self.undrained == Undrained::Nothing && !self.unpublished && self.crashed.is_empty()
    }

    /// One sentence per thing left undone.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.unpublished {
            lines.push(
                "the publisher could not commit all it had queued before the drain timeout \
                 (the database did not answer): those events may not have reached the outbox"
                    .to_owned(),
            );
        }
        match &self.undrained {
            Undrained::Nothing => {}
            Undrained::Rows(n) => lines.push(format!(
                "{n} event(s) not ingested before the drain timeout; they stay in the outbox \
                 and are ingested at the next start"
            )),
            Undrained::Unknown(error) => lines.push(format!(
                "could not count the events left in the outbox ({error}); any left are \
                 ingested at the next start"
            )),
        }
        lines.extend(self.crashed.iter().map(|c| format!("{c} had crashed")));
        lines
    }

    fn log(&self) {
        for line in self.lines() {
            tracing::error!("shutdown: {line}");
        }
    }
}

/// The ingestion workers, on a pool of their own when they commit asynchronously.
fn start_ingestion(
    config: &PipelineConfig,
    database: &Database,
    pool: &Pool,
    transactions: Transactions,
    trace: &Trace,
    stop: &CancellationToken,
) -> Result<(IngestWaker, Vec<JoinHandle<()>>), StoreError> {
    let mut ingest_config = IngestConfig::new(config.channel.clone());
    ingest_config.batch = config.ingest_batch;
    ingest_config.sweep = config.ingest_sweep;
    ingest_config.retry = config.retry;
    ingest_config.transactions = transactions;
    let ingest_pool = if config.ingest_async_commit {
        // Each worker holds one connection at a time.
        database.pool_with_async_commit(config.workers.max(1))?
    } else {
        pool.clone()
    };
    Ok(ingest::spawn_workers(
        ingest_pool,
        ingest_config,
        config.workers,
        trace.clone(),
        stop.clone(),
    ))
}

/// The listener's channels; with `control`, requests on the control channel go to the
/// simulated source, which serves them until the listener stops.
fn listener_config(
    config: &PipelineConfig,
    database: &Database,
    pool: &Pool,
    simulated: &SimulatedSource,
) -> ListenerConfig {
    let mut listener_config = ListenerConfig::new(config.channel.clone());
    listener_config.watch = config.watch_channels.clone();
    if config.control {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        listener_config.control = Some(ControlRoute {
            channel: control_channel(),
            tx,
        });
        simulated.spawn_control(
            rx,
            pool.clone(),
            database.schema().clone(),
            config.channel.clone(),
            config.control_secret.clone(),
        );
    }
    listener_config
}
