//! Where a message came from: every trace event that carries a message names its source, so
//! that the panes, the diagnosis and the recordings tell our bot's messages from simulated
//! ones, control requests, and what a foreign bot's log or OpenTelemetry reported.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The origin of a message on the trace.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Discord gateway: a real message delivered to a bot session.
    #[default]
    Gateway,
    /// The simulated source: test keys, `send`, demo traffic and the benchmark.
    Simulated,
    /// A `send --via-bot` request carried out by a running instance's bot path.
    Control,
    /// A line of a foreign bot's own log (`watch --bot-log`).
    BotLog,
    /// A span or log record a foreign bot sent over OpenTelemetry (`watch --otlp`).
    Otlp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Gateway => "gateway",
            Source::Simulated => "simulated",
            Source::Control => "control",
            Source::BotLog => "bot_log",
            Source::Otlp => "otlp",
        }
    }

    /// Made by notifyscope rather than sent by a person on Discord (the `synthetic` flag of
    /// the payload contract and of `discord_messages`).
    pub fn is_synthetic(self) -> bool {
        matches!(self, Source::Simulated | Source::Control)
    }

    /// The source a message record implies when nobody said: its contract flag.
    pub fn of_synthetic(synthetic: bool) -> Self {
        if synthetic {
            Source::Simulated
        } else {
            Source::Gateway
        }
    }

    /// The short mark of a pane row; none for the gateway, the usual case.
    pub fn mark(self) -> &'static str {
        match self {
            Source::Gateway => "",
            Source::Simulated => " sim",
            Source::Control => " ctl",
            Source::BotLog => " log",
            Source::Otlp => " otlp",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `source` on the wire, with the `synthetic` flag of the JSON lines before sources beside
/// it: readers of `--headless --json` keep their field, and recordings made before sources
/// existed read back with the source their flag implies.
pub(crate) mod wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Source;

    #[derive(Serialize, Deserialize)]
    struct Wire {
        #[serde(default)]
        source: Option<Source>,
        #[serde(default)]
        synthetic: bool,
    }

    pub fn serialize<S: Serializer>(source: &Source, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            source: Some(*source),
            synthetic: source.is_synthetic(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        let wire = Wire::deserialize(d)?;
        Ok(wire
            .source
            .unwrap_or_else(|| Source::of_synthetic(wire.synthetic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SkipReason, TraceEvent};

    fn received(json_tail: &str) -> TraceEvent {
        let line = format!(
            "{{\"at\":\"2026-12-01T10:00:00Z\",\"message_id\":\"7\",\"stage\":\"received\",\
             \"channel_id\":\"2\",\"guild_id\":null,\"author_id\":\"3\",\"author_name\":\"a\",\
             \"content_bytes\":1{json_tail}}}"
        );
        serde_json::from_str(&line).expect("a received event")
    }

    fn source_of(event: &TraceEvent) -> Source {
        match event.kind {
            crate::trace::TraceKind::Received { source, .. } => source,
            _ => panic!("not received"),
        }
    }

    #[test]
    fn received_names_its_source_and_keeps_the_synthetic_flag() {
        let event = received(",\"source\":\"control\",\"synthetic\":true");
        assert_eq!(source_of(&event), Source::Control);
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).expect("valid JSON");
        assert_eq!(json["source"], "control");
        assert_eq!(json["synthetic"], true);
        let gateway = received(",\"source\":\"gateway\"");
        let json: serde_json::Value = serde_json::from_str(&gateway.to_json()).expect("valid JSON");
        assert_eq!(json["synthetic"], false);
    }

    #[test]
    fn recordings_from_before_sources_read_back_by_their_flag() {
        assert_eq!(
            source_of(&received(",\"synthetic\":true")),
            Source::Simulated
        );
        assert_eq!(
            source_of(&received(",\"synthetic\":false")),
            Source::Gateway
        );
    }

    #[test]
    fn skip_reasons_are_ours_by_name_and_theirs_as_written() {
        assert_eq!(SkipReason::named("own_message"), SkipReason::OwnMessage);
        let theirs = SkipReason::named("author is a bot (custom filter)");
        assert_eq!(
            theirs,
            SkipReason::Theirs("author is a bot (custom filter)".into())
        );
        assert_eq!(theirs.rule_name(), None);
        for reason in SkipReason::ALL.into_iter().chain([theirs]) {
            let json = serde_json::to_string(&reason).expect("serialized");
            let back: SkipReason = serde_json::from_str(&json).expect("read back");
            assert_eq!(back, reason, "{json}");
        }
    }
}
