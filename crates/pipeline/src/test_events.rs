//! Test events that do not come through the bot path: a payload that breaks the contract, a
//! valid event on a neighbouring channel, and a message published straight to the outbox.
//! The screen's test keys use these handles; the NOTIFYs go through [`notifyscope_store::notify`].

use deadpool_postgres::Pool;

use crate::publish::{PublishError, PublishReceipt, PublisherHandle};
use crate::synthetic;
use notifyscope_model::contract::{Envelope, Snowflake};
use notifyscope_store::notify::notify;
use notifyscope_store::{Identifier, StoreError};

/// A payload that is JSON but breaks the contract (no message, no event id).
pub const MALFORMED: &str = r#"{"v":1,"event_type":"discord.message_created","note":"malformed on purpose: no event_id, no message"}"#;

/// What the screen needs of a running pipeline to send test events of its own.
#[derive(Clone)]
pub struct TestEvents {
    pool: Pool,
    publisher: PublisherHandle,
    channel: Identifier,
}

impl TestEvents {
    pub fn new(pool: Pool, publisher: PublisherHandle, channel: Identifier) -> Self {
        TestEvents {
            pool,
            publisher,
            channel,
        }
    }

    pub fn channel(&self) -> &Identifier {
        &self.channel
    }

    /// [`MALFORMED`] on the listened channel.
    pub async fn malformed(&self) -> Result<(), StoreError> {
        self.notify(self.channel.as_str(), MALFORMED).await
    }

    /// A valid event on the channel's [`wrong_case`] neighbour; returns that channel and the
    /// message id.
    pub async fn wrong_channel(&self) -> Result<(String, Snowflake), StoreError> {
        let wrong = wrong_case(self.channel.as_str());
        let envelope = Envelope::new(synthetic::message("sent on the wrong channel").to_record());
        let id = envelope.message.message_id;
        self.notify(&wrong, &envelope.to_json()).await?;
        Ok((wrong, id))
    }

    /// A message published straight to the outbox, bypassing the bot path and its filter.
    pub async fn direct(&self) -> (Snowflake, Result<PublishReceipt, PublishError>) {
        let msg = synthetic::message("published straight to the outbox").to_record();
        let id = msg.message_id;
        (id, self.publisher.publish(msg).await)
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        notify(&**client, channel, payload).await?;
        Ok(())
    }
}

/// The neighbour that `LISTEN`'s case folding makes people hit by mistake.
pub fn wrong_case(channel: &str) -> String {
    let lower = channel.to_lowercase();
    if lower != channel {
        return lower;
    }
    let mut chars = channel.chars();
    let capitalised: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    let upper = channel.to_uppercase();
    if capitalised != channel {
        capitalised
    } else if upper != channel {
        upper
    } else {
        // No letters to change: a neighbour by a suffix.
        format!("{}_", &channel[..channel.len().min(62)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_case_is_a_neighbour() {
        assert_eq!(wrong_case("events"), "Events");
        assert_eq!(wrong_case("Events"), "events");
        assert_eq!(wrong_case("_x"), "_X");
        assert_eq!(wrong_case("_1"), "_1_");
    }
}
