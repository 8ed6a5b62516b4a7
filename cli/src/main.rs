//! `dsss`: the one command that fronts DSSS (DESIGN.md section 4). Each group of subcommands
//! lives in a module of its own; this file only parses the command line and dispatches.
#![deny(missing_docs)]

mod sim_command;
mod topology_command;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// DSSS: one shared, persistent object for every instance of a geo-distributed application.
#[derive(Debug, Parser)]
#[command(
    name = "dsss",
    version,
    about,
    after_help = "Examples:\n  dsss topology check topology/examples/local.toml\n  dsss sim probe --topology topology/examples/global.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The groups of subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check topology files or show what one describes.
    #[command(subcommand)]
    Topology(topology_command::TopologyCommand),
    /// Run deterministic simulations on a topology.
    #[command(subcommand)]
    Sim(sim_command::SimCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let outcome = match cli.command {
        Command::Topology(command) => topology_command::run(command, &mut stdout, &mut stderr),
        Command::Sim(command) => sim_command::run(command, &mut stdout, &mut stderr),
    };
    // Output may go to a closed pipe (`dsss topology show | head`); that is not an error of
    // the command, so a failed flush changes nothing.
    let _ = stdout.flush();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
