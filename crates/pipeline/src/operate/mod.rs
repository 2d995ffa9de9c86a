//! What a person may do about what the diagnosis found, from the monitor or the command line:
//! cancel or end the session that holds the pipeline up; put stuck outbox rows back in the
//! queue or delete given-up ones; list, re-send or delete the dead letters. Each action is
//! the store's, carried out here once, and answers with one typed outcome ([`outcome`]) that
//! presents itself as the screen's toast, the command's lines and its JSON. Every action
//! that changes rows can be worked out and rolled back first ([`Apply::Preview`]), so that a
//! person can be asked before it is done; the screen asks first as well, and only hands the
//! choice over: it never writes SQL itself.

pub mod dead_letters;
pub mod listing;
pub mod outcome;
pub mod signal;

use deadpool_postgres::{Object, Pool, PoolError};

pub use dead_letters::{DeadLetters, DeadLettersDeleted, DeadLettersRetried};
pub use listing::{DeadLetterList, Listed, OutboxList};
pub use notifyscope_store::action::{Apply, Selection};
pub use notifyscope_store::backends::BackendSignal;
pub use outcome::{Acted, Failed, Part, Present, Purge, Requeue};
pub use signal::Signalled;

use dead_letters::Letters;
use listing::{Kind, Letter};
use notifyscope_store::backends;
use notifyscope_store::dead_letters as letters;
use notifyscope_store::outbox::{self, Stuck};
use notifyscope_store::{Database, Identifier, StoreError};

/// Dead letters shown in the monitor's list at most.
pub const LISTED: i64 = 200;

/// `outbox retry`: stuck rows put back in the queue.
pub type OutboxRetried = Acted<Part<Requeue>>;
/// `outbox purge`: given-up (or, forced, undelivered) rows deleted.
pub type OutboxPurged = Acted<Part<Purge>>;

/// Acts on one pipeline's tables and its database's sessions.
#[derive(Clone)]
pub struct Operator {
    pool: Pool,
    channel: Identifier,
    /// The database as outcomes and errors name it (never with the password).
    database: String,
}

impl Operator {
    /// Acting through `pool` on `channel`'s rows.
    pub fn new(pool: Pool, channel: Identifier) -> Self {
        Operator {
            pool,
            channel,
            database: "the database".into(),
        }
    }

    /// Acting on `database` through a connection of its own (one at a time, so that a
    /// session looked up is signalled from the same one), naming it in what it says.
    pub fn on(database: &Database, channel: Identifier) -> Result<Self, StoreError> {
        Ok(Operator {
            pool: database.pool(1)?,
            channel,
            database: database.redacted().to_owned(),
        })
    }

    async fn client(&self) -> Result<Object, Failed> {
        self.pool.get().await.map_err(|e| {
            let e = match e {
                // Creating the connection failed: say where it was going.
                PoolError::Backend(error) => StoreError::Connect {
                    target: self.database.clone(),
                    error,
                },
                other => other.into(),
            };
            Failed::connecting(&self.database, &e)
        })
    }

    fn failed(&self, doing: &'static str) -> impl Fn(StoreError) -> Failed + '_ {
        move |e| Failed::new(doing, &self.database, &e)
    }

    fn acted<T>(&self, apply: Apply, work: T) -> Acted<T> {
        Acted {
            database: self.database.clone(),
            channel: self.channel.as_str().to_owned(),
            applied: apply == Apply::Commit,
            work,
        }
    }

    fn listed<T>(&self, list: Result<T, Failed>) -> Listed<T> {
        Listed {
            database: self.database.clone(),
            channel: self.channel.as_str().to_owned(),
            list: list.into(),
        }
    }

    /// Cancels the statement of session `pid`, or ends it; with [`Apply::Preview`] only
    /// looks it up. Only a session of this database, and not the asking one, is signalled.
    pub async fn signal_backend(&self, pid: i32, signal: BackendSignal, apply: Apply) -> Signalled {
        let mut done = Signalled {
            database: self.database.clone(),
            pid,
            signal,
            applied: apply == Apply::Commit,
            session: None,
            outcome: None,
            failed: None,
            signalable: false,
        };
        let result = async {
            let client = self.client().await?;
            let session = backends::session(&client, pid)
                .await
                .map_err(self.failed("reading pg_stat_activity"))?;
            done.signalable = session.as_ref().is_some_and(|s| s.same_database && !s.own);
            done.session = session.as_ref().map(signal::Shown::of);
            if apply == Apply::Commit {
                let outcome = backends::signal_backend(&client, pid, signal)
                    .await
                    .map_err(self.failed("signalling the backend"))?;
                done.outcome = Some(outcome);
            }
            Ok(())
        }
        .await;
        done.failed = result.err();
        done
    }

    /// A part of an action on the rows `selection` names, on a connection of its own.
    async fn part<T>(
        &self,
        selection: &Selection,
        doing: &'static str,
        work: impl AsyncFnOnce(&mut Object, &Selection) -> Result<T, StoreError>,
    ) -> Part<T> {
        let result = async {
            let mut client = self.client().await?;
            work(&mut client, selection)
                .await
                .map_err(self.failed(doing))
        }
        .await;
        result.into()
    }

    /// [`part`](Self::part) for a kind of rows that may not be asked for (`None`: nothing
    /// done).
    async fn part_if_asked<T>(
        &self,
        selection: Option<&Selection>,
        doing: &'static str,
        work: impl AsyncFnOnce(&mut Object, &Selection) -> Result<T, StoreError>,
    ) -> Option<Part<T>> {
        match selection {
            Some(selection) => Some(self.part(selection, doing, work).await),
            None => None,
        }
    }

    /// Puts the stuck (retrying or given-up) rows of `selection` back in the queue, attempts
    /// reset and due now, and wakes ingestion for them.
    pub async fn retry_outbox(&self, selection: &Selection, apply: Apply) -> OutboxRetried {
        let doing = match apply {
            Apply::Preview => "reading event_outbox",
            Apply::Commit => "requeuing rows of event_outbox",
        };
        let stuck = Stuck::RetryingOrGivenUp;
        let requeue = async |client: &mut Object, selection: &Selection| {
            let outcome = outbox::requeue(client, &self.channel, selection, stuck, apply).await?;
            Ok(Requeue::of(outcome, stuck))
        };
        let part = self.part(selection, doing, requeue).await;
        self.acted(apply, part)
    }

    /// Deletes the given-up rows of `selection`; with `force`, undelivered rows named by id
    /// as well (their messages are lost).
    pub async fn purge_outbox(
        &self,
        selection: &Selection,
        force: bool,
        apply: Apply,
    ) -> OutboxPurged {
        let doing = match apply {
            Apply::Preview => "reading event_outbox",
            Apply::Commit => "deleting rows of event_outbox",
        };
        let purge = async |client: &mut Object, selection: &Selection| {
            let outcome = outbox::purge(client, &self.channel, selection, force, apply).await?;
            Ok(Purge::of(outcome))
        };
        let part = self.part(selection, doing, purge).await;
        self.acted(apply, part)
    }

    /// The rows of the channel not ingested yet, oldest first, at most `limit`.
    pub async fn list_outbox(&self, limit: i64) -> Listed<OutboxList> {
        let result = async {
            let client = self.client().await?;
            let rows = outbox::unprocessed(&client, &self.channel, limit)
                .await
                .map_err(self.failed("reading event_outbox"))?;
            Ok(OutboxList { rows })
        }
        .await;
        self.listed(result)
    }

    /// Both kinds of dead letters of the channel, the oldest `limit` of each, and how many
    /// there are.
    pub async fn list_dead_letters(&self, limit: i64) -> Listed<DeadLetterList> {
        let result = async {
            let client = self.client().await?;
            let failed = self.failed("reading dead_letters");
            let letters = letters::list(&client, &self.channel, limit)
                .await
                .map_err(&failed)?;
            let letters_total = letters::count(&client, &self.channel)
                .await
                .map_err(&failed)?;
            let failed = self.failed("reading event_outbox");
            let given_up = outbox::given_up(&client, &self.channel, limit)
                .await
                .map_err(&failed)?;
            let given_up_total = outbox::given_up_count(&client, &self.channel)
                .await
                .map_err(&failed)?;
            Ok(DeadLetterList {
                rejected_notifications: Kind {
                    total: letters_total,
                    rows: letters.into_iter().map(Letter::of).collect(),
                },
                outbox_given_up: Kind {
                    total: given_up_total,
                    rows: given_up,
                },
            })
        }
        .await;
        self.listed(result)
    }

    /// Re-sends the rejected notifications of `letters` (the listener judges them by the
    /// contract again) and queues the given-up rows of `given_up` again; a kind not named
    /// (`None`) is left alone. Each kind is a part of its own.
    pub async fn retry_dead_letters(
        &self,
        letters: Option<&Selection>,
        given_up: Option<&Selection>,
        apply: Apply,
    ) -> DeadLettersRetried {
        let resend = async |client: &mut Object, selection: &Selection| {
            let outcome = letters::resend(client, &self.channel, selection, apply).await?;
            Ok(Letters::of(outcome, true))
        };
        let requeue = async |client: &mut Object, selection: &Selection| {
            outbox::requeue(client, &self.channel, selection, Stuck::GivenUp, apply).await
        };
        let letters = self
            .part_if_asked(letters, "re-sending dead letters", resend)
            .await;
        let rows = self
            .part_if_asked(given_up, "requeuing rows of event_outbox", requeue)
            .await;
        self.acted(apply, DeadLetters::of(letters, rows))
    }

    /// Deletes the rejected notifications of `letters` and the given-up rows of `given_up`
    /// (never a row still waiting or retrying); a kind not named (`None`) is left alone.
    pub async fn delete_dead_letters(
        &self,
        letters: Option<&Selection>,
        given_up: Option<&Selection>,
        apply: Apply,
    ) -> DeadLettersDeleted {
        let delete = async |client: &mut Object, selection: &Selection| {
            let outcome = letters::delete(client, &self.channel, selection, apply).await?;
            Ok(Letters::of(outcome, false))
        };
        // Given-up rows only (no force): a row still waiting or retrying is no dead letter.
        let purge = async |client: &mut Object, selection: &Selection| {
            outbox::purge(client, &self.channel, selection, false, apply).await
        };
        let letters = self
            .part_if_asked(letters, "deleting dead letters", delete)
            .await;
        let rows = self
            .part_if_asked(given_up, "deleting rows of event_outbox", purge)
            .await;
        self.acted(apply, DeadLetters::of(letters, rows))
    }
}
