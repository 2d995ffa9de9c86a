//! Recordings: trace events as JSON lines, written while running (`--record`, through
//! [`writer`]) or at once (the `s` key, [`save`]), and read back by `notifyscope replay`
//! ([`load`]). Every JSON line of a trace event is written by [`writer`].

pub mod writer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notifyscope_model::trace::TraceEvent;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path}:{line}: not a trace event: {error}")]
    Damaged {
        path: String,
        line: usize,
        error: String,
    },
    #[error("{path} holds no trace events")]
    Empty { path: String },
}

/// Every event of a recording, in file order; the first damaged line is an error naming it.
pub fn load(path: &Path) -> Result<Vec<TraceEvent>, RecordingError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RecordingError::Read {
        path: name.clone(),
        error: e.to_string(),
    })?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(line).map_err(|e| RecordingError::Damaged {
            path: name.clone(),
            line: i + 1,
            error: e.to_string(),
        })?;
        events.push(event);
    }
    if events.is_empty() {
        return Err(RecordingError::Empty { path: name });
    }
    Ok(events)
}

/// Writes `events` as a recording in the working directory, named by the time; returns its
/// path.
pub fn save(events: &[Arc<TraceEvent>]) -> std::io::Result<PathBuf> {
    let name = format!(
        "notifyscope-session-{}.jsonl",
        chrono::Local::now().format("%Y%m%d-%H%M%S")
    );
    let path = PathBuf::from(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for e in events {
        writer::write_one(&mut out, e, true)?;
    }
    out.flush()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_lines_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            "{\"at\":\"2026-11-27T10:00:00Z\",\"stage\":\"lagged\",\"missed\":1}\n\n{\"at\":1}\n",
        )
        .expect("write");
        let err = load(&path).expect_err("damaged");
        assert!(
            err.to_string().contains("r.jsonl:3: not a trace event"),
            "{err}"
        );
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(load(&path), Err(RecordingError::Empty { .. })));
    }
}
