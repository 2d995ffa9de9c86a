//! The simulated source and its remote control.
//!
//! A running notifyscope LISTENs on [`CONTROL_CHANNEL`]; `notifyscope send --via-bot KIND` from
//! another shell (or over ssh) sends a request there and waits for the answer on
//! [`REPLY_CHANNEL`]. Requests name the schema and event channel of the instance they are for,
//! since NOTIFY channels are shared by everyone on the database. For the same reason anyone
//! who may connect can send one: a request is carried out only when it carries the instance's
//! [`ControlSecret`], which `send` reads from the instance's runtime file
//! ([`notifyscope_store::instance`]).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bot_path::{BotPath, Handled};
use crate::listening::{ConnectionLost, ListeningConnection};
use crate::publish::PublishError;
use crate::synthetic::{self, SimKind, SIM_BOT};
use notifyscope_model::contract::{Snowflake, NOTIFY_PAYLOAD_LIMIT};
use notifyscope_model::trace::{ControlRefusal, SkipReason, Source, TraceKind};
use notifyscope_store::instance::{ControlSecret, RuntimeDir};
use notifyscope_store::notify::notify;
use notifyscope_store::{error_chain, Database, Identifier, StoreError, APP_NAME};

pub const CONTROL_CHANNEL: &str = "notifyscope_control";
pub const REPLY_CHANNEL: &str = "notifyscope_control_reply";

pub fn control_channel() -> Identifier {
    Identifier::fixed(CONTROL_CHANNEL)
}

fn reply_channel() -> Identifier {
    Identifier::fixed(REPLY_CHANNEL)
}

/// Ask the bot path of the instance running on `schema`/`channel` to handle test messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViaBotRequest {
    pub v: u64,
    pub request_id: Uuid,
    pub schema: String,
    pub channel: String,
    pub kind: SimKind,
    /// Chosen by the sender, so it can follow them before the answer comes.
    pub message_ids: Vec<Snowflake>,
    /// The instance's control secret; a request without it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ControlSecret>,
}

/// What the bot path did with each message of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViaBotReply {
    pub request_id: Uuid,
    pub published: Vec<Snowflake>,
    pub skipped: Vec<(Snowflake, SkipReason)>,
    pub failed: Vec<(Snowflake, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(String),
    #[error(
        "no running notifyscope answered within {seconds} s on {CONTROL_CHANNEL} for schema \
         {schema}, channel {channel}: start one with the same --database-url, --schema and \
         --channel"
    )]
    NoAnswer {
        seconds: u64,
        schema: String,
        channel: String,
    },
    #[error(
        "no running notifyscope answered within {seconds} s on {CONTROL_CHANNEL} for schema \
         {schema}, channel {channel}, and the request carried no control secret: a running \
         instance requires its secret, which send reads from the instance's file in {dir}, and \
         none there runs on this database, schema and channel; run send on the same machine \
         and as the same user as `notifyscope run`, with the same --database-url, --schema \
         and --channel (or without them, to use the running instance)"
    )]
    NoAnswerWithoutSecret {
        seconds: u64,
        schema: String,
        channel: String,
        dir: String,
    },
}

impl From<tokio_postgres::Error> for ControlError {
    fn from(e: tokio_postgres::Error) -> Self {
        ControlError::Db(error_chain(&e))
    }
}

/// Makes test messages and sends them down the bot path.
#[derive(Clone)]
pub struct SimulatedSource {
    bot_path: Arc<BotPath>,
}

impl SimulatedSource {
    pub fn new(bot_path: Arc<BotPath>) -> Self {
        SimulatedSource { bot_path }
    }

    /// Makes `kind` with fresh ids and handles it; returns each id with its outcome.
    pub async fn inject(&self, kind: SimKind) -> Vec<(Snowflake, Result<Handled, PublishError>)> {
        let ids = (0..kind.count())
            .map(|_| synthetic::next_snowflake())
            .collect();
        self.inject_ids(kind, ids).await
    }

    pub async fn inject_ids(
        &self,
        kind: SimKind,
        ids: Vec<Snowflake>,
    ) -> Vec<(Snowflake, Result<Handled, PublishError>)> {
        self.inject_from(kind, ids, Source::Simulated).await
    }

    /// Handles `kind` with the given ids as messages of `source` (a control request names
    /// itself, so that the panes tell it from the keys of this screen).
    async fn inject_from(
        &self,
        kind: SimKind,
        ids: Vec<Snowflake>,
        source: Source,
    ) -> Vec<(Snowflake, Result<Handled, PublishError>)> {
        let bot = self.bot_path.filter().bot_user_id().unwrap_or(SIM_BOT);
        let handling = ids.iter().enumerate().map(|(seq, id)| {
            let mut msg = synthetic::incoming(kind, *id, bot, seq);
            msg.source = source;
            self.bot_path.handle(msg)
        });
        ids.iter().copied().zip(join_all(handling).await).collect()
    }

    /// `rate` ordinary messages a second until `stop`. The timer runs at 100 Hz and each
    /// tick sends what is due, since timers cannot tick thousands of times a second.
    pub fn spawn_demo(&self, rate: u32, stop: CancellationToken) -> JoinHandle<()> {
        let source = self.clone();
        tokio::spawn(async move {
            // Bounds the messages in flight: when the pipeline falls behind, the demo slows
            // down instead of piling up tasks.
            let in_flight = Arc::new(tokio::sync::Semaphore::new(10_000));
            let started = tokio::time::Instant::now();
            let mut sent: u64 = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                for _ in sent..due {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        return;
                    };
                    let source = source.clone();
                    // Handled concurrently so that the publisher can batch them.
                    tokio::spawn(async move {
                        source.inject(SimKind::Message).await;
                        drop(permit);
                    });
                }
                sent = sent.max(due);
            }
        })
    }

    /// Serves `send --via-bot` requests addressed to this instance and carrying `secret`
    /// until the channel closes.
    pub fn spawn_control(
        &self,
        mut requests: mpsc::Receiver<String>,
        pool: Pool,
        schema: Identifier,
        channel: Identifier,
        secret: ControlSecret,
    ) -> JoinHandle<()> {
        let source = self.clone();
        tokio::spawn(async move {
            while let Some(payload) = requests.recv().await {
                let request: ViaBotRequest = match serde_json::from_str(&payload) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a malformed control request");
                        continue;
                    }
                };
                if request.schema != schema.as_str() || request.channel != channel.as_str() {
                    continue;
                }
                let refusal = match &request.secret {
                    None => Some(ControlRefusal::MissingSecret),
                    Some(offered) if !secret.admits(offered) => Some(ControlRefusal::WrongSecret),
                    Some(_) => None,
                };
                if let Some(reason) = refusal {
                    tracing::warn!(
                        reason = reason.as_str(),
                        kind = request.kind.as_str(),
                        "refused a control request: {reason}; send --via-bot on this machine \
                         reads the secret from the instance's runtime file"
                    );
                    source
                        .bot_path
                        .trace()
                        .emit(None, TraceKind::ControlRefused { reason });
                    continue;
                }
                if request.message_ids.len() != request.kind.count() {
                    tracing::warn!(
                        kind = request.kind.as_str(),
                        ids = request.message_ids.len(),
                        "ignoring a control request with the wrong number of ids"
                    );
                    continue;
                }
                tracing::info!(
                    kind = request.kind.as_str(),
                    count = request.message_ids.len(),
                    "test messages requested from another shell"
                );
                let results = source
                    .inject_from(request.kind, request.message_ids, Source::Control)
                    .await;
                let reply = reply_payload(request.request_id, &results);
                let sent = async {
                    let client = pool.get().await?;
                    notify(&**client, REPLY_CHANNEL, &reply).await?;
                    Ok::<_, StoreError>(())
                }
                .await;
                if let Err(e) = sent {
                    tracing::error!(error = %error_chain(&e), "could not answer a control request");
                }
            }
        })
    }
}

fn reply_payload(
    request_id: Uuid,
    results: &[(Snowflake, Result<Handled, PublishError>)],
) -> String {
    let mut reply = ViaBotReply {
        request_id,
        ..ViaBotReply::default()
    };
    for (id, result) in results {
        match result {
            Ok(Handled::Published(_)) => reply.published.push(*id),
            Ok(Handled::Skipped(reason)) => reply.skipped.push((*id, reason.clone())),
            // The control channel feeds our own bot path, which always publishes or skips.
            Ok(Handled::Observed) => {}
            Err(e) => reply.failed.push((*id, e.to_string())),
        }
    }
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    if text.len() > NOTIFY_PAYLOAD_LIMIT {
        // Only a large burst with long errors gets here: keep the counts honest, shorten the
        // error texts.
        for (_, error) in &mut reply.failed {
            *error = notifyscope_model::present::shorten(error, 40);
        }
        reply.failed.truncate(50);
        text = serde_json::to_string(&reply).unwrap_or_default();
    }
    text
}

/// Sends `kind` to the bot path of the instance running on `database`'s schema and `channel`,
/// with its control `secret`, and waits for its answer.
pub async fn send_via_bot(
    database: &Database,
    channel: &Identifier,
    kind: SimKind,
    secret: Option<&ControlSecret>,
    timeout: Duration,
) -> Result<(Vec<Snowflake>, ViaBotReply), ControlError> {
    let mut conn = ListeningConnection::open(database, APP_NAME).await?;
    conn.listen(&reply_channel()).await?;
    let request = ViaBotRequest {
        v: 1,
        request_id: Uuid::new_v4(),
        schema: database.schema().to_string(),
        channel: channel.to_string(),
        kind,
        message_ids: (0..kind.count())
            .map(|_| synthetic::next_snowflake())
            .collect(),
        secret: secret.cloned(),
    };
    let payload = serde_json::to_string(&request).unwrap_or_default();
    notify(&conn.client, CONTROL_CHANNEL, &payload).await?;
    let no_answer = || {
        let (seconds, schema, channel) = (
            timeout.as_secs(),
            request.schema.clone(),
            request.channel.clone(),
        );
        match request.secret {
            Some(_) => ControlError::NoAnswer {
                seconds,
                schema,
                channel,
            },
            None => ControlError::NoAnswerWithoutSecret {
                seconds,
                schema,
                channel,
                dir: RuntimeDir::location().display().to_string(),
            },
        }
    };
    let wait = async {
        while let Some(item) = conn.notifications.recv().await {
            let n = item.map_err(|ConnectionLost(cause)| ControlError::Db(cause))?;
            if let Ok(reply) = serde_json::from_str::<ViaBotReply>(n.payload()) {
                if reply.request_id == request.request_id {
                    return Ok(reply);
                }
            }
        }
        Err(ControlError::Db("connection closed".into()))
    };
    let reply = tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| no_answer())??;
    Ok((request.message_ids, reply))
}
