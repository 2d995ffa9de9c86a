//! `--otlp ADDR`: an OTLP/HTTP receiver (`/v1/traces`, `/v1/logs`; protobuf and JSON) for an
//! OpenTelemetry-instrumented bot, on the one small HTTP server of [`crate::http`]. Spans, their
//! events and log records that carry `messaging.message.id` become stages: by
//! `notifyscope.stage` (and `notifyscope.skip_reason`) when they say it, else by the
//! messaging conventions (`messaging.operation.type`), where an error status or an
//! exception means a failed publish. Bad input is answered with 400 and counted; nothing in
//! a request can stop the receiver.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use hyper::{Method, StatusCode};
use prost::Message;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::parse::snowflake_of;
use super::{Report, Reporter, Stage};
use crate::http::{self, Request, Response};
use notifyscope_model::contract::Snowflake;

/// Largest request body accepted; a bigger one is refused with 413.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The receiver bound to `addr`: binding fails here, before anything is watched.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves OTLP/HTTP on `listener` until `stop`.
pub fn spawn(listener: TcpListener, reporter: Reporter, stop: CancellationToken) -> JoinHandle<()> {
    reporter.trace_counts(true);
    let receiver = Receiver { reporter };
    tokio::spawn(http::serve(
        listener,
        Arc::new(move |r| receiver.handle(r)),
        BODY_LIMIT,
        stop,
    ))
}

struct Receiver {
    reporter: Reporter,
}

/// What a request carried: reports with their times, and records not understood.
#[derive(Debug, Default)]
struct Decoded {
    reports: Vec<(DateTime<Utc>, Report)>,
    understood: u64,
    /// Records with a message id but no stage to be read from them.
    not_understood: Vec<String>,
}

impl Receiver {
    fn handle(&self, request: Request) -> Response {
        let signal = match request.path.as_str() {
            "/v1/traces" => Signal::Traces,
            "/v1/logs" => Signal::Logs,
            "/v1/metrics" => {
                // Accepted and left alone: an SDK that exports metrics too keeps working.
                return ok(&request);
            }
            _ => {
                return Response::text(
                    StatusCode::NOT_FOUND,
                    "OTLP/HTTP: /v1/traces and /v1/logs\n",
                )
            }
        };
        if request.method != Method::POST {
            return Response::text(StatusCode::METHOD_NOT_ALLOWED, "OTLP/HTTP takes POST\n");
        }
        if let Some(encoding) = request.headers.get(hyper::header::CONTENT_ENCODING) {
            if encoding.as_bytes() != b"identity" {
                return Response::text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "compressed bodies are not taken: set OTEL_EXPORTER_OTLP_COMPRESSION=none\n",
                );
            }
        }
        let decoded = match (is_json(&request), signal) {
            (false, Signal::Traces) => proto::TracesRequest::decode(request.body.clone())
                .map(|r| decode_traces(r.resource_spans))
                .map_err(|e| e.to_string()),
            (false, Signal::Logs) => proto::LogsRequest::decode(request.body.clone())
                .map(|r| decode_logs(r.resource_logs))
                .map_err(|e| e.to_string()),
            (true, signal) => serde_json::from_slice::<Value>(&request.body)
                .map_err(|e| e.to_string())
                .and_then(|v| json::decode(&v, signal)),
        };
        let mut decoded = match decoded {
            Ok(decoded) => decoded,
            Err(e) => {
                self.reporter.not_understood(&format!(
                    "an OTLP request to {} that is not OTLP: {e}",
                    request.path
                ));
                self.reporter.trace_counts(false);
                return Response::text(
                    StatusCode::BAD_REQUEST,
                    format!("not an OTLP request: {e}\n"),
                );
            }
        };
        decoded.reports.sort_by_key(|(at, _)| *at);
        for (at, report) in decoded.reports {
            self.reporter.report(report, at);
        }
        self.reporter.understood(decoded.understood);
        for record in &decoded.not_understood {
            self.reporter.not_understood(record);
        }
        self.reporter.trace_counts(false);
        ok(&request)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    Traces,
    Logs,
}

fn is_json(request: &Request) -> bool {
    request
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with(JSON))
}

/// An empty success in the request's own encoding (no partial rejection to tell).
fn ok(request: &Request) -> Response {
    if is_json(request) {
        Response::new(StatusCode::OK, JSON, "{}")
    } else {
        Response::new(StatusCode::OK, PROTOBUF, Vec::new())
    }
}

/// A time in nanoseconds since the epoch; now for none, or for one far from now (a clock
/// gone wrong must not put an event an hour away from its neighbours).
fn time_of(nanos: u64) -> DateTime<Utc> {
    let now = Utc::now();
    match i64::try_from(nanos).ok().filter(|n| *n > 0) {
        Some(n) => {
            let at = DateTime::from_timestamp_nanos(n);
            if (now - at).abs() < TimeDelta::minutes(10) {
                at
            } else {
                now
            }
        }
        None => now,
    }
}

/// The attributes that matter, in one place for spans, span events and log records.
#[derive(Debug, Default, Clone)]
struct Attributes {
    message_id: Option<Snowflake>,
    stage: Option<String>,
    skip_reason: Option<String>,
    operation: Option<String>,
    channel_id: Option<Snowflake>,
    exception_type: Option<String>,
    exception_message: Option<String>,
    error_type: Option<String>,
}

impl Attributes {
    fn read(&mut self, key: &str, value: &Value) {
        let text = || match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match key {
            "messaging.message.id" | "notifyscope.message_id" => {
                self.message_id = snowflake_of(value).or(self.message_id)
            }
            "notifyscope.stage" => self.stage = text(),
            "notifyscope.skip_reason" => self.skip_reason = text(),
            "messaging.operation.type" => self.operation = text(),
            // The name of older conventions.
            "messaging.operation" => self.operation = self.operation.take().or_else(text),
            "discord.channel.id" | "notifyscope.channel_id" => {
                self.channel_id = snowflake_of(value)
            }
            "exception.type" => self.exception_type = text(),
            "exception.message" => self.exception_message = text(),
            "error.type" => self.error_type = text(),
            _ => {}
        }
    }

    /// `Class: message` of an exception, as far as it was said.
    fn exception(&self) -> Option<String> {
        let class = self
            .exception_type
            .as_deref()
            .map(|c| c.rsplit('.').next().unwrap_or(c).to_owned());
        match (class, &self.exception_message) {
            (Some(c), Some(m)) => Some(format!("{c}: {m}")),
            (Some(c), None) => Some(c),
            (None, Some(m)) => Some(m.clone()),
            (None, None) => None,
        }
    }
}

/// One span, span event or log record, read.
struct Record {
    /// When it began and ended (the same for an event or a log record): a receive is
    /// timed by its start, an outcome by its end.
    began: DateTime<Utc>,
    ended: DateTime<Utc>,
    attributes: Attributes,
    /// An error status, an exception event or an error severity.
    failed: bool,
    /// The status message or the log body: the error when no exception names one.
    error_text: Option<String>,
    what: String,
}

impl Record {
    /// Its stage, when it has a message id; `Err` for one whose stage cannot be told.
    fn report(self) -> Option<Result<(DateTime<Utc>, Report), String>> {
        let a = self.attributes;
        let message_id = a.message_id?;
        let exception = a.exception().or(a.error_type.clone());
        let stage = match a.stage.as_deref() {
            Some(stage) => Stage::named(stage),
            None if self.failed || exception.is_some() => Some(Stage::PublishFailed),
            None => match a.operation.as_deref() {
                Some("publish" | "send" | "create") => Some(Stage::Published),
                Some("receive" | "process" | "deliver") => Some(Stage::Received),
                _ => None,
            },
        };
        let Some(stage) = stage else {
            return Some(Err(format!(
                "{} for message {message_id} names no stage",
                self.what
            )));
        };
        Some(Ok((
            if stage == Stage::Received {
                self.began
            } else {
                self.ended
            },
            Report {
                stage,
                message_id: Some(message_id),
                channel_id: a.channel_id,
                author_name: None,
                reason: a.skip_reason,
                error: (stage == Stage::PublishFailed)
                    .then(|| exception.or(self.error_text))
                    .flatten(),
            },
        )))
    }
}

fn collect(records: impl IntoIterator<Item = Record>) -> Decoded {
    let mut decoded = Decoded::default();
    for record in records {
        match record.report() {
            Some(Ok(report)) => {
                decoded.understood += 1;
                decoded.reports.push(report);
            }
            Some(Err(e)) => decoded.not_understood.push(e),
            None => {}
        }
    }
    decoded
}

/// Spans, and the span events that carry a stage of their own.
fn decode_traces(resource_spans: Vec<proto::ResourceSpans>) -> Decoded {
    let mut records = Vec::new();
    for span in resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
    {
        let mut attributes = Attributes::default();
        for kv in &span.attributes {
            attributes.read(&kv.key, &proto::value_of(kv.value.as_ref()));
        }
        let mut failed = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == proto::STATUS_ERROR);
        for event in &span.events {
            let mut own = attributes.clone();
            own.stage = None;
            for kv in &event.attributes {
                own.read(&kv.key, &proto::value_of(kv.value.as_ref()));
            }
            if event.name == "exception" {
                failed = true;
                attributes.exception_type = own.exception_type.clone();
                attributes.exception_message = own.exception_message.clone();
            } else if own.stage.is_some() {
                let at = time_of(event.time_unix_nano);
                records.push(Record {
                    began: at,
                    ended: at,
                    attributes: own,
                    failed: false,
                    error_text: None,
                    what: format!("span event {:?}", event.name),
                });
            }
        }
        records.push(Record {
            began: time_of(span.start_time_unix_nano),
            ended: time_of(span.end_time_unix_nano),
            attributes,
            failed,
            error_text: span.status.map(|s| s.message).filter(|m| !m.is_empty()),
            what: format!("span {:?}", span.name),
        });
    }
    collect(records)
}

fn decode_logs(resource_logs: Vec<proto::ResourceLogs>) -> Decoded {
    let mut records = Vec::new();
    for log in resource_logs
        .into_iter()
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
    {
        let mut attributes = Attributes::default();
        for kv in &log.attributes {
            attributes.read(&kv.key, &proto::value_of(kv.value.as_ref()));
        }
        let body = match proto::value_of(log.body.as_ref()) {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        let at = time_of(if log.time_unix_nano > 0 {
            log.time_unix_nano
        } else {
            log.observed_time_unix_nano
        });
        records.push(Record {
            began: at,
            ended: at,
            attributes,
            failed: log.severity_number >= proto::SEVERITY_ERROR
                || log.severity_text.eq_ignore_ascii_case("error"),
            error_text: body,
            what: "log record".to_owned(),
        });
    }
    collect(records)
}

/// The OTLP messages this receiver reads, with the field numbers of opentelemetry-proto;
/// fields it does not read are skipped by the decoder.
mod proto {
    use serde_json::Value;

    pub const STATUS_ERROR: i32 = 2;
    pub const SEVERITY_ERROR: i32 = 17;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TracesRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(fixed64, tag = "7")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(message, repeated, tag = "11")]
        pub events: Vec<SpanEvent>,
        #[prost(message, optional, tag = "15")]
        pub status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SpanEvent {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(int32, tag = "3")]
        pub code: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogsRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Any", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<Any>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Any {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
        #[prost(message, tag = "5")]
        Array(ArrayValue),
        #[prost(message, tag = "6")]
        List(KeyValueList),
        #[prost(bytes, tag = "7")]
        Bytes(Vec<u8>),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }

    /// A value as JSON, which the attribute reader takes from either encoding.
    pub fn value_of(value: Option<&AnyValue>) -> Value {
        match value.and_then(|v| v.value.as_ref()) {
            None => Value::Null,
            Some(Any::String(s)) => Value::String(s.clone()),
            Some(Any::Bool(b)) => Value::Bool(*b),
            Some(Any::Int(i)) => Value::from(*i),
            Some(Any::Double(d)) => Value::from(*d),
            Some(Any::Array(a)) => {
                Value::Array(a.values.iter().map(|v| value_of(Some(v))).collect())
            }
            Some(Any::List(l)) => Value::Object(
                l.values
                    .iter()
                    .map(|kv| (kv.key.clone(), value_of(kv.value.as_ref())))
                    .collect(),
            ),
            Some(Any::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

/// OTLP/JSON, read leniently into the same messages: camelCase or snake_case names, ids in
/// hex (not read), enums as numbers or names, 64-bit integers as strings or numbers.
mod json {
    use serde_json::Value;

    use super::proto::*;
    use super::{decode_logs, decode_traces, Decoded, Signal};

    pub fn decode(value: &Value, signal: Signal) -> Result<Decoded, String> {
        let Value::Object(_) = value else {
            return Err("the body is not a JSON object".into());
        };
        Ok(match signal {
            Signal::Traces => decode_traces(
                list(value, "resourceSpans", "resource_spans")?
                    .iter()
                    .map(|r| {
                        Ok(ResourceSpans {
                            scope_spans: list(r, "scopeSpans", "scope_spans")?
                                .iter()
                                .map(|s| {
                                    Ok(ScopeSpans {
                                        spans: list(s, "spans", "spans")?
                                            .iter()
                                            .map(span)
                                            .collect::<Result<_, String>>()?,
                                    })
                                })
                                .collect::<Result<_, String>>()?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            ),
            Signal::Logs => decode_logs(
                list(value, "resourceLogs", "resource_logs")?
                    .iter()
                    .map(|r| {
                        Ok(ResourceLogs {
                            scope_logs: list(r, "scopeLogs", "scope_logs")?
                                .iter()
                                .map(|s| {
                                    Ok(ScopeLogs {
                                        log_records: list(s, "logRecords", "log_records")?
                                            .iter()
                                            .map(log_record)
                                            .collect::<Result<_, String>>()?,
                                    })
                                })
                                .collect::<Result<_, String>>()?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            ),
        })
    }

    fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
        v.get(camel)
            .or_else(|| v.get(snake))
            .filter(|v| !v.is_null())
    }

    fn list<'a>(v: &'a Value, camel: &str, snake: &str) -> Result<&'a [Value], String> {
        match field(v, camel, snake) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(format!("{camel} is not a list")),
        }
    }

    fn text(v: &Value, camel: &str, snake: &str) -> String {
        field(v, camel, snake)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// A fixed64 or int64: a string or a number.
    fn number(v: &Value, camel: &str, snake: &str) -> u64 {
        match field(v, camel, snake) {
            Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            _ => 0,
        }
    }

    /// An enum: its number, or its name (`STATUS_CODE_ERROR`, `SEVERITY_NUMBER_ERROR`).
    fn enumeration(v: &Value, camel: &str, snake: &str) -> i32 {
        match field(v, camel, snake) {
            Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0),
            Some(Value::String(s)) => match s.as_str() {
                "STATUS_CODE_OK" => 1,
                "STATUS_CODE_ERROR" => STATUS_ERROR,
                s if s.starts_with("SEVERITY_NUMBER_ERROR") => SEVERITY_ERROR,
                s if s.starts_with("SEVERITY_NUMBER_FATAL") => SEVERITY_ERROR + 4,
                s => s.parse().unwrap_or(0),
            },
            _ => 0,
        }
    }

    fn span(v: &Value) -> Result<Span, String> {
        if !v.is_object() {
            return Err("a span is not an object".into());
        }
        Ok(Span {
            name: text(v, "name", "name"),
            start_time_unix_nano: number(v, "startTimeUnixNano", "start_time_unix_nano"),
            end_time_unix_nano: number(v, "endTimeUnixNano", "end_time_unix_nano"),
            attributes: attributes(v)?,
            events: list(v, "events", "events")?
                .iter()
                .map(|e| {
                    Ok(SpanEvent {
                        time_unix_nano: number(e, "timeUnixNano", "time_unix_nano"),
                        name: text(e, "name", "name"),
                        attributes: attributes(e)?,
                    })
                })
                .collect::<Result<_, String>>()?,
            status: field(v, "status", "status").map(|s| Status {
                message: text(s, "message", "message"),
                code: enumeration(s, "code", "code"),
            }),
        })
    }

    fn log_record(v: &Value) -> Result<LogRecord, String> {
        if !v.is_object() {
            return Err("a log record is not an object".into());
        }
        Ok(LogRecord {
            time_unix_nano: number(v, "timeUnixNano", "time_unix_nano"),
            severity_number: enumeration(v, "severityNumber", "severity_number"),
            severity_text: text(v, "severityText", "severity_text"),
            body: field(v, "body", "body").map(any),
            attributes: attributes(v)?,
            observed_time_unix_nano: number(v, "observedTimeUnixNano", "observed_time_unix_nano"),
        })
    }

    fn attributes(v: &Value) -> Result<Vec<KeyValue>, String> {
        list(v, "attributes", "attributes")?
            .iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: field(kv, "key", "key")
                        .and_then(Value::as_str)
                        .ok_or("an attribute without a key")?
                        .to_owned(),
                    value: field(kv, "value", "value").map(any),
                })
            })
            .collect()
    }

    fn any(v: &Value) -> AnyValue {
        let get = |camel: &str, snake: &str| field(v, camel, snake);
        let value = if let Some(s) = get("stringValue", "string_value").and_then(Value::as_str) {
            Some(Any::String(s.to_owned()))
        } else if let Some(b) = get("boolValue", "bool_value").and_then(Value::as_bool) {
            Some(Any::Bool(b))
        } else if let Some(i) = get("intValue", "int_value") {
            match i {
                Value::String(s) => s.parse().ok().map(Any::Int),
                other => other.as_i64().map(Any::Int),
            }
        } else if let Some(d) = get("doubleValue", "double_value").and_then(Value::as_f64) {
            Some(Any::Double(d))
        } else if let Some(Value::Array(values)) =
            get("arrayValue", "array_value").and_then(|a| a.get("values"))
        {
            Some(Any::Array(ArrayValue {
                values: values.iter().map(any).collect(),
            }))
        } else {
            match v {
                // Lenient: a bare string or number where an AnyValue belongs.
                Value::String(s) => Some(Any::String(s.clone())),
                Value::Number(n) => n.as_i64().map(Any::Int),
                _ => None,
            }
        };
        AnyValue { value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notifyscope_model::trace::{Source, Trace, TraceKind};

    fn receiver() -> (Receiver, notifyscope_model::trace::TraceReceiver) {
        let trace = Trace::new();
        let rx = trace.subscribe();
        (
            Receiver {
                reporter: Reporter::new(&trace, Source::Otlp, "events"),
            },
            rx,
        )
    }

    fn post(path: &str, content_type: &str, body: impl Into<hyper::body::Bytes>) -> Request {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_str(content_type).expect("a header"),
        );
        Request {
            method: Method::POST,
            path: path.to_owned(),
            headers,
            body: body.into(),
        }
    }

    fn events(
        rx: &mut notifyscope_model::trace::TraceReceiver,
    ) -> Vec<(String, Option<u64>, TraceKind)> {
        let mut out = Vec::new();
        while let Some(e) = rx.try_recv() {
            out.push((
                e.kind.name().to_owned(),
                e.message_id.map(|m| m.0),
                e.kind.clone(),
            ));
        }
        out.into_iter()
            .filter(|(n, _, _)| n != "bot_source_read")
            .collect()
    }

    #[test]
    fn json_spans_map_to_stages_by_attribute_and_by_convention() {
        let (receiver, mut rx) = receiver();
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
          {"name":"on_message","startTimeUnixNano":"1","endTimeUnixNano":"2",
           "attributes":[{"key":"messaging.message.id","value":{"stringValue":"501"}},
                         {"key":"notifyscope.stage","value":{"stringValue":"skipped"}},
                         {"key":"notifyscope.skip_reason","value":{"stringValue":"author is a bot"}}]},
          {"name":"publish","attributes":[{"key":"messaging.message.id","value":{"intValue":"502"}},
                         {"key":"messaging.operation.type","value":{"stringValue":"publish"}}]},
          {"name":"publish","status":{"code":2,"message":"boom"},
           "attributes":[{"key":"messaging.message.id","value":{"stringValue":"503"}}],
           "events":[{"name":"exception","attributes":[
              {"key":"exception.type","value":{"stringValue":"asyncpg.exceptions.ConnectionDoesNotExistError"}},
              {"key":"exception.message","value":{"stringValue":"connection was closed in the middle of operation"}}]}]},
          {"name":"unrelated","attributes":[{"key":"db.system","value":{"stringValue":"postgresql"}}]}
        ]}]}]}"#;
        let answer = receiver.handle(post("/v1/traces", "application/json", body));
        assert_eq!(answer.status, StatusCode::OK);
        let got = events(&mut rx);
        let names: Vec<_> = got.iter().map(|(n, id, _)| (n.as_str(), *id)).collect();
        assert!(names.contains(&("skipped", Some(501))), "{names:?}");
        assert!(
            names.contains(&("publish_reported", Some(502))),
            "{names:?}"
        );
        let failed = got
            .iter()
            .find(|(n, _, _)| n == "publish_failed")
            .expect("a failure");
        let TraceKind::PublishFailed { error, source, .. } = &failed.2 else {
            unreachable!()
        };
        assert_eq!(
            error,
            "ConnectionDoesNotExistError: connection was closed in the middle of operation"
        );
        assert_eq!(*source, Source::Otlp);
        assert_eq!(got.len(), 3, "{names:?}");
    }

    #[test]
    fn protobuf_log_records_with_an_error_severity_fail_the_publish() {
        let (receiver, mut rx) = receiver();
        let kv = |key: &str, value: proto::Any| proto::KeyValue {
            key: key.into(),
            value: Some(proto::AnyValue { value: Some(value) }),
        };
        let request = proto::LogsRequest {
            resource_logs: vec![proto::ResourceLogs {
                scope_logs: vec![proto::ScopeLogs {
                    log_records: vec![proto::LogRecord {
                        severity_number: 17,
                        body: Some(proto::AnyValue {
                            value: Some(proto::Any::String("publish failed".into())),
                        }),
                        attributes: vec![kv("messaging.message.id", proto::Any::Int(777))],
                        ..Default::default()
                    }],
                }],
            }],
        };
        let answer = receiver.handle(post("/v1/logs", PROTOBUF, request.encode_to_vec()));
        assert_eq!(answer.status, StatusCode::OK);
        let got = events(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, Some(777));
        assert!(
            matches!(&got[0].2, TraceKind::PublishFailed { error, .. } if error == "publish failed")
        );
    }

    #[test]
    fn bad_input_is_answered_with_400_and_counted() {
        let (receiver, mut rx) = receiver();
        for (content_type, body) in [
            (PROTOBUF, b"\xff\xff\xff\xff\x0f garbage".to_vec()),
            (
                "application/json",
                br#"{"resourceSpans":[{"scopeSpans":"#.to_vec(),
            ),
            ("application/json", br#"{"resourceSpans":7}"#.to_vec()),
        ] {
            let answer = receiver.handle(post("/v1/traces", content_type, body));
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        }
        let answer = receiver.handle(post("/v2/nothing", PROTOBUF, Vec::new()));
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let mut last = None;
        while let Some(e) = rx.try_recv() {
            if let TraceKind::BotSourceRead { not_understood, .. } = e.kind {
                last = Some(not_understood);
            }
        }
        assert_eq!(last, Some(1), "counted, at most once a second on the trace");
    }
}
