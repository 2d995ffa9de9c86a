//! libpq's connection settings that the driver does not read itself: `sslmode` with all six of
//! libpq's values, `sslrootcert`, `sslcert`, `sslkey`, the password file (`passfile`,
//! `PGPASSFILE`, `~/.pgpass`), `PGPASSWORD`, and `connect_timeout` with libpq's meaning. They
//! are taken out of the connection string before tokio-postgres parses the rest, which it
//! would refuse (`sslrootcert`, `sslmode=verify-full`) or read differently (`connect_timeout=0`
//! is no limit for libpq); every other parameter is handed on as written.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as DriverSslMode};
use tokio_postgres::{Client, Config, Socket};

use crate::tcp::TcpSettings;

use crate::tls::{MakeTls, RootCerts, SslMode, TlsSettings, TlsStream};

/// A connection of the database, TLS or not, to be driven by its owner.
pub type Connection = tokio_postgres::Connection<Socket, TlsStream>;

/// How long a connection attempt may take when the URL does not say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// libpq's socket directory on Debian, which the password file calls `localhost`.
pub(crate) const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The keys taken out of a connection string.
const TAKEN_KEYS: [&str; 11] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "passfile",
    "connect_timeout",
    // The driver reads the keepalive keys but knows neither libpq's `keepalives_count` nor
    // its `tcp_user_timeout` in milliseconds; all five are read here, with notifyscope's
    // defaults where the string gives none.
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
];

/// The values of [`TAKEN_KEYS`] a connection string gave (the last of each, as in libpq).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Taken {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub passfile: Option<String>,
    pub connect_timeout: Option<String>,
    pub keepalives: Option<String>,
    pub keepalives_idle: Option<String>,
    pub keepalives_interval: Option<String>,
    pub keepalives_count: Option<String>,
    pub tcp_user_timeout: Option<String>,
}

impl Taken {
    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "passfile" => &mut self.passfile,
            "keepalives" => &mut self.keepalives,
            "keepalives_idle" => &mut self.keepalives_idle,
            "keepalives_interval" => &mut self.keepalives_interval,
            "keepalives_count" => &mut self.keepalives_count,
            "tcp_user_timeout" => &mut self.tcp_user_timeout,
            _ => &mut self.connect_timeout,
        };
        *slot = Some(value);
    }
}

/// `url` without the keys of [`TAKEN_KEYS`], and their values. In a `postgresql://` URL they
/// are parameters after the `?`; in a `key=value` string, pairs. What the driver would find
/// malformed is left where it is, for its own error.
pub fn take_settings(url: &str) -> (String, Taken) {
    match ["postgresql://", "postgres://"]
        .iter()
        .find(|prefix| url.starts_with(**prefix))
    {
        Some(prefix) => take_from_url(url, prefix.len()),
        None => take_from_pairs(url),
    }
}

fn take_from_url(url: &str, prefix_len: usize) -> (String, Taken) {
    let mut taken = Taken::default();
    // The driver ends the user name and password at the first `@`: the parameters start at
    // the first `?` after it (a `?` before it is part of the password).
    let after_credentials = url[prefix_len..]
        .find('@')
        .map_or(prefix_len, |at| prefix_len + at + 1);
    let Some(question) = url[after_credentials..].find('?') else {
        return (url.to_owned(), taken);
    };
    let question = after_credentials + question;
    let kept: Vec<&str> = url[question + 1..]
        .split('&')
        .filter(|pair| {
            let Some((key, value)) = pair.split_once('=') else {
                return true;
            };
            let key = percent_decoded(key);
            if !TAKEN_KEYS.contains(&key.as_str()) {
                return true;
            }
            taken.set(&key, percent_decoded(value));
            false
        })
        .collect();
    let rest = if kept.is_empty() {
        url[..question].to_owned()
    } else {
        format!("{}?{}", &url[..question], kept.join("&"))
    };
    (rest, taken)
}

/// `%XX` escapes decoded, as the driver decodes a URL's parameters.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn take_from_pairs(text: &str) -> (String, Taken) {
    let mut taken = Taken::default();
    let mut kept: Vec<&str> = Vec::new();
    let mut pairs = Pairs { text, at: 0 };
    loop {
        pairs.skip_whitespace();
        if pairs.at == text.len() {
            break;
        }
        let start = pairs.at;
        match pairs.pair() {
            Some((key, value)) if TAKEN_KEYS.contains(&key) => taken.set(key, value),
            Some(_) => kept.push(&text[start..pairs.at]),
            None => {
                // Malformed from here on: the driver says how.
                kept.push(&text[start..]);
                break;
            }
        }
    }
    (kept.join(" "), taken)
}

/// The `key = value` pairs of a libpq connection string, read as libpq and the driver do:
/// a value is quoted with `'` or ends at white space, and `\` escapes the next character.
struct Pairs<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Pairs<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn pair(&mut self) -> Option<(&'a str, String)> {
        let start = self.at;
        while self.peek().is_some_and(|c| !c.is_whitespace() && c != '=') {
            self.bump();
        }
        let key = &self.text[start..self.at];
        self.skip_whitespace();
        if key.is_empty() || self.bump() != Some('=') {
            return None;
        }
        self.skip_whitespace();
        let mut value = String::new();
        if self.peek() == Some('\'') {
            self.bump();
            loop {
                match self.bump()? {
                    '\'' => break,
                    '\\' => value.push(self.bump()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = self.peek().filter(|c| !c.is_whitespace()) {
                self.bump();
                if c == '\\' {
                    if let Some(escaped) = self.bump() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        Some((key, value))
    }
}

/// The settings of [`Taken`] with libpq's environment variables and defaults filled in, and
/// what connecting needs of them.
pub struct Libpq {
    pub tls: Arc<TlsSettings>,
    /// How the operating system finds a connection that went away without a word.
    pub tcp: TcpSettings,
    /// `None`: no limit (libpq's `connect_timeout=0`).
    pub connect_timeout: Option<Duration>,
    /// The connection string's own `application_name`.
    pub application_name: Option<String>,
    password_from_env: Option<String>,
    passfile: Option<PathBuf>,
    /// A password file refused for its permissions is said once, not at every connection.
    passfile_refusal_said: AtomicBool,
}

impl Libpq {
    /// `env` reads an environment variable (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
    /// `PGSSLKEY`, `PGPASSFILE`, `PGPASSWORD`, `PGCONNECT_TIMEOUT`, `HOME`); a value the
    /// connection string gave wins over its variable. The error names what is wrong.
    pub fn resolve(taken: Taken, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let setting = |given: Option<String>, variable: &str| {
            given
                .or_else(|| env(variable))
                .filter(|value| !value.is_empty())
        };
        let tcp = TcpSettings::resolve(&taken)?;
        let root_certs = setting(taken.sslrootcert, "PGSSLROOTCERT").map(|root| match root {
            root if root == "system" => RootCerts::System,
            root => RootCerts::File(root.into()),
        });
        let mode = match setting(taken.sslmode, "PGSSLMODE") {
            Some(text) => Some(SslMode::parse(&text).ok_or_else(|| {
                // Only a word is shown: anything else may be a piece of a password that a
                // missing quote spilled into the next key.
                let shown = if text
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-' || c == '_')
                {
                    format!(" \"{text}\"")
                } else {
                    String::new()
                };
                let all: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_str()).collect();
                format!("invalid sslmode value{shown}: one of {}", all.join(", "))
            })?),
            None => None,
        };
        // libpq: the system's roots are only worth the name with the host name checked.
        let mode = match (mode, &root_certs) {
            (None, Some(RootCerts::System)) => SslMode::VerifyFull,
            (Some(weak), Some(RootCerts::System)) if weak != SslMode::VerifyFull => {
                return Err(format!(
                    "weak sslmode \"{weak}\" may not be used with sslrootcert=system (use \
                     \"verify-full\")"
                ))
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        let home = env("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|user| user.dir)
            });
        let tls = TlsSettings {
            mode,
            root_certs,
            client_cert: setting(taken.sslcert, "PGSSLCERT").map(PathBuf::from),
            client_key: setting(taken.sslkey, "PGSSLKEY").map(PathBuf::from),
            default_dir: home.as_ref().map(|home| home.join(".postgresql")),
        };
        let connect_timeout = match setting(taken.connect_timeout, "PGCONNECT_TIMEOUT") {
            Some(text) => connect_timeout(&text)?,
            None => Some(DEFAULT_CONNECT_TIMEOUT),
        };
        let passfile = setting(taken.passfile, "PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| home.map(|home| home.join(".pgpass")));
        Ok(Libpq {
            tls: Arc::new(tls),
            tcp,
            connect_timeout,
            application_name: None,
            password_from_env: env("PGPASSWORD").filter(|p| !p.is_empty()),
            passfile,
            passfile_refusal_said: AtomicBool::new(false),
        })
    }

    /// `base` (the first word, by which notifyscope knows its own sessions in
    /// `pg_stat_activity`) followed by the connection string's `application_name`, if any.
    pub fn application_base(&self, base: &str) -> String {
        match self.application_name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => format!("{base} {name}"),
            _ => base.to_owned(),
        }
    }

    /// The password to send when `config` has none: `PGPASSWORD`, else the password file's
    /// line for the first host. The file is read at each connection, as libpq reads it, so
    /// that a password changed there is used without a restart.
    fn password(&self, config: &Config) -> Option<Vec<u8>> {
        if config.get_password().is_some() {
            return None;
        }
        if let Some(password) = &self.password_from_env {
            return Some(password.clone().into_bytes());
        }
        let path = self.passfile.as_ref()?;
        let host = match (config.get_hosts().first(), config.get_hostaddrs().first()) {
            (Some(Host::Tcp(name)), _) => name.clone(),
            (Some(Host::Unix(dir)), _) if dir != Path::new(DEFAULT_SOCKET_DIR) => {
                dir.display().to_string()
            }
            (None, Some(address)) => address.to_string(),
            _ => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or_default();
        let entry = PassfileEntry {
            host: &host,
            port: &port.to_string(),
            dbname: config.get_dbname().unwrap_or(user),
            user,
        };
        match password_from_file(path, &entry) {
            Ok(password) => password,
            Err(refusal) => {
                if !self.passfile_refusal_said.swap(true, Ordering::Relaxed) {
                    tracing::warn!("{refusal}; it is not read");
                }
                None
            }
        }
    }

    /// A connection of `config` with these settings: its password, TLS as `sslmode` says
    /// (none over a Unix socket, which libpq never encrypts), and as in libpq a second try
    /// for `allow` with TLS when the server refuses the first without, and for `prefer`
    /// without TLS when the handshake fails.
    pub async fn connect(
        &self,
        mut config: Config,
    ) -> Result<(Client, Connection), tokio_postgres::Error> {
        if let Some(password) = self.password(&config) {
            config.password(password);
        }
        let tls = MakeTls::new(self.tls.clone());
        let hosts = config.get_hosts();
        let unix_only = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        let mode = if unix_only {
            SslMode::Disable
        } else {
            self.tls.mode
        };
        match mode {
            SslMode::Allow => {
                config.ssl_mode(DriverSslMode::Disable);
                match config.connect(tls.clone()).await {
                    // The server answered, and refused: libpq then asks again with TLS
                    // (pg_hba.conf may accept only `hostssl` sessions).
                    Err(e) if e.code().is_some() => {
                        config.ssl_mode(DriverSslMode::Require);
                        config.connect(tls).await
                    }
                    plain => plain,
                }
            }
            SslMode::Prefer => {
                config.ssl_mode(DriverSslMode::Prefer);
                match config.connect(tls.clone()).await {
                    // TLS offered but not achieved (a client certificate that cannot be read,
                    // a handshake this client cannot complete): `prefer` does not insist, and
                    // libpq then connects again without.
                    Err(e) if crate::tls::failure_of(&e).is_some() => {
                        config.ssl_mode(DriverSslMode::Disable);
                        config.connect(tls).await
                    }
                    tls_or_not => tls_or_not,
                }
            }
            mode => {
                config.ssl_mode(driver_mode(mode));
                config.connect(tls).await
            }
        }
    }
}

/// What the driver does for `mode`; how much of the certificate is checked is the TLS
/// connector's part.
pub fn driver_mode(mode: SslMode) -> DriverSslMode {
    match mode {
        SslMode::Disable | SslMode::Allow => DriverSslMode::Disable,
        SslMode::Prefer => DriverSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
    }
}

/// libpq's `connect_timeout`: seconds, 0 or less for no limit, and at least 2 (a second
/// rounded down could end an attempt at once).
fn connect_timeout(text: &str) -> Result<Option<Duration>, String> {
    let seconds: i64 = text.trim().parse().map_err(|_| {
        format!("invalid integer value \"{text}\" for connection option \"connect_timeout\"")
    })?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds.max(2) as u64)))
}

/// The fields of a password file's line that must match, in their order.
pub struct PassfileEntry<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The password of the first line of the file at `path` that matches `entry`, in libpq's
/// format: `host:port:database:user:password`, `*` for any value, `\:` and `\\` for a colon
/// and a backslash, `#` for a comment. No file, or one that cannot be read, is no password;
/// a file that others may read, or that is not a plain file, is refused (libpq's words).
pub fn password_from_file(
    path: &Path,
    entry: &PassfileEntry<'_>,
) -> Result<Option<Vec<u8>>, String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err(format!(
            "password file \"{}\" is not a plain file",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "password file \"{}\" has group or world access; permissions should be u=rw \
             (0600) or less",
            path.display()
        ));
    }
    let Ok(text) = std::fs::read(path) else {
        return Ok(None);
    };
    let fields = [entry.host, entry.port, entry.dbname, entry.user];
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let password = fields
            .iter()
            .try_fold(line, |rest, field| field_matches(rest, field.as_bytes()));
        if let Some(password) = password {
            return Ok(Some(unescaped(password)));
        }
    }
    Ok(None)
}

/// libpq's `pwdfMatchesString`: the rest of the line after the field when the field at its
/// start is `*` or equals `token`, its `\` escapes undone.
fn field_matches<'a>(line: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if line.starts_with(b"*:") {
        return Some(&line[2..]);
    }
    let at = |i: usize| line.get(i).copied();
    let mut i = 0;
    let mut t = 0;
    while i < line.len() {
        let mut escaped = false;
        if at(i) == Some(b'\\') {
            i += 1;
            escaped = true;
        }
        if at(i) == Some(b':') && t == token.len() && !escaped {
            return Some(&line[i + 1..]);
        }
        if t == token.len() || at(i) != Some(token[t]) {
            return None;
        }
        i += 1;
        t += 1;
    }
    None
}

/// A password field with its `\` escapes undone.
fn unescaped(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match (b, bytes.peek()) {
            (b'\\', Some(&next)) => {
                out.push(next);
                bytes.next();
            }
            (b, _) => out.push(b),
        }
    }
    out
}

/// Makes the connections of a pool as [`Libpq::connect`] does.
pub struct PoolConnect(pub Arc<Libpq>);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = self.0.connect(config).await?;
            // As deadpool's own connector reports the end of a pooled connection.
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(target: "deadpool.postgres", "Connection error: {}", e);
                }
            });
            Ok((client, task))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(pairs: &[(&str, &str)]) -> Taken {
        let mut taken = Taken::default();
        for (key, value) in pairs {
            taken.set(key, (*value).to_owned());
        }
        taken
    }

    #[test]
    fn keepalives_and_tcp_user_timeout_in_libpq_names_and_units() {
        let (rest, got) = take_settings(
            "host=db keepalives_idle=30 keepalives_interval=4 keepalives_count=6 \
             tcp_user_timeout=2500 dbname=app",
        );
        assert_eq!(rest, "host=db dbname=app");
        let tcp = TcpSettings::resolve(&got).expect("valid");
        assert_eq!(
            tcp,
            TcpSettings {
                keepalives: true,
                idle: Duration::from_secs(30),
                interval: Duration::from_secs(4),
                count: 6,
                user_timeout: Some(Duration::from_millis(2500)),
            }
        );
        // Unset, or 0 where libpq means the system's: ours.
        let defaults = TcpSettings::resolve(&taken(&[("keepalives_idle", "0")])).expect("valid");
        assert_eq!(defaults, TcpSettings::default());
        let system = TcpSettings::resolve(&taken(&[("tcp_user_timeout", "0")])).expect("valid");
        assert_eq!(system.user_timeout, None);
        let off = TcpSettings::resolve(&taken(&[("keepalives", "0")])).expect("valid");
        assert!(!off.keepalives);
        let Err(error) = TcpSettings::resolve(&taken(&[("keepalives_count", "many")])) else {
            panic!("a count that is not a number is refused");
        };
        assert!(error.contains("keepalives_count"), "{error}");
        // What may be a spilled password is not shown.
        let Err(error) = TcpSettings::resolve(&taken(&[("keepalives_idle", "s3cret pw")])) else {
            panic!("refused");
        };
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn tls_keys_come_out_of_a_url_and_the_rest_stays_as_written() {
        let (rest, got) = take_settings(
            "postgresql://ada:p%40ss@db.example:6543/app?application_name=bot&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fssl%2Froot.pem&options=-c%20work_mem%3D64MB&sslcert=/c.pem\
             &sslkey=/c.key&connect_timeout=0&passfile=/p",
        );
        assert_eq!(
            rest,
            "postgresql://ada:p%40ss@db.example:6543/app?application_name=bot\
             &options=-c%20work_mem%3D64MB"
        );
        assert_eq!(
            got,
            taken(&[
                ("sslmode", "verify-full"),
                ("sslrootcert", "/etc/ssl/root.pem"),
                ("sslcert", "/c.pem"),
                ("sslkey", "/c.key"),
                ("connect_timeout", "0"),
                ("passfile", "/p"),
            ])
        );
        // Only taken keys: no `?` left; none: the URL untouched.
        let (rest, _) = take_settings("postgres://db/app?sslmode=require");
        assert_eq!(rest, "postgres://db/app");
        let untouched = "postgresql://u:pw?x@db/app?host=/tmp&port=5433";
        assert_eq!(
            take_settings(untouched),
            (untouched.to_owned(), Taken::default())
        );
        // A `?` in the password does not start the parameters.
        let (rest, got) = take_settings("postgresql://u:p?w@db/app?sslmode=disable&port=1");
        assert_eq!(rest, "postgresql://u:p?w@db/app?port=1");
        assert_eq!(got.sslmode.as_deref(), Some("disable"));
    }

    #[test]
    fn tls_keys_come_out_of_a_key_value_string() {
        let (rest, got) = take_settings(
            "host=db.example  sslmode = require password='a b\\'c' sslrootcert='/etc/my certs/r.pem' \
             options='-c search_path=x' connect_timeout=7 dbname=app",
        );
        assert_eq!(
            rest,
            "host=db.example password='a b\\'c' options='-c search_path=x' dbname=app"
        );
        assert_eq!(
            got,
            taken(&[
                ("sslmode", "require"),
                ("sslrootcert", "/etc/my certs/r.pem"),
                ("connect_timeout", "7"),
            ])
        );
        // Malformed: what follows the last good pair is left for the driver to name.
        let (rest, got) = take_settings("sslmode=verify-ca host=h port");
        assert_eq!(rest, "host=h port");
        assert_eq!(got.sslmode.as_deref(), Some("verify-ca"));
        let (rest, _) = take_settings("host=h password='open");
        assert_eq!(rest, "host=h password='open");
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn the_environment_fills_in_what_the_url_does_not_say() {
        let vars = [
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", "/env/root.pem"),
            ("PGSSLCERT", "/env/client.pem"),
            ("PGSSLKEY", "/env/client.key"),
            ("PGCONNECT_TIMEOUT", "9"),
            ("HOME", "/home/ada"),
        ];
        let from_env = Libpq::resolve(Taken::default(), &env(&vars)).expect("resolves");
        assert_eq!(from_env.tls.mode, SslMode::VerifyCa);
        assert_eq!(
            from_env.tls.root_certs,
            Some(RootCerts::File("/env/root.pem".into()))
        );
        assert_eq!(from_env.tls.client_cert, Some("/env/client.pem".into()));
        assert_eq!(from_env.tls.client_key, Some("/env/client.key".into()));
        assert_eq!(from_env.connect_timeout, Some(Duration::from_secs(9)));
        assert_eq!(
            from_env.tls.default_dir,
            Some(PathBuf::from("/home/ada/.postgresql"))
        );
        assert_eq!(from_env.passfile, Some(PathBuf::from("/home/ada/.pgpass")));
        let from_url = Libpq::resolve(
            taken(&[
                ("sslmode", "disable"),
                ("sslrootcert", "/url/root.pem"),
                ("connect_timeout", "3"),
            ]),
            &env(&vars),
        )
        .expect("resolves");
        assert_eq!(from_url.tls.mode, SslMode::Disable);
        assert_eq!(
            from_url.tls.root_certs,
            Some(RootCerts::File("/url/root.pem".into()))
        );
        assert_eq!(from_url.connect_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn defaults_and_libpq_rules() {
        let none = env(&[]);
        let default = Libpq::resolve(Taken::default(), &none).expect("resolves");
        assert_eq!(default.tls.mode, SslMode::Prefer);
        assert_eq!(default.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        let resolve = |pairs: &[(&str, &str)]| Libpq::resolve(taken(pairs), &none);
        let timeout = |t: &str| {
            resolve(&[("connect_timeout", t)])
                .expect("resolves")
                .connect_timeout
        };
        assert_eq!(timeout("0"), None);
        assert_eq!(timeout("-1"), None);
        assert_eq!(timeout("1"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("30"), Some(Duration::from_secs(30)));
        assert!(resolve(&[("connect_timeout", "5s")]).is_err());
        let system = resolve(&[("sslrootcert", "system")]).expect("resolves");
        assert_eq!(system.tls.mode, SslMode::VerifyFull);
        assert_eq!(system.tls.root_certs, Some(RootCerts::System));
        let Err(weak) = resolve(&[("sslrootcert", "system"), ("sslmode", "require")]) else {
            panic!("require with the system's roots");
        };
        assert!(weak.contains("weak sslmode \"require\""), "{weak}");
        let Err(bad) = resolve(&[("sslmode", "verify_full")]) else {
            panic!("a mode libpq does not know");
        };
        assert_eq!(
            bad,
            "invalid sslmode value \"verify_full\": one of disable, allow, prefer, require, \
             verify-ca, verify-full"
        );
    }

    fn entry<'a>(
        host: &'a str,
        port: &'a str,
        dbname: &'a str,
        user: &'a str,
    ) -> PassfileEntry<'a> {
        PassfileEntry {
            host,
            port,
            dbname,
            user,
        }
    }

    fn passfile(text: &str, mode: u32) -> tempfile::NamedTempFile {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut file = tempfile::NamedTempFile::new().expect("temporary file");
        file.write_all(text.as_bytes()).expect("written");
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        file
    }

    #[test]
    fn the_password_file_matches_as_libpq_does() {
        let file = passfile(
            "# comment\n\
             db.example:5432:app:ada:first\n\
             db.example:5432:app:ada:shadowed\n\
             *:6543:*:ada:any host\r\n\
             10.0.0.1:5432:*:b\\:ob:pa\\:ss\\\\word:with:colons\n\
             localhost:5432:ada:ada:local\n\
             *:*:*:*:fallback\n",
            0o600,
        );
        let password = |e: PassfileEntry<'_>| {
            password_from_file(file.path(), &e)
                .expect("read")
                .map(|p| String::from_utf8(p).expect("utf-8"))
        };
        let got = |host, port, dbname, user| password(entry(host, port, dbname, user));
        assert_eq!(
            got("db.example", "5432", "app", "ada").as_deref(),
            Some("first")
        );
        assert_eq!(
            got("elsewhere", "6543", "x", "ada").as_deref(),
            Some("any host")
        );
        assert_eq!(
            got("10.0.0.1", "5432", "app", "b:ob").as_deref(),
            Some("pa:ss\\word:with:colons")
        );
        assert_eq!(
            got("localhost", "5432", "ada", "ada").as_deref(),
            Some("local")
        );
        assert_eq!(
            got("db.example", "5433", "app", "ada").as_deref(),
            Some("fallback")
        );
        // A field that only begins like the value does not match.
        let only = passfile("db:5432:app:ada:pw\n", 0o600);
        let got_only =
            |host: &str| password_from_file(only.path(), &entry(host, "5432", "app", "ada"));
        assert_eq!(got_only("db").expect("read"), Some(b"pw".to_vec()));
        assert_eq!(got_only("d").expect("read"), None);
        assert_eq!(got_only("dbx").expect("read"), None);
    }

    #[test]
    fn a_password_file_others_may_read_is_refused() {
        let file = passfile("*:*:*:*:secret\n", 0o644);
        let e = entry("h", "5432", "d", "u");
        let refusal = password_from_file(file.path(), &e).expect_err("refused");
        assert!(
            refusal
                .ends_with("has group or world access; permissions should be u=rw (0600) or less"),
            "{refusal}"
        );
        assert!(!refusal.contains("secret"));
        let missing = Path::new("/nonexistent/.pgpass");
        assert_eq!(password_from_file(missing, &e), Ok(None));
        let dir = tempfile::tempdir().expect("temporary directory");
        assert!(password_from_file(dir.path(), &e)
            .expect_err("a directory")
            .ends_with("is not a plain file"));
    }

    #[test]
    fn the_password_comes_from_the_url_then_pgpassword_then_the_file() {
        let file = passfile(
            "127.0.0.1:5432:test:postgres:from-file\nlocalhost:5432:postgres:postgres:socket\n",
            0o600,
        );
        let path = file.path().display().to_string();
        let with = |vars: &[(&str, &str)]| {
            Libpq::resolve(taken(&[("passfile", &path)]), &env(vars)).expect("resolves")
        };
        let config = |text: &str| text.parse::<Config>().expect("parses");
        let tcp = config("host=127.0.0.1 port=5432 user=postgres dbname=test");
        assert_eq!(with(&[]).password(&tcp), Some(b"from-file".to_vec()));
        assert_eq!(
            with(&[("PGPASSWORD", "from-env")]).password(&tcp),
            Some(b"from-env".to_vec())
        );
        let given = config("host=127.0.0.1 user=postgres dbname=test password=given");
        assert_eq!(with(&[("PGPASSWORD", "from-env")]).password(&given), None);
        // The default socket directory is `localhost` to the file; the database defaults to
        // the user's name.
        let socket = config("host=/var/run/postgresql user=postgres");
        assert_eq!(with(&[]).password(&socket), Some(b"socket".to_vec()));
    }

    #[test]
    fn a_database_keeps_the_urls_timeout_application_name_and_mode() {
        let db = |url: &str| crate::Database::new(url, crate::Identifier::fixed("public"));
        let timeout = |url: &str| {
            db(url)
                .expect("parses")
                .config()
                .get_connect_timeout()
                .copied()
        };
        assert_eq!(timeout("host=h user=u"), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(
            timeout("host=h user=u connect_timeout=12"),
            Some(Duration::from_secs(12))
        );
        assert_eq!(timeout("postgresql://u@h/d?connect_timeout=0"), None);
        let named = db("postgresql://u@h/d?application_name=orders%20bot")
            .expect("parses")
            .with_instance("shards 0..2 of 4");
        assert_eq!(
            named.application_name(&named.libpq.application_base(crate::LISTENER_APP_NAME)),
            "notifyscope-listener orders bot shards 0..2 of 4"
        );
        let strict = db("host=h user=u sslmode=verify-full sslrootcert=/r.pem").expect("parses");
        assert_eq!(strict.config().get_ssl_mode(), DriverSslMode::Require);
        assert_eq!(strict.libpq.tls.mode, SslMode::VerifyFull);
        let Err(crate::StoreError::BadUrl(why)) = db("postgresql://u@h/d?sslmode=verify_full")
        else {
            panic!("a mode libpq does not know");
        };
        assert!(
            why.starts_with("invalid sslmode value \"verify_full\""),
            "{why}"
        );
    }

    #[test]
    fn each_mode_is_a_driver_mode() {
        assert_eq!(driver_mode(SslMode::Disable), DriverSslMode::Disable);
        assert_eq!(driver_mode(SslMode::Allow), DriverSslMode::Disable);
        assert_eq!(driver_mode(SslMode::Prefer), DriverSslMode::Prefer);
        for strict in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(driver_mode(strict), DriverSslMode::Require);
        }
    }
}
