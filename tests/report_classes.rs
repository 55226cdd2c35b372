//! Per-class results through the real binary: both templates show the confusion-matrix figure, the
//! most-confused pairs and the per-class accuracies, say which dataset the test accuracy is on, and call out
//! a model that is no better than guessing; `eval` prints its confusion matrix with headers both ways.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::files::{read_json, write};
use std::path::Path;

const LAB2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/report_templates/lab2.md.j2");
const GENERIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/report_templates/report.md.j2");

/// A linear model that barely moves from its initial weights (learning rate 1e-9): its test accuracy is
/// that of an untrained model, close to chance.
const UNTRAINED: &str = "name: guess
data: {dataset: synthetic, train_size: 100, test_size: 200, val_split: 20}
model:
  layers:
    - flatten
    - linear: {out_features: 10}
train:
  epochs: 1
  batch_size: 50
  optimizer: {name: sgd, lr: 1.0e-9}
";

fn report(dir: &Path, template: &str, to: &str) -> String {
    let o = labpipe(dir, &["report", "guess.yaml", "--template", template, "--to", to]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    std::fs::read_to_string(dir.join(to).join("report.md")).unwrap()
}

fn metrics(dir: &Path) -> serde_json::Value {
    let found: Vec<_> = walkdir::WalkDir::new(dir.join("out/cache/evaluate"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "metrics.json")
        .collect();
    assert_eq!(found.len(), 1, "one evaluation");
    read_json(found[0].path())
}

#[test]
fn both_templates_show_the_confusion_matrix_and_call_out_chance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "guess.yaml", UNTRAINED);
    let o = labpipe(dir, &["run", "-q", "guess.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(dir);
    let accuracy = m["accuracy"].as_f64().unwrap();
    // The premise: an untrained model is within 5 points of chance (10% for ten classes).
    assert!(accuracy <= 0.15, "untrained accuracy {accuracy}");
    let names: Vec<String> = m["class_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let confusion: Vec<Vec<u64>> = serde_json::from_value(m["confusion"].clone()).unwrap();
    // The largest off-diagonal cell is the first most-confused pair (ties: the larger share of its row,
    // then the first in label order).
    let share = |t: usize, c: u64| c as f64 / confusion[t].iter().sum::<u64>() as f64;
    let (mut ti, mut pi, mut top) = (0, 0, 0);
    for (t, row) in confusion.iter().enumerate() {
        for (p, &c) in row.iter().enumerate() {
            if t != p && (c > top || (c == top && c > 0 && share(t, c) > share(ti, top))) {
                (ti, pi, top) = (t, p, c);
            }
        }
    }
    assert!(top > 0, "an untrained model makes mistakes");
    let row_total: u64 = confusion[ti].iter().sum();
    let first_pair = format!(
        "| {} | {} | {top} | {:.1}% |",
        names[ti],
        names[pi],
        top as f64 / row_total as f64 * 100.0
    );

    for (template, numbered) in [(GENERIC, true), (LAB2, false)] {
        let md = report(dir, template, "rep");
        assert!(
            md.contains("%** on synthetic (") && md.contains("200 test images"),
            "{template}: the dataset is not named:\n{md}"
        );
        let figure = md
            .lines()
            .find(|l| l.starts_with("![") && l.contains("test confusion matrix"))
            .unwrap_or_else(|| panic!("{template}: no confusion-matrix figure:\n{md}"));
        let link = figure.rsplit("](").next().unwrap().trim_end_matches(')');
        assert!(dir.join("rep").join(link).is_file(), "{link} does not resolve");
        assert_eq!(figure.starts_with("![Figure "), numbered, "{figure}");
        assert!(md.contains("Most-confused pairs:"), "{template}:\n{md}");
        assert!(md.contains(&first_pair), "{template} lacks `{first_pair}`:\n{md}");
        // Ten classes: the whole per-class table, every class once.
        assert!(
            md.contains("| class | accuracy | test images |"),
            "{template}:\n{md}"
        );
        for n in &names {
            let rows = md.lines().filter(|l| l.starts_with(&format!("| {n} | "))).count();
            assert!(rows >= 1, "{template}: no per-class row for {n}");
        }
        assert!(
            md.contains(&format!(
                "Test accuracy {:.1}% is within 5 points of chance (10.0% for 10 classes)",
                accuracy * 100.0
            )),
            "{template}: no chance observation:\n{md}"
        );
        // Deterministic: rendering again gives the same text.
        assert_eq!(md, report(dir, template, "rep2"), "{template}");
    }

    // `eval` heads the matrix's rows and columns.
    let o = labpipe(dir, &["eval", "guess.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let header = text
        .lines()
        .find(|l| l.starts_with("true \\ predicted"))
        .unwrap_or_else(|| panic!("no header row:\n{text}"));
    let columns: Vec<&str> = header["true \\ predicted".len()..].split_whitespace().collect();
    assert_eq!(columns, names, "{text}");
    let first_row = text
        .lines()
        .skip_while(|l| !l.starts_with("true \\ predicted"))
        .nth(1)
        .unwrap();
    assert!(first_row.starts_with(&names[0]), "{first_row}");
    let cells: Vec<u64> = first_row[names[0].len()..]
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(cells, confusion[0]);
}
