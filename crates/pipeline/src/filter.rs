//! Which incoming Discord messages are published, and the named reason for each one that is not.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use notifyscope_model::contract::{MessageRecord, Snowflake};
use notifyscope_model::trace::{SkipReason, Source, TraceKind};

/// A Discord message as the bot path sees it, from the gateway or from the simulated source:
/// the message as the contract carries it, and what the filter and the missing-intent
/// evidence need to know besides.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    pub message: MessageRecord,
    pub webhook_id: Option<Snowflake>,
    /// Join notices, pins and other messages Discord itself generates.
    pub is_system: bool,
    /// The bot is mentioned: Discord sends content to mentioned bots even without the
    /// MESSAGE_CONTENT intent, so an empty mention is not evidence of a missing intent.
    pub mentions_bot: bool,
    /// Attachments, embeds or stickers: a message can carry those without any text.
    pub has_media: bool,
    /// Where it came from: the gateway, the simulated source or a control request.
    pub source: Source,
}

impl IncomingMessage {
    pub fn to_record(&self) -> MessageRecord {
        self.message.clone()
    }

    /// What the bot path reports when this message reaches it.
    pub fn received(&self) -> TraceKind {
        let m = &self.message;
        TraceKind::Received {
            channel_id: m.channel_id,
            guild_id: m.guild_id,
            author_id: m.author_id,
            author_name: m.author_name.clone(),
            content_bytes: m.content.len(),
            source: self.source,
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
        if self.bot_user_id() == Some(msg.message.author_id) {
            return Err(SkipReason::OwnMessage);
        }
        let webhook = msg.webhook_id.is_some();
        if webhook && !self.config.include_webhooks {
            return Err(SkipReason::Webhook);
        }
        // Discord marks every webhook message's author as a bot: one let through by the
        // webhook rule is not the bot rule's to judge.
        if msg.message.author_is_bot && !webhook && !self.config.include_bots {
            return Err(SkipReason::AuthorIsBot);
        }
        if msg.is_system && !self.config.include_system {
            return Err(SkipReason::SystemMessage);
        }
        if !self.allow.is_empty() && !self.allow.contains(&msg.message.channel_id) {
            return Err(SkipReason::ChannelNotAllowed);
        }
        if msg.message.content.trim().is_empty() && !self.config.include_empty {
            return Err(SkipReason::EmptyContent);
        }
        Ok(())
    }
}

/// Guild messages with no text that do not mention the bot are what Discord sends when the
/// MESSAGE_CONTENT privileged intent is missing.
pub fn suggests_missing_content_intent(msg: &IncomingMessage) -> bool {
    msg.message.guild_id.is_some()
        && msg.message.content.is_empty()
        && !msg.mentions_bot
        && !msg.is_system
        && !msg.has_media
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guild message with text, by author 40 in channel 20.
    fn msg() -> IncomingMessage {
        let mut m = crate::synthetic::message("hi");
        m.message.author_id = Snowflake(40);
        m.message.channel_id = Snowflake(20);
        m
    }

    #[test]
    fn each_rule_has_its_reason() {
        let f = Filter::new(FilterConfig::default());
        assert_eq!(f.check(&msg()), Ok(()));
        f.set_bot_user_id(Snowflake(40));
        assert_eq!(f.check(&msg()), Err(SkipReason::OwnMessage));

        let f = Filter::new(FilterConfig::default());
        let mut bot = msg();
        bot.message.author_is_bot = true;
        assert_eq!(f.check(&bot), Err(SkipReason::AuthorIsBot));
        let mut hook = IncomingMessage {
            webhook_id: Some(Snowflake(1)),
            ..msg()
        };
        hook.message.author_is_bot = true;
        assert_eq!(f.check(&hook), Err(SkipReason::Webhook));
        let system = IncomingMessage {
            is_system: true,
            ..msg()
        };
        assert_eq!(f.check(&system), Err(SkipReason::SystemMessage));
        let mut empty = msg();
        empty.message.content = String::new();
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
        let mut ok = IncomingMessage {
            webhook_id: Some(Snowflake(1)),
            ..msg()
        };
        ok.message.channel_id = Snowflake(21);
        ok.message.author_is_bot = true;
        ok.message.content = String::new();
        assert_eq!(f.check(&ok), Ok(()));
        // Even with bots included, the bot's own messages stay out.
        f.set_bot_user_id(Snowflake(40));
        assert_eq!(f.check(&ok), Err(SkipReason::OwnMessage));
    }

    /// One of each kind the filter skips by default, each with only its own trait: a bot's
    /// message, a webhook's (whose author Discord marks as a bot), a system message and an
    /// empty one.
    fn bot() -> IncomingMessage {
        let mut m = msg();
        m.message.author_is_bot = true;
        m
    }

    fn webhook() -> IncomingMessage {
        let mut m = IncomingMessage {
            webhook_id: Some(Snowflake(1)),
            ..msg()
        };
        m.message.author_is_bot = true;
        m
    }

    fn system() -> IncomingMessage {
        IncomingMessage {
            is_system: true,
            ..msg()
        }
    }

    fn empty() -> IncomingMessage {
        let mut m = msg();
        m.message.content = String::new();
        m
    }

    /// What each kind gets from a filter with `config`.
    fn verdicts(config: FilterConfig) -> [Result<(), SkipReason>; 4] {
        let f = Filter::new(config);
        [bot(), webhook(), system(), empty()].map(|m| f.check(&m))
    }

    #[test]
    fn include_bots_alone_lets_only_bots_through() {
        let config = FilterConfig {
            include_bots: true,
            ..FilterConfig::default()
        };
        assert_eq!(
            verdicts(config),
            [
                Ok(()),
                Err(SkipReason::Webhook),
                Err(SkipReason::SystemMessage),
                Err(SkipReason::EmptyContent),
            ]
        );
    }

    #[test]
    fn include_webhooks_alone_lets_webhooks_through_despite_their_bot_flag() {
        let config = FilterConfig {
            include_webhooks: true,
            ..FilterConfig::default()
        };
        assert_eq!(
            verdicts(config.clone()),
            [
                Err(SkipReason::AuthorIsBot),
                Ok(()),
                Err(SkipReason::SystemMessage),
                Err(SkipReason::EmptyContent),
            ]
        );
        // The own-message rule still applies to a webhook message.
        let f = Filter::new(config);
        f.set_bot_user_id(Snowflake(40));
        assert_eq!(f.check(&webhook()), Err(SkipReason::OwnMessage));
        // And the rules after the bot rule still judge it.
        let mut empty_hook = webhook();
        empty_hook.message.content = String::new();
        let f = Filter::new(FilterConfig {
            include_webhooks: true,
            ..FilterConfig::default()
        });
        assert_eq!(f.check(&empty_hook), Err(SkipReason::EmptyContent));
    }

    #[test]
    fn include_system_alone_lets_only_system_messages_through() {
        let config = FilterConfig {
            include_system: true,
            ..FilterConfig::default()
        };
        assert_eq!(
            verdicts(config),
            [
                Err(SkipReason::AuthorIsBot),
                Err(SkipReason::Webhook),
                Ok(()),
                Err(SkipReason::EmptyContent),
            ]
        );
    }

    #[test]
    fn include_empty_alone_lets_only_empty_messages_through() {
        let config = FilterConfig {
            include_empty: true,
            ..FilterConfig::default()
        };
        assert_eq!(
            verdicts(config),
            [
                Err(SkipReason::AuthorIsBot),
                Err(SkipReason::Webhook),
                Err(SkipReason::SystemMessage),
                Ok(()),
            ]
        );
    }
}
