//! `labpipe completions` prints a script for each shell, and every command's `--help` ends with examples.

use crate::util::binary::{labpipe, stderr, stdout};
use std::path::Path;

fn here() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The subcommands `labpipe --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let text = stdout(&labpipe(here(), &["--help"]));
    text.split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_print_a_script_naming_the_subcommands_for_each_shell() {
    let commands = subcommands();
    assert!(commands.len() >= 10, "{commands:?}");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = labpipe(here(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.lines().count() > 20, "{shell}: {script}");
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell} script does not name `{c}`");
        }
    }
    let out = labpipe(here(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("powershell"), "{}", stderr(&out));
}

#[test]
fn every_command_help_ends_with_two_or_three_examples() {
    for c in subcommands() {
        let out = labpipe(here(), &[c.as_str(), "--help"]);
        assert!(out.status.success(), "{c}: {}", stderr(&out));
        let text = stdout(&out);
        let tail = text
            .rsplit("Examples:\n")
            .next()
            .filter(|_| text.contains("Examples:\n"))
            .unwrap_or_else(|| panic!("`labpipe {c} --help` has no Examples: section:\n{text}"));
        let examples: Vec<&str> = tail
            .lines()
            .filter(|l| l.starts_with(&format!("  labpipe {c}")))
            .collect();
        assert!(
            (2..=3).contains(&examples.len()),
            "`labpipe {c} --help` should end with 2 or 3 examples of `labpipe {c}`:\n{tail}"
        );
    }
}
