//! NOTIFY, written once. Every NOTIFY notifyscope sends goes through here: events (one per
//! payload in a batch), the listener's self-probe, test payloads, and the control requests
//! and replies. Channel names are passed as values to `pg_notify`, which takes them exactly
//! as written (see [`crate::Identifier`] for why that matters).

use std::sync::LazyLock;

use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;

use crate::Sql;

/// One NOTIFY on `channel` with `payload`, in the client's current transaction (or on its own
/// when there is none). Unnamed, in one round trip, so that it works through a transaction
/// pooler too.
pub async fn notify(
    client: &impl GenericClient,
    channel: &str,
    payload: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            "SELECT pg_notify($1, $2)",
            &[(&channel, Type::TEXT), (&payload, Type::TEXT)],
        )
        .await
        .map(|_| ())
}

/// The statement that sends one NOTIFY per payload of a batch in a single round trip:
/// parameters `$1` the channel, `$2` the payloads (`text[]`).
pub static NOTIFY_EACH: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        "SELECT count(pg_notify($1, p)) FROM UNNEST($2::text[]) AS p",
        &[Type::TEXT, Type::TEXT_ARRAY],
    )
});
