//! Which incoming Discord messages are published, and the named reason for each one that is not.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::contract::{MessageRecord, Snowflake};
use crate::trace::{SkipReason, TraceKind};

/// A Discord message as the bot path sees it, from the gateway or from the simulated source.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    pub message_id: Snowflake,
    pub channel_id: Snowflake,
    /// `None` for direct messages.
    pub guild_id: Option<Snowflake>,
    pub author_id: Snowflake,
    pub author_name: String,
    pub author_is_bot: bool,
    pub webhook_id: Option<Snowflake>,
    /// Join notices, pins and other messages Discord itself generates.
    pub is_system: bool,
    pub content: String,
    pub created_at: DateTime<Utc>,
    /// The bot is mentioned: Discord sends content to mentioned bots even without the
    /// MESSAGE_CONTENT intent, so an empty mention is not evidence of a missing intent.
    pub mentions_bot: bool,
    /// Attachments, embeds or stickers: a message can carry those without any text.
    pub has_media: bool,
    pub synthetic: bool,
}

impl IncomingMessage {
    pub fn to_record(&self) -> MessageRecord {
        MessageRecord {
            message_id: self.message_id,
            channel_id: self.channel_id,
            guild_id: self.guild_id,
            author_id: self.author_id,
            author_name: self.author_name.clone(),
            author_is_bot: self.author_is_bot,
            content: self.content.clone(),
            created_at: self.created_at,
            synthetic: self.synthetic,
        }
    }

    /// What the bot path reports when this message reaches it.
    pub fn received(&self) -> TraceKind {
        TraceKind::Received {
            channel_id: self.channel_id,
            guild_id: self.guild_id,
            author_id: self.author_id,
            author_name: self.author_name.clone(),
            content_bytes: self.content.len(),
            synthetic: self.synthetic,
        }
    }
}

/// The filter's settings, from the command line.
#[derive(Debug, Clone, Default)]
pub struct FilterConfig {
    /// Publish only messages from these channels; empty means every channel.
    pub allow_channels: Vec<Snowflake>,
    /// Publish messages written by other bots.
    pub include_bots: bool,
    /// Publish messages sent through webhooks.
    pub include_webhooks: bool,
    /// Publish Discord's system messages.
    pub include_system: bool,
    /// Publish messages without text (attachments only, or a missing intent).
    pub include_empty: bool,
}

/// The skip rules, checked in a fixed order so that a message has exactly one reason.
#[derive(Debug)]
pub struct Filter {
    config: FilterConfig,
    allow: HashSet<Snowflake>,
    /// Learned when the gateway says READY; 0 until then.
    bot_user_id: AtomicU64,
}

impl Filter {
    pub fn new(config: FilterConfig) -> Self {
        let allow = config.allow_channels.iter().copied().collect();
        Filter {
            config,
            allow,
            bot_user_id: AtomicU64::new(0),
        }
    }

    pub fn set_bot_user_id(&self, id: Snowflake) {
        self.bot_user_id.store(id.0, Ordering::Relaxed);
    }

    pub fn bot_user_id(&self) -> Option<Snowflake> {
        match self.bot_user_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(Snowflake(id)),
        }
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// `Ok` when the message should be published.
    pub fn check(&self, msg: &IncomingMessage) -> Result<(), SkipReason> {
        // The own-message rule comes first and is independent of `include_bots`: a bot that
        // ingests its own replies loops forever.
        if self.bot_user_id() == Some(msg.author_id) {
            return Err(SkipReason::OwnMessage);
        }
        if msg.webhook_id.is_some() && !self.config.include_webhooks {
            return Err(SkipReason::Webhook);
        }
        if msg.author_is_bot && !self.config.include_bots {
            return Err(SkipReason::AuthorIsBot);
        }
        if msg.is_system && !self.config.include_system {
            return Err(SkipReason::SystemMessage);
        }
        if !self.allow.is_empty() && !self.allow.contains(&msg.channel_id) {
            return Err(SkipReason::ChannelNotAllowed);
        }
        if msg.content.trim().is_empty() && !self.config.include_empty {
            return Err(SkipReason::EmptyContent);
        }
        Ok(())
    }
}

/// Guild messages with no text that do not mention the bot are what Discord sends when the
/// MESSAGE_CONTENT privileged intent is missing.
pub fn suggests_missing_content_intent(msg: &IncomingMessage) -> bool {
    msg.guild_id.is_some()
        && msg.content.is_empty()
        && !msg.mentions_bot
        && !msg.is_system
        && !msg.has_media
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> IncomingMessage {
        IncomingMessage {
            message_id: Snowflake(10),
            channel_id: Snowflake(20),
            guild_id: Some(Snowflake(30)),
            author_id: Snowflake(40),
            author_name: "ada".into(),
            author_is_bot: false,
            webhook_id: None,
            is_system: false,
            content: "hi".into(),
            created_at: Utc::now(),
            mentions_bot: false,
            has_media: false,
            synthetic: false,
        }
    }

    #[test]
    fn each_rule_has_its_reason() {
        let f = Filter::new(FilterConfig::default());
        assert_eq!(f.check(&msg()), Ok(()));
        f.set_bot_user_id(Snowflake(40));
        assert_eq!(f.check(&msg()), Err(SkipReason::OwnMessage));

        let f = Filter::new(FilterConfig::default());
        let bot = IncomingMessage {
            author_is_bot: true,
            ..msg()
        };
        assert_eq!(f.check(&bot), Err(SkipReason::AuthorIsBot));
        let hook = IncomingMessage {
            webhook_id: Some(Snowflake(1)),
            author_is_bot: true,
            ..msg()
        };
        assert_eq!(f.check(&hook), Err(SkipReason::Webhook));
        let system = IncomingMessage {
            is_system: true,
            ..msg()
        };
        assert_eq!(f.check(&system), Err(SkipReason::SystemMessage));
        let empty = IncomingMessage {
            content: String::new(),
            ..msg()
        };
        assert_eq!(f.check(&empty), Err(SkipReason::EmptyContent));
        assert!(suggests_missing_content_intent(&empty));
        let mentioned = IncomingMessage {
            mentions_bot: true,
            ..empty.clone()
        };
        assert!(!suggests_missing_content_intent(&mentioned));
    }

    #[test]
    fn options_let_messages_through() {
        let f = Filter::new(FilterConfig {
            allow_channels: vec![Snowflake(21)],
            include_bots: true,
            include_webhooks: true,
            include_system: true,
            include_empty: true,
        });
        assert_eq!(f.check(&msg()), Err(SkipReason::ChannelNotAllowed));
        let ok = IncomingMessage {
            channel_id: Snowflake(21),
            author_is_bot: true,
            webhook_id: Some(Snowflake(1)),
            content: String::new(),
            ..msg()
        };
        assert_eq!(f.check(&ok), Ok(()));
        // Even with bots included, the bot's own messages stay out.
        f.set_bot_user_id(Snowflake(40));
        assert_eq!(f.check(&ok), Err(SkipReason::OwnMessage));
    }
}
