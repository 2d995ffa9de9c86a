//! Finding the running instance: `run` leaves a private file in the user's runtime directory,
//! and `send`, `doctor`, `selftest`, `watch` and `outbox` use it when no --database-url is
//! given; `send --via-bot` takes the instance's control secret from it, and the instance
//! carries out no control request without that secret. Every test points XDG_RUNTIME_DIR at a
//! directory of its own.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::process::{
    notifyscope, notifyscope_for, pipeline_command, reap_blocking, run_pipeline, stage, Finish,
    Running,
};
use common::{fresh_runtime_dir, server_url, TestSchema};
use nix::sys::signal::Signal;
use serde_json::Value;

/// The directory of the runtime files of the instances started with `runtime` as
/// XDG_RUNTIME_DIR.
fn instance_dir(runtime: &Path) -> PathBuf {
    runtime.join("notifyscope")
}

fn instance_file(t: &TestSchema, run: &Running) -> PathBuf {
    instance_dir(&t.runtime_dir()).join(format!("{}.json", run.pid()))
}

fn read_instance(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the runtime file is JSON")
}

fn id_of(v: &Value) -> Option<String> {
    v["message_id"].as_str().map(str::to_owned)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one line of `send --via-bot message --json`: the message id, once it was published.
fn published_id(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["outcome"], "published", "{stdout}");
    id_of(&lines[0]).expect("message_id")
}

/// The test server's URL with a password that its trust authentication ignores.
fn url_with_password(password: &str) -> String {
    let url = server_url();
    if url.contains("://") {
        let glue = if url.contains('?') { '&' } else { '?' };
        format!("{url}{glue}password={password}")
    } else {
        format!("{url} password={password}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_without_options_reaches_the_one_running_instance() {
    let t = TestSchema::new("inst_one");
    let mut run = run_pipeline(&t).await;

    let out = notifyscope_for(&t)
        .args(["send", "--via-bot", "message", "--json"])
        .finish()
        .await;
    let id = published_id(&out);
    run.until("the message ingested", |v| {
        stage(v) == "ingested" && id_of(v).as_deref() == Some(id.as_str())
    })
    .await;
    let rows = t
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages WHERE message_id = {id}",
            t.name
        ))
        .await;
    assert_eq!(rows, 1);
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_are_listed_and_instance_picks_one() {
    let first = TestSchema::new("inst_first");
    let second = TestSchema::new("inst_second");
    let runtime = first.runtime_dir();
    let mut runs = Vec::new();
    for t in [&first, &second] {
        let mut cmd = pipeline_command(t);
        cmd.env("XDG_RUNTIME_DIR", &runtime);
        let mut run = Running::start(cmd);
        run.until("listener up", |v| stage(v) == "listener_up")
            .await;
        runs.push(run);
    }
    let send = |extra: &[&str]| {
        let mut cmd = notifyscope();
        cmd.env("XDG_RUNTIME_DIR", &runtime)
            .args(["send", "--via-bot", "message", "--json"])
            .args(extra);
        cmd
    };

    let out = send(&[]).finish().await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--instance PID"), "{stderr}");
    for (t, run) in [&first, &second].iter().zip(&runs) {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("pid {},", run.pid())))
            .unwrap_or_else(|| panic!("pid {} listed: {stderr}", run.pid()));
        assert!(line.contains("started "), "{line}");
        assert!(line.contains("host="), "{line}");
        assert!(line.contains(&format!("schema {}", t.name)), "{line}");
        assert!(line.contains(&format!("channel {}", t.name)), "{line}");
    }

    let pid = runs[1].pid().to_string();
    let id = published_id(&send(&["--instance", &pid]).finish().await);
    runs[1]
        .until("the message ingested by the second", |v| {
            stage(v) == "ingested" && id_of(v).as_deref() == Some(id.as_str())
        })
        .await;
    let in_first = first
        .count(&format!(
            "SELECT count(*) FROM \"{}\".discord_messages",
            first.name
        ))
        .await;
    assert_eq!(in_first, 0);

    let out = send(&["--instance", "1"]).finish().await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--instance 1: no running notifyscope has that pid"),
        "{stderr}"
    );

    for run in runs {
        let status = run.signal_and_wait(Signal::SIGTERM).await;
        assert!(status.success(), "{status}");
    }
}

#[tokio::test]
async fn without_a_database_url_or_an_instance_every_command_could_not_run() {
    let runtime = fresh_runtime_dir();
    let dir = instance_dir(&runtime);
    for args in [
        &["send", "--via-bot", "message"][..],
        &["send", "message"],
        &["doctor"],
        &["watch", "--headless"],
        &["selftest"],
        &["outbox", "list"],
    ] {
        let out = notifyscope()
            .env("XDG_RUNTIME_DIR", &runtime)
            .args(args)
            .finish()
            .await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("needs --database-url"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "no running instance was found in {}",
                dir.display()
            )),
            "{args:?}: {stderr}"
        );
    }
}

/// A runtime file as a process that is gone, or a later process with the same pid, left it.
fn plant(dir: &Path, pid: u32, process_start: Option<u64>) -> PathBuf {
    let path = dir.join(format!("{pid}.json"));
    let record = serde_json::json!({
        "pid": pid,
        "started_at": "2026-01-01T00:00:00Z",
        "database": "host=127.0.0.1 port=1 user=nobody dbname=nowhere",
        "embedded": false,
        "schema": "public",
        "channel": "events",
        "secret": "00".repeat(32),
        "process_start": process_start,
    });
    std::fs::write(&path, record.to_string()).expect("planted");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_processes_that_are_gone_are_skipped_and_removed() {
    let t = TestSchema::new("inst_stale");
    let mut run = run_pipeline(&t).await;
    let dir = instance_dir(&t.runtime_dir());

    let finished = std::process::Command::new("true")
        .spawn()
        .expect("true starts");
    let gone = finished.id();
    reap_blocking(finished, "true");
    let crashed = plant(&dir, gone, None);
    // This test process is alive, but it started at another time than the record says: a
    // later process that was given the pid of one that crashed.
    let reused = plant(&dir, std::process::id(), Some(1));

    let out = notifyscope_for(&t)
        .args(["send", "--via-bot", "message", "--json"])
        .finish()
        .await;
    let id = published_id(&out);
    run.until("the message ingested", |v| {
        stage(v) == "ingested" && id_of(v).as_deref() == Some(id.as_str())
    })
    .await;
    assert!(
        !crashed.exists(),
        "the file of a process that is gone stays"
    );
    assert!(!reused.exists(), "the file of a reused pid stays");
    assert!(instance_file(&t, &run).exists());
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_file_is_private_holds_no_password_and_goes_at_exit() {
    let t = TestSchema::new("inst_file");
    let password = "hunter2-not-needed";
    let mut cmd = notifyscope_for(&t);
    cmd.args(["run", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name])
        .args(["--database-url", &url_with_password(password)]);
    let mut run = Running::start(cmd);
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;

    let dir = instance_dir(&t.runtime_dir());
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let path = instance_file(&t, &run);
    assert_eq!(mode(&path), 0o600);
    let raw = std::fs::read_to_string(&path).expect("readable");
    assert!(
        !raw.contains(password) && !raw.contains("password"),
        "{raw}"
    );
    let record = read_instance(&path);
    assert_eq!(record["pid"], run.pid());
    assert_eq!(record["schema"], t.name.as_str());
    assert_eq!(record["channel"], t.name.as_str());
    assert_eq!(record["embedded"], false);
    assert!(record["started_at"].is_string(), "{record}");
    let database = record["database"].as_str().expect("database");
    assert!(
        database.contains("host=") && database.contains("user="),
        "{database}"
    );
    let secret = record["secret"].as_str().expect("secret");
    assert!(
        secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_hexdigit()),
        "at least 128 bits"
    );
    // Written under another name and renamed: nothing is left beside it.
    let only_file: Vec<_> = std::fs::read_dir(&dir)
        .expect("listable")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(only_file, [path.file_name().expect("name").to_owned()]);

    let (status, stdout, stderr) = run.signal_and_exit(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
    assert!(!path.exists(), "the runtime file is left behind");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    assert!(!stdout.contains(password) && !stderr.contains(password));
}

/// A control request as any role that may NOTIFY could send it, with `secret` if any.
fn forged_request(t: &TestSchema, message_id: &str, secret: Option<&str>) -> String {
    let mut request = serde_json::json!({
        "v": 1,
        "request_id": uuid::Uuid::new_v4(),
        "schema": t.name,
        "channel": t.name,
        "kind": "message",
        "message_ids": [message_id],
    });
    if let Some(secret) = secret {
        request["secret"] = secret.into();
    }
    request.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_requests_without_the_secret_are_refused_traced_and_not_carried_out() {
    let t = TestSchema::new("inst_forged");
    let mut run = run_pipeline(&t).await;
    let secret = read_instance(&instance_file(&t, &run))["secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let client = t.client().await;
    let forged = [
        ("950000000000000001", None, "missing_secret"),
        ("950000000000000002", Some("00".repeat(32)), "wrong_secret"),
    ];
    for (id, offered, reason) in &forged {
        let request = forged_request(&t, id, offered.as_deref());
        notifyscope::store::notify::notify(&client, "notifyscope_control", &request)
            .await
            .expect("NOTIFY sent");
        run.until(reason, |v| {
            stage(v) == "control_refused" && v["reason"] == *reason
        })
        .await;
    }

    // From a shell that cannot read the instance's file, `send` has no secret and says why
    // nobody answered.
    let elsewhere = fresh_runtime_dir();
    let out = notifyscope()
        .env("XDG_RUNTIME_DIR", &elsewhere)
        .args(["send", "--via-bot", "message", "--timeout", "2"])
        .args(["--schema", &t.name, "--channel", &t.name])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("requires its secret"), "{stderr}");
    let where_read = format!(
        "reads from the instance's file in {}",
        instance_dir(&elsewhere).display()
    );
    assert!(stderr.contains(&where_read), "{stderr}");
    run.until("the secretless send refused", |v| {
        stage(v) == "control_refused" && v["reason"] == "missing_secret"
    })
    .await;

    // Requests are served one after another: once a request with the secret went through,
    // the forged ones would have been carried out before it.
    let id = published_id(
        &notifyscope_for(&t)
            .args(["send", "--via-bot", "message", "--json"])
            .finish()
            .await,
    );
    run.until("the message with the secret ingested", |v| {
        stage(v) == "ingested" && id_of(v).as_deref() == Some(id.as_str())
    })
    .await;
    for (forged_id, _, _) in &forged {
        assert!(
            !run.stdout.iter().any(|l| l.contains(forged_id)),
            "the forged message {forged_id} went down the bot path"
        );
        let rows = t
            .count(&format!(
                "SELECT count(*) FROM \"{}\".event_outbox WHERE message_id = {forged_id}",
                t.name
            ))
            .await;
        assert_eq!(rows, 0, "the forged message {forged_id} was published");
    }
    let (status, stdout, stderr) = run.signal_and_exit(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
    assert!(stderr.contains("refused a control request"), "{stderr}");
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret));
}
