//! The `/` search over every pane: a case-insensitive substring, or a regex after `re:`.
//! (The pipeline's skip rules are `pipeline::filter`; this only chooses rows to show.)

use regex::Regex;

use notifyscope_model::present::detail_text;
use notifyscope_model::trace::TraceEvent;

/// What `/` typed, compiled.
#[derive(Debug, Clone)]
pub struct Search {
    pub text: String,
    regex: Option<Regex>,
    lower: String,
}

impl Search {
    pub fn new(text: &str) -> Result<Self, regex::Error> {
        let regex = match text.strip_prefix("re:") {
            Some(pattern) => Some(Regex::new(pattern)?),
            None => None,
        };
        Ok(Search {
            text: text.to_owned(),
            regex,
            lower: text.to_lowercase(),
        })
    }

    pub fn matches(&self, event: &TraceEvent) -> bool {
        let text = searchable(event);
        match &self.regex {
            Some(re) => re.is_match(&text),
            None => text.to_lowercase().contains(&self.lower),
        }
    }
}

/// What the search looks at: full message id, stage and its details.
fn searchable(event: &TraceEvent) -> String {
    let id = event.message_id.map(|i| i.to_string()).unwrap_or_default();
    format!("{id} {} {}", event.kind.name(), detail_text(event))
}
