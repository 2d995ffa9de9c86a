//! Whether a connection's session lasts: behind a transaction pooler it does not, and
//! neither a LISTEN nor the session's search path survives from one statement to the next.

use tokio_postgres::Client;

use crate::{Database, StoreError, APP_NAME};

/// Whether `client`'s session is a transaction pooler's, and the evidence. Asked with the
/// simple query protocol, which poolers pass through, on `client` and on a second connection:
/// behind a session pooler (or none) each client keeps its own server session, so the two
/// show different backends and `client` keeps its own; behind a transaction pooler, the
/// second client is handed the backend `client` just used (PgBouncer reuses the most recent
/// one), or `client`'s next statement runs on another backend, or the search path set on it
/// is gone. Nothing is set on `client` before the backends tell sessions apart: behind a
/// transaction pooler the setting would stay with a server session other clients get.
pub(crate) async fn transaction_pooler(
    database: &Database,
    client: &Client,
) -> Result<Option<String>, StoreError> {
    async fn backend(client: &Client) -> Result<(String, String), StoreError> {
        let rows = client
            .simple_query("SELECT pg_backend_pid()::text, current_setting('search_path')")
            .await?;
        let row = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        Ok(match row {
            Some(r) => (
                r.get(0).unwrap_or_default().to_owned(),
                r.get(1).unwrap_or_default().to_owned(),
            ),
            None => Default::default(),
        })
    }
    let (first, _) = backend(client).await?;
    let other = database.connect_unprepared(APP_NAME).await?;
    let (theirs, _) = backend(&other).await?;
    if theirs == first {
        return Ok(Some(format!(
            "two connections were given the same server session (pid {first})"
        )));
    }
    client.batch_execute(&database.session_setup()).await?;
    let (again, path) = backend(client).await?;
    let (_, path_again) = backend(client).await?;
    // PostgreSQL shows the path with names quoted only where they need it.
    let first_of = |path: &str| {
        path.split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .replace("\"\"", "\"")
    };
    let wanted = database.schema.as_str();
    Ok(if again != first {
        Some(format!(
            "one connection's statements ran in server sessions {first} and {again}"
        ))
    } else if first_of(&path) != wanted || first_of(&path_again) != wanted {
        Some(format!(
            "the search path set on the connection did not last (it is {path_again:?})"
        ))
    } else {
        None
    })
}
