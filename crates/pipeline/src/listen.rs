//! The LISTEN subscriber: a dedicated connection whose notifications we read ourselves (a
//! [`ListeningConnection`]), which runs LISTEN and the self-probe, then hands over what
//! arrives. Any end of the connection, or a missed heartbeat, ends the session; the
//! listener then reconnects with exponential backoff and jitter, listens again and wakes
//! ingestion to catch up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Notification};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ingest::IngestWaker;
use crate::listening::{ConnectionLost, Ended, ListeningConnection};
use notifyscope_model::contract::{self, NotifyPayload};
use notifyscope_model::present::shorten;
use notifyscope_model::trace::{Trace, TraceKind, WriteStage};
use notifyscope_store::deadline::{within, Silence};
use notifyscope_store::notify::notify;
use notifyscope_store::{
    error_chain, Database, ErrorClass, Identifier, StoreError, LISTENER_APP_NAME,
};

/// Payload text kept on the trace for a rejected notification.
const REJECTED_SAMPLE: usize = 1024;

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub channel: Identifier,
    /// How long the self-probe may take before the session counts as broken.
    pub probe_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Also LISTEN on this channel and hand its payloads over as they are.
    pub control: Option<ControlRoute>,
    /// Neighbouring channels: LISTEN on them too and report any traffic there.
    pub watch: Vec<Identifier>,
}

/// Where notifications on the control channel go (see [`crate::control`]).
#[derive(Debug, Clone)]
pub struct ControlRoute {
    pub channel: Identifier,
    pub tx: mpsc::Sender<String>,
}

impl ListenerConfig {
    pub fn new(channel: Identifier) -> Self {
        ListenerConfig {
            channel,
            probe_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            control: None,
            watch: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListenerState {
    Connecting,
    /// LISTEN active and the probe answered; `pid` is the backend in `pg_stat_activity`.
    Up {
        pid: i32,
    },
    Down {
        cause: String,
    },
    Stopped,
}

/// Why the listener did not come up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ListenerError {
    #[error("listener stopped")]
    Stopped,
    #[error("listener not up: {0}")]
    Down(String),
    #[error("listener not up after {timeout:?} ({state:?})")]
    TimedOut {
        timeout: Duration,
        state: ListenerState,
    },
}

pub struct ListenerHandle {
    state: watch::Receiver<ListenerState>,
    task: JoinHandle<()>,
}

impl ListenerHandle {
    pub fn state(&self) -> ListenerState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ListenerState> {
        self.state.clone()
    }

    /// Waits until the listener is up (the `[init] Listener running` point).
    pub async fn wait_up(&mut self, timeout: Duration) -> Result<i32, ListenerError> {
        let reached = match tokio::time::timeout(
            timeout,
            self.state
                .wait_for(|s| matches!(s, ListenerState::Up { .. } | ListenerState::Stopped)),
        )
        .await
        {
            Ok(Ok(state)) => Some(state.clone()),
            Ok(Err(_)) => Some(ListenerState::Stopped),
            Err(_) => None,
        };
        match reached {
            Some(ListenerState::Up { pid }) => Ok(pid),
            Some(_) => Err(ListenerError::Stopped),
            None => Err(match self.state() {
                ListenerState::Down { cause } => ListenerError::Down(cause),
                state => ListenerError::TimedOut { timeout, state },
            }),
        }
    }

    /// Waits until the listener task has ended; the error when it had crashed.
    pub async fn join(self) -> Result<(), tokio::task::JoinError> {
        self.task.await
    }

    /// The listener's task, for a stop that will not wait for it forever.
    pub fn into_task(self) -> JoinHandle<()> {
        self.task
    }
}

pub fn spawn_listener(
    database: Database,
    pool: Pool,
    config: ListenerConfig,
    trace: Trace,
    waker: IngestWaker,
    shutdown: CancellationToken,
) -> ListenerHandle {
    let (state_tx, state_rx) = watch::channel(ListenerState::Connecting);
    let (dead_letters, letters) = mpsc::channel(DEAD_LETTER_QUEUE);
    tokio::spawn(write_dead_letters(pool, trace.clone(), letters));
    let listener = Listener {
        database,
        config,
        trace,
        waker,
        state: state_tx,
        dead_letters,
        dead_letters_dropped: AtomicU64::new(0),
        silenced: std::sync::Mutex::new(None),
    };
    let task = tokio::spawn(listener.run(shutdown));
    ListenerHandle {
        state: state_rx,
        task,
    }
}

struct Listener {
    database: Database,
    config: ListenerConfig,
    trace: Trace,
    waker: IngestWaker,
    state: watch::Sender<ListenerState>,
    dead_letters: mpsc::Sender<DeadLetter>,
    dead_letters_dropped: AtomicU64,
    /// The last connection went silent: said with its replacement.
    silenced: std::sync::Mutex<Option<Silence>>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Listener {
    async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut database_was_up = true;
        loop {
            self.state.send_replace(ListenerState::Connecting);
            let end = tokio::select! {
                end = self.session(&mut failures, &mut database_was_up) => end,
                () = shutdown.cancelled() => SessionEnd::Shutdown,
            };
            let cause = match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost(cause) => cause,
            };
            failures = failures.saturating_add(1);
            let delay = backoff(&self.config, failures);
            tracing::warn!(channel = %self.config.channel, %cause, retry_in_ms = delay.as_millis() as u64, "listener down");
            self.trace.emit(
                None,
                TraceKind::ListenerDown {
                    channel: self.config.channel.to_string(),
                    cause: cause.clone(),
                },
            );
            self.state.send_replace(ListenerState::Down { cause });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => break,
            }
        }
        self.state.send_replace(ListenerState::Stopped);
        tracing::debug!(channel = %self.config.channel, "listener stopped");
    }

    /// One connection's life: connect, LISTEN, probe, then forward notifications until the
    /// connection ends.
    async fn session(&self, failures: &mut u32, database_was_up: &mut bool) -> SessionEnd {
        let channel = &self.config.channel;
        let conn = match ListeningConnection::open(&self.database, LISTENER_APP_NAME).await {
            Ok(conn) => conn,
            Err(e) => {
                let error = error_chain(&e);
                if *database_was_up {
                    *database_was_up = false;
                    self.trace.emit(
                        None,
                        TraceKind::DatabaseDown {
                            error: error.clone(),
                        },
                    );
                }
                return SessionEnd::Lost(error);
            }
        };
        *database_was_up = true;
        let mut conn = conn;
        let client = &conn.client;

        let started = Instant::now();
        let listening = async { self.listen_all(client).await.map_err(StoreError::Db) };
        let target = self.database.address();
        let deadline = self.database.deadline();
        let pid = match within(deadline, &target, "LISTEN", listening).await {
            Ok(pid) => pid,
            Err(e) => return SessionEnd::Lost(format!("LISTEN failed: {}", error_chain(&e))),
        };
        if let Err(cause) = self.probe(&conn.client, &mut conn.notifications).await {
            return SessionEnd::Lost(cause);
        }
        let probe_ms = started.elapsed().as_secs_f64() * 1e3;
        // Repeated (a no-op for PostgreSQL) so that this connection's last query, which
        // pg_stat_activity shows, names the channel: anyone can then see who listens where.
        let relisten = async {
            conn.client
                .batch_execute(&format!("LISTEN {}", channel.quoted()))
                .await
                .map_err(StoreError::Db)
        };
        if let Err(e) = within(deadline, &target, "LISTEN", relisten).await {
            return SessionEnd::Lost(format!("LISTEN failed: {}", error_chain(&e)));
        }

        tracing::info!("[init] Listener running on channel {channel}");
        *failures = 0;
        self.trace.emit(
            None,
            TraceKind::ListenerUp {
                channel: channel.to_string(),
                pid,
                probe_ms,
            },
        );
        self.state.send_replace(ListenerState::Up { pid });
        // Catch up on whatever was published while nobody listened.
        self.waker.wake();

        if let Some(silence) = self.silenced.lock().ok().and_then(|mut s| s.take()) {
            crate::silence::report(&self.trace, "listener", &silence, true);
        }

        loop {
            match conn.next(&self.database, channel).await {
                Ok(n) => self.handle(&n),
                Err(Ended::Silent(silence)) => {
                    let cause = silence.to_string();
                    // Said as replaced once a new connection listens.
                    if let Ok(mut silenced) = self.silenced.lock() {
                        *silenced = Some(silence);
                    }
                    return SessionEnd::Lost(cause);
                }
                Err(Ended::Lost(cause)) => return SessionEnd::Lost(cause),
            }
        }
    }

    /// LISTEN on the channel, the control channel and the neighbours; the backend's pid.
    async fn listen_all(&self, client: &Client) -> Result<i32, tokio_postgres::Error> {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        let control = self.config.control.as_ref().map(|c| &c.channel);
        for channel in std::iter::once(&self.config.channel)
            .chain(control)
            .chain(&self.config.watch)
        {
            client
                .batch_execute(&format!("LISTEN {}", channel.quoted()))
                .await?;
        }
        Ok(pid)
    }

    /// Self-probe: our own NOTIFY must come back through the same path real events take.
    /// What arrives before it is handled as usual.
    async fn probe(
        &self,
        client: &Client,
        rx: &mut mpsc::Receiver<Result<Notification, ConnectionLost>>,
    ) -> Result<(), String> {
        let channel = &self.config.channel;
        let probe_id = Uuid::new_v4();
        notify(client, channel.as_str(), &contract::probe_payload(probe_id))
            .await
            .map_err(|e| format!("probe NOTIFY failed: {}", error_chain(&e)))?;
        let deadline = tokio::time::sleep(self.config.probe_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => {
                    return Err(format!(
                        "self-probe on channel {channel} not answered within {:?}",
                        self.config.probe_timeout
                    ));
                }
                item = rx.recv() => match item {
                    Some(Ok(n)) => {
                        if is_probe(&n, probe_id) {
                            return Ok(());
                        }
                        self.handle(&n);
                    }
                    Some(Err(ConnectionLost(cause))) => return Err(cause),
                    None => return Err("connection closed".into()),
                },
            }
        }
    }

    fn handle(&self, n: &Notification) {
        if let Some(control) = &self.config.control {
            if n.channel() == control.channel.as_str() {
                if control.tx.try_send(n.payload().to_owned()).is_err() {
                    tracing::warn!(
                        channel = n.channel(),
                        "control request dropped: too many waiting"
                    );
                }
                return;
            }
        }
        let payload = n.payload();
        if n.channel() != self.config.channel.as_str() {
            if self.config.watch.iter().any(|w| w.as_str() == n.channel()) {
                tracing::warn!(
                    channel = n.channel(),
                    sender_pid = n.process_id(),
                    "NOTIFY on a neighbouring channel"
                );
                self.trace.emit(
                    contract::parse_notify(payload)
                        .ok()
                        .and_then(|p| p.message_id()),
                    TraceKind::NeighbourNotified {
                        channel: n.channel().to_owned(),
                        sender_pid: n.process_id(),
                        bytes: payload.len(),
                        payload: shorten(payload, REJECTED_SAMPLE),
                    },
                );
            }
            return;
        }
        match contract::parse_notify(payload) {
            Ok(NotifyPayload::Probe { .. }) => {}
            Ok(parsed) => {
                if parsed.outbox_id().is_none() {
                    // Ingestion reads the outbox; a NOTIFY alone carries nothing it will take.
                    tracing::warn!(
                        channel = n.channel(), sender_pid = n.process_id(),
                        message_id = ?parsed.message_id(),
                        "event announced without an outbox row: it will not be ingested"
                    );
                }
                self.trace.emit(
                    parsed.message_id(),
                    TraceKind::Notified {
                        channel: n.channel().to_owned(),
                        sender_pid: n.process_id(),
                        outbox_id: parsed.outbox_id(),
                        by_ref: matches!(parsed, NotifyPayload::Reference { .. }),
                        bytes: payload.len(),
                        payload: payload.to_owned(),
                    },
                );
                self.waker.wake();
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(channel = n.channel(), sender_pid = n.process_id(), %error, "notification rejected");
                self.trace.emit(
                    None,
                    TraceKind::NotifyRejected {
                        channel: n.channel().to_owned(),
                        sender_pid: n.process_id(),
                        error: error.clone(),
                        payload: shorten(payload, REJECTED_SAMPLE),
                    },
                );
                self.record_dead_letter(n, error);
            }
        }
    }

    /// Hands the rejected payload to the dead-letter writer without holding up the listener.
    fn record_dead_letter(&self, n: &Notification, error: String) {
        let letter = DeadLetter {
            channel: n.channel().to_owned(),
            sender_pid: n.process_id(),
            payload: n.payload().to_owned(),
            error,
        };
        if self.dead_letters.try_send(letter).is_err() {
            // A flood of junk must not take the pool from the publisher: beyond the bound the
            // rejections are still traced, only not stored.
            let dropped = self.dead_letters_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(
                    dropped,
                    "too many rejected notifications: not all are kept in dead_letters"
                );
            }
        }
    }
}

/// A rejected notification on its way to `dead_letters`.
struct DeadLetter {
    channel: String,
    sender_pid: i32,
    payload: String,
    error: String,
}

/// Dead letters waiting to be written, at most.
const DEAD_LETTER_QUEUE: usize = 1024;

/// Writes dead letters one connection at a time, in batches, until the listener is gone.
async fn write_dead_letters(pool: Pool, trace: Trace, mut rx: mpsc::Receiver<DeadLetter>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let result = async {
            let client = pool.get().await?;
            let channels: Vec<&str> = batch.iter().map(|d| d.channel.as_str()).collect();
            let pids: Vec<i32> = batch.iter().map(|d| d.sender_pid).collect();
            let payloads: Vec<&str> = batch.iter().map(|d| d.payload.as_str()).collect();
            let errors: Vec<&str> = batch.iter().map(|d| d.error.as_str()).collect();
            client
                .execute(
                    "INSERT INTO dead_letters (channel, sender_pid, payload, error) \
                     SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[])",
                    &[&channels, &pids, &payloads, &errors],
                )
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = result {
            let error = error_chain(&e);
            let class = e.class();
            tracing::error!(count = batch.len(), %class, %error, "could not record dead letters");
            // The rejections themselves are on the trace already; what failed is their copy
            // in dead_letters, and why.
            trace.emit(
                None,
                if class == ErrorClass::Connection {
                    TraceKind::DatabaseDown { error }
                } else {
                    TraceKind::DatabaseRefused {
                        part: WriteStage::DeadLetters,
                        class,
                        error,
                        retry_in_ms: None,
                    }
                },
            );
        }
        batch.clear();
    }
}

fn is_probe(n: &Notification, probe_id: Uuid) -> bool {
    matches!(contract::parse_notify(n.payload()), Ok(NotifyPayload::Probe { probe_id: id }) if id == probe_id)
}

/// Exponential backoff with ±50 % jitter, so that many listeners losing one server do not
/// reconnect in lockstep.
fn backoff(config: &ListenerConfig, failures: u32) -> Duration {
    let exp = config
        .backoff_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(config.backoff_max);
    let jitter = rand::rng().random_range(0.5..1.5);
    exp.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = ListenerConfig::new(Identifier::channel("events").expect("valid"));
        let first = backoff(&config, 1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(300));
        let late = backoff(&config, 30);
        assert!(late <= Duration::from_secs(15) && late >= Duration::from_secs(5));
    }
}
