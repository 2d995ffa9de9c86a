//! What a database URL is read as and what of it may be shown: a password with `@`, `:` or
//! `/` read whole, errors of a string that does not parse scrubbed of its text, the string
//! that finds this database again (never the password), and the target named in messages.

use notifyscope_model::identifier::Identifier;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

const URL_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// A `postgresql://` URL with every `@` but the one that ends the user name and password
/// percent-encoded, so that the driver splits it where a person meant: passwords are often
/// generated with `@`, `:` and `/` in them, and written into the URL as they are. The driver
/// takes the first `@` as the end of the password, and what follows would be shown as the
/// host (`host=ss@word@…` for the password `p@ss@word`). Host, port and database never hold
/// an `@`, so the password ends at the last one; but an `@` after a `?` that starts
/// `key=value` parameters belongs to them (`?user=me@example`). A `key=value` string, where
/// the password is a value of its own, is returned as it is.
pub(crate) fn with_credentials_encoded(url: &str) -> String {
    let Some((prefix, rest)) = URL_PREFIXES
        .iter()
        .find_map(|p| url.strip_prefix(p).map(|rest| (*p, rest)))
    else {
        return url.to_owned();
    };
    let credentials_end = rest
        .match_indices('@')
        .map(|(at, _)| at)
        .rev()
        .find(|&at| !opens_parameters(&rest[..at]));
    let encode_at = |text: &str| text.replace('@', "%40");
    match credentials_end {
        Some(at) => format!(
            "{prefix}{}@{}",
            encode_at(&rest[..at]),
            encode_at(&rest[at + 1..])
        ),
        None => format!("{prefix}{}", encode_at(rest)),
    }
}

/// `text` (the start of a URL after its scheme) holds a `?` followed by a `key=`: the start
/// of the URL's parameters, not a password that has a `?` in it.
fn opens_parameters(text: &str) -> bool {
    text.find('?')
        .is_some_and(|question| text[question..].contains('='))
}

/// The connection string holds a password, or what may be one: a `password` keyword, or a
/// URL with a `:` before its last `@`.
pub(crate) fn may_hold_password(url: &str) -> bool {
    if url.contains("password") {
        return true;
    }
    URL_PREFIXES
        .iter()
        .find_map(|p| url.strip_prefix(p))
        .and_then(|rest| rest.find('@').map(|at| rest[..at].contains(':')))
        .unwrap_or(false)
}

/// The driver's reason why a connection string does not parse, without what it quotes from
/// the string when that may be a piece of the password: a password with a space in it, not
/// quoted, is read as more `key=value` pairs, whose keys the driver names ("unknown option
/// `…`") or whose next character it shows ("expected `=` but got `…`").
pub(crate) fn without_input_fragments(detail: &str, secret: bool) -> String {
    if !secret {
        return detail.to_owned();
    }
    if detail.starts_with("unknown option `") {
        return "an unknown option (not named: with a password in the string, the name may be \
                part of it; quote a password that holds spaces)"
            .to_owned();
    }
    if let Some((place, _quoted)) = detail
        .strip_prefix("unexpected character")
        .and_then(|rest| rest.split_once(':'))
    {
        return format!("unexpected character{place} (quote a password that holds spaces)");
    }
    detail.to_owned()
}

/// See [`Database::connection_string`]; `config` as the URL gave it, defaults filled in.
pub(crate) fn connection_string(config: &Config) -> String {
    let join = |items: Vec<String>| items.join(",");
    let hosts = join(
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect(),
    );
    let mut parts = vec![format!("host={}", conninfo_value(&hosts))];
    let addresses = config.get_hostaddrs();
    if !addresses.is_empty() {
        let addresses = join(addresses.iter().map(|a| a.to_string()).collect());
        parts.push(format!("hostaddr={}", conninfo_value(&addresses)));
    }
    let ports = match config.get_ports() {
        [] => "5432".to_owned(),
        ports => join(ports.iter().map(|p| p.to_string()).collect()),
    };
    parts.push(format!("port={ports}"));
    let user = config.get_user().unwrap_or_default();
    parts.push(format!("user={}", conninfo_value(user)));
    // libpq's default database is the one named after the user.
    let dbname = config.get_dbname().unwrap_or(user);
    parts.push(format!("dbname={}", conninfo_value(dbname)));
    if let Some(options) = config.get_options().filter(|o| !o.is_empty()) {
        parts.push(format!("options={}", conninfo_value(options)));
    }
    // With several hosts, which of them will do: without it, a command that finds this
    // instance could take a read-only standby for the primary.
    match config.get_target_session_attrs() {
        tokio_postgres::config::TargetSessionAttrs::ReadWrite => {
            parts.push("target_session_attrs=read-write".into())
        }
        tokio_postgres::config::TargetSessionAttrs::ReadOnly => {
            parts.push("target_session_attrs=read-only".into())
        }
        _ => {}
    }
    parts.join(" ")
}

/// A value of a `key=value` connection string, quoted when it has to be.
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\\' || c == '\'');
    if plain {
        return value.to_owned();
    }
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

pub(crate) fn redact(config: &Config, schema: &Identifier) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let mut parts = vec![format!("host={}", hosts.join(","))];
    let ports: Vec<String> = config.get_ports().iter().map(|p| p.to_string()).collect();
    if !ports.is_empty() {
        parts.push(format!("port={}", ports.join(",")));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    parts.push(format!("(schema {schema})"));
    parts.join(" ")
}
