//! The end of `labpipe run`: an aligned results table on stdout, one row per run of the call, cached ones too,
//! whether the runs ran here or as `--jobs` children.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::files::write;
use crate::util::pipeline::linear_pipeline;

/// Two runs, the lr values in an order strings would not sort to.
fn pipeline() -> String {
    linear_pipeline("r", 2) + "experiments:\n  lr:\n    matrix:\n      train.optimizer.lr: [0.1, 0.001]\n"
}

/// The table's lines: the header, the rule, the rows (the blank line before it dropped).
fn table(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("run "))
        .map(str::to_string)
        .collect()
}

/// Every line of the table has its columns where the header has them.
fn assert_aligned(lines: &[String]) {
    let rule = &lines[1];
    assert!(rule.starts_with('─'), "{lines:?}");
    // Columns are separated by two spaces in the rule: each row has a space at those places and text after.
    let gaps: Vec<usize> = rule
        .chars()
        .collect::<Vec<_>>()
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == ' ' && w[1] == ' ')
        .map(|(i, _)| i)
        .collect();
    assert_eq!(gaps.len(), 5, "six columns: {rule}");
    for line in lines {
        let chars: Vec<char> = line.chars().collect();
        for &g in &gaps {
            assert!(
                chars.get(g) == Some(&' ') && chars.get(g + 1) == Some(&' '),
                "misaligned: {line:?}\nin {lines:#?}"
            );
        }
    }
}

#[test]
fn run_ends_with_an_aligned_table_of_its_runs_cached_ones_included() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline());
    let o = labpipe(dir, &["run", "p.yaml", "--workers", "1", "--only", "lr[lr=0.1]"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // --quiet silences progress, not the result.
    let o = labpipe(dir, &["run", "p.yaml", "--workers", "1", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = table(&stdout(&o));
    assert_eq!(lines.len(), 4, "header, rule, two rows: {lines:#?}");
    assert_eq!(
        lines[0]
            .split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
        [
            "run",
            "epochs",
            "best val acc @ epoch",
            "test acc",
            "time",
            "status"
        ]
    );
    assert_aligned(&lines);
    assert!(lines[2].starts_with("lr[lr=0.1] "), "{lines:#?}");
    assert!(
        lines[2].ends_with("  cached"),
        "the first run came from the cache: {lines:#?}"
    );
    assert!(lines[3].starts_with("lr[lr=0.001] "), "{lines:#?}");
    assert!(lines[3].ends_with("  done"), "{lines:#?}");
    for row in &lines[2..] {
        assert!(row.contains(" 2/2 "), "two epochs trained: {row}");
        // Accuracies as percentages, the best validation one with its epoch.
        assert!(row.matches('%').count() == 2 && row.contains("% @ "), "{row}");
    }
    // The table is the result: stdout only.
    assert!(!stderr(&o).contains("best val acc @ epoch"), "{}", stderr(&o));

    // Computed by --jobs children, the table is printed once, by the parent, in the runs' order.
    let o = labpipe(
        dir,
        &["run", "p.yaml", "--jobs", "2", "-S", "train.epochs=1", "-q"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.matches("best val acc @ epoch").count(), 1, "{text}");
    let lines = table(&text);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_aligned(&lines);
    assert!(lines[2].starts_with("lr[lr=0.1][train.epochs=1] "), "{lines:#?}");
    assert!(
        lines[3].starts_with("lr[lr=0.001][train.epochs=1] "),
        "{lines:#?}"
    );
    assert!(
        lines[2].contains(" 1/1 ") && lines[2].ends_with("  done"),
        "{lines:#?}"
    );
}

#[test]
fn a_run_that_did_not_complete_has_its_row_and_the_exit_code_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &linear_pipeline("d", 1));
    let o = labpipe(
        dir,
        &[
            "run",
            "p.yaml",
            "-q",
            "--workers",
            "1",
            "--sweep",
            "train.optimizer.lr=0.1,1e12",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines = table(&stdout(&o));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_aligned(&lines);
    assert!(
        lines[2].starts_with("baseline[lr=0.1] ") && lines[2].ends_with("  done"),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with("baseline[lr=1000000000000.0] "),
        "{lines:#?}"
    );
    assert!(lines[3].ends_with("  diverged"), "{lines:#?}");
    assert!(stderr(&o).contains("1 run(s) did not complete"), "{}", stderr(&o));
}
