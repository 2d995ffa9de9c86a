//! A fake Discord on 127.0.0.1 for the real serenity client: the HTTP routes the bot calls
//! (`/users/@me`, `/gateway`, `/gateway/bot`) and a WebSocket gateway speaking plain JSON text
//! frames (HELLO, IDENTIFY, READY, dispatches, heartbeats, RESUME). It records the HTTP
//! paths asked for and when each IDENTIFY came, so that tests can tell what the bot did and
//! in which order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const BOT_ID: u64 = 300_000_000_000_000_001;
pub const GUILD_ID: u64 = 300_000_000_000_000_002;
pub const CHANNEL_ID: u64 = 300_000_000_000_000_003;
pub const USER_ID: u64 = 300_000_000_000_000_004;

#[derive(Debug, Clone)]
pub struct Behaviour {
    pub heartbeat_ms: u64,
    /// Answer IDENTIFY by closing with this code instead of READY.
    pub close_on_identify: Option<(u16, &'static str)>,
    /// The first connection never acknowledges heartbeats; later ones do.
    pub ignore_heartbeats_once: bool,
    /// The shard count `/gateway/bot` recommends. More than one, so that a client that
    /// follows it is told apart from one that starts the single default shard.
    pub recommended_shards: u32,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            heartbeat_ms: 1000,
            close_on_identify: None,
            ignore_heartbeats_once: false,
            recommended_shards: 2,
        }
    }
}

/// The shard a session identified as (`[id, total]`), and where its dispatches go.
type ReadySession = (Option<(u64, u64)>, mpsc::UnboundedSender<(String, Value)>);

struct State {
    token: String,
    ws_url: String,
    behaviour: Behaviour,
    /// Every IDENTIFY's `d`, with the time it arrived.
    identifies: Mutex<Vec<(DateTime<Utc>, Value)>>,
    /// The path of every HTTP request, in arrival order.
    requests: Mutex<Vec<String>>,
    identified: watch::Sender<usize>,
    /// Sessions that got READY (or RESUMED), with the shard they identified as
    /// (`[id, total]`).
    ready_sessions: Mutex<Vec<ReadySession>>,
    connections: AtomicU64,
    ignored_once: AtomicBool,
}

pub struct FakeDiscord {
    pub api_url: String,
    state: Arc<State>,
    ready: watch::Receiver<usize>,
}

impl FakeDiscord {
    pub async fn start(token: &str, behaviour: Behaviour) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let ws = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
        let api_url = format!("http://{}", http.local_addr().expect("addr"));
        let ws_url = format!("ws://{}", ws.local_addr().expect("addr"));
        let (identified, ready) = watch::channel(0);
        let state = Arc::new(State {
            token: token.to_owned(),
            ws_url,
            behaviour,
            identifies: Mutex::default(),
            requests: Mutex::default(),
            identified,
            ready_sessions: Mutex::default(),
            connections: AtomicU64::new(0),
            ignored_once: AtomicBool::new(false),
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = http.accept().await {
                tokio::spawn(serve_http(stream, s.clone()));
            }
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                tokio::spawn(serve_gateway(stream, s.clone()));
            }
        });
        FakeDiscord {
            api_url,
            state,
            ready,
        }
    }

    /// Waits until `n` IDENTIFYs have been received; returns the last one's `d`.
    pub async fn identified(&mut self, n: usize) -> Value {
        tokio::time::timeout(Duration::from_secs(60), self.ready.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("no IDENTIFY number {n}"))
            .expect("fake alive");
        self.state
            .identifies
            .lock()
            .expect("lock")
            .last()
            .map(|(_, d)| d.clone())
            .expect("an identify")
    }

    /// Every IDENTIFY received so far (`d`), with the time it arrived.
    pub fn identifies(&self) -> Vec<(DateTime<Utc>, Value)> {
        self.state.identifies.lock().expect("lock").clone()
    }

    /// The path of every HTTP request so far (`/api/v10/users/@me`, …).
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// How many times the shard count was asked for (`GET /gateway/bot`).
    pub fn gateway_bot_calls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|p| p.split('?').next() == Some("/api/v10/gateway/bot"))
            .count()
    }

    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Sends a dispatch to every session that got READY.
    pub fn dispatch(&self, event: &str, data: Value) {
        let mut sessions = self.state.ready_sessions.lock().expect("lock");
        sessions.retain(|(_, s)| s.send((event.to_owned(), data.clone())).is_ok());
    }

    /// Sends a guild's dispatch as Discord does: only to the session of the shard the guild
    /// belongs to, `(guild_id >> 22) % total`. False when no session holds that shard.
    pub fn dispatch_to_guild(&self, guild_id: u64, event: &str, data: Value) -> bool {
        let mut sessions = self.state.ready_sessions.lock().expect("lock");
        let mut sent = false;
        sessions.retain(|(shard, s)| {
            let ours = shard.is_some_and(|(id, total)| (guild_id >> 22) % total.max(1) == id);
            if !ours {
                return true;
            }
            let alive = s.send((event.to_owned(), data.clone())).is_ok();
            sent |= alive;
            alive
        });
        sent
    }

    /// How many sessions are ready for dispatches.
    pub fn ready_sessions(&self) -> usize {
        self.state.ready_sessions.lock().expect("lock").len()
    }
}

/// A guild id that Discord routes to shard `shard` of `total` (`n` picks among them).
pub fn guild_on_shard(shard: u64, total: u64, n: u64) -> u64 {
    let base = GUILD_ID >> 22;
    let first = base + (shard + total - base % total) % total;
    (first + n * total) << 22
}

/// A MESSAGE_CREATE body as Discord sends it, with the fields serenity requires.
pub fn message_create(id: u64, content: &str, author_id: u64, author_name: &str) -> Value {
    json!({
        "id": id.to_string(),
        "channel_id": CHANNEL_ID.to_string(),
        "guild_id": GUILD_ID.to_string(),
        "author": {"id": author_id.to_string(), "username": author_name, "avatar": null},
        "content": content,
        "timestamp": "2026-11-27T10:00:00.123000+00:00",
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0
    })
}

/// The `[id, total]` an IDENTIFY names; `[0, 1]` when it names none.
fn shard_of(identify: &Value) -> Option<(u64, u64)> {
    match identify.get("shard") {
        Some(shard) => Some((shard[0].as_u64()?, shard[1].as_u64()?)),
        None => Some((0, 1)),
    }
}

fn http_response(status: &str, body: &Value) -> String {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn serve_http(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    state.requests.lock().expect("lock").push(path.clone());
    let authorized = head.lines().any(|l| {
        let lower = l.to_ascii_lowercase();
        lower.starts_with("authorization:")
            && l.split_once(':').map(|(_, v)| v.trim()) == Some(&format!("Bot {}", state.token))
    });
    let response = if !authorized {
        http_response(
            "401 Unauthorized",
            &json!({"message": "401: Unauthorized", "code": 0}),
        )
    } else if path.starts_with("/api/v10/users/@me") {
        http_response(
            "200 OK",
            &json!({"id": BOT_ID.to_string(), "username": "fakebot", "avatar": null, "bot": true}),
        )
    } else if path.starts_with("/api/v10/gateway/bot") {
        http_response(
            "200 OK",
            &json!({"url": state.ws_url, "shards": state.behaviour.recommended_shards, "session_start_limit":
                {"remaining": 1000, "reset_after": 0, "total": 1000, "max_concurrency": 1}}),
        )
    } else if path.starts_with("/api/v10/gateway") {
        http_response("200 OK", &json!({"url": state.ws_url}))
    } else {
        http_response(
            "404 Not Found",
            &json!({"message": "404: Not Found", "code": 0}),
        )
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn serve_gateway(stream: TcpStream, state: Arc<State>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let connection = state.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let ignore_heartbeats =
        state.behaviour.ignore_heartbeats_once && !state.ignored_once.swap(true, Ordering::Relaxed);
    let hello = json!({"op": 10, "d": {"heartbeat_interval": state.behaviour.heartbeat_ms}});
    if ws.send(WsMessage::Text(hello.to_string())).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Value)>();
    let mut seq = 0u64;
    let mut tx = Some(tx);
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { break };
                let text = match frame {
                    WsMessage::Text(t) => t,
                    WsMessage::Close(_) => break,
                    _ => continue,
                };
                let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                match payload["op"].as_u64() {
                    Some(2) => {
                        let total = {
                            let mut ids = state.identifies.lock().expect("lock");
                            ids.push((Utc::now(), payload["d"].clone()));
                            ids.len()
                        };
                        if let Some((code, reason)) = state.behaviour.close_on_identify {
                            let _ = ws
                                .send(WsMessage::Close(Some(CloseFrame {
                                    code: CloseCode::from(code),
                                    reason: reason.into(),
                                })))
                                .await;
                            state.identified.send_replace(total);
                            continue;
                        }
                        seq += 1;
                        let ready = json!({"op": 0, "s": seq, "t": "READY", "d": {
                            "v": 10,
                            "user": {"id": BOT_ID.to_string(), "username": "fakebot", "bot": true},
                            "guilds": [],
                            "session_id": format!("session-{connection}"),
                            // As Discord does: the shard the session identified as.
                            "shard": payload["d"]["shard"],
                            "resume_gateway_url": state.ws_url,
                            "application": {"id": BOT_ID.to_string(), "flags": 0},
                        }});
                        if ws.send(WsMessage::Text(ready.to_string())).await.is_err() {
                            break;
                        }
                        if let Some(tx) = tx.take() {
                            state.ready_sessions.lock().expect("lock").push((shard_of(&payload["d"]), tx));
                        }
                        state.identified.send_replace(total);
                    }
                    Some(1) if !ignore_heartbeats
                        && ws.send(WsMessage::Text(json!({"op": 11}).to_string())).await.is_err() =>
                    {
                        break;
                    }
                    Some(6) => {
                        seq += 1;
                        let resumed = json!({"op": 0, "s": seq, "t": "RESUMED", "d": {}});
                        if ws.send(WsMessage::Text(resumed.to_string())).await.is_err() {
                            break;
                        }
                        if let Some(tx) = tx.take() {
                            state.ready_sessions.lock().expect("lock").push((None, tx));
                        }
                    }
                    _ => {}
                }
            }
            Some((event, data)) = rx.recv() => {
                seq += 1;
                let frame = json!({"op": 0, "s": seq, "t": event, "d": data});
                if ws.send(WsMessage::Text(frame.to_string())).await.is_err() {
                    break;
                }
            }
        }
    }
}
