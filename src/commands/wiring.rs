//! What the subcommands share: settings read before anything starts (among them which
//! pipeline to look at), the writers of trace output, the hand-over of diagnosis reports to
//! the screen, and waiting for a signal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{MetricsArgs, RecordArgs, ScreenArgs, SharedArgs};
use crate::commands::CannotRun;
use notifyscope_model::trace::{Trace, TraceReceiver};
use notifyscope_pipeline::metrics::{Exporter, MetricsError};
use notifyscope_pipeline::recording::writer;
use notifyscope_screen::app::AppEvent;
use notifyscope_screen::config;
use notifyscope_screen::effects::Outside;
use notifyscope_screen::event_loop::Attached;
use notifyscope_screen::keys::KeyMap;
use notifyscope_screen::theme;
use notifyscope_store::instance::{self, InstanceError, InstanceRecord};
use notifyscope_store::{error_chain, Database, Identifier, DEFAULT_CHANNEL, DEFAULT_SCHEMA};

/// The channel and schema of the command line (or their defaults), checked.
pub fn channel_and_schema(shared: &SharedArgs) -> anyhow::Result<(Identifier, Identifier)> {
    Ok((
        Identifier::channel(shared.channel())?,
        Identifier::schema(shared.schema())?,
    ))
}

/// The pipeline a command looks at: its channel and database, and the instance running it on
/// this machine when there is one (whose control secret `send --via-bot` needs).
pub struct TargetPipeline {
    pub channel: Identifier,
    /// Where the command connects: `--direct-database-url` when given, whose sessions last.
    pub database: Database,
    /// `--database-url` when a direct URL was given beside it (the pooler the pipeline's
    /// publishing and ingestion go through).
    pub pooled: Option<Database>,
    pub instance: Option<InstanceRecord>,
}

/// Why a command could not tell which pipeline to look at; it could not run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(
        "{command} needs --database-url (or DATABASE_URL){why}, or a running `notifyscope \
         run` on this machine: no running instance was found in {}",
        dir.display()
    )]
    NoInstance {
        command: String,
        why: String,
        dir: PathBuf,
    },
    #[error(
        "{} notifyscope instances are running (their files are in {}); say which with \
         --instance PID, or give --database-url:\n{}",
        running.len(),
        dir.display(),
        listing(running)
    )]
    Several {
        dir: PathBuf,
        running: Vec<InstanceRecord>,
    },
    #[error(
        "--instance {pid}: no running notifyscope has that pid (their files are in {}); {}",
        dir.display(),
        match running.as_slice() {
            [] => "none is running".to_owned(),
            running => format!("running:\n{}", listing(running)),
        }
    )]
    NoSuchInstance {
        pid: u32,
        dir: PathBuf,
        running: Vec<InstanceRecord>,
    },
    #[error("--instance and --database-url both say which pipeline to use: give one of them")]
    InstanceAndUrl,
    #[error(transparent)]
    RuntimeDir(#[from] InstanceError),
}

/// One indented line per instance.
fn listing(running: &[InstanceRecord]) -> String {
    running
        .iter()
        .map(|r| format!("  {}", r.describe()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pipeline `command` looks at: `--database-url` (with `--schema` and `--channel` or
/// their defaults), or else the running instance found in the runtime directory (the only
/// one, or the one `--instance` names; an explicit `--schema` or `--channel` still wins).
/// Without either, `why` ends the error that says so.
pub fn locate_pipeline(
    shared: &SharedArgs,
    command: &str,
    why: &str,
) -> anyhow::Result<TargetPipeline> {
    let channel = shared
        .channel
        .as_deref()
        .map(Identifier::channel)
        .transpose()?;
    let schema = shared
        .schema
        .as_deref()
        .map(Identifier::schema)
        .transpose()?;
    let instance = match (&shared.database_url, shared.instance) {
        (Some(_), Some(_)) => return Err(LocateError::InstanceAndUrl.into()),
        (Some(url), None) => {
            let channel = channel.unwrap_or_else(|| Identifier::fixed(DEFAULT_CHANNEL));
            let schema = schema.unwrap_or_else(|| Identifier::fixed(DEFAULT_SCHEMA));
            let database = Database::new(url, schema)?.with_deadline(shared.deadline());
            let (database, pooled) = match &shared.direct_database_url {
                Some(direct) => {
                    let pooled = database.with_direct(direct)?;
                    (pooled.direct().clone(), Some(pooled))
                }
                None => (database, None),
            };
            let instance = serving_instance(&database, &channel);
            return Ok(TargetPipeline {
                channel,
                database,
                pooled,
                instance,
            });
        }
        (None, pick) => chosen_instance(pick, command, why)?,
    };
    let channel = match channel {
        Some(channel) => channel,
        None => Identifier::channel(&instance.channel)?,
    };
    let schema = match schema {
        Some(schema) => schema,
        None => Identifier::schema(&instance.schema)?,
    };
    let database = Database::new(&instance.database, schema)?.with_deadline(shared.deadline());
    tracing::info!("using the running instance: {}", instance.describe());
    // An explicit --schema or --channel may name a pipeline this instance does not run.
    let instance = instance.serves(&database, &channel).then_some(instance);
    Ok(TargetPipeline {
        channel,
        database,
        pooled: None,
        instance,
    })
}

/// The running instance `pick` names, or the only one.
fn chosen_instance(
    pick: Option<u32>,
    command: &str,
    why: &str,
) -> Result<InstanceRecord, LocateError> {
    let (dir, mut running) = instance::live_instances()?;
    match pick {
        Some(pid) => match running.iter().position(|r| r.pid == pid) {
            Some(at) => Ok(running.swap_remove(at)),
            None => Err(LocateError::NoSuchInstance { pid, dir, running }),
        },
        None if running.len() > 1 => Err(LocateError::Several { dir, running }),
        None => running.pop().ok_or_else(|| LocateError::NoInstance {
            command: command.to_owned(),
            why: why.to_owned(),
            dir,
        }),
    }
}

/// The instance on this machine that runs the pipeline of `channel` on `database`, if any.
/// Only its secret is wanted, so an unreadable runtime directory is a warning.
fn serving_instance(database: &Database, channel: &Identifier) -> Option<InstanceRecord> {
    match instance::live_instances() {
        Ok((_, running)) => running.into_iter().find(|r| r.serves(database, channel)),
        Err(e) => {
            tracing::warn!("looking for the running instance: {}", error_chain(&e));
            None
        }
    }
}

/// The channel and the database of a pipeline the command looks at (see
/// [`locate_pipeline`]).
pub fn pipeline_database(
    shared: &SharedArgs,
    command: &str,
    why: &str,
) -> anyhow::Result<(Identifier, Database)> {
    locate_pipeline(shared, command, why).map(|target| (target.channel, target.database))
}

/// The screen's settings, checked before anything starts so that a typo costs no database
/// start-up: `Some(None)` headless, `Some(Some(settings))` with a screen, and `None` when a
/// screen is wanted but stdout is not a terminal (said so in one line; exit 2). Headless,
/// `--theme` and the config file are judged all the same, so that a command line that fails
/// with a screen fails without one too.
pub fn screen_settings(
    headless: bool,
    args: &ScreenArgs,
) -> anyhow::Result<Option<Option<ScreenSettings>>> {
    let settings = ScreenSettings::load(args)?;
    if headless {
        return Ok(Some(None));
    }
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "notifyscope: stdout is not a terminal, so there is no screen to draw on; \
             run with --headless (add --json for JSON lines)"
        );
        return Ok(None);
    }
    Ok(Some(Some(settings)))
}

/// Where trace events go while a command runs: the screen's end of the stream (subscribed
/// before anything starts, so that the first events are seen too) or stdout, and the
/// recording.
pub struct Outputs {
    pub trace: Trace,
    /// The screen's end of the stream, when there is a screen.
    pub screen: Option<TraceReceiver>,
    writers: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    /// Fires when the reader of stdout went away (`notifyscope --headless | head -1`).
    reader_gone: CancellationToken,
}

impl Outputs {
    /// With a screen, events go to it; without, to stdout (`json`: as JSON lines).
    pub fn start(screen: bool, json: bool, record: &RecordArgs) -> anyhow::Result<Self> {
        let record = record.path.as_deref();
        let trace = Trace::new();
        let stop = CancellationToken::new();
        let reader_gone = CancellationToken::new();
        let screen_end = screen.then(|| trace.subscribe());
        let writers = spawn_writers(
            &trace,
            (!screen).then_some(json),
            record,
            &stop,
            &reader_gone,
        )?;
        Ok(Outputs {
            trace,
            screen: screen_end,
            writers,
            stop,
            reader_gone,
        })
    }

    /// Writes what is buffered, then stops.
    pub async fn finish(self) {
        self.stop.cancel();
        for writer in self.writers {
            let _ = writer.await;
        }
    }
}

/// Until SIGINT or SIGTERM, or until the reader of the trace output on stdout went away: a
/// Unix tool whose reader is gone (`| head -1`) stops quietly, in order, as on SIGTERM.
pub async fn wait_for_stop(outputs: &Outputs) {
    tokio::select! {
        () = wait_for_signal() => {}
        () = outputs.reader_gone.cancelled() => {
            tracing::debug!("stdout was closed by its reader; stopping");
        }
    }
}

/// The consumers that write trace events out: stdout (`Some(json)`, when there is no screen)
/// and the recording. They stop when `stop` fires, after writing what is buffered; the
/// stdout writer fires `reader_gone` when its reader closes the pipe.
fn spawn_writers(
    trace: &Trace,
    stdout_json: Option<bool>,
    record: Option<&Path>,
    stop: &CancellationToken,
    reader_gone: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut writers = Vec::new();
    if let Some(json) = stdout_json {
        // A quiet pipeline writes nothing for a long time: the closed pipe is seen by
        // itself, not only by the next write.
        watch_stdout_reader(reader_gone.clone());
        let writing =
            writer::write_events(trace.subscribe(), json, std::io::stdout(), stop.clone());
        let reader_gone = reader_gone.clone();
        // On a thread of its own: a write to a pipe whose reader is slow blocks, and it
        // must block only this output (which then skips what it lagged behind), never a
        // worker of the runtime, whose timers the pipeline's deadlines need.
        let runtime = tokio::runtime::Handle::current();
        writers.push(tokio::task::spawn_blocking(move || {
            match runtime.block_on(writing) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => reader_gone.cancel(),
                // A full disk: the pipeline goes on, but this output ends here.
                Err(e) => tracing::error!(error = %e, "trace output on stdout stopped"),
            }
        }));
    }
    if let Some(path) = record {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating the recording {}", path.display()))?;
        let writing = writer::write_events(
            trace.subscribe(),
            true,
            std::io::BufWriter::new(file),
            stop.clone(),
        );
        let path = path.display().to_string();
        writers.push(tokio::spawn(async move {
            if let Err(e) = writing.await {
                tracing::error!(error = %e, recording = %path, "recording stopped");
            }
        }));
    }
    Ok(writers)
}

/// Fires `gone` when stdout is a pipe or socket whose reader has closed it, as `poll` says of
/// the writing end (POLLERR, POLLHUP); a file or a terminal never says so. The thread blocks
/// in `poll` until then, or until the process exits.
fn watch_stdout_reader(gone: CancellationToken) {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;

    let watching = std::thread::Builder::new()
        .name("stdout-reader".into())
        .spawn(move || {
            let stdout = std::io::stdout();
            // No event asked for: POLLERR and POLLHUP are reported all the same.
            let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
            loop {
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {
                        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                        if revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                            gone.cancel();
                            return;
                        }
                        if revents.contains(PollFlags::POLLNVAL) {
                            return;
                        }
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = watching {
        // Only the next write will tell that the reader went away.
        tracing::debug!(error = %e, "cannot watch stdout for its reader");
    }
}

/// `--metrics`: the endpoint, bound before anything starts so that a taken port is said at
/// once.
pub async fn bind_metrics(args: &MetricsArgs) -> Result<Option<Exporter>, MetricsError> {
    match args.addr {
        Some(addr) => Exporter::bind(addr).await.map(Some),
        None => Ok(None),
    }
}

/// Hands every new diagnosis report to the screen.
pub fn forward_checks(
    mut reports: tokio::sync::watch::Receiver<std::sync::Arc<notifyscope_diagnose::Report>>,
    screen: tokio::sync::mpsc::Sender<AppEvent>,
) {
    tokio::spawn(async move {
        while reports.changed().await.is_ok() {
            let latest = reports.borrow_and_update().clone();
            if screen
                .send(AppEvent::Backlog(latest.backlog))
                .await
                .is_err()
                || screen
                    .send(AppEvent::Health(latest.checks.clone()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
}

/// What the screen needs from the command line and the config file.
pub struct ScreenSettings {
    pub styles: notifyscope_widgets::Styles,
    pub keymap: KeyMap,
    /// Clicks and the wheel reach the monitor (not with `--no-mouse`).
    pub mouse: bool,
}

impl ScreenSettings {
    pub fn load(args: &ScreenArgs) -> anyhow::Result<Self> {
        let config = config::load(args.config.as_deref())?;
        let theme_name = args
            .theme
            .clone()
            .or(config.theme.clone())
            .unwrap_or_else(|| theme::DEFAULT_THEME.to_owned());
        let styles = theme::load(&theme_name, theme::colour_wanted(args.no_color))?;
        let keymap = KeyMap::new(&config.keys).map_err(|e| CannotRun(format!("config: {e}")))?;
        Ok(ScreenSettings {
            styles,
            keymap,
            mouse: !args.no_mouse,
        })
    }
}

/// The first of `kinds` this process receives; without a way to catch them, never. The one
/// place notifyscope waits for signals.
pub async fn first_signal(kinds: &[SignalKind]) {
    let mut caught: Vec<Signal> = kinds.iter().filter_map(|k| signal(*k).ok()).collect();
    if caught.is_empty() {
        return std::future::pending().await;
    }
    futures_util::future::select_all(caught.iter_mut().map(|s| Box::pin(s.recv()))).await;
}

async fn wait_for_signal() {
    first_signal(&[SignalKind::interrupt(), SignalKind::terminate()]).await;
}

/// The monitor attached to `trace` (none in replay), reaching `outside`, hearing `extra`
/// events, ended like `q` by SIGTERM or SIGHUP.
pub fn attach<'a>(
    trace: Option<TraceReceiver>,
    outside: &'a dyn Outside,
    extra: Option<tokio::sync::mpsc::Receiver<AppEvent>>,
    mouse: bool,
) -> Attached<'a> {
    Attached {
        trace,
        outside,
        extra,
        mouse,
        stop: screen_stop(),
    }
}

/// A token that ends the monitor like `q` on SIGTERM or SIGHUP (an ssh hang-up); Ctrl-C is a
/// key while the terminal is raw.
fn screen_stop() -> CancellationToken {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        first_signal(&[SignalKind::terminate(), SignalKind::hangup()]).await;
        on_signal.cancel();
    });
    stop
}
