//! The payload contract (version 1) shared by the publisher, the listener and ingestion.
//!
//! Incoming NOTIFY payloads come from anyone who can reach the database, so parsing walks a
//! `serde_json::Value` by hand: every way a payload can be wrong maps to one [`ContractError`]
//! variant that names the field, instead of a generic deserializer message.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The only envelope version this build understands.
pub const CONTRACT_VERSION: u64 = 1;

/// PostgreSQL rejects NOTIFY payloads of 8000 bytes or more; anything larger travels by
/// reference to its outbox row.
pub const NOTIFY_PAYLOAD_LIMIT: usize = 7999;

/// Upper bound for a whole event (Discord caps content at 4000 characters; this leaves room
/// for multi-byte text and metadata while refusing absurd input).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A Discord id: a string of digits in JSON, a BIGINT in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(pub u64);

impl Snowflake {
    /// The value stored in BIGINT columns; validation guarantees it fits.
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    pub fn from_i64(v: i64) -> Option<Self> {
        u64::try_from(v).ok().map(Snowflake)
    }

    /// Parses a snowflake as Discord writes it: decimal digits, fitting a BIGINT.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u64 = s.parse().ok()?;
        (v > 0 && v <= i64::MAX as u64).then_some(Snowflake(v))
    }

    /// The creation time encoded in the id.
    pub fn timestamp(self) -> Option<DateTime<Utc>> {
        let ms = (self.0 >> 22) + DISCORD_EPOCH_MS;
        DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Snowflake {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Snowflake::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad snowflake {s:?}")))
    }
}

/// Known `event_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "discord.message_created")]
    MessageCreated,
    /// A listener's own round-trip probe; every consumer ignores other listeners' probes.
    #[serde(rename = "notifyscope.probe")]
    Probe,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageCreated => "discord.message_created",
            EventType::Probe => "notifyscope.probe",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "discord.message_created" => Some(EventType::MessageCreated),
            "notifyscope.probe" => Some(EventType::Probe),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payload does not satisfy the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload is not a JSON object")]
    NotObject,
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` has the wrong type: expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}` is not a valid snowflake: {value:?}")]
    BadSnowflake { field: &'static str, value: String },
    #[error("field `{field}` is not a valid {what}: {value:?}")]
    BadValue {
        field: &'static str,
        what: &'static str,
        value: String,
    },
    #[error("unknown event_type {0:?}")]
    UnknownEventType(String),
    #[error("unsupported contract version {0} (this build understands {CONTRACT_VERSION})")]
    UnsupportedVersion(String),
    #[error("payload is {bytes} bytes, over the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("field `{0}` contains a NUL character, which PostgreSQL text cannot store")]
    NulCharacter(&'static str),
}

/// The Discord message as carried by the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub message_id: Snowflake,
    pub channel_id: Snowflake,
    pub guild_id: Option<Snowflake>,
    pub author_id: Snowflake,
    pub author_name: String,
    pub author_is_bot: bool,
    pub content: String,
    #[serde(with = "millis")]
    pub created_at: DateTime<Utc>,
    /// Made by notifyscope (keys, `send`, demo traffic), not by Discord.
    #[serde(default, skip_serializing_if = "is_false")]
    pub synthetic: bool,
}

impl MessageRecord {
    /// Checks what the database needs beyond the JSON shape, and that the event will pass
    /// the size check when ingestion reads it back.
    pub fn validate(&self) -> Result<(), ContractError> {
        // The envelope around the text, and jsonb's wider rendering, take well under 4 KiB.
        let bytes = self.content.len() + self.author_name.len();
        if bytes > MAX_EVENT_BYTES - 4096 {
            return Err(ContractError::TooLarge {
                bytes,
                limit: MAX_EVENT_BYTES - 4096,
            });
        }
        if self.author_name.contains('\0') {
            return Err(ContractError::NulCharacter("message.author_name"));
        }
        if self.content.contains('\0') {
            return Err(ContractError::NulCharacter("message.content"));
        }
        Ok(())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// RFC 3339 with millisecond precision and a `Z`, as in the contract's examples.
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The full v1 envelope of a `discord.message_created` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u64,
    pub event_type: EventType,
    pub event_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
    #[serde(with = "millis")]
    pub published_at: DateTime<Utc>,
    pub message: MessageRecord,
}

impl Envelope {
    pub fn new(message: MessageRecord) -> Self {
        Envelope {
            v: CONTRACT_VERSION,
            event_type: EventType::MessageCreated,
            event_id: Uuid::new_v4(),
            outbox_id: None,
            published_at: Utc::now(),
            message,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates a stored or received envelope.
    pub fn from_json(payload: &str) -> Result<Self, ContractError> {
        match parse_notify(payload)? {
            NotifyPayload::Message(env) => Ok(*env),
            NotifyPayload::Reference { .. } => Err(ContractError::BadValue {
                field: "ref",
                what: "full envelope (a reference was given)",
                value: "true".into(),
            }),
            NotifyPayload::Probe { .. } => Err(ContractError::BadValue {
                field: "event_type",
                what: "message event",
                value: EventType::Probe.as_str().into(),
            }),
        }
    }
}

/// The small form sent instead of an envelope that would not fit in a NOTIFY.
pub fn reference_payload(outbox_id: i64, event_type: EventType, message_id: Snowflake) -> String {
    reference(outbox_id, event_type, Some(message_id))
}

/// A reference to an outbox row that only wakes ingestion, for rows put back in the queue:
/// a row given up may carry no message id, and ingestion claims every due row anyway.
pub fn wake_up_payload(outbox_id: i64) -> String {
    reference(outbox_id, EventType::MessageCreated, None)
}

fn reference(outbox_id: i64, event_type: EventType, message_id: Option<Snowflake>) -> String {
    let mut payload = serde_json::json!({
        "v": CONTRACT_VERSION,
        "event_type": event_type.as_str(),
        "outbox_id": outbox_id,
        "ref": true,
    });
    if let (Some(id), Some(fields)) = (message_id, payload.as_object_mut()) {
        fields.insert("message_id".into(), Value::String(id.to_string()));
    }
    payload.to_string()
}

/// The probe a listener sends to itself after LISTEN.
pub fn probe_payload(probe_id: Uuid) -> String {
    serde_json::json!({
        "v": CONTRACT_VERSION,
        "event_type": EventType::Probe.as_str(),
        "probe_id": probe_id.to_string(),
        "at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    })
    .to_string()
}

/// What a NOTIFY on the event channel can validly carry.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyPayload {
    Message(Box<Envelope>),
    Reference {
        outbox_id: i64,
        event_type: EventType,
        message_id: Option<Snowflake>,
    },
    Probe {
        probe_id: Uuid,
    },
}

impl NotifyPayload {
    pub fn message_id(&self) -> Option<Snowflake> {
        match self {
            NotifyPayload::Message(env) => Some(env.message.message_id),
            NotifyPayload::Reference { message_id, .. } => *message_id,
            NotifyPayload::Probe { .. } => None,
        }
    }

    pub fn outbox_id(&self) -> Option<i64> {
        match self {
            NotifyPayload::Message(env) => env.outbox_id,
            NotifyPayload::Reference { outbox_id, .. } => Some(*outbox_id),
            NotifyPayload::Probe { .. } => None,
        }
    }
}

/// Validates a payload against the v1 contract.
pub fn parse_notify(payload: &str) -> Result<NotifyPayload, ContractError> {
    if payload.len() > MAX_EVENT_BYTES {
        return Err(ContractError::TooLarge {
            bytes: payload.len(),
            limit: MAX_EVENT_BYTES,
        });
    }
    let value: Value =
        serde_json::from_str(payload).map_err(|e| ContractError::NotJson(e.to_string()))?;
    let obj = value.as_object().ok_or(ContractError::NotObject)?;

    let version = obj.get("v").ok_or(ContractError::MissingField("v"))?;
    if version.as_u64() != Some(CONTRACT_VERSION) {
        return Err(ContractError::UnsupportedVersion(version.to_string()));
    }
    let event_type_text = str_field(obj, "event_type", "event_type")?;
    let event_type = EventType::parse(event_type_text)
        .ok_or_else(|| ContractError::UnknownEventType(event_type_text.to_owned()))?;

    if event_type == EventType::Probe {
        let probe_id = uuid_field(obj, "probe_id", "probe_id")?;
        return Ok(NotifyPayload::Probe { probe_id });
    }

    if obj.get("ref").and_then(Value::as_bool) == Some(true) {
        let outbox_id = obj
            .get("outbox_id")
            .ok_or(ContractError::MissingField("outbox_id"))?
            .as_i64()
            .filter(|id| *id > 0)
            .ok_or(ContractError::WrongType {
                field: "outbox_id",
                expected: "positive integer",
            })?;
        let message_id = match obj.get("message_id") {
            None | Some(Value::Null) => None,
            Some(_) => Some(snowflake_field(obj, "message_id", "message_id")?),
        };
        return Ok(NotifyPayload::Reference {
            outbox_id,
            event_type,
            message_id,
        });
    }

    let event_id = uuid_field(obj, "event_id", "event_id")?;
    let outbox_id = match obj.get("outbox_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|id| *id > 0)
                .ok_or(ContractError::WrongType {
                    field: "outbox_id",
                    expected: "positive integer",
                })?,
        ),
    };
    let published_at = time_field(obj, "published_at", "published_at")?;
    let message = typed_field(obj, "message", "message", "object", Value::as_object)?;
    let message = parse_message(message)?;
    Ok(NotifyPayload::Message(Box::new(Envelope {
        v: CONTRACT_VERSION,
        event_type,
        event_id,
        outbox_id,
        published_at,
        message,
    })))
}

fn parse_message(m: &Map<String, Value>) -> Result<MessageRecord, ContractError> {
    let guild_id = match m.get("guild_id") {
        None => return Err(ContractError::MissingField("message.guild_id")),
        Some(Value::Null) => None,
        Some(_) => Some(snowflake_field(m, "guild_id", "message.guild_id")?),
    };
    let author_is_bot = typed_field(
        m,
        "author_is_bot",
        "message.author_is_bot",
        "boolean",
        Value::as_bool,
    )?;
    let synthetic = match m.get("synthetic") {
        None | Some(Value::Null) => false,
        Some(v) => v.as_bool().ok_or(ContractError::WrongType {
            field: "message.synthetic",
            expected: "boolean",
        })?,
    };
    let record = MessageRecord {
        message_id: snowflake_field(m, "message_id", "message.message_id")?,
        channel_id: snowflake_field(m, "channel_id", "message.channel_id")?,
        guild_id,
        author_id: snowflake_field(m, "author_id", "message.author_id")?,
        author_name: str_field(m, "author_name", "message.author_name")?.to_owned(),
        author_is_bot,
        content: str_field(m, "content", "message.content")?.to_owned(),
        created_at: time_field(m, "created_at", "message.created_at")?,
        synthetic,
    };
    record.validate()?;
    Ok(record)
}

/// `obj[key]` read by `get`; `field` (its path) names it in errors, `expected` its type.
fn typed_field<'a, T>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
    expected: &'static str,
    get: impl FnOnce(&'a Value) -> Option<T>,
) -> Result<T, ContractError> {
    let value = obj.get(key).ok_or(ContractError::MissingField(field))?;
    get(value).ok_or(ContractError::WrongType { field, expected })
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a str, ContractError> {
    typed_field(obj, key, field, "string", Value::as_str)
}

fn snowflake_field(
    obj: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Snowflake, ContractError> {
    let value = obj.get(key).ok_or(ContractError::MissingField(field))?;
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    value
        .as_str()
        .and_then(Snowflake::parse)
        .ok_or(ContractError::BadSnowflake { field, value: text })
}

fn uuid_field(
    obj: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Uuid, ContractError> {
    let text = str_field(obj, key, field)?;
    Uuid::parse_str(text).map_err(|_| ContractError::BadValue {
        field,
        what: "UUID",
        value: text.to_owned(),
    })
}

fn time_field(
    obj: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<DateTime<Utc>, ContractError> {
    let text = str_field(obj, key, field)?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ContractError::BadValue {
            field,
            what: "RFC 3339 timestamp",
            value: text.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MessageRecord {
        MessageRecord {
            message_id: Snowflake(1_199_000_000_000_000_001),
            channel_id: Snowflake(42),
            guild_id: Some(Snowflake(7)),
            author_id: Snowflake(99),
            author_name: "ada".into(),
            author_is_bot: false,
            content: "héllo ✓".into(),
            created_at: Utc::now(),
            synthetic: false,
        }
    }

    fn tweak(f: impl FnOnce(&mut Map<String, Value>)) -> Result<NotifyPayload, ContractError> {
        let mut v = serde_json::to_value(Envelope::new(record())).expect("serializes");
        f(v.as_object_mut().expect("object"));
        parse_notify(&v.to_string())
    }

    #[test]
    fn envelope_round_trips() {
        let mut env = Envelope::new(record());
        env.outbox_id = Some(5);
        let text = env.to_json();
        assert!(text.starts_with(r#"{"v":1,"event_type":"discord.message_created""#));
        assert!(text.contains(r#""message_id":"1199000000000000001""#));
        let back = Envelope::from_json(&text).expect("valid");
        // Timestamps are carried at millisecond precision.
        assert_eq!(back.event_id, env.event_id);
        assert_eq!(back.message.content, env.message.content);
        assert_eq!(back.outbox_id, Some(5));
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(
            parse_notify("garbage"),
            Err(ContractError::NotJson(_))
        ));
        assert_eq!(parse_notify("[1]"), Err(ContractError::NotObject));
        assert_eq!(
            tweak(|o| {
                o.remove("v");
            }),
            Err(ContractError::MissingField("v"))
        );
        assert_eq!(
            tweak(|o| {
                o.insert("v".into(), 2.into());
            }),
            Err(ContractError::UnsupportedVersion("2".into()))
        );
        assert_eq!(
            tweak(|o| {
                o.insert("event_type".into(), "discord.message_deleted".into());
            }),
            Err(ContractError::UnknownEventType(
                "discord.message_deleted".into()
            ))
        );
        assert_eq!(
            tweak(|o| {
                o["message"]
                    .as_object_mut()
                    .expect("object")
                    .remove("channel_id");
            }),
            Err(ContractError::MissingField("message.channel_id"))
        );
        assert_eq!(
            tweak(|o| {
                o["message"]["author_id"] = "12a".into();
            }),
            Err(ContractError::BadSnowflake {
                field: "message.author_id",
                value: "12a".into()
            })
        );
        assert_eq!(
            tweak(|o| {
                o["message"]["message_id"] = 123.into();
            }),
            Err(ContractError::BadSnowflake {
                field: "message.message_id",
                value: "123".into()
            })
        );
        assert_eq!(
            tweak(|o| {
                o["message"]["content"] = "a\u{0}b".into();
            }),
            Err(ContractError::NulCharacter("message.content"))
        );
        let big = "x".repeat(MAX_EVENT_BYTES + 1);
        assert!(matches!(
            parse_notify(&big),
            Err(ContractError::TooLarge { .. })
        ));
    }

    #[test]
    fn snowflakes_fit_bigint() {
        assert_eq!(
            Snowflake::parse("9223372036854775807"),
            Some(Snowflake(i64::MAX as u64))
        );
        assert_eq!(Snowflake::parse("9223372036854775808"), None);
        assert_eq!(Snowflake::parse("0"), None);
        assert_eq!(Snowflake::parse("-1"), None);
        assert_eq!(Snowflake::parse(""), None);
    }

    #[test]
    fn reference_and_probe_parse() {
        let r = reference_payload(12, EventType::MessageCreated, Snowflake(5));
        assert_eq!(
            parse_notify(&r),
            Ok(NotifyPayload::Reference {
                outbox_id: 12,
                event_type: EventType::MessageCreated,
                message_id: Some(Snowflake(5))
            })
        );
        assert_eq!(
            parse_notify(&wake_up_payload(7)),
            Ok(NotifyPayload::Reference {
                outbox_id: 7,
                event_type: EventType::MessageCreated,
                message_id: None
            })
        );
        let id = Uuid::new_v4();
        assert_eq!(
            parse_notify(&probe_payload(id)),
            Ok(NotifyPayload::Probe { probe_id: id })
        );
    }
}
