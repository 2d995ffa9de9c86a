//! NOTIFY, written once. Every NOTIFY notifyscope sends goes through here: events (one per
//! payload in a batch), the listener's self-probe, test payloads, and the control requests
//! and replies. Channel names are passed as values to `pg_notify`, which takes them exactly
//! as written (see [`crate::Identifier`] for why that matters).

use deadpool_postgres::ClientWrapper;
use tokio_postgres::{GenericClient, Statement};

/// One NOTIFY on `channel` with `payload`, in the client's current transaction (or on its own
/// when there is none).
pub async fn notify(
    client: &impl GenericClient,
    channel: &str,
    payload: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await
        .map(|_| ())
}

/// The statement that sends one NOTIFY per payload of a batch in a single round trip:
/// parameters `$1` the channel, `$2` the payloads (`text[]`).
pub async fn prepare_notify_each(
    client: &ClientWrapper,
) -> Result<Statement, tokio_postgres::Error> {
    client
        .prepare_cached("SELECT count(pg_notify($1, p)) FROM UNNEST($2::text[]) AS p")
        .await
}
