//! Deadlines on connections. Behind NAT gateways and load balancers a connection can go
//! silent without a reset: the socket stays open and nothing comes back, so an await on it
//! never ends. Every statement, checkout and commit of the pipeline gets a deadline; a
//! connection that misses it is dropped (never handed back to its pool) and replaced, and
//! the pool's idle connections go with it, since they came the same way and may hang too.

use std::future::Future;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};

use crate::StoreError;

/// How long a connection may stay silent when none is given.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// A connection that did not answer in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    /// Host and port, never the password.
    pub target: String,
    /// What it was asked to do.
    pub during: &'static str,
    pub waited: Duration,
}

impl std::fmt::Display for Silence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the connection to {} went silent: no answer to the {} within {:.1} s",
            self.target,
            self.during,
            self.waited.as_secs_f64()
        )
    }
}

/// `work` on `client`, out of `pool`, within `deadline`. When it misses it, the connection
/// is dropped with the pool's idle ones, and the error says who went silent.
pub async fn on_pooled<T, E: From<StoreError>>(
    pool: &Pool,
    client: Object,
    deadline: Duration,
    target: &str,
    during: &'static str,
    work: impl AsyncFnOnce(&Object) -> Result<T, E>,
) -> Result<T, E> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(deadline, work(&client)).await;
    match outcome {
        Ok(result) => result,
        Err(_) => {
            drop_silent(pool, client);
            Err(E::from(StoreError::Silent(Silence {
                target: target.to_owned(),
                during,
                waited: started.elapsed(),
            })))
        }
    }
}

/// Takes `client` out of `pool` for good (its socket closes when dropped) and drops the
/// pool's idle connections.
pub fn drop_silent(pool: &Pool, client: Object) {
    drop(Object::take(client));
    pool.retain(|_, _| false);
}

/// `work` within `deadline`, for a connection of its own: the error names the silence; the
/// caller drops the connection.
pub async fn within<T>(
    deadline: Duration,
    target: &str,
    during: &'static str,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Silent(Silence {
            target: target.to_owned(),
            during,
            waited: started.elapsed(),
        })),
    }
}
