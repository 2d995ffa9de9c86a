//! TLS and libpq's settings on real servers: the shared test server (which offers TLS with a
//! certificate for `localhost`), and private clusters on 127.0.0.1 for what it cannot show (a
//! server without TLS, one that insists on it, password authentication). Nothing here changes
//! the shared server's configuration.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::cluster::PrivateServer;
use common::process::{notifyscope, Finish};
use common::{is_stage, server_url, start_pipeline, Seen, TestSchema, WAIT};
use notifyscope::pipeline::{synthetic, PipelineConfig};
use notifyscope::store::{Database, ErrorClass, Identifier, StoreError};
use notifyscope::trace::Trace;

/// A certificate of an authority that signed nothing the tests connect to.
const UNRELATED_AUTHORITY: &str = "-----BEGIN CERTIFICATE-----
MIIB4jCCAYmgAwIBAgIUB95eCNmfFHG5IwsPO7cbW9GETikwCgYIKoZIzj0EAwIw
PjE8MDoGA1UEAwwzYW4gYXV0aG9yaXR5IHRoYXQgc2lnbmVkIG5vdGhpbmcgb2Yg
dGhlIHRlc3Qgc2VydmVyMCAXDTI2MTIwNTAxMzQyN1oYDzIxMjYxMTExMDEzNDI3
WjA+MTwwOgYDVQQDDDNhbiBhdXRob3JpdHkgdGhhdCBzaWduZWQgbm90aGluZyBv
ZiB0aGUgdGVzdCBzZXJ2ZXIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQkGi+4
IsJbexd4qZJJIxSRPBD3rCeSMEe5JFEgbsYbq/geYT/dDkucmhkodaXif+a5HKlH
cC+CpFG9dH6VQa54o2MwYTAdBgNVHQ4EFgQU2Pc3EaDhg/lSCviOFipgMAtUNXMw
HwYDVR0jBBgwFoAU2Pc3EaDhg/lSCviOFipgMAtUNXMwDwYDVR0TAQH/BAUwAwEB
/zAOBgNVHQ8BAf8EBAMCAgQwCgYIKoZIzj0EAwIDRwAwRAIgcKDc2MDbQp12fsUs
yEg3d3bHJpF/rRagvjAvpxFJcjECICBZI13wyQ85FrTBGPbAvhHJKqXIeda39WsZ
KDmAWQIC
-----END CERTIFICATE-----
";

/// The shared server reached at `host` (its port, user and database as the test URL says),
/// with `extra` libpq settings, as a `key=value` string.
fn shared_at(host: &str, extra: &str) -> String {
    let config: tokio_postgres::Config = server_url().parse().expect("test URL parses");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("host={host} port={port} user={user} dbname={dbname} {extra}")
}

/// The file of the shared server's certificate (for `localhost`), as the server names it.
async fn server_certificate() -> PathBuf {
    let client = TestSchema::new("tls_cert").client().await;
    let on: String = client
        .query_one("SHOW ssl", &[])
        .await
        .expect("SHOW ssl")
        .get(0);
    assert_eq!(on, "on", "these tests need a test server with ssl = on");
    let file: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .expect("SHOW ssl_cert_file")
        .get(0);
    PathBuf::from(file)
}

fn database(url: &str) -> Database {
    Database::new(url, Identifier::fixed("public")).expect("URL parses")
}

/// Whether the session of `client` is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

/// The error of a connection that must fail.
async fn refused(url: &str) -> StoreError {
    match database(url).connect_plain("notifyscope-test").await {
        Ok(_) => panic!("{url}: connected"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_runs_the_pipeline_over_tls_in_every_session() {
    let t = TestSchema::new("tls_require");
    let url = shared_at("127.0.0.1", "sslmode=require application_name=tlsbot");
    let database = Database::new(&url, t.schema())
        .expect("URL parses")
        .with_instance(&t.name);
    let trace = Trace::new();
    let mut seen = Seen::new(trace.subscribe());
    let mut pipeline = start_pipeline(PipelineConfig::new(database, t.channel()), &trace).await;
    let listener_pid = pipeline.wait_listening(WAIT).await.expect("listener up");
    let msg = synthetic::message("over TLS");
    let id = msg.message.message_id;
    pipeline.handle_message(msg).await.expect("handled");
    seen.first("ingested", |e| {
        e.message_id == Some(id) && is_stage(e, "ingested")
    })
    .await;

    let sessions = t
        .client()
        .await
        .query(
            "SELECT a.pid, a.application_name, s.ssl FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE '% ' || $1",
            &[&t.name],
        )
        .await
        .expect("sessions");
    let sessions: Vec<(i32, String, bool)> = sessions
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        sessions.iter().any(|(pid, _, _)| *pid == listener_pid),
        "the listener is among {sessions:?}"
    );
    assert!(sessions.len() >= 2, "listener and pool: {sessions:?}");
    for (pid, name, ssl) in &sessions {
        assert!(ssl, "session {pid} ({name}) without TLS");
        // The URL's application_name stays, after the word that tells notifyscope's
        // sessions apart and before the instance.
        assert!(
            name == &format!("notifyscope tlsbot {}", t.name)
                || name == &format!("notifyscope-listener tlsbot {}", t.name),
            "{name}"
        );
    }
    pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn each_sslmode_gives_the_session_libpq_would() {
    for (mode, tls) in [
        ("sslmode=disable", false),
        // The shared server offers TLS and does not insist on it.
        ("sslmode=allow", false),
        ("", true),
        ("sslmode=prefer", true),
        ("sslmode=require", true),
    ] {
        let url = shared_at("127.0.0.1", mode);
        let client = database(&url)
            .connect_plain("notifyscope-test")
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(encrypted(&client).await, tls, "{url}");
    }
    // A client certificate that cannot be read: prefer goes on without TLS, as libpq does;
    // require fails, naming the file.
    let unreadable = "sslcert=/nonexistent/client.crt sslkey=/nonexistent/client.key";
    let url = shared_at("127.0.0.1", &format!("sslmode=prefer {unreadable}"));
    let client = database(&url)
        .connect_plain("notifyscope-test")
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(!encrypted(&client).await);
    let e = refused(&shared_at(
        "127.0.0.1",
        &format!("sslmode=require {unreadable}"),
    ))
    .await;
    assert_eq!(e.class(), ErrorClass::Tls, "{e}");
    assert!(
        e.to_string().contains(
            "could not read certificate file \"/nonexistent/client.crt\" (sslcert): no such file"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn verify_full_checks_the_name_the_certificate_carries() {
    let cert = server_certificate().await;
    let root = format!("sslrootcert={}", cert.display());

    let e = refused(&shared_at(
        "127.0.0.1",
        &format!("sslmode=verify-full {root}"),
    ))
    .await;
    assert_eq!(e.class(), ErrorClass::TlsName, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("the server's certificate is for localhost, not 127.0.0.1"),
        "{text}"
    );
    let fix = e.class().fix(None, None);
    assert!(
        fix.contains("connect by the name the server's certificate carries")
            && fix.contains("verify-ca"),
        "{fix}"
    );
    assert!(!fix.contains("firewall"), "{fix}");

    // By the name it carries, in both forms of URL.
    let config: tokio_postgres::Config = server_url().parse().expect("test URL parses");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    for url in [
        shared_at("localhost", &format!("sslmode=verify-full {root}")),
        format!(
            "postgresql://{}@localhost:{port}/{}?sslmode=verify-full&sslrootcert={}",
            config.get_user().unwrap_or("postgres"),
            config.get_dbname().unwrap_or("postgres"),
            cert.display()
        ),
        // verify-ca checks who signed, not the name; require with a root does the same.
        shared_at("127.0.0.1", &format!("sslmode=verify-ca {root}")),
        shared_at("127.0.0.1", &format!("sslmode=require {root}")),
    ] {
        let client = database(&url)
            .connect_plain("notifyscope-test")
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(encrypted(&client).await, "{url}");
    }
}

#[tokio::test]
async fn an_unknown_authority_asks_for_its_file() {
    let mut other = tempfile::NamedTempFile::new().expect("temporary file");
    other
        .write_all(UNRELATED_AUTHORITY.as_bytes())
        .expect("written");
    let root = format!("sslrootcert={}", other.path().display());
    for url in [
        shared_at("localhost", &format!("sslmode=verify-full {root}")),
        shared_at("127.0.0.1", &format!("sslmode=verify-ca {root}")),
        // A root given makes `require` check the chain, as in libpq.
        shared_at("127.0.0.1", &format!("sslmode=require {root}")),
    ] {
        let e = refused(&url).await;
        assert_eq!(e.class(), ErrorClass::TlsAuthority, "{url}: {e}");
        assert!(
            e.to_string().contains(&format!(
                "the server's certificate is signed by an unknown authority: not by one of \
                 the roots in \"{}\" (sslrootcert)",
                other.path().display()
            )),
            "{e}"
        );
        assert!(e.class().fix(None, None).contains("sslrootcert=FILE"));
    }
    // A file that is not there is named as such.
    let e = refused(&shared_at(
        "localhost",
        "sslmode=verify-full sslrootcert=/nonexistent/root.crt",
    ))
    .await;
    assert_eq!(e.class(), ErrorClass::TlsAuthority);
    assert!(
        e.to_string()
            .contains("root certificate file \"/nonexistent/root.crt\" does not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn doctor_names_a_certificate_for_another_host_and_fails() {
    let cert = server_certificate().await;
    let t = TestSchema::new("tls_doctor");
    let url = shared_at(
        "127.0.0.1",
        &format!("sslmode=verify-full sslrootcert={}", cert.display()),
    );
    let out = notifyscope()
        .args(["doctor", "--timeout", "5", "--schema", &t.name])
        .args(["--database-url", &url])
        .finish()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("the server's certificate is for localhost, not 127.0.0.1"),
        "{stdout}"
    );
    assert!(stdout.contains("verify-ca"), "{stdout}");
    assert!(!stdout.contains("firewall"), "{stdout}");
}

/// `doctor`'s first line, on the shared server at `url`, with `env` set.
async fn doctor_connection_line(t: &TestSchema, url: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = notifyscope();
    cmd.args(["doctor", "--timeout", "5", "--schema", &t.name])
        .args(["--database-url", url]);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.finish().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_variables_apply_when_the_url_does_not_say() {
    let cert = server_certificate().await;
    let cert = cert.display().to_string();
    let t = TestSchema::new("tls_env");
    let strict = [
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", cert.as_str()),
    ];
    let by_address = doctor_connection_line(&t, &shared_at("127.0.0.1", ""), &strict).await;
    assert!(
        by_address.starts_with("✗ database connection")
            && by_address.contains("the server's certificate is for localhost, not 127.0.0.1"),
        "{by_address}"
    );
    let by_name = doctor_connection_line(&t, &shared_at("localhost", ""), &strict).await;
    assert!(by_name.starts_with("✓ database connection"), "{by_name}");
    // The URL wins over the variable.
    let url_says = shared_at("127.0.0.1", "sslmode=disable");
    let disabled = doctor_connection_line(&t, &url_says, &strict).await;
    assert!(disabled.starts_with("✓ database connection"), "{disabled}");
    // An unknown authority from PGSSLROOTCERT.
    let mut other = tempfile::NamedTempFile::new().expect("temporary file");
    other
        .write_all(UNRELATED_AUTHORITY.as_bytes())
        .expect("written");
    let other = other.path().display().to_string();
    let unknown = doctor_connection_line(
        &t,
        &shared_at("localhost", ""),
        &[
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", other.as_str()),
        ],
    )
    .await;
    assert!(
        unknown.contains("unknown authority") && unknown.contains("sslrootcert=FILE"),
        "{unknown}"
    );
}

const PASSWORD: &str = "correct horse:battery\\staple";

/// A password file holding `lines`, with permissions `mode`.
fn password_file(lines: &str, mode: u32) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    file.write_all(lines.as_bytes()).expect("written");
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_and_with_passwords() {
    let server = PrivateServer::start(
        "ssl = off",
        "local all all trust\n\
         host all ada 127.0.0.1/32 scram-sha-256\n\
         host all all 127.0.0.1/32 trust\n",
        Vec::new(),
    )
    .await;
    server
        .execute(&format!(
            "CREATE ROLE ada LOGIN PASSWORD '{}'",
            PASSWORD.replace('\'', "''")
        ))
        .await;

    // require: the server says it does not do TLS, and the advice is the server's ssl.
    let e = refused(&server.url("notifyscope", "sslmode=require")).await;
    assert_eq!(e.class(), ErrorClass::TlsNotOffered, "{e}");
    assert!(e.to_string().contains("server does not support TLS"), "{e}");
    let fix = e.class().fix(None, None);
    assert!(
        fix.contains("ssl = on") && !fix.contains("firewall"),
        "{fix}"
    );
    // prefer (the default) goes on without.
    let plain = database(&server.url("notifyscope", ""))
        .connect_plain("notifyscope-test")
        .await
        .expect("prefer connects without TLS");
    assert!(!encrypted(&plain).await);

    // The password from the file named by `passfile`, its colon and backslash escaped.
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    let lines = format!(
        "# other servers\nelsewhere:*:*:ada:wrong\n127.0.0.1:{}:*:ada:{escaped}\n",
        server.port
    );
    let good = password_file(&lines, 0o600);
    let with_file = |file: &tempfile::NamedTempFile| {
        server.url("ada", &format!("passfile={}", file.path().display()))
    };
    let client = database(&with_file(&good))
        .connect_plain("notifyscope-test")
        .await
        .expect("the password file's password is taken");
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("current_user")
        .get(0);
    assert_eq!(user, "ada");
    // The same file that others may read is not read: no password, a login error.
    let loose = password_file(&lines, 0o644);
    let e = refused(&with_file(&loose)).await;
    assert_eq!(e.class(), ErrorClass::Login, "{e}");
    assert!(!e.to_string().contains("horse"), "{e}");

    // The same through the binary's environment: PGPASSFILE, then PGPASSWORD, PGSSLMODE.
    let t = TestSchema::new("tls_passfile");
    let good_path = good.path().display().to_string();
    let loose_path = loose.path().display().to_string();
    let url = server.url("ada", "");
    let line = doctor_connection_line(&t, &url, &[("PGPASSFILE", good_path.as_str())]).await;
    assert!(line.starts_with("✓ database connection"), "{line}");
    let mut cmd = notifyscope();
    cmd.args(["doctor", "--timeout", "5", "--schema", &t.name])
        .args(["--database-url", &url])
        .env("PGPASSFILE", &loose_path);
    let out = cmd.finish().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.starts_with("✗ database connection"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "password file \"{loose_path}\" has group or world access; permissions should be \
             u=rw (0600) or less"
        )),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("horse"));
    let line = doctor_connection_line(
        &t,
        &url,
        &[
            ("PGPASSFILE", loose_path.as_str()),
            ("PGPASSWORD", PASSWORD),
        ],
    )
    .await;
    assert!(line.starts_with("✓ database connection"), "{line}");
    let line = doctor_connection_line(
        &t,
        &server.url("notifyscope", ""),
        &[("PGSSLMODE", "require")],
    )
    .await;
    assert!(
        line.starts_with("✗ database connection: the server does not offer TLS"),
        "{line}"
    );
}

#[tokio::test]
async fn allow_asks_again_with_tls_when_the_server_insists() {
    let read = |path: &str| {
        std::fs::read(path).unwrap_or_else(|e| {
            panic!(
                "this test gives a private server the key and certificate of Debian's \
                 ssl-cert package and cannot read {path}: {e}"
            )
        })
    };
    let server = PrivateServer::start(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'",
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostnossl all all 127.0.0.1/32 reject\n",
        vec![
            ("server.crt", read("/etc/ssl/certs/ssl-cert-snakeoil.pem")),
            ("server.key", read("/etc/ssl/private/ssl-cert-snakeoil.key")),
        ],
    )
    .await;
    let client = database(&server.url("notifyscope", "sslmode=allow"))
        .connect_plain("notifyscope-test")
        .await
        .expect("allow connects with TLS the second time");
    assert!(encrypted(&client).await);
    let e = refused(&server.url("notifyscope", "sslmode=disable")).await;
    assert_eq!(e.class(), ErrorClass::Login, "{e}");
    assert!(e.to_string().contains("no encryption"), "{e}");
    // libpq never encrypts a Unix socket, whatever sslmode says; this server offers TLS.
    let socket = format!(
        "host={} port={} user=notifyscope dbname=postgres sslmode=require",
        server.dir.path().display(),
        server.port
    );
    let client = database(&socket)
        .connect_plain("notifyscope-test")
        .await
        .expect("the socket connects");
    assert!(!encrypted(&client).await);
}
