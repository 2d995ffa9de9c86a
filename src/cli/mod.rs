//! The command line: the options of every subcommand, as clap parses them, and how their help
//! is laid out. Types only; what the options do is in [`crate::commands`].
//!
//! Every option of every command sits under one of five headings, always in the order a
//! reader needs them ([`HEADINGS`]): where the pipeline is, how it runs, the Discord side, the
//! screen, and what comes out. clap orders headings by the first option that names each, so
//! every command declares a Connection option first (a flattened `…Pipeline` struct, or
//! `--data-dir` for `run`) and its fields in heading order; the test of this module walks
//! every command to hold that.

use std::path::PathBuf;

use clap::{Arg, Args, Parser, Subcommand};

use notifyscope_model::sim::SimKind;
use notifyscope_store::{DEFAULT_CHANNEL, DEFAULT_SCHEMA};

mod act;
mod bench;
mod bot;
mod help;

pub use act::*;
pub use bench::*;
pub use bot::*;
pub use help::{command, parse, HELP_WIDTH_WITHOUT_TERMINAL};

/// Where the pipeline is: database, channel, schema, running instance.
pub const CONNECTION: &str = "Connection";
/// How the pipeline runs, and the rows or messages a command works on.
pub const PIPELINE: &str = "Pipeline";
/// The Discord side: token, API, gateway, and the filter of the bot path.
pub const BOT: &str = "Bot";
/// The interactive screen.
pub const SCREEN: &str = "Screen";
/// What a command prints, records or serves, and its logs and help.
pub const OUTPUT: &str = "Output";
/// The headings of every `--help`, in the order they appear.
pub const HEADINGS: [&str; 5] = [CONNECTION, PIPELINE, BOT, SCREEN, OUTPUT];

/// The log filter of the monitors (`run`, `watch`, `replay`), whose logs are part of what
/// they show.
pub const MONITOR_LOG: &str = "notifyscope=info,warn";
/// The log filter of every other command: it prints what it is for, and warnings.
pub const COMMAND_LOG: &str = "warn";

#[derive(Debug, Parser)]
#[command(
    name = "notifyscope",
    version,
    about = "Live monitor for a Discord bot -> PostgreSQL NOTIFY -> ingestion pipeline",
    long_about = "Runs a Discord bot path, a PostgreSQL LISTEN subscriber and ingestion into \
                  discord_messages, and shows every stage live. Without a subcommand it runs \
                  the monitor (`run`).",
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub shared: SharedArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    // Last, so that Output is the last heading of the top-level help too.
    #[command(flatten)]
    pub logging: LogArgs,
}

impl Cli {
    /// `--log`, or the filter of this command: the monitors log what they do, every other
    /// command prints only what it is for.
    pub fn log_filter(&self) -> &str {
        if let Some(filter) = &self.logging.log {
            return filter;
        }
        match &self.command {
            None | Some(Command::Run(_) | Command::Watch(_) | Command::Replay(_)) => MONITOR_LOG,
            Some(_) => COMMAND_LOG,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline and monitor it (the default).
    Run(RunArgs),
    /// Send test events to a running pipeline.
    Send(SendArgs),
    /// One-shot diagnosis of a pipeline: one line per check, exit 0 healthy, 1 a check
    /// failed, 2 could not run.
    Doctor(DoctorArgs),
    /// Monitor a pipeline someone else runs (their bot, their listener) without writing to it.
    Watch(WatchArgs),
    /// Open a recording (from --record or the `s` key) in the monitor, read-only.
    #[command(
        arg = unused("database_url", "database-url"),
        arg = unused("direct_database_url", "direct-database-url"),
        arg = unused("db_deadline", "db-deadline"),
        arg = unused("channel", "channel"),
        arg = unused("schema", "schema")
    )]
    Replay(ReplayArgs),
    /// The outbox of the channel: rows not ingested yet, their attempts, next attempt and
    /// last error, and the rows given up (dead letters).
    #[command(arg = database_url_of_running_pipeline(), arg = instance_of_running_pipeline())]
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Dead letters of the channel: notifications the listener rejected (dead_letters) and
    /// outbox rows given up; list them, re-send or requeue them, delete them.
    #[command(arg = database_url_of_running_pipeline(), arg = instance_of_running_pipeline())]
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Act on another session of the database, e.g. the one holding a lock the pipeline
    /// waits for: cancel its statement or end it.
    #[command(arg = database_url_of_running_pipeline(), arg = instance_of_running_pipeline())]
    Backend {
        #[command(subcommand)]
        command: BackendCommand,
    },
    /// Check a running pipeline end to end: a message through its bot path and one published
    /// straight to the outbox must both land in discord_messages.
    Selftest {
        #[command(flatten)]
        target: RunningPipeline,
        /// Seconds to wait for each step.
        #[arg(long, default_value_t = 10, help_heading = PIPELINE)]
        timeout: u64,
    },
    /// Measure throughput and latency: synthetic messages through the real path (bot path,
    /// filter, publisher, outbox + NOTIFY, listener, ingestion) in a schema of its own that
    /// is dropped afterwards. Exit 1 when a message was lost or delivered twice.
    Bench(BenchArgs),
    /// Print the help of a command, as COMMAND --help does.
    #[command(
        arg = unused("database_url", "database-url"),
        arg = unused("direct_database_url", "direct-database-url"),
        arg = unused("db_deadline", "db-deadline"),
        arg = unused("channel", "channel"),
        arg = unused("schema", "schema")
    )]
    Help(HelpArgs),
}

/// `notifyscope help [COMMAND…]`.
#[derive(Debug, Args)]
pub struct HelpArgs {
    /// The command, e.g. `doctor` or `outbox list`; without it, the help of notifyscope.
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--database-url` and `--instance` of the commands that look at a running pipeline,
/// flattened first so that Connection is their first heading. The values land in
/// [`SharedArgs`], as the options are global under the same ids.
#[derive(Debug, Clone, Args)]
#[command(arg = database_url_of_running_pipeline(), arg = instance_of_running_pipeline())]
pub struct RunningPipeline {}

/// [`RunningPipeline`] for `watch`, whose `--schema` is only read.
#[derive(Debug, Clone, Args)]
#[command(
    arg = database_url_of_running_pipeline(),
    arg = instance_of_running_pipeline(),
    arg = schema_of(
        "Schema of their table (--table) and of event_outbox when they have one; watch only \
         reads it [default: public, or the running instance's]"
    )
)]
pub struct WatchedPipeline {}

/// The connection options of `bench`, which works in a schema and on a channel of its own.
#[derive(Debug, Clone, Args)]
#[command(
    arg = database_url_of_bench(),
    arg = channel_of("Not used by bench: it publishes on a channel of its own, named as its schema"),
    arg = schema_of(
        "Not used by bench: it works in a schema of its own (notifyscope_bench_<random>), \
         dropped at the end"
    )
)]
pub struct BenchPipeline {}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SendArgs {
    #[command(flatten)]
    pub target: RunningPipeline,
    /// Have the running notifyscope (the one found in the runtime directory, or the one on
    /// --database-url, --schema, --channel) put a test message of this kind through its bot
    /// path, as if it came from Discord. The request carries the instance's control secret,
    /// read from its file in the runtime directory.
    #[arg(long, value_name = "KIND", help_heading = BOT)]
    pub via_bot: Option<SimKind>,
    /// Seconds to wait for the running instance to answer --via-bot.
    #[arg(long, default_value_t = 5, help_heading = BOT)]
    pub timeout: u64,
    /// With --via-bot: one JSON line per message (its id, and published, skipped with the
    /// reason, or failed with the error) instead of a summary.
    #[arg(long, requires = "via_bot", help_heading = OUTPUT)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<SendCommand>,
}

/// Options every command understands.
#[derive(Debug, Clone, Args)]
pub struct SharedArgs {
    /// PostgreSQL URL or key=value string. Without it, `run` starts a private embedded
    /// PostgreSQL from the server binaries on this machine.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        value_name = "URL",
        display_order = 1,
        help_heading = CONNECTION
    )]
    pub database_url: Option<String>,
    /// The server itself, beside a --database-url that goes through a transaction pooler
    /// (PgBouncer in transaction mode, Supavisor, RDS Proxy): LISTEN, migrations, the
    /// diagnosis and actions on other sessions connect here; publishing and ingestion go
    /// through the pooler.
    #[arg(
        long,
        env = "DIRECT_DATABASE_URL",
        global = true,
        value_name = "URL",
        display_order = 1,
        help_heading = CONNECTION
    )]
    pub direct_database_url: Option<String>,
    /// NOTIFY channel of the event bus [default: events; without --database-url, send,
    /// doctor, selftest, watch and outbox use the running instance's]. Used exactly as
    /// written (always quoted), so `Events` and `events` are different channels.
    #[arg(
        long,
        env = "NOTIFYSCOPE_CHANNEL",
        global = true,
        value_name = "NAME",
        display_order = 2,
        help_heading = CONNECTION
    )]
    pub channel: Option<String>,
    /// Schema holding event_outbox, discord_messages and dead_letters [default: public;
    /// without --database-url, the commands that look at a running pipeline use its]. `run`
    /// creates and migrates it at start.
    #[arg(
        long,
        env = "NOTIFYSCOPE_SCHEMA",
        global = true,
        value_name = "NAME",
        display_order = 3,
        help_heading = CONNECTION
    )]
    pub schema: Option<String>,
    /// The running instance to use, by pid (see `--instance` of send, doctor, selftest, watch
    /// and outbox); it means nothing to the other commands.
    #[arg(long, global = true, hide = true, value_name = "PID")]
    pub instance: Option<u32>,
    /// Seconds a database statement, pool checkout or commit may go unanswered before its
    /// connection counts as silent (dropped by NAT or a load balancer without a reset) and
    /// is replaced; a listener asks the server for a sign of life every half of it.
    #[arg(
        long,
        env = "NOTIFYSCOPE_DB_DEADLINE",
        global = true,
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        display_order = 5,
        help_heading = CONNECTION
    )]
    pub db_deadline: u64,
}

impl SharedArgs {
    /// `--channel`, or the default.
    pub fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or(DEFAULT_CHANNEL)
    }

    /// `--schema`, or the default.
    pub fn schema(&self) -> &str {
        self.schema.as_deref().unwrap_or(DEFAULT_SCHEMA)
    }

    /// `--db-deadline`.
    pub fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.db_deadline)
    }
}

/// `--log`, which every command understands.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter (tracing syntax), e.g. `debug` or `notifyscope=debug,warn`; RUST_LOG wins
    /// [default: notifyscope=info,warn for run, watch and replay; warn for the other
    /// commands, which print only what they are for]
    #[arg(
        long,
        global = true,
        value_name = "FILTER",
        value_parser = log_filter,
        help_heading = OUTPUT
    )]
    pub log: Option<String>,
}

/// `--database-url` of the commands that look at a running pipeline: its help says where
/// they look without it. It takes the place of the global option in those commands, under
/// the same id, so that the value still lands in [`SharedArgs::database_url`].
fn database_url_of_running_pipeline() -> Arg {
    Arg::new("database_url")
        .long("database-url")
        .env("DATABASE_URL")
        .global(true)
        .value_name("URL")
        .display_order(1)
        .help_heading(CONNECTION)
        .help(
            "PostgreSQL URL or key=value string of the pipeline. Without it: the database, \
             schema and channel of the running `notifyscope run` found in the runtime \
             directory ($XDG_RUNTIME_DIR/notifyscope, else /tmp/notifyscope-UID)",
        )
}

/// `--instance` where it means something (see [`SharedArgs::instance`]).
fn instance_of_running_pipeline() -> Arg {
    Arg::new("instance")
        .long("instance")
        .global(true)
        .value_name("PID")
        .value_parser(clap::value_parser!(u32))
        .display_order(4)
        .help_heading(CONNECTION)
        .help(
            "Without --database-url: the running instance to use, by its pid, when several \
             run (each writes a file in the runtime directory)",
        )
}

/// `--schema` with a help text of the command's own, in place of the global one.
fn schema_of(help: &'static str) -> Arg {
    Arg::new("schema")
        .long("schema")
        .env("NOTIFYSCOPE_SCHEMA")
        .global(true)
        .value_name("NAME")
        .display_order(3)
        .help_heading(CONNECTION)
        .help(help)
}

/// `--channel` with a help text of the command's own, in place of the global one.
fn channel_of(help: &'static str) -> Arg {
    Arg::new("channel")
        .long("channel")
        .env("NOTIFYSCOPE_CHANNEL")
        .global(true)
        .value_name("NAME")
        .display_order(2)
        .help_heading(CONNECTION)
        .help(help)
}

/// A global option a command does not use: accepted (it may come from the environment) but
/// not listed in its help.
fn unused(id: &'static str, long: &'static str) -> Arg {
    Arg::new(id).long(long).global(true).hide(true)
}

/// `--database-url` of `bench`.
fn database_url_of_bench() -> Arg {
    Arg::new("database_url")
        .long("database-url")
        .env("DATABASE_URL")
        .global(true)
        .value_name("URL")
        .display_order(1)
        .help_heading(CONNECTION)
        .help(
            "PostgreSQL URL or key=value string; bench works in a schema of its own there. \
             Without it, bench starts a private embedded PostgreSQL from the server binaries \
             on this machine",
        )
}

/// A `--log` value that the tracing filter accepts, or why not.
fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a log filter ({e}); e.g. `debug` or `notifyscope=debug,warn`"))
}

/// Options of `run`, which are also those of notifyscope without a subcommand; fields in
/// the order of [`HEADINGS`].
#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// Keep the embedded PostgreSQL's data in this directory (created if missing, reused
    /// when it holds a cluster) instead of a temporary one.
    #[arg(long, value_name = "DIR", display_order = 5, help_heading = CONNECTION)]
    pub data_dir: Option<PathBuf>,
    /// Ingestion workers in this process.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64), help_heading = PIPELINE)]
    pub workers: u16,
    /// Bound of the publish queue; a full queue makes publishers wait (backpressure).
    #[arg(long, value_name = "N", default_value_t = notifyscope_pipeline::publish::DEFAULT_QUEUE_CAPACITY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000),
          help_heading = PIPELINE)]
    pub queue_capacity: usize,
    /// Seconds to let queued and unprocessed events finish at shutdown.
    #[arg(long, value_name = "S", default_value_t = 10, help_heading = PIPELINE)]
    pub drain_timeout: u64,
    /// How long ingested outbox rows are kept: `forever`, or e.g. `0` (none), `30m`, `24h`,
    /// `7d`. Rows still waiting for ingestion and discord_messages are never deleted.
    #[arg(long, default_value = "24h", value_name = "AGE", help_heading = PIPELINE)]
    pub outbox_retention: notifyscope_pipeline::retention::Retention,
    /// How long dead letters (rejected notifications, outbox rows given up) are kept.
    #[arg(long, default_value = "7d", value_name = "AGE", help_heading = PIPELINE)]
    pub dead_letter_retention: notifyscope_pipeline::retention::Retention,
    /// Also LISTEN on this channel and report traffic there as the wrong channel (repeatable;
    /// the other spellings of --channel and events, discord, discord_events always are).
    #[arg(long = "watch-channel", value_name = "NAME", help_heading = PIPELINE)]
    pub watch_channels: Vec<String>,
    /// Simulated messages a second through the bot path, for demos.
    #[arg(long, value_name = "N", help_heading = PIPELINE)]
    pub demo_rate: Option<u32>,
    #[command(flatten)]
    pub discord: DiscordArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub screen: ScreenArgs,
    /// No interactive screen: trace events go to stdout, logs to stderr.
    #[arg(long, help_heading = OUTPUT)]
    pub headless: bool,
    /// With --headless: one JSON object per trace event and line.
    #[arg(long, requires = "headless", help_heading = OUTPUT)]
    pub json: bool,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The recording of a command that runs a pipeline or watches one (replay has nothing new
/// to record).
#[derive(Debug, Clone, Args, Default)]
pub struct RecordArgs {
    /// Write every trace event to FILE as JSON lines while running.
    #[arg(id = "record", long = "record", value_name = "FILE", help_heading = OUTPUT)]
    pub path: Option<PathBuf>,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Args, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187): counters per
    /// stage, skip reason and error, stage latencies, backlog, NOTIFY queue, gateway, and
    /// one gauge per health check.
    #[arg(long = "metrics", value_name = "ADDR", help_heading = OUTPUT)]
    pub addr: Option<std::net::SocketAddr>,
}

/// Options of the interactive screen.
#[derive(Debug, Clone, Args)]
pub struct ScreenArgs {
    /// Theme: dark, light, high-contrast, or the path of a theme file.
    #[arg(long, value_name = "NAME|PATH", help_heading = SCREEN)]
    pub theme: Option<String>,
    /// No colours (as NO_COLOR does); highlights use reverse video and underline.
    #[arg(long, help_heading = SCREEN)]
    pub no_color: bool,
    /// Leave the mouse to the terminal (its own text selection) instead of clicks and the
    /// wheel in the monitor.
    #[arg(long, help_heading = SCREEN)]
    pub no_mouse: bool,
    /// Rows each pane keeps; older rows are dropped (and counted).
    #[arg(long, value_name = "N", default_value_t = notifyscope_screen::app::DEFAULT_HISTORY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000),
          help_heading = SCREEN)]
    pub history: usize,
    /// Config file (keys, theme); default ~/.config/notifyscope/config.toml when present.
    #[arg(long, value_name = "PATH", help_heading = SCREEN)]
    pub config: Option<PathBuf>,
}

impl Default for ScreenArgs {
    fn default() -> Self {
        ScreenArgs {
            theme: None,
            no_color: false,
            no_mouse: false,
            history: notifyscope_screen::app::DEFAULT_HISTORY,
            config: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub target: RunningPipeline,
    /// Seconds the round-trip probe may take.
    #[arg(long, value_name = "S", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600), help_heading = PIPELINE)]
    pub timeout: u64,
    /// Name of the environment variable with the bot token (checked with Discord when set).
    #[arg(long, default_value = "DISCORD_TOKEN", value_name = "NAME", help_heading = BOT)]
    pub discord_token_env: String,
    /// Base of the Discord API, as for `run`.
    #[arg(long, env = "DISCORD_API_URL", value_name = "URL", help_heading = BOT)]
    pub discord_api_url: Option<String>,
    /// One JSON document instead of lines.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub target: WatchedPipeline,
    /// The table their ingestion writes (in --schema).
    #[arg(long, value_name = "NAME", default_value = "discord_messages", help_heading = PIPELINE)]
    pub table: String,
    /// Its message-id column (BIGINT).
    #[arg(long, value_name = "NAME", default_value = "message_id", help_heading = PIPELINE)]
    pub id_column: String,
    /// Also LISTEN on this channel as a possible wrong channel (repeatable).
    #[arg(long = "watch-channel", value_name = "NAME", help_heading = PIPELINE)]
    pub watch_channels: Vec<String>,
    /// Observe their bot with its token, read from this environment variable: a gateway
    /// session of its own (message intents only; it sends nothing) shows what Discord
    /// delivers, so that messages received but never published are seen too. Each start
    /// uses one IDENTIFY of the bot's daily allowance.
    #[arg(long, value_name = "NAME", help_heading = BOT)]
    pub discord_token_env: Option<String>,
    /// Base of the Discord API for the observer, as for `run`.
    #[arg(long, env = "DISCORD_API_URL", value_name = "URL", help_heading = BOT)]
    pub discord_api_url: Option<String>,
    /// Follow their bot's log, to see what its code did with each message: a file as it
    /// is written (through rotation, like tail -F), or - for standard input (e.g.
    /// `journalctl -fu bot -o cat | notifyscope watch --bot-log -`). JSON lines with
    /// stage and message_id, Python logging and discord.py's format with tracebacks, and
    /// Node's errors are understood; other lines go to the Logs pane.
    #[arg(long, value_name = "PATH|-", help_heading = BOT)]
    pub bot_log: Option<String>,
    /// Receive their bot's OpenTelemetry on this address (e.g. 127.0.0.1:4318): OTLP/HTTP,
    /// protobuf or JSON, /v1/traces and /v1/logs. Spans and log records with
    /// messaging.message.id become stages.
    #[arg(long, value_name = "ADDR", help_heading = BOT)]
    pub otlp: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub screen: ScreenArgs,
    /// No screen: trace events on stdout.
    #[arg(long, help_heading = OUTPUT)]
    pub headless: bool,
    /// With --headless: JSON lines.
    #[arg(long, requires = "headless", help_heading = OUTPUT)]
    pub json: bool,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A JSON-lines recording.
    pub file: PathBuf,
    #[command(flatten)]
    pub screen: ScreenArgs,
}

#[derive(Debug, Subcommand)]
pub enum SendCommand {
    /// Publish synthetic Discord messages through the publisher (outbox + NOTIFY).
    Message {
        #[command(flatten)]
        target: RunningPipeline,
        /// How many messages.
        #[arg(long, value_name = "N", default_value_t = 1, help_heading = PIPELINE)]
        count: u32,
        /// Message text (default: "test message N").
        #[arg(long, value_name = "TEXT", help_heading = PIPELINE)]
        content: Option<String>,
        /// Print one JSON line per published message instead of a summary.
        #[arg(long, help_heading = OUTPUT)]
        json: bool,
    },
    /// Send a raw NOTIFY with any payload on --channel (no outbox row), e.g. to test how
    /// malformed events are handled.
    Raw {
        #[command(flatten)]
        target: RunningPipeline,
        /// The payload, sent as is.
        #[arg(long, value_name = "TEXT", help_heading = PIPELINE)]
        payload: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn run_is_the_default() {
        let cli = Cli::try_parse_from(["notifyscope", "--headless", "--json"]).expect("parses");
        assert!(cli.command.is_none());
        assert!(cli.run.headless && cli.run.json);
        let cli = Cli::try_parse_from(["notifyscope", "run", "--headless", "--channel", "Ev"])
            .expect("parses");
        match cli.command {
            Some(Command::Run(run)) => assert!(run.headless),
            other => panic!("expected run, got {other:?}"),
        }
        assert_eq!(cli.shared.channel(), "Ev");
    }

    #[test]
    fn bad_allow_channel_is_refused() {
        let err =
            Cli::try_parse_from(["notifyscope", "--allow-channel", "abc"]).expect_err("refused");
        assert!(err.to_string().contains("not a Discord id"));
    }

    /// The connection options of a subcommand land where every command reads them.
    #[test]
    fn connection_options_of_a_subcommand_land_in_the_shared_ones() {
        for args in [
            &[
                "notifyscope",
                "doctor",
                "--database-url",
                "host=h",
                "--instance",
                "7",
            ][..],
            &[
                "notifyscope",
                "outbox",
                "list",
                "--database-url",
                "host=h",
                "--instance",
                "7",
            ],
            &[
                "notifyscope",
                "send",
                "message",
                "--database-url",
                "host=h",
                "--instance",
                "7",
            ],
            &[
                "notifyscope",
                "backend",
                "cancel",
                "3",
                "--database-url",
                "host=h",
                "--instance",
                "7",
            ],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert_eq!(
                cli.shared.database_url.as_deref(),
                Some("host=h"),
                "{args:?}"
            );
            assert_eq!(cli.shared.instance, Some(7), "{args:?}");
        }
    }

    #[test]
    fn the_log_filter_is_quiet_but_for_the_monitors() {
        let filter = |args: &[&str]| {
            Cli::try_parse_from(args)
                .expect("parses")
                .log_filter()
                .to_owned()
        };
        assert_eq!(filter(&["notifyscope", "--headless"]), MONITOR_LOG);
        assert_eq!(filter(&["notifyscope", "watch"]), MONITOR_LOG);
        assert_eq!(filter(&["notifyscope", "doctor"]), COMMAND_LOG);
        assert_eq!(filter(&["notifyscope", "outbox", "list"]), COMMAND_LOG);
        assert_eq!(
            filter(&["notifyscope", "doctor", "--log", "debug"]),
            "debug"
        );
    }

    /// The headings of `cmd`'s help, in the order clap prints them: by the first visible
    /// option under each.
    fn headings(cmd: &clap::Command) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.is_positional() {
                continue;
            }
            let heading = arg.get_help_heading().unwrap_or("Options").to_owned();
            if !seen.contains(&heading) {
                seen.push(heading);
            }
        }
        seen
    }

    fn every_command(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            every_command(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_has_a_heading_and_connection_comes_first() {
        let mut cmd = command();
        cmd.build();
        let mut all = Vec::new();
        every_command(&cmd, "notifyscope".into(), &mut all);
        for (path, cmd) in all {
            let headings = headings(&cmd);
            let order: Vec<usize> = headings
                .iter()
                .map(|h| {
                    HEADINGS
                        .iter()
                        .position(|known| known == h)
                        .unwrap_or_else(|| panic!("{path}: an option under {h:?}"))
                })
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "{path}: headings {headings:?}"
            );
        }
    }
}
