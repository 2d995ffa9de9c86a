//! The bot path, shared by the gateway handler and the simulated source: trace the message,
//! apply the filter, publish what passes. It is the only way a message enters the pipeline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::filter::{suggests_missing_content_intent, Filter, IncomingMessage};
use crate::publish::{self, PublishError, PublishReceipt, PublisherHandle};
use notifyscope_model::trace::{SkipReason, Trace, TraceKind};

/// What the bot path did with a message.
#[derive(Debug)]
pub enum Handled {
    Published(PublishReceipt),
    Skipped(SkipReason),
    /// Only traced: an observer of someone else's bot publishes nothing.
    Observed,
}

/// The bot path, shared by the gateway handler and the simulated source: trace the message,
/// apply the filter, publish what passes.
pub struct BotPath {
    trace: Trace,
    filter: Arc<Filter>,
    /// `None`: an observer, which traces what Discord delivers and does nothing else.
    publisher: Option<PublisherHandle>,
    /// Guild messages without text that did not mention the bot (missing-intent evidence).
    empty_guild_messages: AtomicU64,
}

impl BotPath {
    pub fn new(trace: Trace, filter: Arc<Filter>, publisher: PublisherHandle) -> Self {
        BotPath {
            trace,
            filter,
            publisher: Some(publisher),
            empty_guild_messages: AtomicU64::new(0),
        }
    }

    /// The path of an observer: a gateway session with someone else's bot token that shows
    /// what Discord delivers to their bot (received, missing content), and neither filters
    /// nor publishes anything.
    pub fn observer(trace: Trace) -> Self {
        BotPath {
            trace,
            filter: Arc::new(Filter::new(Default::default())),
            publisher: None,
            empty_guild_messages: AtomicU64::new(0),
        }
    }

    pub fn filter(&self) -> &Arc<Filter> {
        &self.filter
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub async fn handle(&self, msg: IncomingMessage) -> Result<Handled, PublishError> {
        let trace = &self.trace;
        trace.emit(Some(msg.message.message_id), msg.received());
        if suggests_missing_content_intent(&msg) {
            let count = self.empty_guild_messages.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                message_id = %msg.message.message_id, channel_id = %msg.message.channel_id, count,
                "guild message arrived without content: is the MESSAGE_CONTENT intent enabled?"
            );
            trace.emit(
                Some(msg.message.message_id),
                TraceKind::ContentIntentSuspected {
                    channel_id: msg.message.channel_id,
                    count,
                },
            );
        }
        let Some(publisher) = &self.publisher else {
            return Ok(Handled::Observed);
        };
        if let Err(reason) = self.filter.check(&msg) {
            tracing::debug!(
                message_id = %msg.message.message_id, channel_id = %msg.message.channel_id,
                author = %msg.message.author_name, reason = reason.as_str(),
                "skipped message"
            );
            trace.emit(
                Some(msg.message.message_id),
                TraceKind::Skipped {
                    reason: reason.clone(),
                    author_name: msg.message.author_name,
                    channel_id: msg.message.channel_id,
                    source: msg.source,
                },
            );
            return Ok(Handled::Skipped(reason));
        }
        publish::publish_event_safe(publisher, msg.to_record(), msg.source)
            .await
            .map(Handled::Published)
    }
}
