//! `labpipe completions SHELL`: the shell completion script, generated from the same clap definitions that
//! parse the command line.

use clap::CommandFactory;
use clap_complete::Shell;

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> i32 {
    let mut command = super::Cli::command();
    clap_complete::generate(shell, &mut command, "labpipe", &mut std::io::stdout());
    0
}
