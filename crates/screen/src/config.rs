//! The config file (`~/.config/notifyscope/config.toml` or `--config PATH`): key bindings and
//! the theme. Only reading and parsing live here; what the keys mean is in [`super::keys`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
}

/// The config file: `[keys]` (action name → list of keys) and the theme.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub keys: HashMap<String, Vec<String>>,
    /// Theme name or path, as `--theme`.
    pub theme: Option<String>,
}

/// The config file: `path` when given (it must exist), else
/// `$XDG_CONFIG_HOME/notifyscope/config.toml` (or `~/.config/…`) when that exists.
pub fn load(path: Option<&Path>) -> Result<ConfigFile, ConfigError> {
    let (path, must_exist) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok(ConfigFile::default()),
        },
    };
    if !must_exist && !path.exists() {
        return Ok(ConfigFile::default());
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: name.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: name,
        message: e.to_string(),
    })
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("notifyscope").join("config.toml"))
}
