//! Validated PostgreSQL identifiers: the NOTIFY channel and the schema.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("{what} name is empty")]
    Empty { what: &'static str },
    #[error("{what} name {name:?} is longer than PostgreSQL's 63-byte identifier limit")]
    TooLong { what: &'static str, name: String },
    #[error(
        "{what} name {name:?} is not a plain identifier: use letters, digits, `_` or `$`, \
         not starting with a digit"
    )]
    Invalid { what: &'static str, name: String },
}

/// A validated PostgreSQL identifier (a NOTIFY channel or a schema).
///
/// `LISTEN Events` folds to `events` while `pg_notify('Events', ..)` does not. notifyscope
/// keeps the name exactly as given and always quotes it, so `Events` and `events` are two
/// different channels on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier(String);

impl Identifier {
    pub fn new(what: &'static str, name: &str) -> Result<Self, IdentifierError> {
        if name.is_empty() {
            return Err(IdentifierError::Empty { what });
        }
        if name.len() > 63 {
            return Err(IdentifierError::TooLong {
                what,
                name: name.to_owned(),
            });
        }
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if !first_ok || !rest_ok {
            return Err(IdentifierError::Invalid {
                what,
                name: name.to_owned(),
            });
        }
        Ok(Identifier(name.to_owned()))
    }

    pub fn channel(name: &str) -> Result<Self, IdentifierError> {
        Self::new("channel", name)
    }

    pub fn schema(name: &str) -> Result<Self, IdentifierError> {
        Self::new("schema", name)
    }

    /// A name fixed in this program and known to be valid.
    pub fn fixed(name: &'static str) -> Self {
        debug_assert!(Identifier::new("fixed", name).is_ok());
        Identifier(name.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier quoted for SQL text; validation leaves nothing to escape.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
