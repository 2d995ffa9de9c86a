//! The Discord bot: the real serenity client feeding the bot path.
//!
//! The token is handed to serenity (which keeps it as a secret) and is otherwise never
//! formatted anywhere: not in logs, traces, errors or the screen.

pub mod gateway;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use serenity::all::GatewayIntents;

use chrono::{DateTime, Utc};
use serenity::all::{
    ClientBuilder, ConnectionStage, Context, Event, EventHandler, HttpBuilder, Message,
    MessageType, RawEventHandler, Ready, ResumedEvent, ShardStageUpdateEvent,
};
use serenity::async_trait;
use tokio_util::sync::CancellationToken;

use crate::bot_path::BotPath;
use crate::filter::IncomingMessage;
use notifyscope_model::contract::{MessageRecord, Snowflake};
use notifyscope_model::trace::{Source, TraceKind};

use gateway::GatewayWatch;

/// The intents asked for by default: guild and direct messages with their content.
pub const DEFAULT_INTENTS: &str = "guilds,guild_messages,direct_messages,message_content";

/// The bot's token, printable only as a placeholder.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Option<Self> {
        let token = token.trim().to_owned();
        (!token.is_empty()).then_some(Token(token))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// As many as Discord recommends (`GET /gateway/bot`).
    Auto,
    Count(u32),
}

impl std::str::FromStr for Shards {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Shards::Auto);
        }
        match s.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Shards::Count(n)),
            _ => Err(format!(
                "{s:?} is neither `auto` nor a shard count of 1 or more"
            )),
        }
    }
}

/// The shards one process runs when several processes share a bot: ids `start` up to, not
/// including, `end` (`--shard-range 0..2`; `0..=1` is the same range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    pub start: u32,
    pub end: u32,
}

impl std::str::FromStr for ShardRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a shard range: write FIRST..END (END not included, e.g. 0..2) \
                 or FIRST..=LAST"
            )
        };
        let (first, rest) = s.trim().split_once("..").ok_or_else(bad)?;
        let (inclusive, last) = match rest.strip_prefix('=') {
            Some(last) => (true, last),
            None => (false, rest),
        };
        let start: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        let end = if inclusive {
            last.checked_add(1).ok_or_else(bad)?
        } else {
            last
        };
        if end <= start {
            return Err(format!("the shard range {s:?} holds no shard"));
        }
        Ok(ShardRange { start, end })
    }
}

impl ShardRange {
    /// The range against the total: it must be a number (every process must agree on it, so
    /// not `auto`) and hold the range.
    pub fn check(&self, shards: Shards) -> Result<u32, String> {
        match shards {
            Shards::Auto => Err(
                "--shard-range needs --shards N, the total over all processes (not auto: each \
                 process must use the same total)"
                    .into(),
            ),
            Shards::Count(total) if self.end > total => Err(format!(
                "--shard-range {self} does not fit in --shards {total} (shard ids are 0..{total})"
            )),
            Shards::Count(total) => Ok(total),
        }
    }

    /// The instance name this process carries in `pg_stat_activity`.
    pub fn instance(&self, total: u32) -> String {
        format!("shards {self} of {total}")
    }
}

impl fmt::Display for ShardRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

#[derive(Debug, Clone)]
pub struct BotConfig {
    pub token: Token,
    /// Base URL that replaces `https://discord.com` (an HTTP proxy or a local fake).
    pub api_url: Option<String>,
    pub intents: GatewayIntents,
    pub shards: Shards,
    /// Only these shards of `shards`, when several processes share the bot.
    pub shard_range: Option<ShardRange>,
}

/// Parses `--intents`: names separated by commas (`guilds,guild_messages,…`) or a number.
pub fn parse_intents(s: &str) -> Result<GatewayIntents, String> {
    if let Ok(bits) = s.trim().parse::<u64>() {
        return GatewayIntents::from_bits(bits)
            .ok_or_else(|| format!("unknown intent bits in {bits}"));
    }
    let mut intents = GatewayIntents::empty();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        intents |= match name.to_ascii_lowercase().as_str() {
            "guilds" => GatewayIntents::GUILDS,
            "guild_members" => GatewayIntents::GUILD_MEMBERS,
            "guild_moderation" => GatewayIntents::GUILD_MODERATION,
            "guild_presences" => GatewayIntents::GUILD_PRESENCES,
            "guild_messages" => GatewayIntents::GUILD_MESSAGES,
            "guild_message_reactions" => GatewayIntents::GUILD_MESSAGE_REACTIONS,
            "direct_messages" => GatewayIntents::DIRECT_MESSAGES,
            "direct_message_reactions" => GatewayIntents::DIRECT_MESSAGE_REACTIONS,
            "message_content" => GatewayIntents::MESSAGE_CONTENT,
            other => {
                return Err(format!(
                    "unknown intent {other:?}; use names such as guilds, guild_messages, \
                     direct_messages, message_content, guild_members, or a number"
                ))
            }
        };
    }
    Ok(intents)
}

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(
        "Discord rejected the bot token ({0}); check that the token variable holds the bot \
         token from the Developer Portal's Bot page (not the client secret) and that it was \
         not reset"
    )]
    InvalidToken(&'static str),
    #[error(
        "Discord refused a privileged intent (gateway close 4014): enable it in the Developer \
         Portal under Bot → Privileged Gateway Intents (MESSAGE CONTENT INTENT for message \
         text), or leave it out of --intents"
    )]
    DisallowedIntents,
    #[error("Discord refused the requested intents as invalid (gateway close 4013)")]
    InvalidIntents,
    #[error("cannot reach the Discord API at {api}: {error}")]
    Unreachable { api: String, error: String },
    #[error("Discord gateway: {0}")]
    Gateway(String),
}

fn api_base(api_url: Option<&str>) -> String {
    api_url.unwrap_or("https://discord.com").to_owned()
}

fn http_error(api_url: Option<&str>, e: serenity::Error) -> BotError {
    if let serenity::Error::Http(http) = &e {
        if http.status_code().map(|s| s.as_u16()) == Some(401) {
            return BotError::InvalidToken("HTTP 401 Unauthorized");
        }
    }
    BotError::Unreachable {
        api: api_base(api_url),
        error: e.to_string(),
    }
}

/// serenity's HTTP client for the token, sending to `api_url` instead of discord.com.
fn http_client(token: &Token, api_url: Option<&str>) -> serenity::http::Http {
    let mut http = HttpBuilder::new(&token.0);
    if let Some(api) = api_url {
        // serenity's ratelimiter builds its requests without the proxy; with it on, calls
        // would bypass the configured base and go to discord.com.
        http = http
            .proxy(api.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    http.build()
}

/// Asks Discord whether it accepts the token; the bot's user name when it does.
pub async fn check_token(token: &Token, api_url: Option<&str>) -> Result<String, BotError> {
    http_client(token, api_url)
        .get_current_user()
        .await
        .map(|me| me.name.clone())
        .map_err(|e| http_error(api_url, e))
}

fn gateway_error(e: serenity::Error) -> BotError {
    use serenity::gateway::GatewayError;
    match e {
        serenity::Error::Gateway(GatewayError::InvalidAuthentication) => {
            BotError::InvalidToken("gateway close 4004: authentication failed")
        }
        serenity::Error::Gateway(GatewayError::DisallowedGatewayIntents) => {
            BotError::DisallowedIntents
        }
        serenity::Error::Gateway(GatewayError::InvalidGatewayIntents) => BotError::InvalidIntents,
        other => BotError::Gateway(other.to_string()),
    }
}

/// Connects to Discord and feeds every gateway message to the bot path until `stop` fires
/// or the gateway fails for good.
pub async fn run_bot(
    config: BotConfig,
    bot_path: Arc<BotPath>,
    stop: CancellationToken,
) -> Result<(), BotError> {
    let api_url = config.api_url.as_deref();
    let http = http_client(&config.token, api_url);
    // Check the token and find the gateway ourselves: serenity logs a failed gateway look-up
    // as a warning and falls back to the public gateway, which would hide a bad token or a
    // wrong --discord-api-url behind endless reconnects.
    let me = http
        .get_current_user()
        .await
        .map_err(|e| http_error(api_url, e))?;
    let gateway = http
        .get_gateway()
        .await
        .map_err(|e| http_error(api_url, e))?;
    tracing::info!(user = %me.name, gateway = %gateway.url, "Discord accepted the bot token");

    let watch = GatewayWatch::of_subscriber();
    let handler = Arc::new(Handler {
        bot_path: bot_path.clone(),
        malformed: AtomicU64::new(0),
        gateway: watch.clone(),
    });
    watch.attach(Some(bot_path.trace().clone()));
    let mut client = ClientBuilder::new_with_http(http, config.intents)
        .event_handler_arc(handler.clone())
        .raw_event_handler(RawHandler(handler))
        .await
        .map_err(gateway_error)?;
    *client.ws_url.lock().await = gateway.url;

    let shard_manager = client.shard_manager.clone();
    let stopper = tokio::spawn(async move {
        stop.cancelled().await;
        shard_manager.shutdown_all().await;
    });
    let result = match (config.shards, config.shard_range) {
        (Shards::Count(total), Some(range)) => {
            // serenity reads the end of this range as the last shard, included.
            client
                .start_shard_range(range.start..range.end - 1, total)
                .await
        }
        (Shards::Auto, _) => client.start_autosharded().await,
        (Shards::Count(1), _) => client.start().await,
        (Shards::Count(n), _) => client.start_shards(n).await,
    };
    stopper.abort();
    watch.attach(None);
    result.map_err(|e| {
        let error = gateway_error(e);
        let (code, reason) = match &error {
            BotError::InvalidToken(_) => (Some(4004), "authentication failed"),
            BotError::InvalidIntents => (Some(4013), "invalid intents"),
            BotError::DisallowedIntents => (Some(4014), "disallowed intents"),
            _ => (
                watch
                    .last_close(Duration::from_secs(5))
                    .and_then(|c| c.code),
                "gateway stopped",
            ),
        };
        bot_path.trace().emit(
            None,
            TraceKind::GatewayDown {
                shard: None,
                code,
                reason: reason.into(),
            },
        );
        error
    })
}

struct Handler {
    bot_path: Arc<BotPath>,
    malformed: AtomicU64,
    gateway: GatewayWatch,
}

/// Message types that carry what a person wrote; every other type is made by Discord.
fn is_system(kind: MessageType) -> bool {
    !matches!(
        kind,
        MessageType::Regular
            | MessageType::InlineReply
            | MessageType::ChatInputCommand
            | MessageType::ContextMenuCommand
    )
}

fn to_incoming(msg: &Message, bot: Option<Snowflake>) -> IncomingMessage {
    let created_at = msg
        .timestamp
        .to_rfc3339()
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| Snowflake(msg.id.get()).timestamp())
        .unwrap_or_else(Utc::now);
    IncomingMessage {
        message: MessageRecord {
            message_id: Snowflake(msg.id.get()),
            channel_id: Snowflake(msg.channel_id.get()),
            guild_id: msg.guild_id.map(|g| Snowflake(g.get())),
            author_id: Snowflake(msg.author.id.get()),
            // PostgreSQL text cannot hold NUL; Discord text practically never has one.
            author_name: msg.author.name.replace('\0', "\u{fffd}"),
            author_is_bot: msg.author.bot,
            content: msg.content.replace('\0', "\u{fffd}"),
            created_at,
            synthetic: false,
        },
        webhook_id: msg.webhook_id.map(|w| Snowflake(w.get())),
        is_system: is_system(msg.kind),
        mentions_bot: bot.is_some_and(|b| msg.mentions.iter().any(|u| u.id.get() == b.0)),
        has_media: !msg.attachments.is_empty()
            || !msg.embeds.is_empty()
            || !msg.sticker_items.is_empty(),
        source: Source::Gateway,
    }
}

fn stage_name(stage: ConnectionStage) -> String {
    format!("{stage:?}")
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let user_id = Snowflake(ready.user.id.get());
        self.bot_path.filter().set_bot_user_id(user_id);
        let (shard, shards) = ready
            .shard
            .map(|s| (s.id.0, s.total))
            .unwrap_or((ctx.shard_id.0, 1));
        if self.gateway.shard_up(ctx.shard_id.0) {
            // Connected already: the shard was restarted without a stage change we saw.
            let restarted = "session restarted".into();
            self.gateway
                .shard_down(Some(ctx.shard_id.0), None, restarted);
            self.gateway.shard_up(ctx.shard_id.0);
        }
        tracing::info!(user = %ready.user.name, shard, shards, "[init] connected to the Discord gateway");
        self.bot_path.trace().emit(
            None,
            TraceKind::GatewayReady {
                user_id,
                user_name: ready.user.name.clone(),
                session_id: ready.session_id.clone(),
                shard,
                shards,
            },
        );
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        let incoming = to_incoming(&msg, self.bot_path.filter().bot_user_id());
        // Failures are logged and traced by the publisher; nothing more to do here.
        let _ = self.bot_path.handle(incoming).await;
    }

    async fn resume(&self, ctx: Context, _event: ResumedEvent) {
        tracing::info!(shard = ctx.shard_id.0, "gateway session resumed");
        self.bot_path.trace().emit(
            None,
            TraceKind::GatewayResumed {
                shard: ctx.shard_id.0,
            },
        );
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        let shard = event.shard_id.0;
        let trace = self.bot_path.trace();
        trace.emit(
            None,
            TraceKind::GatewayStage {
                shard,
                old: stage_name(event.old),
                new: stage_name(event.new),
            },
        );
        if event.new == ConnectionStage::Connected {
            self.gateway.shard_up(shard);
        } else {
            let close = self.gateway.last_close(Duration::from_secs(10));
            let code = close.as_ref().and_then(|c| c.code);
            let reason = close
                .map(|c| c.reason)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| format!("connection lost ({})", stage_name(event.new)));
            self.gateway.shard_down(Some(shard), code, reason);
        }
    }
}

/// Sees every gateway event before parsing errors are swallowed.
struct RawHandler(Arc<Handler>);

#[async_trait]
impl RawEventHandler for RawHandler {
    async fn raw_event(&self, _ctx: Context, event: Event) {
        let Event::Unknown(unknown) = event else {
            return;
        };
        // serenity turns an event it cannot parse into `Unknown` and only logs it at debug
        // level; for the events this bot lives on, that is a lost message.
        let error = match unknown.kind.as_str() {
            "MESSAGE_CREATE" => serde_json::from_value::<Message>(unknown.value.clone()).err(),
            "READY" => serde_json::from_value::<Ready>(unknown.value.clone()).err(),
            _ => {
                tracing::debug!(kind = %unknown.kind, "gateway event of a type this client does not know");
                return;
            }
        };
        let error = error
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unparseable".into());
        let count = self.0.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        let message_id = unknown
            .value
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(Snowflake::parse);
        tracing::error!(kind = %unknown.kind, ?message_id, %error, count, "malformed gateway event dropped by the Discord client");
        self.0.bot_path.trace().emit(
            message_id,
            TraceKind::GatewayMalformed {
                kind: unknown.kind,
                error,
                count,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_parse() {
        let default = parse_intents(DEFAULT_INTENTS).expect("valid");
        assert_eq!(default.bits(), 1 | 512 | 4096 | 32768);
        assert_eq!(parse_intents("513").expect("valid").bits(), 513);
        assert!(parse_intents("guilds,nope").is_err());
    }

    #[test]
    fn token_is_never_printed() {
        let token = Token::new("MTIz.secret.token".into()).expect("token");
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert!(Token::new("  ".into()).is_none());
    }

    #[test]
    fn shard_ranges_parse_and_fit_the_total() {
        let half: ShardRange = "0..2".parse().expect("range");
        assert_eq!(half, ShardRange { start: 0, end: 2 });
        assert_eq!(
            "2..=3".parse::<ShardRange>(),
            Ok(ShardRange { start: 2, end: 4 })
        );
        assert!("2..2".parse::<ShardRange>().is_err());
        assert!("3..1".parse::<ShardRange>().is_err());
        assert!("0-2".parse::<ShardRange>().is_err());
        assert_eq!(half.check(Shards::Count(4)), Ok(4));
        assert!(half.check(Shards::Count(1)).is_err());
        assert!(half.check(Shards::Auto).is_err());
        assert_eq!(half.instance(4), "shards 0..2 of 4");
    }

    #[test]
    fn shards_parse() {
        assert_eq!("auto".parse::<Shards>(), Ok(Shards::Auto));
        assert_eq!("4".parse::<Shards>(), Ok(Shards::Count(4)));
        assert!("0".parse::<Shards>().is_err());
    }
}
