//! The real serenity client against a fake Discord on 127.0.0.1, through the binary:
//! `DISCORD_TOKEN=… notifyscope run --headless --json --discord-api-url http://127.0.0.1:…`.

mod common;

use common::fake_discord::{message_create, Behaviour, FakeDiscord, BOT_ID, USER_ID};
use common::process::{notifyscope, pipeline_command, run_pipeline, stage, Running};
use common::{server_url, TestSchema};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const TOKEN: &str = "MTE5OTAwMDAwMDAwMDAwMDAwMQ.fake-bot-token.do-not-print";

fn bot_command(t: &TestSchema, fake: &FakeDiscord, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = pipeline_command(t);
    cmd.env("DISCORD_TOKEN", TOKEN)
        .args(["--discord-api-url", &fake.api_url])
        .args(extra);
    cmd
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

    // Startup gate: the listener is up before the bot says anything to Discord.
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
    let out = notifyscope()
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
        .output()
        .await
        .expect("send runs");
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
async fn autosharding_uses_the_recommended_shard_count() {
    let t = TestSchema::new("bot_shards");
    let mut fake = FakeDiscord::start(TOKEN, Behaviour::default()).await;
    let mut run = Running::start(bot_command(&t, &fake, &["--shards", "auto"]));
    let identify = fake.identified(1).await;
    assert_eq!(identify["shard"], json!([0, 1]));
    run.until("gateway ready", |v| stage(v) == "gateway_ready")
        .await;
    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "{status}");
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
    assert!(!status.success());
    assert!(
        stderr.contains("Discord rejected the bot token (gateway close 4004"),
        "{stderr}"
    );
    assert!(stdout.contains("\"stage\":\"gateway_down\""), "{stdout}");
    assert!(stdout.contains("\"code\":4004"), "{stdout}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
    assert!(!stdout.contains("do-not-print") && !stderr.contains("do-not-print"));
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_is_the_same_clear_error() {
    let wrong = "d3Jvbmc.wrong-token.do-not-print";
    let (status, stdout, stderr) = rejected_run(Behaviour::default(), wrong).await;
    assert!(!status.success());
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
        let mut cmd = notifyscope();
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
    let out = selftest("20").output().await.expect("selftest runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with('✓')).count(),
        6,
        "{text}"
    );

    let status = run.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());

    let out = selftest("2").output().await.expect("selftest runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ bot path: no running notifyscope answered"),
        "{text}"
    );
    assert!(text.contains("still unprocessed"), "{text}");
}
