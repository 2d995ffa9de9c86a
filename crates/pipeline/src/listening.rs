//! A connection whose notifications are read: tokio-postgres hands them out only through
//! `Connection::poll_message`, so a small task drives it and forwards what it yields, while
//! the client runs LISTEN and the heartbeat. Our listener and `watch`'s use it, and doctor's
//! round trip.

use futures_util::future::poll_fn;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Notification};

use notifyscope_store::deadline::{within, Silence};
use notifyscope_store::{error_chain, Database, Identifier, StoreError};

/// A listening connection ended; the cause, as the server or the client said it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionLost(pub String);

/// A connection whose notifications arrive on a channel. Dropping it closes the connection.
pub struct ListeningConnection {
    pub client: Client,
    /// Notifications in arrival order; an `Err` (the cause) is the last item, when the
    /// connection ends.
    pub notifications: mpsc::Receiver<Result<Notification, ConnectionLost>>,
    _forwarder: AbortOnDrop,
    /// When [`ListeningConnection::next`] asks for a sign of life next.
    heartbeat_at: Option<tokio::time::Instant>,
}

impl ListeningConnection {
    pub async fn open(database: &Database, application_name: &str) -> Result<Self, StoreError> {
        within(
            database.deadline(),
            &database.address(),
            "connection setup",
            Self::open_unbounded(database, application_name),
        )
        .await
    }

    async fn open_unbounded(
        database: &Database,
        application_name: &str,
    ) -> Result<Self, StoreError> {
        let (client, mut connection) = database.connect(application_name).await?;
        let (tx, rx) = mpsc::channel::<Result<Notification, ConnectionLost>>(4096);
        let forwarder = tokio::spawn(async move {
            loop {
                let item = match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => Ok(n),
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(notice = %notice, "listening connection notice");
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Err(ConnectionLost(error_chain(&e))),
                    None => Err(ConnectionLost("connection closed by the server".to_owned())),
                };
                let last = item.is_err();
                // A full channel holds back reading; PostgreSQL keeps the rest queued.
                if tx.send(item).await.is_err() || last {
                    break;
                }
            }
        });
        let listening = ListeningConnection {
            client,
            notifications: rx,
            _forwarder: AbortOnDrop(forwarder),
            heartbeat_at: None,
        };
        // Once the connection is driven: a LISTEN needs a session that lasts.
        database.prepare_session(&listening.client).await?;
        Ok(listening)
    }

    pub async fn listen(&self, channel: &Identifier) -> Result<(), tokio_postgres::Error> {
        self.client
            .batch_execute(&format!("LISTEN {}", channel.quoted()))
            .await
    }

    /// The next notification. Every half deadline the server is asked for a sign of life
    /// that must come within the deadline: `LISTEN` on `channel` again, a no-op that keeps it
    /// the session's last query (which is how others see who listens where). A connection
    /// that dropped silently (NAT, a load balancer) is found so, instead of waiting for
    /// notifications forever; and a busy one still sends a query now and then, so that
    /// `idle_session_timeout` does not end it for lack of one.
    pub async fn next(
        &mut self,
        database: &Database,
        channel: &Identifier,
    ) -> Result<Notification, Ended> {
        let every = database.deadline() / 2;
        loop {
            let now = tokio::time::Instant::now();
            let due = *self.heartbeat_at.get_or_insert(now + every);
            if now >= due {
                self.heartbeat_at = Some(now + every);
                let heartbeat = async { self.listen(channel).await.map_err(StoreError::from) };
                match within(
                    database.deadline(),
                    &database.address(),
                    "heartbeat",
                    heartbeat,
                )
                .await
                {
                    Ok(()) => continue,
                    Err(StoreError::Silent(silence)) => return Err(Ended::Silent(silence)),
                    Err(e) => return Err(Ended::Lost(error_chain(&e))),
                }
            }
            match tokio::time::timeout_at(due, self.notifications.recv()).await {
                Ok(Some(Ok(n))) => return Ok(n),
                Ok(Some(Err(ConnectionLost(cause)))) => return Err(Ended::Lost(cause)),
                Ok(None) => return Err(Ended::Lost("connection closed".into())),
                Err(_) => {}
            }
        }
    }
}

/// Why a listening connection ended.
#[derive(Debug)]
pub enum Ended {
    /// Closed, or an error on it.
    Lost(String),
    /// It missed its heartbeat's deadline; it is dropped.
    Silent(Silence),
}

impl Ended {
    pub fn cause(&self) -> String {
        match self {
            Ended::Lost(cause) => cause.clone(),
            Ended::Silent(silence) => silence.to_string(),
        }
    }
}

/// Aborts the forwarding task when its connection is dropped, whichever way.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
