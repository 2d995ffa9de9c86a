//! Failover with several hosts in `--database-url`: two private clusters on 127.0.0.1, A the
//! writable primary and B a stand-in standby, read-only by `default_transaction_read_only`
//! (`transaction_read_only` is what `target_session_attrs=read-write` judges a server by).
//! The binary runs on both with `target_session_attrs=read-write`; A is stopped and B made
//! writable, and whatever is sent from then on must reach B: the listener, the publisher's
//! and ingestion's pools and the commands follow the new primary. Nothing here touches the
//! shared test server.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::Value;

use common::cluster::{PrivateServer, TRUST};
use common::process::{notifyscope, stage, Finish, Running};
use common::{fresh_runtime_dir, require_server_binaries, WAIT};
use notifyscope::store::{Database, Identifier};

/// Messages sent after the failover must all be in B within this long of B becoming writable.
const RECOVERY: Duration = Duration::from_secs(60);

/// A private PostgreSQL on 127.0.0.1 at a port of its own; stopped (fast shutdown) and
/// removed when dropped.
struct Cluster {
    server: PrivateServer,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster {
            server: PrivateServer::start("", TRUST, Vec::new()).await,
        }
    }

    /// This cluster alone, as the superuser.
    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=notifyscope dbname=postgres",
            self.server.port
        )
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cluster on port {}: {e}", self.server.port));
        tokio::spawn(connection);
        client
    }

    /// Makes new sessions read-only (a stand-in standby) or writable (promoted), and waits
    /// until a new session sees it: the reload reaches the server a moment after it is asked.
    async fn set_read_only(&self, read_only: bool) {
        let value = if read_only { "on" } else { "off" };
        let client = self.client().await;
        // This session may itself be read-only by default; ALTER SYSTEM writes no table, but
        // leave nothing to chance.
        client
            .batch_execute("SET default_transaction_read_only = off")
            .await
            .expect("session writable");
        client
            .batch_execute(&format!(
                "ALTER SYSTEM SET default_transaction_read_only = {value}"
            ))
            .await
            .expect("ALTER SYSTEM");
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reload");
        let deadline = Instant::now() + WAIT;
        loop {
            let seen: String = self
                .client()
                .await
                .query_one("SHOW transaction_read_only", &[])
                .await
                .expect("SHOW")
                .get(0);
            if seen == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "transaction_read_only still {seen} on port {}",
                self.server.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Which of `ids` are in this cluster's `discord_messages`.
    async fn ingested(&self, ids: &HashSet<i64>) -> HashSet<i64> {
        let ids: Vec<i64> = ids.iter().copied().collect();
        self.client()
            .await
            .query(
                "SELECT message_id FROM discord_messages WHERE message_id = ANY($1)",
                &[&ids],
            )
            .await
            .expect("discord_messages")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Waits until every one of `ids` is in `discord_messages`, until `deadline`.
    async fn until_ingested(&self, ids: &HashSet<i64>, deadline: Instant, what: &str) {
        loop {
            let found = self.ingested(ids).await;
            if found.len() == ids.len() {
                return;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = ids.difference(&found).take(10).collect();
                panic!(
                    "{what}: {} of {} messages are not in discord_messages on port {} \
                     (e.g. {missing:?})",
                    ids.len() - found.len(),
                    ids.len(),
                    self.server.port
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The backends of this cluster that notifyscope's listener holds.
    async fn listener_pids(&self) -> Vec<i32> {
        self.client()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE application_name LIKE 'notifyscope-listener%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Fast shutdown, as a failover stops a primary: sessions are ended, the server exits.
    fn stop(&mut self) {
        self.server.stop();
    }

    async fn stop_fast(mut self) -> Self {
        tokio::task::spawn_blocking(move || {
            self.stop();
            self
        })
        .await
        .expect("cluster stopped")
    }
}

/// The message ids of a command's JSON lines (`send … --json`), each required `published`
/// when the line says an outcome.
fn sent_ids(out: &std::process::Output, what: &str) -> HashSet<i64> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
            if let Some(outcome) = v["outcome"].as_str() {
                assert_eq!(outcome, "published", "{what}: {line}");
            }
            v["message_id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("{what}: no message id in {line}"))
        })
        .collect()
}

fn message_id(v: &Value) -> Option<i64> {
    v["message_id"].as_str().and_then(|id| id.parse().ok())
}

fn at(v: &Value) -> DateTime<Utc> {
    v["at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("event without a time: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_listener_and_the_pools_follow_the_new_primary() {
    require_server_binaries();
    let (a, b) = tokio::join!(Cluster::start(), Cluster::start());
    // B takes the schema while it still accepts writes; later it only reads until promoted.
    for cluster in [&a, &b] {
        Database::new(&cluster.url(), Identifier::schema("public").expect("valid"))
            .expect("url")
            .migrate()
            .await
            .expect("migrates");
    }
    b.set_read_only(true).await;
    // The standby first: every connection, from the start on, has to pass it over for the
    // writable server, and after the failover take it.
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=notifyscope dbname=postgres \
         target_session_attrs=read-write",
        b.server.port, a.server.port
    );
    let runtime = fresh_runtime_dir();
    let command = || {
        let mut cmd = notifyscope();
        cmd.env("XDG_RUNTIME_DIR", &runtime);
        cmd
    };
    let via_bot = || {
        let mut cmd = command();
        cmd.args(["send", "--via-bot", "burst", "--json", "--timeout", "30"])
            .args(["--database-url", &url]);
        cmd
    };

    // The simulated source keeps publishing through the failover, so that the publisher is
    // mid-batch, retrying, while there is no primary.
    let mut run_cmd = command();
    run_cmd
        .args(["run", "--headless", "--json", "--demo-rate", "20"])
        .args(["--database-url", &url]);
    let mut run = Running::start(run_cmd);
    let up = run
        .until("listener up", |v| stage(v) == "listener_up")
        .await;
    let pid = up["pid"].as_i64().expect("pid");
    assert!(
        a.listener_pids().await.contains(&(pid as i32)),
        "the listener is not on A: {up}"
    );

    let before = sent_ids(&via_bot().finish().await, "send --via-bot before");
    assert_eq!(before.len(), 100);
    a.until_ingested(&before, Instant::now() + WAIT, "before the failover")
        .await;
    assert!(b.ingested(&before).await.is_empty(), "B took writes");

    // Failover: A stops; for a while no server takes writes; then B is promoted.
    let a = a.stop_fast().await;
    let a_gone = Utc::now();
    run.until("listener down", |v| stage(v) == "listener_down")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.set_read_only(false).await;
    let promoted = Instant::now();
    let promoted_at = Utc::now();
    let up_again = run
        .until("listener up again", |v| stage(v) == "listener_up")
        .await;
    let listener_back = promoted.elapsed();
    let pid = up_again["pid"].as_i64().expect("pid");
    assert!(
        b.listener_pids().await.contains(&(pid as i32)),
        "the listener is not on B: {up_again}"
    );

    // Through the running instance's bot path and publisher, and through a command of its
    // own, on the same URL.
    let mut after = sent_ids(&via_bot().finish().await, "send --via-bot after");
    assert_eq!(after.len(), 100);
    let mut send = command();
    send.args(["send", "message", "--count", "50", "--json"])
        .args(["--database-url", &url]);
    let sent = sent_ids(&send.finish().await, "send message after");
    assert_eq!(sent.len(), 50);
    after.extend(&sent);
    // Read the trace until the instance has ingested what it published itself; what the
    // simulated source took in after A was gone is in it by then.
    let published_by_run: HashSet<i64> = after.difference(&sent).copied().collect();
    let mut ingested = HashSet::new();
    run.until("the messages sent after the failover ingested", |v| {
        if stage(v) == "ingested" {
            if let Some(id) = message_id(v) {
                ingested.insert(id);
            }
        }
        published_by_run.is_subset(&ingested)
    })
    .await;
    // The simulated source's own messages (the bursts come through the bot path too).
    let simulated: Vec<(i64, DateTime<Utc>)> = run
        .stdout
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| stage(v) == "received" && at(v) > a_gone)
        .filter_map(|v| Some((message_id(&v)?, at(&v))))
        .filter(|(id, _)| !after.contains(id))
        .collect();
    let without_primary = simulated.iter().filter(|(_, at)| *at < promoted_at).count();
    assert!(
        without_primary > 0,
        "the simulated source took nothing in while there was no primary"
    );
    after.extend(simulated.iter().map(|(id, _)| id));
    b.until_ingested(&after, promoted + RECOVERY, "after the failover")
        .await;
    let all_in_b = promoted.elapsed();
    eprintln!(
        "failover: listener up on B {} ms after B became writable; all {} messages sent after \
         A stopped ({} of the simulated source, {} of them while no server took writes) in B \
         {} ms after B became writable",
        listener_back.as_millis(),
        after.len(),
        simulated.len(),
        without_primary,
        all_in_b.as_millis()
    );

    let (status, stdout, stderr) = run.signal_and_exit(Signal::SIGTERM).await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        !stdout.contains("\"stage\":\"publish_failed\""),
        "a publish failed: {stderr}"
    );
    drop((a, b));
    let _ = std::fs::remove_dir_all(&runtime);
}
