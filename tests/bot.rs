//! The real serenity client against a fake Discord on 127.0.0.1, through the binary:
//! `DISCORD_TOKEN=… notifyscope run --headless --json --discord-api-url http://127.0.0.1:…`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use common::fake_discord::{
    guild_on_shard, message_create, Behaviour, FakeDiscord, BOT_ID, USER_ID,
};
use common::process::{
    notifyscope, notifyscope_for, pipeline_command_on, run_pipeline, stage, Finish, Running,
};
use common::tmux::Tmux;
use common::{server_url, TestSchema, WAIT};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const TOKEN: &str = "MTE5OTAwMDAwMDAwMDAwMDAwMQ.fake-bot-token.do-not-print";

fn bot_command(t: &TestSchema, fake: &FakeDiscord, extra: &[&str]) -> tokio::process::Command {
    bot_command_on(t, fake, &server_url(), extra)
}

/// [`bot_command`] with the database reached at `database_url`.
fn bot_command_on(
    t: &TestSchema,
    fake: &FakeDiscord,
    database_url: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let mut cmd = pipeline_command_on(t, database_url);
    cmd.env("DISCORD_TOKEN", TOKEN)
        .args(["--discord-api-url", &fake.api_url])
        .args(extra);
    cmd
}

/// A TCP proxy in front of the test's PostgreSQL that holds back the connections of the
/// pipeline's listener (application_name `notifyscope-listener`, read from the startup
/// packet) until [`ListenerGate::open`]; every other connection passes at once. The
/// listener stays "connecting" meanwhile, as with a database that answers it only later.
struct ListenerGate {
    /// The database URL that goes through the proxy.
    url: String,
    open: watch::Sender<bool>,
    /// Listener connections that arrived while the gate was closed.
    held: Arc<AtomicUsize>,
}

impl ListenerGate {
    async fn start() -> Self {
        let config: tokio_postgres::Config = server_url().parse().expect("test URL parses");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            other => panic!("the listener gate needs a TCP host in the test URL, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = format!("{host}:{port}");
        let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut url = format!(
            "host=127.0.0.1 port={}",
            proxy.local_addr().expect("addr").port()
        );
        if let Some(user) = config.get_user() {
            url.push_str(&format!(" user={}", quote(user)));
        }
        if let Some(dbname) = config.get_dbname() {
            url.push_str(&format!(" dbname={}", quote(dbname)));
        }
        if let Some(password) = config.get_password() {
            let password = String::from_utf8(password.to_vec()).expect("UTF-8 password");
            url.push_str(&format!(" password={}", quote(&password)));
        }
        let (open, open_rx) = watch::channel(false);
        let held = Arc::new(AtomicUsize::new(0));
        let counter = held.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = proxy.accept().await {
                tokio::spawn(relay(
                    client,
                    upstream.clone(),
                    open_rx.clone(),
                    counter.clone(),
                ));
            }
        });
        ListenerGate { url, open, held }
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

/// One client connection: its startup packet read (an SSLRequest before it is declined),
/// held while the gate is closed if it is the listener's, then relayed both ways.
async fn relay(
    mut client: TcpStream,
    upstream: String,
    mut open: watch::Receiver<bool>,
    held: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    const SSL_REQUEST: u32 = 80_877_103;
    let startup = loop {
        let mut len = [0u8; 4];
        client.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if !(8..=65_536).contains(&len) {
            return Ok(());
        }
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&(len as u32).to_be_bytes());
        client.read_exact(&mut packet[4..]).await?;
        if len == 8 && packet[4..8] == SSL_REQUEST.to_be_bytes() {
            client.write_all(b"N").await?;
            continue;
        }
        break packet;
    };
    let listener = b"application_name\0notifyscope-listener\0";
    if startup.windows(listener.len()).any(|w| w == listener) && !*open.borrow() {
        held.fetch_add(1, Ordering::Relaxed);
        if open.wait_for(|o| *o).await.is_err() {
            return Ok(());
        }
    }
    let mut server = TcpStream::connect(&upstream).await?;
    server.write_all(&startup).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// Each way the bot token could show up in text: as written, in the header or IDENTIFY
/// field, and as a byte dump (`[77, 84, …]` as `Debug` prints bytes, hex, base64).
fn token_leaks(text: &str) -> Vec<&'static str> {
    let bytes = TOKEN.as_bytes();
    let decimal = format!("{bytes:?}");
    let decimal = decimal.trim_start_matches('[').trim_end_matches(']');
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let base64 = base64::engine::general_purpose::STANDARD.encode(TOKEN);
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    for (name, hit) in [
        ("the token", text.contains(TOKEN)),
        (
            "its first part",
            text.contains(TOKEN.split('.').next().unwrap_or(TOKEN)),
        ),
        (
            "its secret part",
            text.contains("fake-bot-token") || text.contains("do-not-print"),
        ),
        ("its bytes in decimal", text.contains(decimal)),
        ("its bytes in hex", lower.contains(&hex)),
        ("its base64", text.contains(&base64)),
    ] {
        if hit {
            found.push(name);
        }
    }
    found
}

fn id_of(v: &Value) -> Option<u64> {
    v["message_id"].as_str().and_then(|s| s.parse().ok())
}

async fn row_count(t: &TestSchema, ids: &[u64]) -> i64 {
    let ids: Vec<i64> = ids.iter().map(|i| *i as i64).collect();
    t.client()
        .await
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".discord_messages WHERE message_id = ANY($1)",
                t.name
            ),
            &[&ids],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_messages_are_filtered_published_and_ingested() {
    let t = TestSchema::new("bot_flow");
    let mut fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let mut run = Running::start(bot_command(&t, &fake, &[]));

    // The startup gate has a test of its own (the_bot_connects_only_after_the_listener_is_up).
    run.until("listener up", |v| stage(v) == "listener_up")
        .await;
    let identify = fake.identified(1).await;
    assert_eq!(identify["token"], format!("Bot {TOKEN}"));
    assert_eq!(identify["intents"], 1 | 512 | 4096 | 32768, "{identify}");
    let ready = run
        .until("gateway ready", |v| stage(v) == "gateway_ready")
        .await;
    assert_eq!(ready["user_id"], BOT_ID.to_string());

    let normal = 900_000_000_000_000_001;
    fake.dispatch(
        "MESSAGE_CREATE",
        message_create(normal, "hello from discord", USER_ID, "ada"),
    );
    run.until("normal message ingested", |v| {
        stage(v) == "ingested" && id_of(v) == Some(normal)
    })
    .await;
    assert_eq!(row_count(&t, &[normal]).await, 1);

    let own = 900_000_000_000_000_002;
    fake.dispatch(
        "MESSAGE_CREATE",
        message_create(own, "my own reply", BOT_ID, "fakebot"),
    );
    let skipped = run
        .until("own skipped", |v| {
            stage(v) == "skipped" && id_of(v) == Some(own)
        })
        .await;
    assert_eq!(skipped["reason"], "own_message");

    let other_bot = 900_000_000_000_000_003;
    let mut m = message_create(other_bot, "beep", 777, "otherbot");
    m["author"]["bot"] = json!(true);
    fake.dispatch("MESSAGE_CREATE", m);
    let skipped = run
        .until("bot skipped", |v| {
            stage(v) == "skipped" && id_of(v) == Some(other_bot)
        })
        .await;
    assert_eq!(skipped["reason"], "author_is_bot");

    let hook = 900_000_000_000_000_004;
    let mut m = message_create(hook, "from a webhook", 888, "Captain Hook");
    m["author"]["bot"] = json!(true);
    m["webhook_id"] = json!("888");
    fake.dispatch("MESSAGE_CREATE", m);
    let skipped = run
        .until("webhook skipped", |v| {
            stage(v) == "skipped" && id_of(v) == Some(hook)
        })
        .await;
    assert_eq!(skipped["reason"], "webhook");

    let empty = 900_000_000_000_000_005;
    fake.dispatch("MESSAGE_CREATE", message_create(empty, "", USER_ID, "ada"));
    let evidence = run
        .until("missing intent evidence", |v| {
            stage(v) == "content_intent_suspected" && id_of(v) == Some(empty)
        })
        .await;
    assert_eq!(evidence["count"], 1);
    let skipped = run
        .until("empty skipped", |v| {
            stage(v) == "skipped" && id_of(v) == Some(empty)
        })
        .await;
    assert_eq!(skipped["reason"], "empty_content");

    // A MESSAGE_CREATE serenity cannot parse: counted and traced instead of vanishing.
    let broken = 900_000_000_000_000_006;
    let mut m = message_create(broken, "no author", USER_ID, "ada");
    m.as_object_mut().expect("object").remove("author");
    fake.dispatch("MESSAGE_CREATE", m);
    let malformed = run
        .until("malformed traced", |v| stage(v) == "gateway_malformed")
        .await;
    assert_eq!(malformed["kind"], "MESSAGE_CREATE");
    assert_eq!(malformed["count"], 1);
    assert_eq!(id_of(&malformed), Some(broken));
    assert!(
        malformed["error"].as_str().unwrap_or("").contains("author"),
        "{malformed}"
    );

    assert_eq!(
        row_count(&t, &[own, other_bot, hook, empty, broken]).await,
        0
    );
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_fifty_becomes_fifty_rows() {
    let t = TestSchema::new("bot_burst");
    let mut fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let mut run = Running::start(bot_command(&t, &fake, &[]));
    fake.identified(1).await;
    run.until("gateway ready", |v| stage(v) == "gateway_ready")
        .await;

    let ids: Vec<u64> = (0..50).map(|i| 910_000_000_000_000_000 + i).collect();
    for id in &ids {
        fake.dispatch(
            "MESSAGE_CREATE",
            message_create(*id, &format!("burst {id}"), USER_ID, "ada"),
        );
    }
    let mut ingested = 0;
    run.until("50 ingested", |v| {
        ingested += usize::from(stage(v) == "ingested" && v["outcome"] == "inserted");
        ingested == 50
    })
    .await;
    assert_eq!(row_count(&t, &ids).await, 50);

    // With a real gateway, the simulated source still works and its rows say so.
    let out = notifyscope_for(&t)
        .args([
            "send",
            "--via-bot",
            "message",
            "--schema",
            &t.name,
            "--channel",
            &t.name,
        ])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let synthetic_id: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_suffix(" published"))
        .and_then(|id| id.parse().ok())
        .expect("published id in the output");
    let received = run
        .until("synthetic received", |v| {
            stage(v) == "received" && id_of(v) == Some(synthetic_id)
        })
        .await;
    assert_eq!(received["synthetic"], true);
    run.until("synthetic ingested", |v| {
        stage(v) == "ingested" && id_of(v) == Some(synthetic_id)
    })
    .await;
    let flags: Vec<(i64, bool)> = t
        .client()
        .await
        .query(
            &format!(
                "SELECT message_id, synthetic FROM \"{}\".discord_messages",
                t.name
            ),
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(flags.len(), 51);
    for (id, synthetic) in flags {
        assert_eq!(synthetic, id == synthetic_id as i64, "message {id}");
    }

    let status = run.signal_and_wait(Signal::SIGINT).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_carries_the_configured_intents() {
    let t = TestSchema::new("bot_intents");
    let mut fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let run = Running::start(bot_command(
        &t,
        &fake,
        &["--intents", "guilds,guild_messages"],
    ));
    let identify = fake.identified(1).await;
    assert_eq!(identify["intents"], 1 | 512);
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_connects_only_after_the_listener_is_up() {
    let t = TestSchema::new("bot_gate");
    let gate = ListenerGate::start().await;
    let mut fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let mut run = Running::start(bot_command_on(&t, &fake, &gate.url, &[]));

    // The listener cannot come up: the bot says it waits, and says nothing to Discord.
    let mut early_up = false;
    let waiting = run
        .until("gateway waiting", |v| {
            early_up |= stage(v) == "listener_up";
            stage(v) == "gateway_waiting"
        })
        .await;
    assert!(!early_up, "the listener came up through a closed gate");
    assert_eq!(waiting["waiting_for"], "listener", "{waiting}");
    tokio::time::timeout(WAIT, async {
        while gate.held() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the listener tried to connect");
    // Long enough for an ungated bot to check the token, connect and IDENTIFY many times
    // over against a fake on 127.0.0.1.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fake.identifies().is_empty(),
        "IDENTIFY while the listener was held back"
    );
    assert_eq!(
        fake.requests(),
        Vec::<String>::new(),
        "Discord asked before the listener was up"
    );
    assert_eq!(fake.connections(), 0);

    let opened_at = Utc::now();
    gate.open();
    let up = run
        .until("listener up", |v| stage(v) == "listener_up")
        .await;
    let up_at: DateTime<Utc> = up["at"].as_str().and_then(|a| a.parse().ok()).expect("at");
    fake.identified(1).await;
    let (identified_at, identify) = fake.identifies().remove(0);
    assert_eq!(identify["token"], format!("Bot {TOKEN}"));
    assert!(
        identified_at >= up_at && identified_at >= opened_at,
        "IDENTIFY at {identified_at}, listener up at {up_at}, gate opened at {opened_at}"
    );
    run.until("gateway ready", |v| stage(v) == "gateway_ready")
        .await;
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_printed_even_at_trace_level() {
    let t = TestSchema::new("bot_secret");
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("run.jsonl");
    let recording_arg = recording.to_str().expect("UTF-8 path");
    let mut fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let mut cmd = bot_command(&t, &fake, &["--log", "trace", "--record", recording_arg]);
    cmd.env("RUST_LOG", "trace");
    let mut run = Running::start(cmd);

    // A successful start: the token went to Discord, so the process held it all along.
    let identify = fake.identified(1).await;
    assert_eq!(identify["token"], format!("Bot {TOKEN}"));
    run.until("gateway ready", |v| stage(v) == "gateway_ready")
        .await;
    let id = 930_000_000_000_000_001;
    fake.dispatch(
        "MESSAGE_CREATE",
        message_create(id, "a message at trace level", USER_ID, "ada"),
    );
    run.until("message ingested", |v| {
        stage(v) == "ingested" && id_of(v) == Some(id)
    })
    .await;
    let (status, stdout, stderr) = run.signal_and_exit(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
    let recorded = std::fs::read_to_string(&recording).expect("recording written");

    // Trace logging was really on, and every output says what happened.
    assert!(
        stderr.contains("TRACE") && stderr.contains("serenity"),
        "no trace-level logs on stderr"
    );
    for (name, text) in [("stdout", &stdout), ("the recording", &recorded)] {
        assert!(
            text.contains("\"stage\":\"gateway_ready\""),
            "{name}: {text}"
        );
        for line in text.lines() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{name} has a line that is not JSON ({e}): {line}"));
        }
    }
    for (name, text) in [
        ("stdout (the JSON stream)", &stdout),
        ("stderr", &stderr),
        ("the recording", &recorded),
    ] {
        let leaks = token_leaks(text);
        assert!(leaks.is_empty(), "{name} shows {leaks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autosharding_uses_the_recommended_shard_count() {
    let t = TestSchema::new("bot_shards");
    let behaviour = Behaviour {
        recommended_shards: 2,
        ..Behaviour::default()
    };
    let total = behaviour.recommended_shards;
    let mut fake = FakeDiscord::start(TOKEN, behaviour).await;
    let mut run = Running::start(bot_command(&t, &fake, &["--shards", "auto"]));
    // The shard count is asked for before any shard connects.
    fake.identified(1).await;
    assert_eq!(
        fake.gateway_bot_calls(),
        1,
        "--shards auto must ask GET /gateway/bot; requests: {:?}",
        fake.requests()
    );
    // serenity starts one shard every 5 s.
    fake.identified(total as usize).await;
    let mut shards: Vec<Value> = fake
        .identifies()
        .into_iter()
        .map(|(_, d)| d["shard"].clone())
        .collect();
    shards.sort_by_key(|s| s[0].as_u64());
    let expected: Vec<Value> = (0..total).map(|i| json!([i, total])).collect();
    assert_eq!(shards, expected);
    let mut ready = Vec::new();
    run.until("every shard ready", |v| {
        if stage(v) == "gateway_ready" {
            ready.push((v["shard"].as_u64(), v["shards"].as_u64()));
        }
        ready.len() == total as usize
    })
    .await;
    ready.sort();
    let expected: Vec<_> = (0..total)
        .map(|i| (Some(u64::from(i)), Some(u64::from(total))))
        .collect();
    assert_eq!(ready, expected);
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

/// `stage` events of one process's stdout, by message id.
fn ids_with_stage(stdout: &str, wanted: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| stage(v) == wanted)
        .filter_map(|v| id_of(&v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_shards_of_one_bot_and_deliver_every_message_once() {
    let t = TestSchema::new("bot_range");
    let fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let mut first = Running::start(bot_command(
        &t,
        &fake,
        &["--shards", "2", "--shard-range", "0..1"],
    ));
    let mut second = Running::start(bot_command(
        &t,
        &fake,
        &["--shards", "2", "--shard-range", "1..=1"],
    ));
    let ready = first
        .until("first process ready", |v| stage(v) == "gateway_ready")
        .await;
    assert_eq!(
        (ready["shard"].as_u64(), ready["shards"].as_u64()),
        (Some(0), Some(2))
    );
    let ready = second
        .until("second process ready", |v| stage(v) == "gateway_ready")
        .await;
    assert_eq!(
        (ready["shard"].as_u64(), ready["shards"].as_u64()),
        (Some(1), Some(2))
    );
    let mut shards: Vec<Value> = fake
        .identifies()
        .into_iter()
        .map(|(_, d)| d["shard"].clone())
        .collect();
    shards.sort_by_key(|s| s[0].as_u64());
    assert_eq!(
        shards,
        vec![json!([0, 2]), json!([1, 2])],
        "one IDENTIFY per shard, no more"
    );
    assert_eq!(
        fake.gateway_bot_calls(),
        0,
        "the total was given: nothing to ask Discord"
    );

    // Messages of guilds on both shards; Discord sends each to its shard's session only.
    let mut by_shard: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for i in 0..40u64 {
        let shard = i % 2;
        let guild = guild_on_shard(shard, 2, i / 2 % 3);
        let id = 910_000_000_000_000_000 + i;
        let mut m = message_create(id, &format!("sharded message {i}"), USER_ID, "ada");
        m["guild_id"] = json!(guild.to_string());
        assert!(
            fake.dispatch_to_guild(guild, "MESSAGE_CREATE", m),
            "no session holds the shard of guild {guild}"
        );
        by_shard[shard as usize].push(id);
    }
    let all: Vec<u64> = by_shard.concat();
    let deadline = tokio::time::Instant::now() + WAIT;
    while row_count(&t, &all).await < all.len() as i64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} messages arrived",
            row_count(&t, &all).await,
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Either process shows the other in pg_stat_activity, by its shard range.
    let doctor = notifyscope()
        .args([
            "doctor",
            "--json",
            "--schema",
            &t.name,
            "--channel",
            &t.name,
        ])
        .args(["--database-url", &server_url()])
        .finish()
        .await;
    let report: Value = serde_json::from_slice(&doctor.stdout).expect("doctor prints JSON");
    for name in ["shards 0..1 of 2", "shards 1..2 of 2"] {
        let instance = report["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["instance"] == name))
            .unwrap_or_else(|| panic!("doctor does not list {name}: {report:#}"));
        assert_eq!(
            instance["listener_pids"].as_array().map(Vec::len),
            Some(1),
            "{instance}"
        );
    }

    let (status, first_out, _) = first.signal_and_exit(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
    let (status, second_out, _) = second.signal_and_exit(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");

    // Each process received exactly the messages of its own shard.
    let mut received = ids_with_stage(&first_out, "received");
    received.sort_unstable();
    assert_eq!(received, by_shard[0]);
    let mut received = ids_with_stage(&second_out, "received");
    received.sort_unstable();
    assert_eq!(received, by_shard[1]);
    // Both ingest from the one outbox: every message ingested once, by one of them.
    let mut ingested = ids_with_stage(&first_out, "ingested");
    ingested.extend(ids_with_stage(&second_out, "ingested"));
    // The doctor's round trip was ingested too; it is not a Discord message.
    ingested.retain(|id| all.contains(id));
    ingested.sort_unstable();
    let mut expected = all.clone();
    expected.sort_unstable();
    assert_eq!(ingested, expected, "every message ingested exactly once");
    let ids: Vec<i64> = all.iter().map(|i| *i as i64).collect();
    let outbox = t
        .client()
        .await
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT message_id) FROM \"{}\".event_outbox \
                 WHERE message_id = ANY($1)",
                t.name
            ),
            &[&ids],
        )
        .await
        .expect("outbox count");
    assert_eq!(
        (outbox.get::<_, i64>(0), outbox.get::<_, i64>(1)),
        (40, 40),
        "one outbox row per message"
    );
    assert_eq!(row_count(&t, &all).await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_range_outside_the_total_is_refused() {
    let t = TestSchema::new("bot_range_bad");
    let fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    for (args, says) in [
        (
            ["--shards", "2", "--shard-range", "1..3"],
            "does not fit in --shards 2",
        ),
        (
            ["--shards", "auto", "--shard-range", "0..1"],
            "needs --shards N",
        ),
    ] {
        let out = bot_command(&t, &fake, &args).finish().await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(fake.identifies().is_empty(), "nothing connected to Discord");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_heartbeats_make_the_client_reconnect() {
    let t = TestSchema::new("bot_heartbeat");
    let behaviour = Behaviour {
        heartbeat_ms: 500,
        ignore_heartbeats_once: true,
        ..Behaviour::default()
    };
    let mut fake = FakeDiscord::start(TOKEN, behaviour).await;
    let mut run = Running::start(bot_command(&t, &fake, &[]));
    fake.identified(1).await;
    run.until("first ready", |v| stage(v) == "gateway_ready")
        .await;
    run.until("gateway down", |v| stage(v) == "gateway_down")
        .await;
    fake.identified(2).await;
    run.until("second ready", |v| stage(v) == "gateway_ready")
        .await;
    assert!(fake.connections() >= 2);

    let later = 920_000_000_000_000_001;
    fake.dispatch(
        "MESSAGE_CREATE",
        message_create(later, "after the reconnect", USER_ID, "ada"),
    );
    run.until("later message ingested", |v| {
        stage(v) == "ingested" && id_of(v) == Some(later)
    })
    .await;
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
}

async fn rejected_run(
    behaviour: Behaviour,
    token: &str,
) -> (std::process::ExitStatus, String, String) {
    let t = TestSchema::new("bot_rejected");
    let fake = FakeDiscord::start(TOKEN, behaviour).await;
    let mut cmd = bot_command(&t, &fake, &[]);
    cmd.env("DISCORD_TOKEN", token);
    Running::start(cmd).exit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4004_is_a_clear_error_without_the_token() {
    let behaviour = Behaviour {
        close_on_identify: Some((4004, "Authentication failed.")),
        ..Behaviour::default()
    };
    let (status, stdout, stderr) = rejected_run(behaviour, TOKEN).await;
    // README: headless, a rejected token exits 1.
    assert_eq!(status.code(), Some(1), "{status}; stderr: {stderr}");
    assert!(
        stderr.contains("Discord rejected the bot token (gateway close 4004"),
        "{stderr}"
    );
    assert!(stdout.contains("\"stage\":\"gateway_down\""), "{stdout}");
    assert!(stdout.contains("\"code\":4004"), "{stdout}");
    assert_eq!(token_leaks(&stdout), Vec::<&str>::new(), "stdout");
    assert_eq!(token_leaks(&stderr), Vec::<&str>::new(), "stderr");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_is_the_same_clear_error() {
    let wrong = "d3Jvbmc.wrong-token.do-not-print";
    let (status, stdout, stderr) = rejected_run(Behaviour::default(), wrong).await;
    // README: headless, a rejected token exits 1.
    assert_eq!(status.code(), Some(1), "{status}; stderr: {stderr}");
    assert!(
        stderr.contains("Discord rejected the bot token (HTTP 401"),
        "{stderr}"
    );
    assert!(!stdout.contains("do-not-print") && !stderr.contains("do-not-print"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4014_points_to_the_privileged_intent() {
    let behaviour = Behaviour {
        close_on_identify: Some((4014, "Disallowed intent(s).")),
        ..Behaviour::default()
    };
    let (status, _stdout, stderr) = rejected_run(behaviour, TOKEN).await;
    assert!(!status.success());
    assert!(stderr.contains("Privileged Gateway Intents"), "{stderr}");
    assert!(stderr.contains("Developer Portal"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_passes_on_a_running_pipeline_and_fails_without_one() {
    let t = TestSchema::new("selftest");
    let run = run_pipeline(&t).await;

    let selftest = |timeout: &'static str| {
        let mut cmd = notifyscope_for(&t);
        cmd.args([
            "selftest",
            "--timeout",
            timeout,
            "--schema",
            &t.name,
            "--channel",
            &t.name,
        ])
        .args(["--database-url", &server_url()]);
        cmd
    };
    let out = selftest("20").finish().await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with('✓')).count(),
        6,
        "{text}"
    );

    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());

    let out = selftest("2").finish().await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ bot path: no running notifyscope answered"),
        "{text}"
    );
    assert!(text.contains("still unprocessed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_on_the_screen_even_at_trace_level() {
    let t = TestSchema::new("bot_screen");
    let fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "env -u DATABASE_URL HOME={home} XDG_RUNTIME_DIR={runtime} DISCORD_TOKEN='{TOKEN}' \
         RUST_LOG=trace {bin} --log trace --database-url '{url}' --schema {s} --channel {s} \
         --discord-api-url {api}; sleep 600",
        home = dir.path().display(),
        runtime = t.runtime_dir().display(),
        bin = common::binary(),
        url = server_url(),
        s = t.name,
        api = fake.api_url,
    );
    let tmux = Tmux::start(&command, 200, 50);
    // The screen polls in a blocking loop: off the runtime's worker, the fake Discord keeps
    // answering.
    tokio::task::block_in_place(|| {
        tmux.wait("the gateway ready on the status bar", |s| {
            s.iter().any(|l| l.contains("shard 0/1"))
        })
    });
    let id: u64 = 930_000_000_000_000_077;
    fake.dispatch(
        "MESSAGE_CREATE",
        message_create(id, "a message on the screen", USER_ID, "ada"),
    );
    let short = id.to_string()[11..].to_owned();
    let mut screens = Vec::new();
    tokio::task::block_in_place(|| {
        screens.push(tmux.wait("the message ingested", |s| {
            s.iter().any(|l| l.contains("inserted"))
        }));
        // Every pane focused in turn, the detail of the received message, the help.
        for key in ["1", "Enter", "Escape", "2", "3", "4", "5", "6", "7", "?"] {
            tmux.keys(key);
            std::thread::sleep(Duration::from_millis(300));
            screens.push(tmux.screen());
        }
    });
    assert!(
        screens.iter().any(|s| s.iter().any(|l| l.contains(&short))),
        "the message is on the screen"
    );
    for (n, screen) in screens.iter().enumerate() {
        let text = screen.join("\n");
        let leaks = token_leaks(&text);
        assert!(leaks.is_empty(), "screen {n} shows {leaks:?}:\n{text}");
    }
}

/// `watch` of a pipeline that is not ours (plain SQL: its own payload shape, its own table),
/// with an observer session on their bot's token at the fake Discord; the observer is ready.
async fn observed_foreign_pipeline(
    t: &TestSchema,
    fake: &FakeDiscord,
) -> (tokio_postgres::Client, Running) {
    let sql = t.client().await;
    sql.batch_execute(&format!(
        "CREATE SCHEMA \"{s}\"; CREATE TABLE \"{s}\".messages (id BIGINT PRIMARY KEY, body TEXT)",
        s = t.name
    ))
    .await
    .expect("their table");
    let mut cmd = notifyscope();
    cmd.env("THEIR_BOT_TOKEN", TOKEN)
        .args(["watch", "--headless", "--json", "--schema", &t.name])
        .args(["--channel", &t.name, "--database-url", &server_url()])
        .args(["--table", "messages", "--id-column", "id"])
        .args(["--discord-token-env", "THEIR_BOT_TOKEN"])
        .args(["--discord-api-url", &fake.api_url]);
    let mut run = Running::start(cmd);
    run.until("the observer ready", |v| stage(v) == "gateway_ready")
        .await;
    (sql, run)
}

/// Their pipeline handles message `id`: a NOTIFY in their own shape, then their row.
async fn their_pipeline_handles(sql: &tokio_postgres::Client, t: &TestSchema, id: u64) {
    sql.execute(
        "SELECT pg_notify($1, json_build_object('kind', 'msg', 'id', $2::text)::text)",
        &[&t.name, &id.to_string()],
    )
    .await
    .expect("their NOTIFY");
    sql.execute(
        "INSERT INTO messages (id, body) VALUES ($1, 'theirs')",
        &[&(id as i64)],
    )
    .await
    .expect("their row");
}

fn health_of<'a>(v: &'a Value, check: &str) -> Option<&'a str> {
    (stage(v) == "health_changed" && v["check"] == check)
        .then(|| v["status"].as_str().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_the_bots_token_names_the_messages_a_foreign_pipeline_drops() {
    let t = TestSchema::new("bot_observe_some");
    let mut fake = FakeDiscord::start(
        TOKEN,
        Behaviour {
            recommended_shards: 1,
            ..Behaviour::default()
        },
    )
    .await;
    let (sql, mut run) = observed_foreign_pipeline(&t, &fake).await;
    let (kept, dropped) = (940_000_000_000_000_001_u64, 940_000_000_000_000_002_u64);
    for id in [kept, dropped] {
        fake.dispatch(
            "MESSAGE_CREATE",
            message_create(id, "for their pipeline", USER_ID, "ada"),
        );
        run.until("received", |v| {
            stage(v) == "received" && id_of(v) == Some(id)
        })
        .await;
    }
    their_pipeline_handles(&sql, &t, kept).await;
    run.until("their row for the kept message", |v| {
        stage(v) == "row_observed" && id_of(v) == Some(kept)
    })
    .await;
    let unhandled = run
        .until("the dropped message named", |v| {
            health_of(v, "async_context").is_some_and(|s| s != "ok")
        })
        .await;
    let summary = unhandled["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("1 message their bot received"),
        "{unhandled}"
    );
    assert!(
        summary.contains(&format!("message {dropped}")),
        "{unhandled}"
    );

    // A guild message without content, as without the MESSAGE_CONTENT intent.
    fake.dispatch(
        "MESSAGE_CREATE",
        message_create(940_000_000_000_000_003, "", USER_ID, "ada"),
    );
    run.until("missing content named", |v| {
        health_of(v, "content_intent") == Some("fail")
    })
    .await;
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
    // The observer asked for the message intents only.
    let identify = fake.identified(1).await;
    let intents = identify["intents"].as_u64().expect("intents");
    assert_eq!(
        intents,
        (1 << 9) | (1 << 12) | (1 << 15),
        "guild and direct messages, content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_the_bots_token_names_a_foreign_filter_that_drops_everything() {
    let t = TestSchema::new("bot_observe_all");
    let fake = FakeDiscord::start(
        TOKEN,
        Behaviour {
            recommended_shards: 1,
            ..Behaviour::default()
        },
    )
    .await;
    let (_sql, mut run) = observed_foreign_pipeline(&t, &fake).await;
    for i in 0..3 {
        let id = 941_000_000_000_000_001 + i;
        fake.dispatch(
            "MESSAGE_CREATE",
            message_create(id, "dropped by their filter", USER_ID, "ada"),
        );
        run.until("received", |v| {
            stage(v) == "received" && id_of(v) == Some(id)
        })
        .await;
    }
    let filter = run
        .until("the filter named", |v| {
            health_of(v, "self_filter") == Some("fail")
        })
        .await;
    assert!(
        filter["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("received 3 messages and published none"),
        "{filter}"
    );
    assert!(run.signal_and_wait(Signal::SIGTERM).await.success());
}
