//! Recordings: trace events as JSON lines, written while running (`--record`, `s`) and read
//! back by `notifyscope replay`.

use std::path::Path;

use crate::trace::TraceEvent;

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
