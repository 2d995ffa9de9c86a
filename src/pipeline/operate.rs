//! What a person may do from the monitor about what the diagnosis found: end or cancel the
//! session that holds the pipeline up, put stuck outbox rows back in the queue, list, requeue
//! or delete dead letters. Each is one of the store's actions (the same the `outbox`,
//! `dead-letters` and `backend` commands run); the screen asks first and only hands the
//! choice over, it never writes SQL itself.

use deadpool_postgres::Pool;

use crate::present::shorten;
use crate::store::action::{Apply, Selection};
use crate::store::backends::{self, SignalOutcome};
use crate::store::dead_letters;
use crate::store::outbox::{self, Stuck};
use crate::store::{error_chain, Identifier, StoreError};

/// Dead letters shown in the monitor's list at most.
const LISTED: i64 = 200;

/// Acts on one pipeline's tables and its database's sessions, and says what came of it in a
/// sentence (or lines, for a list).
#[derive(Clone)]
pub struct Operator {
    pool: Pool,
    channel: Identifier,
}

/// Which way a session is stopped: its statement only, or the whole session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Cancel,
    Terminate,
}

impl Operator {
    pub fn new(pool: Pool, channel: Identifier) -> Self {
        Operator { pool, channel }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Cancels the statement of `pid`, or ends its session.
    pub async fn stop_backend(&self, pid: i32, how: Stop) -> String {
        let outcome = match self.client().await {
            Ok(client) => match how {
                Stop::Cancel => backends::cancel_backend(&client, pid).await,
                Stop::Terminate => backends::terminate_backend(&client, pid).await,
            },
            Err(e) => Err(e),
        };
        let done = match how {
            Stop::Cancel => "statement cancelled",
            Stop::Terminate => "session ended",
        };
        match outcome {
            Ok(SignalOutcome::Sent) => format!("pid {pid}: {done}"),
            Ok(SignalOutcome::NoSuchBackend | SignalOutcome::NotSignalled) => {
                format!("pid {pid} is gone already: nothing to do")
            }
            Ok(SignalOutcome::OtherDatabase { database }) => format!(
                "pid {pid} is a session of {}, not of this database: left alone",
                database.as_deref().unwrap_or("the server itself")
            ),
            Ok(SignalOutcome::OwnSession) => format!("pid {pid} is this very session: left alone"),
            Ok(SignalOutcome::Refused { error, .. }) => {
                format!("pid {pid}: the server refused: {}", shorten(&error, 120))
            }
            Err(e) => format!("pid {pid}: failed: {}", shorten(&error_chain(&e), 120)),
        }
    }

    /// Every retrying or given-up row of the channel due now, its attempts reset.
    pub async fn retry_stuck(&self) -> String {
        let result = async {
            let mut client = self.client().await?;
            outbox::requeue(
                &mut client,
                &self.channel,
                &Selection::All,
                Stuck::RetryingOrGivenUp,
                Apply::Commit,
            )
            .await
        }
        .await;
        match result {
            Ok(o) if o.requeued.is_empty() => {
                "no stuck outbox row: the backlog is rows waiting their turn".into()
            }
            Ok(o) => format!(
                "{} stuck outbox row(s) due now, attempts reset; ingestion woken",
                o.requeued.len()
            ),
            Err(e) => format!("retry failed: {}", shorten(&error_chain(&e), 120)),
        }
    }

    /// The dead letters and the given-up outbox rows of the channel, as lines.
    pub async fn list_dead_letters(&self) -> Vec<String> {
        let result = async {
            let client = self.client().await?;
            let letters = dead_letters::list(&client, &self.channel, LISTED).await?;
            let letters_count = dead_letters::count(&client, &self.channel).await?;
            let rows = outbox::given_up(&client, &self.channel, LISTED).await?;
            let rows_count = outbox::given_up_count(&client, &self.channel).await?;
            Ok::<_, StoreError>((letters, letters_count, rows, rows_count))
        }
        .await;
        let (letters, letters_count, rows, rows_count) = match result {
            Ok(found) => found,
            Err(e) => return vec![format!("could not read them: {}", error_chain(&e))],
        };
        let shown = |listed: usize, all: i64| {
            if i64::try_from(listed).unwrap_or(i64::MAX) < all {
                format!("{all} (the oldest {listed} below)")
            } else {
                all.to_string()
            }
        };
        let mut lines = vec![format!(
            "Rejected notifications (dead_letters): {}",
            shown(letters.len(), letters_count)
        )];
        lines.extend(letters.iter().map(|l| {
            format!(
                "  #{} {} pid {}: {} — {}",
                l.id,
                l.received_at.format("%H:%M:%S"),
                l.sender_pid,
                shorten(&l.error, 60),
                shorten(&l.payload, 60)
            )
        }));
        lines.push(String::new());
        lines.push(format!(
            "Outbox rows given up: {}",
            shown(rows.len(), rows_count)
        ));
        lines.extend(rows.iter().map(|r| {
            format!(
                "  outbox {} message {} after {} attempt(s): {}",
                r.id,
                r.message_id.as_deref().unwrap_or("-"),
                r.attempts,
                shorten(r.last_error.as_deref().unwrap_or(""), 80)
            )
        }));
        lines
    }

    /// Given-up rows queued again and dead letters sent again (the listener judges them by
    /// the contract once more). Two transactions: each part says what came of it.
    pub async fn requeue_dead_letters(&self) -> String {
        let rows = async {
            let mut client = self.client().await?;
            outbox::requeue(
                &mut client,
                &self.channel,
                &Selection::All,
                Stuck::GivenUp,
                Apply::Commit,
            )
            .await
        }
        .await;
        let letters = async {
            let mut client = self.client().await?;
            dead_letters::resend(&mut client, &self.channel, &Selection::All, Apply::Commit).await
        }
        .await;
        let rows = match rows {
            Ok(o) => format!("{} given-up row(s) queued again", o.requeued.len()),
            Err(e) => format!(
                "given-up rows not queued: {}",
                shorten(&error_chain(&e), 80)
            ),
        };
        let letters = match letters {
            Ok(o) if o.not_handled.is_empty() => {
                format!("{} dead letter(s) sent again", o.handled.len())
            }
            Ok(o) => format!(
                "{} dead letter(s) sent again, {} could not be sent",
                o.handled.len(),
                o.not_handled.len()
            ),
            Err(e) => format!("dead letters not sent: {}", shorten(&error_chain(&e), 80)),
        };
        format!("{rows}; {letters}")
    }

    /// Given-up rows and dead letters deleted; each part says what came of it.
    pub async fn delete_dead_letters(&self) -> String {
        let rows = async {
            let mut client = self.client().await?;
            outbox::purge(
                &mut client,
                &self.channel,
                &Selection::All,
                false,
                Apply::Commit,
            )
            .await
        }
        .await;
        let letters = async {
            let mut client = self.client().await?;
            dead_letters::delete(&mut client, &self.channel, &Selection::All, Apply::Commit).await
        }
        .await;
        let rows = match rows {
            Ok(o) => format!("{} given-up row(s)", o.purged.len()),
            Err(e) => format!(
                "given-up rows not deleted ({})",
                shorten(&error_chain(&e), 80)
            ),
        };
        let letters = match letters {
            Ok(o) => format!("{} dead letter(s) deleted", o.handled.len()),
            Err(e) => format!(
                "dead letters not deleted: {}",
                shorten(&error_chain(&e), 80)
            ),
        };
        format!("{rows} and {letters}")
    }
}
