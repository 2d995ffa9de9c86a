//! `--bot-log PATH|-`: their bot's log, followed as it is written. A file is followed like
//! `tail -F` from its end (a file that appears later, from its start), through rotation (a
//! new file at the path: the old one is read to its end first) and truncation (read again
//! from the start); `-` is standard input, for `journalctl -f` or `docker logs -f`. Lines
//! are read as bytes: a line that is not UTF-8 is read lossily, one over [`MAX_LINE`] is cut,
//! and neither stops the reading.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use std::io::Read;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Line, LogParser, Reporter};

/// Longest line read whole; the rest of a longer one is skipped, and what was kept is shown
/// as not understood.
pub const MAX_LINE: usize = 64 * 1024;

/// With no new bytes for this long, an exception being read is taken as complete.
const IDLE: Duration = Duration::from_millis(250);

/// How often a file at its end is looked at again, for new lines, rotation and truncation.
const POLL: Duration = Duration::from_millis(100);

/// Where their bot's log comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum LogInput {
    Stdin,
    File(PathBuf),
}

impl LogInput {
    /// `-` is standard input, anything else a path.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" {
            LogInput::Stdin
        } else {
            LogInput::File(PathBuf::from(arg))
        }
    }
}

impl std::fmt::Display for LogInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogInput::Stdin => f.write_str("standard input"),
            LogInput::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Follows `input` until `stop`.
pub fn spawn(input: LogInput, reporter: Reporter, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = Reader::new(reporter);
        match input {
            LogInput::Stdin => {
                reader.reporter.trace_counts(true);
                follow_stream(stdin_chunks(), &mut reader, &stop).await
            }
            LogInput::File(path) => follow_file(&path, &mut reader, &stop).await,
        }
        reader.idle();
        reader.reporter.trace_counts(true);
    })
}

/// Bytes into lines into reports.
struct Reader {
    reporter: Reporter,
    parser: LogParser,
    partial: Vec<u8>,
    /// Inside a line over [`MAX_LINE`]: its rest is skipped up to its end.
    skipping: bool,
}

impl Reader {
    fn new(reporter: Reporter) -> Self {
        Reader {
            reporter,
            parser: LogParser::default(),
            partial: Vec::new(),
            skipping: false,
        }
    }

    fn bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|b| *b == b'\n');
            let (chunk, rest) = match end {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            if !self.skipping {
                let room = MAX_LINE - self.partial.len();
                self.partial
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    let kept = std::mem::take(&mut self.partial);
                    self.reporter.not_understood(&format!(
                        "{} … (a line over {MAX_LINE} bytes, cut)",
                        String::from_utf8_lossy(&kept)
                    ));
                    self.skipping = true;
                }
            }
            if end.is_some() {
                if self.skipping {
                    self.skipping = false;
                } else {
                    let line = std::mem::take(&mut self.partial);
                    self.line(&line);
                }
            }
            bytes = rest;
        }
    }

    fn line(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        match self.parser.line(&text) {
            Line::Understood => self.reporter.understood(1),
            Line::NotUnderstood => {
                self.reporter.not_understood(&printable(&text));
            }
        }
        self.report(false);
    }

    fn report(&mut self, flush: bool) {
        let reports = if flush {
            self.parser.flush()
        } else {
            self.parser.take()
        };
        for report in reports {
            self.reporter.report(report, Utc::now());
        }
    }

    /// Nothing new came for a while: what is pending is complete.
    fn idle(&mut self) {
        self.report(true);
        self.reporter.trace_counts(false);
    }

    /// The file ended (rotated away): its last line, even without a line end.
    fn end_of_file(&mut self) {
        if !self.partial.is_empty() && !self.skipping {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.partial.clear();
        self.skipping = false;
        self.idle();
    }
}

/// Control characters as U+FFFD, so that binary garbage cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Standard input, read on a thread of its own: a read blocked on a quiet pipe would keep
/// the async runtime from shutting down, and this thread ends with the process. An empty
/// chunk is the end of the input.
fn stdin_chunks() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("bot-log-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let chunk = match stdin.read(&mut buf) {
                    Ok(n) => Ok(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let last = !matches!(&chunk, Ok(c) if !c.is_empty());
                if tx.blocking_send(chunk).is_err() || last {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start reading standard input");
    }
    rx
}

async fn follow_stream(
    mut chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    reader: &mut Reader,
    stop: &CancellationToken,
) {
    loop {
        tokio::select! {
            chunk = chunks.recv() => match chunk {
                Some(Ok(bytes)) if !bytes.is_empty() => reader.bytes(&bytes),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading their bot's log from standard input failed");
                    reader.end_of_file();
                    return;
                }
                _ => {
                    tracing::info!("their bot's log on standard input ended");
                    reader.end_of_file();
                    return;
                }
            },
            () = tokio::time::sleep(IDLE) => reader.idle(),
            () = stop.cancelled() => return,
        }
    }
}

/// The identity of a file: a new one at the same path is a rotation.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

async fn follow_file(path: &Path, reader: &mut Reader, stop: &CancellationToken) {
    let mut buf = vec![0u8; 64 * 1024];
    // A file there at the start is followed from its end, as its past is not of this watch;
    // one that appears later is new and read whole.
    let mut from_end = true;
    let mut said_missing = false;
    'open: loop {
        let mut file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(e) => {
                if !said_missing {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        tracing::info!(path = %path.display(), "waiting for their bot's log to appear");
                    } else {
                        tracing::warn!(path = %path.display(), error = %e, "cannot open their bot's log; trying again");
                    }
                    said_missing = true;
                }
                from_end = false;
                tokio::select! {
                    () = tokio::time::sleep(POLL) => continue 'open,
                    () = stop.cancelled() => return,
                }
            }
        };
        said_missing = false;
        let Ok(opened) = file.metadata().await else {
            continue 'open;
        };
        let opened = identity(&opened);
        let mut position = if from_end {
            file.seek(SeekFrom::End(0)).await.unwrap_or(0)
        } else {
            0
        };
        tracing::info!(path = %path.display(), "following their bot's log");
        // The counts say the source is open, from here on nothing written is missed.
        reader.reporter.trace_counts(true);
        from_end = false;
        let mut idle_since = tokio::time::Instant::now();
        let mut flushed = true;
        loop {
            match file.read(&mut buf).await {
                Ok(n) if n > 0 => {
                    position += n as u64;
                    reader.bytes(&buf[..n]);
                    idle_since = tokio::time::Instant::now();
                    flushed = false;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "reading their bot's log failed; opening it again");
                    reader.end_of_file();
                    continue 'open;
                }
            }
            if !flushed && idle_since.elapsed() >= IDLE {
                reader.idle();
                flushed = true;
            }
            // Counts held back by their once-a-second pace go out once the log is quiet.
            reader.reporter.trace_counts(false);
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = stop.cancelled() => return,
            }
            match tokio::fs::metadata(path).await {
                Ok(now) if identity(&now) != opened => {
                    // Rotated: what the old file got after our last read comes first.
                    drain(&mut file, &mut buf, reader).await;
                    reader.end_of_file();
                    tracing::info!(path = %path.display(), "their bot's log was rotated; following the new file");
                    continue 'open;
                }
                Ok(now) if now.len() < position => {
                    tracing::info!(path = %path.display(), "their bot's log was truncated; reading it from the start");
                    reader.end_of_file();
                    position = file.seek(SeekFrom::Start(0)).await.unwrap_or(0);
                }
                Ok(_) => {}
                Err(_) => {
                    // Moved away and not yet replaced: keep reading the old file meanwhile.
                }
            }
        }
    }
}

async fn drain(file: &mut tokio::fs::File, buf: &mut [u8], reader: &mut Reader) {
    while let Ok(n) = file.read(buf).await {
        if n == 0 {
            break;
        }
        reader.bytes(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notifyscope_model::trace::{Source, Trace, TraceEvent, TraceKind, TraceReceiver};
    use std::io::Write;
    use std::sync::Arc;

    async fn next(rx: &mut TraceReceiver, what: &str) -> Arc<TraceEvent> {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} in time"))
                .expect("the trace is open");
            if event.kind.name() == what {
                return event;
            }
        }
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("opened");
        file.write_all(text.as_bytes()).expect("written");
    }

    fn received(id: u64) -> String {
        format!("{{\"stage\":\"received\",\"message_id\":\"{id}\"}}\n")
    }

    #[tokio::test]
    async fn a_file_is_followed_through_truncation_and_rotation() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("bot.log");
        std::fs::write(&path, "").expect("created");
        let trace = Trace::new();
        let mut rx = trace.subscribe();
        let stop = CancellationToken::new();
        let task = spawn(
            LogInput::File(path.clone()),
            Reporter::new(&trace, Source::BotLog, "events"),
            stop.clone(),
        );
        next(&mut rx, "bot_source_read").await;
        append(&path, &received(1));
        assert_eq!(
            next(&mut rx, "received").await.message_id.map(|m| m.0),
            Some(1)
        );
        append(&path, &format!("\x00\x01\u{7f}binary\n{}", received(2)));
        assert_eq!(
            next(&mut rx, "received").await.message_id.map(|m| m.0),
            Some(2)
        );
        // Truncated, then written again.
        std::fs::write(&path, received(3)).expect("truncated");
        assert_eq!(
            next(&mut rx, "received").await.message_id.map(|m| m.0),
            Some(3)
        );
        // Rotated: the old file's last line, then the new file.
        let rotated = dir.path().join("bot.log.1");
        std::fs::rename(&path, &rotated).expect("rotated");
        append(&rotated, &received(4));
        append(&path, &received(5));
        assert_eq!(
            next(&mut rx, "received").await.message_id.map(|m| m.0),
            Some(4)
        );
        assert_eq!(
            next(&mut rx, "received").await.message_id.map(|m| m.0),
            Some(5)
        );
        let counts = loop {
            let event = next(&mut rx, "bot_source_read").await;
            if let TraceKind::BotSourceRead {
                not_understood,
                understood,
                ..
            } = event.kind
            {
                if understood >= 5 {
                    break not_understood;
                }
            }
        };
        assert_eq!(counts, 1, "the binary line");
        stop.cancel();
        task.await.expect("stopped");
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_cut_and_the_next_line_read() {
        let trace = Trace::new();
        let mut rx = trace.subscribe();
        let mut reader = Reader::new(Reporter::new(&trace, Source::BotLog, "events"));
        let huge = format!(
            "{{\"stage\":\"received\",\"message_id\":\"8\",\"pad\":\"{}\"}}\n",
            "x".repeat(1 << 20)
        );
        for chunk in huge.as_bytes().chunks(4096) {
            reader.bytes(chunk);
        }
        reader.bytes(received(9).as_bytes());
        reader.reporter.trace_counts(true);
        assert_eq!(
            next(&mut rx, "received").await.message_id.map(|m| m.0),
            Some(9)
        );
        let TraceKind::BotSourceRead {
            understood,
            not_understood,
            ..
        } = next(&mut rx, "bot_source_read").await.kind.clone()
        else {
            unreachable!()
        };
        assert_eq!((understood, not_understood), (1, 1));
    }
}
