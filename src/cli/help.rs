//! How `--help` is laid out: wrapped to the terminal (or to 80 columns without one), `-h` and
//! `--version` under Output, and an environment variable's value shown only when it is set
//! and not secret.

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::{Arg, ArgAction, CommandFactory, FromArgMatches};

use super::{Cli, OUTPUT};

/// The width help is wrapped at when stdout is not a terminal (CI logs, pipes, `less`); on a
/// terminal it is the terminal's width.
pub const HELP_WIDTH_WITHOUT_TERMINAL: usize = 80;

/// Variables whose value is never shown in help, even when set: a database URL may hold a
/// password, and a proxy URL in front of Discord may hold credentials too.
const ENV_VALUES_NEVER_SHOWN: [&str; 3] =
    ["DATABASE_URL", "DIRECT_DATABASE_URL", "DISCORD_API_URL"];

/// The place of `--help` and `--version`: after every other option of their heading.
const LAST: usize = 1000;

/// The command line as clap reads it: help wrapped to the terminal (or to
/// [`HELP_WIDTH_WITHOUT_TERMINAL`] without one), `-h`/`--help` under Output like the other
/// options about what is printed, and an environment variable's value shown only when it is
/// set and not secret.
pub fn command() -> clap::Command {
    let cmd = Cli::command().disable_version_flag(true).arg(
        Arg::new("version")
            .short('V')
            .long("version")
            .action(ArgAction::Version)
            .help("Print version")
            .display_order(LAST)
            .help_heading(OUTPUT),
    );
    let cmd = env_values_shown_when_set(help_flag_under_output(cmd));
    if std::io::stdout().is_terminal() {
        cmd
    } else {
        cmd.term_width(HELP_WIDTH_WITHOUT_TERMINAL)
    }
}

/// Parses the process's arguments; a usage error, `--help` and `--version` end the process
/// here, as clap does (exit 2 for an error, 0 for help).
pub fn parse() -> Cli {
    let mut cmd = command();
    let matches = cmd.clone().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// clap's own help flag is listed before every heading; this one is listed under Output.
fn help_flag_under_output(cmd: clap::Command) -> clap::Command {
    cmd.disable_help_flag(true)
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("Print help (-h shorter, --help in full)")
                .display_order(LAST)
                .help_heading(OUTPUT),
        )
        .mut_subcommands(help_flag_under_output)
}

/// `[env: NOTIFYSCOPE_CHANNEL=]` reads as if the variable were set to nothing: a value is shown
/// only when the variable is set, and never for the secret ones (the variable's name always).
fn env_values_shown_when_set(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        let shown = arg.get_env().map(OsString::from).is_some_and(|name| {
            !ENV_VALUES_NEVER_SHOWN.iter().any(|secret| name == *secret)
                && std::env::var_os(&name).is_some_and(|value| !value.is_empty())
        });
        arg.hide_env_values(!shown)
    })
    .mut_subcommands(env_values_shown_when_set)
}
