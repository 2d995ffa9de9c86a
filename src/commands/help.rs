//! `notifyscope help [COMMAND…]`: the help of a command, exactly as `COMMAND --help` prints
//! it. clap's own help subcommand takes no options, so `help --help` was an error; this one is
//! a command like the others.

use std::process::ExitCode;

use crate::cli;
use crate::commands::COULD_NOT_RUN;

/// Prints the full help of the command `path` names (notifyscope's own for none); exit 2 when
/// no command has that name.
pub fn print(path: &[String]) -> ExitCode {
    let mut cmd = cli::command();
    let mut known = &cmd;
    for (depth, name) in path.iter().enumerate() {
        match known.find_subcommand(name) {
            Some(sub) => known = sub,
            None => {
                let within = match depth {
                    0 => "notifyscope".to_owned(),
                    _ => format!("notifyscope {}", path[..depth].join(" ")),
                };
                let names: Vec<&str> = known.get_subcommands().map(|s| s.get_name()).collect();
                match names.as_slice() {
                    [] => eprintln!("notifyscope: help: `{within}` has no subcommands"),
                    names => eprintln!(
                        "notifyscope: help: `{within}` has no command `{name}`; its commands: {}",
                        names.join(", ")
                    ),
                }
                return ExitCode::from(COULD_NOT_RUN);
            }
        }
    }
    let mut argv = vec!["notifyscope".to_owned()];
    argv.extend(path.iter().cloned());
    argv.push("--help".to_owned());
    // Parsing `COMMAND --help` prints what the user would have seen typing it, to stdout.
    match cmd.try_get_matches_from_mut(argv) {
        Err(shown) => {
            let _ = shown.print();
            ExitCode::from(u8::try_from(shown.exit_code()).unwrap_or(COULD_NOT_RUN))
        }
        Ok(_) => ExitCode::SUCCESS,
    }
}
