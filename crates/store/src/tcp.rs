//! TCP keepalives and `TCP_USER_TIMEOUT` as libpq names them (`keepalives`,
//! `keepalives_idle`, `keepalives_interval`, `keepalives_count`, `tcp_user_timeout` in
//! milliseconds), read from the keys [`crate::conninfo`] takes out of a connection string.

use std::time::Duration;

use tokio_postgres::Config;

use crate::conninfo::Taken;

/// TCP keepalives and `TCP_USER_TIMEOUT`, with libpq's names and units. The defaults find a
/// connection that a NAT gateway or a load balancer dropped without a reset within about
/// 15 s, idle (keepalives: 5 s, then 3 probes 2 s apart) or sending (unacknowledged for 15 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSettings {
    pub keepalives: bool,
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
    /// `None`: the system's own (libpq's `tcp_user_timeout=0`).
    pub user_timeout: Option<Duration>,
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings {
            keepalives: true,
            idle: Duration::from_secs(5),
            interval: Duration::from_secs(2),
            count: 3,
            user_timeout: Some(Duration::from_secs(15)),
        }
    }
}

impl TcpSettings {
    pub(crate) fn resolve(taken: &Taken) -> Result<Self, String> {
        let number = |value: &Option<String>, key: &str| -> Result<Option<u64>, String> {
            value
                .as_deref()
                .map(|text| {
                    text.trim().parse::<u64>().map_err(|_| {
                        format!(
                            "invalid {key} value: a whole number, not {:?}",
                            shorten(text)
                        )
                    })
                })
                .transpose()
        };
        let defaults = TcpSettings::default();
        // libpq: 0 (or an unset key) leaves the system's value; here it leaves ours.
        let positive = |n: Option<u64>| n.filter(|n| *n > 0);
        Ok(TcpSettings {
            keepalives: number(&taken.keepalives, "keepalives")?.is_none_or(|n| n != 0),
            idle: positive(number(&taken.keepalives_idle, "keepalives_idle")?)
                .map_or(defaults.idle, Duration::from_secs),
            interval: positive(number(&taken.keepalives_interval, "keepalives_interval")?)
                .map_or(defaults.interval, Duration::from_secs),
            count: positive(number(&taken.keepalives_count, "keepalives_count")?)
                .map_or(defaults.count, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            user_timeout: match number(&taken.tcp_user_timeout, "tcp_user_timeout")? {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => defaults.user_timeout,
            },
        })
    }

    /// Sets them on a driver configuration.
    pub fn apply(&self, config: &mut Config) {
        config.keepalives(self.keepalives);
        if self.keepalives {
            config
                .keepalives_idle(self.idle)
                .keepalives_interval(self.interval)
                .keepalives_retries(self.count);
        }
        if let Some(timeout) = self.user_timeout {
            config.tcp_user_timeout(timeout);
        }
    }
}

/// A value as it may be shown: a few plain characters, never what may be a password spilled
/// into the next key by a missing quote.
fn shorten(text: &str) -> String {
    if text.len() <= 12 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        text.to_owned()
    } else {
        "…".to_owned()
    }
}
