//! What a database error means for the pipeline, decided in this one place from its SQLSTATE
//! (or, for a connection's TLS, from what the handshake found): whether trying again later may
//! succeed, and what to tell the person who has to fix it.
//! Publish, listen, ingest, doctor and the diagnosis all read errors through [`ErrorClass`];
//! the store classifies the errors of its driver into it.

use serde::{Deserialize, Serialize};

/// The kind of a database error, by SQLSTATE class, or by the TLS failure that ended the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 08…, 57P…, or no answer at all: the server is unreachable, restarting or shut down.
    Connection,
    /// TLS is required (`sslmode` require or stricter) and the server does not offer it.
    TlsNotOffered,
    /// The server's certificate is not for the host name connected to (`verify-full`).
    TlsName,
    /// No trusted authority signed the server's certificate, or no root certificate is given
    /// for a mode that checks it.
    TlsAuthority,
    /// Any other TLS failure: a certificate or key file, an expired certificate, a handshake
    /// the server broke off.
    Tls,
    /// 28…, 3D000: the server refused the login (user, password, pg_hba.conf) or has no such
    /// database.
    Login,
    /// 42501: the role may not do this to that table.
    Permission,
    /// 42P01, 42703, 42883, 3F000: a table, column, function or schema is not there.
    MissingObject,
    /// 23…: a row breaks a constraint.
    Constraint,
    /// 22…: a value the column's type refuses.
    BadData,
    /// 55P03 or 57014: a lock was not granted within `lock_timeout`, or a statement ran past
    /// `statement_timeout` (or was cancelled).
    Timeout,
    /// 40…: deadlock or serialization failure.
    Conflict,
    /// 53…: disk full, out of memory, too many connections.
    Resources,
    /// Anything else.
    Other,
}

impl ErrorClass {
    pub fn of_sqlstate(code: &str) -> Self {
        match code {
            "42501" => ErrorClass::Permission,
            "42P01" | "42703" | "42883" | "3F000" => ErrorClass::MissingObject,
            "3D000" => ErrorClass::Login,
            "55P03" | "57014" => ErrorClass::Timeout,
            _ if code.starts_with("08") || code.starts_with("57P") => ErrorClass::Connection,
            _ if code.starts_with("28") => ErrorClass::Login,
            _ if code.starts_with("23") => ErrorClass::Constraint,
            _ if code.starts_with("22") => ErrorClass::BadData,
            _ if code.starts_with("40") => ErrorClass::Conflict,
            _ if code.starts_with("53") => ErrorClass::Resources,
            _ => ErrorClass::Other,
        }
    }

    /// Whether the same statement may succeed later without anything about the row
    /// changing. Permissions and missing objects count: people fix those while the
    /// pipeline runs (a login too: a password rotated, pg_hba.conf edited). Constraints, bad
    /// data and unknown errors are the row's own.
    pub fn is_transient(self) -> bool {
        !matches!(
            self,
            ErrorClass::Constraint | ErrorClass::BadData | ErrorClass::Other
        )
    }

    /// Every class.
    pub const ALL: [ErrorClass; 14] = [
        ErrorClass::Connection,
        ErrorClass::TlsNotOffered,
        ErrorClass::TlsName,
        ErrorClass::TlsAuthority,
        ErrorClass::Tls,
        ErrorClass::Login,
        ErrorClass::Permission,
        ErrorClass::MissingObject,
        ErrorClass::Constraint,
        ErrorClass::BadData,
        ErrorClass::Timeout,
        ErrorClass::Conflict,
        ErrorClass::Resources,
        ErrorClass::Other,
    ];

    /// The class named by [`ErrorClass::as_str`], as read back from the `error_class` column.
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// A TLS failure: the server answered, and the connection's TLS did not come about.
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            ErrorClass::TlsNotOffered
                | ErrorClass::TlsName
                | ErrorClass::TlsAuthority
                | ErrorClass::Tls
        )
    }

    /// Stable name, as in JSON and the `error_class` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connection => "connection",
            ErrorClass::TlsNotOffered => "tls_not_offered",
            ErrorClass::TlsName => "tls_name",
            ErrorClass::TlsAuthority => "tls_authority",
            ErrorClass::Tls => "tls",
            ErrorClass::Login => "login",
            ErrorClass::Permission => "permission",
            ErrorClass::MissingObject => "missing_object",
            ErrorClass::Constraint => "constraint",
            ErrorClass::BadData => "bad_data",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Resources => "resources",
            ErrorClass::Other => "other",
        }
    }

    /// What happened, for people.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorClass::Connection => "the database cannot be reached",
            ErrorClass::TlsNotOffered => "the server does not offer TLS",
            ErrorClass::TlsName => "the server's certificate is not for the host connected to",
            ErrorClass::TlsAuthority => {
                "the server's certificate is not signed by a trusted authority"
            }
            ErrorClass::Tls => "the TLS connection to the server failed",
            ErrorClass::Login => "the server refused the login",
            ErrorClass::Permission => "permission denied",
            ErrorClass::MissingObject => "a table or column is missing",
            ErrorClass::Constraint => "a row breaks a constraint",
            ErrorClass::BadData => "a value the column refuses",
            ErrorClass::Timeout => "waited on a lock past lock_timeout (or a statement timed out)",
            ErrorClass::Conflict => "deadlock or serialization failure",
            ErrorClass::Resources => "the server is out of resources (disk, memory, connections)",
            ErrorClass::Other => "the database refused the statement",
        }
    }

    /// What to do about it, in one sentence; `role` is the database user of the pipeline
    /// and `table` the table the statement wrote, when known.
    pub fn fix(self, role: Option<&str>, table: Option<&str>) -> String {
        let role = role.unwrap_or("the pipeline's role");
        let table = table.unwrap_or("the pipeline's tables");
        match self {
            ErrorClass::Connection => {
                "check that PostgreSQL runs and listens at the URL's host and port \
                 (`pg_isready -h HOST -p PORT` tells), and that no firewall is in between"
                    .into()
            }
            // The network is fine when TLS fails: the server answered.
            ErrorClass::TlsNotOffered => {
                "turn TLS on in the server (`ssl = on` with ssl_cert_file and ssl_key_file in \
                 postgresql.conf), or connect with sslmode=prefer (TLS when offered) or \
                 sslmode=disable"
                    .into()
            }
            ErrorClass::TlsName => {
                "connect by the name the server's certificate carries (the error names it), or \
                 use sslmode=verify-ca, which checks the certificate's authority but not its name"
                    .into()
            }
            ErrorClass::TlsAuthority => {
                "pass the certificate of the authority that signed the server's (for a \
                 self-signed server, its own certificate) with sslrootcert=FILE, or \
                 sslrootcert=system when a public authority signed it"
                    .into()
            }
            ErrorClass::Tls => {
                "read the error: it names the certificate or key file, or the step of the TLS \
                 handshake that failed; sslmode, sslrootcert, sslcert and sslkey set what is \
                 checked and sent"
                    .into()
            }
            ErrorClass::Login => format!(
                "check the user and password of {role}, the database name, and that \
                 pg_hba.conf lets this host in"
            ),
            ErrorClass::Permission => format!(
                "GRANT SELECT, INSERT, UPDATE ON {table} TO {role} (a grant forgotten in a \
                 migration); the rows wait in the outbox and go through once it is back"
            ),
            ErrorClass::MissingObject => format!(
                "restore {table} or run the migrations (`notifyscope run` migrates at start); \
                 the rows wait in the outbox meanwhile"
            ),
            ErrorClass::Constraint | ErrorClass::BadData => format!(
                "the row does not fit {table} (a constraint or column type added since); fix \
                 the table or the producer: the row becomes a dead letter after its attempts"
            ),
            ErrorClass::Timeout => {
                "find the session holding the lock (pg_locks, pg_blocking_pids): usually a \
                 migration, a session idle in transaction or a long report; end it and the \
                 rows go through"
                    .into()
            }
            ErrorClass::Conflict => {
                "retried by itself; frequent ones mean another writer on the same rows".into()
            }
            ErrorClass::Resources => {
                "free disk space on the server, or raise max_connections / memory limits".into()
            }
            ErrorClass::Other => "read the error; the statement is retried on its schedule".into(),
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table a permission or missing-relation error names (`… for table X`, `relation "X"
/// does not exist`), when it names one.
pub fn table_named(error: &str) -> Option<&str> {
    if let Some(rest) = error.split("for table ").nth(1) {
        return rest.split(|c: char| c.is_whitespace() || c == ':').next();
    }
    let rest = error.split("relation \"").nth(1)?;
    rest.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_sqlstate() {
        let cases = [
            ("08006", ErrorClass::Connection),
            ("57P01", ErrorClass::Connection),
            ("42501", ErrorClass::Permission),
            ("28P01", ErrorClass::Login),
            ("3D000", ErrorClass::Login),
            ("42P01", ErrorClass::MissingObject),
            ("42703", ErrorClass::MissingObject),
            ("23505", ErrorClass::Constraint),
            ("23514", ErrorClass::Constraint),
            ("22P02", ErrorClass::BadData),
            ("55P03", ErrorClass::Timeout),
            ("57014", ErrorClass::Timeout),
            ("40P01", ErrorClass::Conflict),
            ("40001", ErrorClass::Conflict),
            ("53100", ErrorClass::Resources),
            ("XX000", ErrorClass::Other),
        ];
        for (code, class) in cases {
            assert_eq!(ErrorClass::of_sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn every_class_reads_back_from_its_name() {
        for class in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(class.as_str()), Some(class));
        }
    }

    #[test]
    fn tls_advice_does_not_point_at_the_network() {
        for class in ErrorClass::ALL.into_iter().filter(|c| c.is_tls()) {
            let fix = class.fix(None, None);
            assert!(
                !fix.contains("firewall") && !fix.contains("pg_isready"),
                "{fix}"
            );
            assert!(class.is_transient(), "{class}");
        }
        assert!(ErrorClass::TlsName.fix(None, None).contains("verify-ca"));
        assert!(ErrorClass::TlsAuthority
            .fix(None, None)
            .contains("sslrootcert"));
    }

    #[test]
    fn only_the_rows_own_faults_are_final() {
        assert!(ErrorClass::Permission.is_transient());
        assert!(ErrorClass::MissingObject.is_transient());
        assert!(ErrorClass::Timeout.is_transient());
        assert!(!ErrorClass::Constraint.is_transient());
        assert!(!ErrorClass::BadData.is_transient());
    }

    #[test]
    fn the_table_of_an_error() {
        assert_eq!(
            table_named("db error: ERROR: permission denied for table discord_messages"),
            Some("discord_messages")
        );
        assert_eq!(
            table_named("ERROR: relation \"event_outbox\" does not exist"),
            Some("event_outbox")
        );
        assert_eq!(table_named("deadlock detected"), None);
    }
}
