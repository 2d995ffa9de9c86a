//! Retention: processed outbox rows and dead letters are deleted once they are older than
//! their retention, so that a pipeline left running keeps a bounded outbox (about rate ×
//! retention). Deletes go in small batches, each its own short transaction (no long lock, no
//! table rewrite), and never touch a row still waiting for ingestion or `discord_messages`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use notifyscope_model::trace::{Trace, TraceKind};
use notifyscope_store::outbox::{prune, PruneTarget};
use notifyscope_store::{error_chain, Identifier};

/// How long rows of a kind are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Never deleted.
    #[default]
    Forever,
    /// Deleted once older than this; zero keeps none.
    For(Duration),
}

impl FromStr for Retention {
    type Err = String;

    /// `forever`, or a length of time as humantime reads it (`0`, `90s`, `30m`, `24h`, `7d`,
    /// `1h 30m`); a bare number is seconds.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("forever") {
            return Ok(Retention::Forever);
        }
        if let Ok(seconds) = s.parse::<u64>() {
            return Ok(Retention::For(Duration::from_secs(seconds)));
        }
        humantime::parse_duration(s)
            .map(Retention::For)
            .map_err(|e| {
                format!(
                    "{s:?} is not a retention ({e}): use `forever` or e.g. `0`, `90s`, `30m`, \
                     `24h`, `7d`"
                )
            })
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Forever => f.write_str("forever"),
            Retention::For(d) => write!(f, "{} s", d.as_secs()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// Processed outbox rows.
    pub outbox: Retention,
    /// Rejected notifications (`dead_letters`) and outbox rows given up (`dead_at`).
    pub dead_letters: Retention,
    /// How often the pruner looks.
    pub every: Duration,
    /// Rows one delete takes at most.
    pub batch: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            outbox: Retention::For(Duration::from_secs(24 * 3600)),
            dead_letters: Retention::For(Duration::from_secs(7 * 24 * 3600)),
            every: Duration::from_secs(60),
            batch: 1000,
        }
    }
}

/// Deletes in one look at most this many batches, so that one look stays short; the rest
/// waits for the next.
const MAX_BATCHES: usize = 200;

/// Starts the pruner; nothing runs when both retentions are `forever`.
pub fn spawn_pruner(
    pool: Pool,
    channel: Identifier,
    config: RetentionConfig,
    trace: Trace,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let targets: Vec<(PruneTarget, Duration)> = [
        (PruneTarget::ProcessedOutbox, config.outbox),
        (PruneTarget::DeadOutbox, config.dead_letters),
        (PruneTarget::DeadLetters, config.dead_letters),
    ]
    .into_iter()
    .filter_map(|(target, retention)| match retention {
        Retention::Forever => None,
        Retention::For(d) => Some((target, d)),
    })
    .collect();
    if targets.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut vacuum_refused = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut pruned_tables = Vec::new();
            for (target, older_than) in &targets {
                let rows = prune_target(
                    &pool,
                    &channel,
                    *target,
                    *older_than,
                    config.batch,
                    &trace,
                    &stop,
                )
                .await;
                if rows > 0 && !pruned_tables.contains(&target.table()) {
                    pruned_tables.push(target.table());
                }
            }
            for table in pruned_tables {
                vacuum_without_autovacuum(&pool, table, &mut vacuum_refused).await;
            }
        }
    }))
}

/// Deleted rows free their space only once vacuumed, and the planner learns a table's size
/// only from ANALYZE: where the server's autovacuum does neither for `table` (turned off for
/// the server or the table), the pruner vacuums and analyzes what it pruned itself, so that
/// retention keeps the outbox bounded on such servers too. A role that may not vacuum the
/// table is said once.
async fn vacuum_without_autovacuum(pool: &Pool, table: &'static str, refused: &mut bool) {
    let Ok(client) = pool.get().await else {
        return;
    };
    // Whether autovacuum looks after the table, and whether this role may vacuum it (the
    // table's or the database's owner, or a superuser): VACUUM of someone else's table only
    // warns and does nothing.
    let looked_after = client
        .query_one(
            "SELECT current_setting('autovacuum')::bool AND coalesce(( \
               SELECT option_value::bool FROM pg_options_to_table(c.reloptions) \
               WHERE option_name = 'autovacuum_enabled'), true), \
               pg_has_role(c.relowner, 'USAGE') \
                 OR pg_has_role((SELECT datdba FROM pg_database \
                                 WHERE datname = current_database()), 'USAGE') \
                 OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&table],
        )
        .await;
    match looked_after {
        Ok(row) if row.get::<_, bool>(0) => return,
        Ok(row) if !row.get::<_, bool>(1) => {
            if !*refused {
                *refused = true;
                tracing::warn!(
                    table,
                    "autovacuum is off and this role may not vacuum {table}: pruned rows keep \
                     their space until its owner vacuums it"
                );
            }
            return;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(table, error = %error_chain(&e), "could not read the autovacuum setting");
            return;
        }
    }
    // VACUUM cannot run inside a transaction block; a pooled connection is in none.
    match client
        .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
        .await
    {
        Ok(()) => tracing::debug!(
            table,
            "autovacuum is off: vacuumed and analyzed after pruning"
        ),
        Err(e) if !*refused => {
            *refused = true;
            tracing::warn!(
                table,
                error = %error_chain(&e),
                "autovacuum is off and this role cannot vacuum {table}: pruned rows keep their \
                 space until someone vacuums it"
            );
        }
        Err(_) => {}
    }
}

/// Prunes one target in batches; the rows deleted.
async fn prune_target(
    pool: &Pool,
    channel: &Identifier,
    target: PruneTarget,
    older_than: Duration,
    batch: i64,
    trace: &Trace,
    stop: &CancellationToken,
) -> u64 {
    let mut rows = 0u64;
    for _ in 0..MAX_BATCHES {
        if stop.is_cancelled() {
            break;
        }
        let deleted = match pool.get().await {
            Ok(client) => prune(&client, channel, target, older_than, batch).await,
            Err(e) => Err(e.into()),
        };
        match deleted {
            Ok(n) => {
                rows += n;
                if (n as i64) < batch {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(table = target.table(), error = %error_chain(&e), "pruning failed; trying again later");
                break;
            }
        }
    }
    if rows > 0 {
        tracing::info!(
            table = target.table(),
            rows,
            "pruned {} older than {} s",
            target.describe(),
            older_than.as_secs()
        );
        trace.emit(
            None,
            TraceKind::Pruned {
                table: target.table().to_owned(),
                what: target.describe().to_owned(),
                rows,
                older_than_s: older_than.as_secs(),
            },
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_parse() {
        let secs = |n| Ok(Retention::For(Duration::from_secs(n)));
        assert_eq!("forever".parse(), Ok(Retention::Forever));
        assert_eq!("0".parse(), secs(0));
        assert_eq!("90s".parse(), secs(90));
        assert_eq!("30m".parse(), secs(1800));
        assert_eq!("24h".parse(), secs(86_400));
        assert_eq!("7d".parse(), secs(604_800));
        assert!("soon".parse::<Retention>().is_err());
        assert_eq!("1h 30m".parse(), secs(5400));
        assert!("5 parsecs".parse::<Retention>().is_err());
        assert!("-1".parse::<Retention>().is_err());
    }
}
