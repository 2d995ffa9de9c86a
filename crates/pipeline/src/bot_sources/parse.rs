//! Reading a foreign bot's log line by line: notifyscope's documented JSON line, the JSON of
//! common structured loggers, Python logging and discord.py's default format with their
//! tracebacks, logfmt, and Node's error output with its stack. What a line says about a
//! message becomes a [`Report`]; an exception becomes a failed publish carrying its last
//! line. Lines of a known shape that say nothing about a message are only counted, and
//! a line of no known shape is handed back to be shown as it is.

use std::collections::VecDeque;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use notifyscope_model::contract::Snowflake;

use super::{Report, Stage};

/// What one line turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Of a known shape; what it reports, if anything, comes from [`LogParser::take`].
    Understood,
    /// Of no known shape: to be shown as it is.
    NotUnderstood,
}

/// An exception being read: the line that announced it, and the last exception line seen so
/// far (the one raised last, in a chain).
#[derive(Debug, Clone, Default)]
struct Pending {
    message_id: Option<Snowflake>,
    /// `Class: message` of the newest exception line.
    exception: Option<String>,
    /// The announcing line's own text, when no exception line follows (a bare error).
    fallback: Option<String>,
    /// Reading a Node stack (`    at …` lines) rather than a Python traceback.
    node: bool,
    /// Inside `Traceback (most recent call last):`, before its exception line.
    in_frames: bool,
}

/// Received ids not yet followed by another stage, at most.
const OPEN_RECEIVED: usize = 64;

/// Reads one log's lines in order; keeps what a multi-line exception needs between them.
#[derive(Debug, Default)]
pub struct LogParser {
    pending: Option<Pending>,
    reports: Vec<Report>,
    /// Messages received and not yet reported further, newest last: an exception that names
    /// no message is their bot's error about the only one of them, when there is exactly one.
    open: VecDeque<Snowflake>,
}

impl LogParser {
    /// Reads one line (without its line end).
    pub fn line(&mut self, line: &str) -> Line {
        let line = line.trim_end_matches(['\r', '\n']);
        if self.continues_exception(line) {
            return Line::Understood;
        }
        self.finish_pending();
        let trimmed = line.trim_start();
        if trimmed.starts_with('{') {
            return match serde_json::from_str::<Value>(trimmed) {
                Ok(Value::Object(fields)) => {
                    self.json(&fields);
                    Line::Understood
                }
                _ => Line::NotUnderstood,
            };
        }
        if line.trim().is_empty() {
            return Line::Understood;
        }
        if let Some(head) = python_head(line) {
            self.python(head);
            return Line::Understood;
        }
        if let Some(report) = logfmt(line) {
            self.push(report);
            return Line::Understood;
        }
        if TRACEBACK.is_match(line) || IGNORING.is_match(line) {
            self.pending = Some(Pending {
                in_frames: TRACEBACK.is_match(line),
                message_id: message_id_in(line),
                ..Pending::default()
            });
            return Line::Understood;
        }
        if let Some(error) = node_error(line) {
            self.pending = Some(Pending {
                message_id: message_id_in(line),
                exception: Some(error),
                node: true,
                ..Pending::default()
            });
            return Line::Understood;
        }
        Line::NotUnderstood
    }

    /// The reports of the lines read so far, in order; an exception still being read stays
    /// until its end is certain.
    pub fn take(&mut self) -> Vec<Report> {
        std::mem::take(&mut self.reports)
    }

    /// No more lines came for a while: an exception being read is over.
    pub fn flush(&mut self) -> Vec<Report> {
        self.finish_pending();
        self.take()
    }

    /// A line that belongs to the exception being read.
    fn continues_exception(&mut self, line: &str) -> bool {
        let Some(pending) = &mut self.pending else {
            return false;
        };
        if pending.node {
            // A Node error's stack, and the properties it prints after it (`  code: 'X',`).
            return NODE_AT.is_match(line)
                || line.starts_with("  ")
                || line == "}"
                || line.starts_with("Caused by:")
                || line.starts_with("[cause]");
        }
        if TRACEBACK.is_match(line) {
            pending.in_frames = true;
            return true;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Frames and their source lines; a chained exception's header is not indented.
            return pending.in_frames || pending.exception.is_some();
        }
        if line.trim().is_empty() || CHAINED.is_match(line) {
            return true;
        }
        if pending.in_frames {
            if let Some(exception) = exception_line(line) {
                pending.exception = Some(exception);
                pending.in_frames = false;
                if pending.message_id.is_none() {
                    pending.message_id = message_id_in(line);
                }
                return true;
            }
        }
        false
    }

    fn finish_pending(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Some(error) = pending.exception.or(pending.fallback) else {
            // "Ignoring exception in …" and nothing after it: said, but nothing to name.
            return;
        };
        let message_id = pending.message_id.or_else(|| self.only_open());
        self.push(Report {
            message_id,
            error: Some(error),
            ..Report::new(Stage::PublishFailed)
        });
    }

    /// The one message received and not yet handled, when there is exactly one.
    fn only_open(&self) -> Option<Snowflake> {
        match self.open.len() {
            1 => self.open.front().copied(),
            _ => None,
        }
    }

    fn push(&mut self, report: Report) {
        if let Some(id) = report.message_id {
            self.open.retain(|open| *open != id);
            if report.stage == Stage::Received {
                if self.open.len() >= OPEN_RECEIVED {
                    self.open.pop_front();
                }
                self.open.push_back(id);
            }
        }
        self.reports.push(report);
    }

    /// A JSON object: notifyscope's line when it has a stage, else a structured logger's.
    fn json(&mut self, fields: &Map<String, Value>) {
        if let Some(report) = stage_line(fields) {
            self.push(report);
            return;
        }
        let text = ["msg", "message", "event"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(Value::as_str))
            .unwrap_or_default();
        let error_level = ["level", "levelname", "severity"]
            .iter()
            .find_map(|k| fields.get(*k))
            .is_some_and(is_error_level);
        let exception = ["exc_info", "exception", "exc_text", "stack_trace"]
            .iter()
            .find_map(|k| fields.get(*k))
            .and_then(exception_of)
            .or_else(|| {
                ["err", "error"]
                    .iter()
                    .find_map(|k| fields.get(*k).filter(|v| v.is_object()))
                    .and_then(error_object)
            });
        // An error-level line without an exception is their bot's error in its own words.
        let error = exception.or_else(|| {
            error_level.then(|| {
                fields
                    .get("error")
                    .and_then(text_of)
                    .unwrap_or_else(|| text.to_owned())
            })
        });
        if let Some(error) = error {
            let message_id = fields
                .get("message_id")
                .and_then(snowflake_of)
                .or_else(|| message_id_in(text))
                .or_else(|| self.only_open());
            self.push(Report {
                message_id,
                error: Some(error),
                ..Report::new(Stage::PublishFailed)
            });
        }
    }

    /// A Python logging line: a stage in logfmt inside it, or an error that a traceback may
    /// follow.
    fn python(&mut self, head: PythonHead<'_>) {
        // notifyscope's JSON line logged through a handler whose format adds a prefix.
        let message = head.message.trim();
        if message.starts_with('{') {
            if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(message) {
                self.json(&fields);
                return;
            }
        }
        if let Some(report) = logfmt(head.message) {
            self.push(report);
            return;
        }
        if matches!(head.level, "ERROR" | "CRITICAL") {
            self.pending = Some(Pending {
                message_id: message_id_in(head.message),
                fallback: Some(head.message.trim().to_owned()),
                ..Pending::default()
            });
        }
    }
}

/// notifyscope's documented line: `stage` and `message_id`, with `reason`, `error` and
/// `channel_id` when there are.
fn stage_line(fields: &Map<String, Value>) -> Option<Report> {
    let stage = Stage::named(fields.get("stage")?.as_str()?)?;
    let message_id = fields.get("message_id").and_then(snowflake_of);
    if message_id.is_none() && stage != Stage::PublishFailed {
        return None;
    }
    let text = |key: &str| fields.get(key).and_then(text_of);
    Some(Report {
        message_id,
        channel_id: fields.get("channel_id").and_then(snowflake_of),
        author_name: text("author_name").or_else(|| text("author")),
        reason: text("reason"),
        error: text("error").or_else(|| {
            ["exc_info", "exception"]
                .iter()
                .find_map(|k| fields.get(*k))
                .and_then(exception_of)
        }),
        stage,
    })
}

/// A text value, or a number written as text.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A snowflake written as a string or a number.
pub(super) fn snowflake_of(value: &Value) -> Option<Snowflake> {
    match value {
        Value::String(s) => Snowflake::parse(s.trim()),
        Value::Number(n) => n.as_u64().and_then(|v| Snowflake::parse(&v.to_string())),
        _ => None,
    }
}

/// `ERROR`, `error`, `critical`, `fatal`, or pino's numbers (50 error, 60 fatal).
fn is_error_level(level: &Value) -> bool {
    match level {
        Value::String(s) => matches!(
            s.to_ascii_lowercase().as_str(),
            "error" | "err" | "critical" | "fatal" | "exception"
        ),
        Value::Number(n) => n.as_u64().is_some_and(|n| n >= 50),
        _ => false,
    }
}

/// The last line of a formatted exception (`exc_info` as text, or a list of its lines).
fn exception_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text
            .lines()
            .rev()
            .map(str::trim_end)
            .find(|l| !l.trim().is_empty() && !l.starts_with(' '))
            .and_then(|l| exception_line(l).or_else(|| Some(l.trim().to_owned()))),
        Value::Array(lines) => {
            let text: Vec<&str> = lines.iter().filter_map(Value::as_str).collect();
            exception_of(&Value::String(text.join("\n")))
        }
        Value::Object(fields) => error_object(value).or_else(|| {
            fields
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
        _ => None,
    }
}

/// A serialized error object (pino's `err`): `type` and `message`.
fn error_object(value: &Value) -> Option<String> {
    match value {
        Value::Object(fields) => {
            let message = fields.get("message").and_then(Value::as_str)?;
            let kind = ["type", "name", "class"]
                .iter()
                .find_map(|k| fields.get(*k).and_then(Value::as_str));
            Some(match kind {
                Some(kind) => format!("{}: {message}", short_class(kind)),
                None => message.to_owned(),
            })
        }
        Value::String(s) if !s.is_empty() => exception_of(value).or_else(|| Some(s.clone())),
        _ => None,
    }
}

struct PythonHead<'a> {
    level: &'a str,
    message: &'a str,
}

/// `2024-01-01 12:00:00,123 ERROR name: message`, discord.py's
/// `[2024-01-01 12:00:00] [ERROR   ] discord.client: message`, and logging's default
/// `ERROR:name:message`.
fn python_head(line: &str) -> Option<PythonHead<'_>> {
    let caps = PYTHON_DATED
        .captures(line)
        .or_else(|| PYTHON_PLAIN.captures(line))?;
    Some(PythonHead {
        level: caps.name("level")?.as_str(),
        message: caps.name("message")?.as_str(),
    })
}

/// `stage=received message_id=123 reason="author is a bot"` anywhere in a line.
fn logfmt(line: &str) -> Option<Report> {
    if !line.contains("stage=") {
        return None;
    }
    let mut fields = Map::new();
    for caps in LOGFMT.captures_iter(line) {
        let value = caps
            .name("quoted")
            .map(|m| m.as_str().replace("\\\"", "\""))
            .or_else(|| caps.name("bare").map(|m| m.as_str().to_owned()))
            .unwrap_or_default();
        fields.insert(caps["key"].to_owned(), Value::String(value));
    }
    stage_line(&fields)
}

/// `module.Class: message` (or a bare class) as `Class: message`.
fn exception_line(line: &str) -> Option<String> {
    let caps = EXCEPTION.captures(line.trim_end())?;
    let class = short_class(&caps["class"]);
    Some(match caps.name("message") {
        Some(m) if !m.as_str().trim().is_empty() => format!("{class}: {}", m.as_str().trim()),
        _ => class.to_owned(),
    })
}

/// The class without its module: `asyncpg.exceptions.X` is `X`.
fn short_class(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// A Node error line that a stack follows: `Error: …`, `TypeError: …`,
/// `DiscordAPIError[50013]: …`, `(node:12) UnhandledPromiseRejectionWarning: Error: …`.
fn node_error(line: &str) -> Option<String> {
    let caps = NODE_ERROR.captures(line)?;
    Some(format!("{}: {}", &caps["class"], caps["message"].trim()))
}

/// A message id named in free text: `message 123`, `message_id=123`, `message id: 123`.
fn message_id_in(text: &str) -> Option<Snowflake> {
    MESSAGE_ID
        .captures(text)
        .and_then(|caps| Snowflake::parse(&caps["id"]))
}

fn regex(pattern: &str) -> Regex {
    // The patterns are constants of this file, checked by its tests.
    #[allow(clippy::unwrap_used)]
    Regex::new(pattern).unwrap()
}

static PYTHON_DATED: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\]?\s+\[?(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s*\]?\s+(?:[\w.\-<>]+:?\s+)?(?P<message>.*)$",
    )
});
static PYTHON_PLAIN: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.\-<>]*:(?P<message>.*)$")
});
static TRACEBACK: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^\s*Traceback \(most recent call last\):\s*$"));
static IGNORING: LazyLock<Regex> = LazyLock::new(|| regex(r"Ignoring exception in (?:on_)?\w+"));
static CHAINED: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"^(?:During handling of the above exception|The above exception was the direct cause)")
});
static EXCEPTION: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^(?P<class>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$"));
static NODE_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^(?:\(node:\d+\) \w+: )?(?:Uncaught )?(?P<class>(?:[A-Za-z_$][\w$.]*)?(?:Error|Exception)(?:\s?\[[^\]]*\])?): (?P<message>.+)$",
    )
});
static NODE_AT: LazyLock<Regex> = LazyLock::new(|| regex(r"^\s+at\s"));
static LOGFMT: LazyLock<Regex> = LazyLock::new(|| {
    regex(r#"(?P<key>[A-Za-z_]+)=(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+))"#)
});
static MESSAGE_ID: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\bmessage(?:[ _-]?id)?\s*[=:#]?\s*(?P<id>\d{1,19})\b"));

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<Report>, Vec<String>) {
        let mut parser = LogParser::default();
        let mut not_understood = Vec::new();
        for line in text.lines() {
            if parser.line(line) == Line::NotUnderstood {
                not_understood.push(line.to_owned());
            }
        }
        (parser.flush(), not_understood)
    }

    fn id(n: u64) -> Option<Snowflake> {
        Some(Snowflake(n))
    }

    #[test]
    fn the_documented_json_line_reports_each_stage() {
        let (reports, unknown) = read(concat!(
            r#"{"stage":"received","message_id":"1001","channel_id":"5"}"#,
            "\n",
            r#"{"stage":"skipped","message_id":1002,"reason":"author is a bot"}"#,
            "\n",
            r#"{"stage":"published","message_id":"1003"}"#,
            "\n",
            r#"{"stage":"publish_failed","message_id":"1004","error":"ConnectionDoesNotExistError: connection was closed"}"#,
        ));
        assert!(unknown.is_empty(), "{unknown:?}");
        let stages: Vec<_> = reports.iter().map(|r| (r.stage, r.message_id)).collect();
        assert_eq!(
            stages,
            vec![
                (Stage::Received, id(1001)),
                (Stage::Skipped, id(1002)),
                (Stage::Published, id(1003)),
                (Stage::PublishFailed, id(1004)),
            ]
        );
        assert_eq!(reports[0].channel_id, id(5));
        assert_eq!(reports[1].reason.as_deref(), Some("author is a bot"));
        assert_eq!(
            reports[3].error.as_deref(),
            Some("ConnectionDoesNotExistError: connection was closed")
        );
    }

    #[test]
    fn structured_loggers_name_their_exception() {
        let (reports, unknown) = read(concat!(
            r#"{"level":"error","msg":"publish failed","message_id":"77","exc_info":"Traceback (most recent call last):\n  File \"bot.py\", line 3, in publish\n    await conn.execute(q)\nasyncpg.exceptions.ConnectionDoesNotExistError: connection was closed in the middle of operation"}"#,
            "\n",
            r#"{"level":50,"time":1,"msg":"send failed","err":{"type":"DiscordAPIError","message":"Missing Access"}}"#,
            "\n",
            r#"{"level":"info","event":"connected to the gateway"}"#,
        ));
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert_eq!(reports[0].message_id, id(77));
        assert_eq!(
            reports[0].error.as_deref(),
            Some("ConnectionDoesNotExistError: connection was closed in the middle of operation")
        );
        assert_eq!(
            reports[1].error.as_deref(),
            Some("DiscordAPIError: Missing Access")
        );
    }

    /// discord.py 2's default handler, as `discord.utils.setup_logging` writes it.
    const DISCORD_PY: &str = "\
[2026-12-05 10:00:00] [INFO    ] discord.client: logging in using static token
[2026-12-05 10:00:01] [INFO    ] bot: stage=received message_id=1199 channel_id=42
[2026-12-05 10:00:01] [ERROR   ] discord.client: Ignoring exception in on_message
Traceback (most recent call last):
  File \"/usr/lib/python3/site-packages/discord/client.py\", line 449, in _run_event
    await coro(*args, **kwargs)
  File \"/srv/bot.py\", line 30, in on_message
    await publish_event(message)
  File \"/srv/bot.py\", line 22, in publish_event
    await conn.execute(\"SELECT pg_notify($1, $2)\", CHANNEL, payload)
  File \"/usr/lib/python3/site-packages/asyncpg/connection.py\", line 350, in execute
    result = await self._protocol.query(query, timeout)
  File \"asyncpg/protocol/protocol.pyx\", line 375, in query
asyncpg.exceptions.ConnectionDoesNotExistError: connection was closed in the middle of operation
[2026-12-05 10:00:02] [INFO    ] discord.gateway: Shard ID None has connected to Gateway
";

    #[test]
    fn discord_py_names_the_swallowed_exception_and_the_message() {
        let (reports, unknown) = read(DISCORD_PY);
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert_eq!(reports[0].stage, Stage::Received);
        let failed = &reports[1];
        assert_eq!(failed.stage, Stage::PublishFailed);
        assert_eq!(
            failed.error.as_deref(),
            Some("ConnectionDoesNotExistError: connection was closed in the middle of operation")
        );
        // The only message received and not yet handled.
        assert_eq!(failed.message_id, id(1199));
    }

    #[test]
    fn a_chained_traceback_names_the_exception_raised_last() {
        let (reports, _) = read(
            "\
ERROR:bot:publish failed for message 5150
Traceback (most recent call last):
  File \"bot.py\", line 1, in x
KeyError: 'channel'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"bot.py\", line 2, in y
RuntimeError: could not publish
INFO:bot:still running
",
        );
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].message_id, id(5150));
        assert_eq!(
            reports[0].error.as_deref(),
            Some("RuntimeError: could not publish")
        );
    }

    #[test]
    fn discord_py_1_writes_the_traceback_bare_to_stderr() {
        let (reports, unknown) = read(
            "\
Ignoring exception in on_message
Traceback (most recent call last):
  File \"bot.py\", line 9, in on_message
    raise ValueError(\"bad\")
ValueError: bad
",
        );
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].error.as_deref(), Some("ValueError: bad"));
        assert_eq!(reports[0].message_id, None);
    }

    #[test]
    fn an_error_line_without_a_traceback_is_its_own_text() {
        let (reports, _) =
            read("2026-12-05 10:00:00,123 ERROR bot: publish of message 88 failed: timeout\n");
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].message_id, id(88));
        assert_eq!(
            reports[0].error.as_deref(),
            Some("publish of message 88 failed: timeout")
        );
    }

    #[test]
    fn node_errors_with_their_stacks() {
        let (reports, unknown) = read(
            "\
received message 3003
Error: connect ECONNREFUSED 127.0.0.1:5432
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {
  errno: -111,
  code: 'ECONNREFUSED',
}
DiscordAPIError[50013]: Missing Permissions
    at handleErrors (/app/node_modules/@discordjs/rest/dist/index.js:730:13)
    at async SequentialHandler.runRequest (/app/node_modules/@discordjs/rest/dist/index.js:1133:23)
(node:4242) UnhandledPromiseRejectionWarning: TypeError: Cannot read properties of undefined (reading 'id')
    at Client.<anonymous> (/app/bot.js:12:30)
",
        );
        assert_eq!(unknown, vec!["received message 3003".to_owned()]);
        let errors: Vec<_> = reports.iter().filter_map(|r| r.error.as_deref()).collect();
        assert_eq!(
            errors,
            vec![
                "Error: connect ECONNREFUSED 127.0.0.1:5432",
                "DiscordAPIError[50013]: Missing Permissions",
                "TypeError: Cannot read properties of undefined (reading 'id')",
            ]
        );
    }

    #[test]
    fn bad_input_is_not_understood_and_loses_nothing_after_it() {
        let binary = String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x01, b'{', 0x80]).into_owned();
        let long = format!(
            "{{\"stage\":\"received\",\"message_id\":\"1\",\"pad\":\"{}",
            "x".repeat(1 << 20)
        );
        let mut parser = LogParser::default();
        assert_eq!(
            parser.line(r#"{"stage":"received","message_id":"12"#),
            Line::NotUnderstood
        );
        assert_eq!(parser.line(&binary), Line::NotUnderstood);
        assert_eq!(parser.line(&long), Line::NotUnderstood);
        assert_eq!(
            parser.line(r#"{"stage":"teleported","message_id":"1"}"#),
            Line::Understood
        );
        assert_eq!(
            parser.line(r#"{"stage":"received","message_id":"13"}"#),
            Line::Understood
        );
        let reports = parser.flush();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].message_id, id(13));
    }

    #[test]
    fn logfmt_lines_report_stages_with_quoted_reasons() {
        let (reports, _) = read(
            "time=1 stage=skipped message_id=9 reason=\"author is a bot\"\nstage=published message_id=10\n",
        );
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].reason.as_deref(), Some("author is a bot"));
        assert_eq!(reports[1].stage, Stage::Published);
    }

    #[test]
    fn the_json_line_behind_a_logging_prefix_is_read() {
        let (reports, unknown) = read(
            "INFO:bot.pipeline:{\"stage\": \"skipped\", \"message_id\": \"41\", \"reason\": \"author is a bot\"}\n",
        );
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].stage, Stage::Skipped);
        assert_eq!(reports[0].reason.as_deref(), Some("author is a bot"));
    }
}
