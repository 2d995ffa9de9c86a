//! Options of the Discord side: the bot's token, API and gateway, and the filter of the bot
//! path.

use clap::Args;

use notifyscope_model::contract::Snowflake;
use notifyscope_pipeline::filter::FilterConfig;

use super::BOT;

#[derive(Debug, Clone, Args, Default)]
pub struct DiscordArgs {
    /// Name of the environment variable that holds the bot token. Without a token the bot
    /// path is fed by the simulated source (`send --via-bot`, keys, --demo-rate).
    #[arg(long, default_value = "DISCORD_TOKEN", value_name = "NAME", help_heading = BOT)]
    pub discord_token_env: String,
    /// Send Discord HTTP API calls (and the gateway look-up) to this base instead of
    /// https://discord.com: an HTTP proxy in front of Discord, or a local fake.
    #[arg(long, env = "DISCORD_API_URL", value_name = "URL", help_heading = BOT)]
    pub discord_api_url: Option<String>,
    /// Gateway intents: names separated by commas, or a number.
    #[arg(long, value_name = "LIST", default_value = notifyscope_pipeline::bot::DEFAULT_INTENTS,
          value_parser = notifyscope_pipeline::bot::parse_intents, help_heading = BOT)]
    pub intents: Option<notifyscope_pipeline::bot::GatewayIntents>,
    /// Shards: `auto` (as many as Discord recommends) or a number (with --shard-range: the
    /// total over all processes).
    #[arg(long, value_name = "auto|N", default_value = "1", help_heading = BOT)]
    pub shards: Option<notifyscope_pipeline::bot::Shards>,
    /// Run only these shards (FIRST..END, END not included), so that several processes on
    /// several machines share one bot; they all publish to one outbox, and their ingestion
    /// workers share it.
    #[arg(long, value_name = "FIRST..END", help_heading = BOT)]
    pub shard_range: Option<notifyscope_pipeline::bot::ShardRange>,
}

/// What the bot path publishes; it filters Discord's messages and the simulated ones alike.
#[derive(Debug, Clone, Args, Default)]
pub struct FilterArgs {
    /// Publish only messages from this Discord channel id (repeatable).
    #[arg(long = "allow-channel", value_name = "CHANNEL_ID", value_parser = parse_snowflake,
          help_heading = BOT)]
    pub allow_channels: Vec<Snowflake>,
    /// Publish messages written by other bots.
    #[arg(long, help_heading = BOT)]
    pub include_bots: bool,
    /// Publish messages sent through webhooks.
    #[arg(long, help_heading = BOT)]
    pub include_webhooks: bool,
    /// Publish Discord's system messages (joins, pins).
    #[arg(long, help_heading = BOT)]
    pub include_system: bool,
    /// Publish messages without text.
    #[arg(long, help_heading = BOT)]
    pub include_empty: bool,
}

impl FilterArgs {
    pub fn to_config(&self) -> FilterConfig {
        FilterConfig {
            allow_channels: self.allow_channels.clone(),
            include_bots: self.include_bots,
            include_webhooks: self.include_webhooks,
            include_system: self.include_system,
            include_empty: self.include_empty,
        }
    }
}

fn parse_snowflake(s: &str) -> Result<Snowflake, String> {
    Snowflake::parse(s).ok_or_else(|| format!("{s:?} is not a Discord id (a positive integer)"))
}
