//! What `labpipe run` says at the end: a results table on stdout, one row per run of the call (cached ones
//! too), or with `--json` one JSON object per run as it finishes.

use labpipe::cache::Store;
use labpipe::pipeline::record::{RunRecord, RunStatus};
use labpipe::pipeline::stage::{EvaluateArtifacts, Stage, TrainArtifacts};
use labpipe::pipeline::{RunOutcome, StageOutcome};
use serde_json::{Value, json};
use std::path::Path;

/// How `run` reports its runs on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Results {
    /// An aligned table once every run has finished.
    Table,
    /// One JSON object per finished run (JSON lines), nothing else on stdout.
    Json,
    /// Nothing (a child process of `--jobs`: its parent reports).
    Off,
}

/// One finished run, as the table and the JSON lines show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    /// Pipeline name.
    pub pipeline: String,
    /// Run name.
    pub run: String,
    /// The run's content id (empty when it has no record).
    pub id: String,
    /// How it ended.
    pub status: Option<RunStatus>,
    /// Whether its training came from the cache; unknown when another process ran it (`--jobs`).
    pub cached: Option<bool>,
    /// Epochs trained.
    pub epochs: Option<usize>,
    /// Epochs asked for.
    pub max_epochs: Option<usize>,
    /// Best validation accuracy and its epoch.
    pub best_val: Option<(usize, f64)>,
    /// Test accuracy of the chosen checkpoint.
    pub test_accuracy: Option<f64>,
    /// Seconds training took (when it ran, maybe in an earlier call).
    pub train_seconds: Option<f64>,
    /// Seconds this call spent on the run.
    pub seconds: f64,
}

impl ResultRow {
    /// The row of a run this process ran: its outcome, and what its record and artifacts say.
    pub fn of_outcome(out: &Path, pipeline: &str, outcome: &RunOutcome) -> Self {
        let cached = outcome
            .stages
            .iter()
            .find(|(s, _)| *s == Stage::Train)
            .map(|(_, o)| *o == StageOutcome::Cached);
        let seconds = outcome
            .stages
            .iter()
            .map(|(_, o)| match o {
                StageOutcome::Ran(s) => *s,
                _ => 0.0,
            })
            .sum();
        let mut row = Self::of_record(out, pipeline, &outcome.name, seconds);
        row.status = Some(outcome.status.clone());
        row.cached = cached;
        row
    }

    /// The row of a run as its record and artifacts under `out` say (another process ran it).
    pub fn of_record(out: &Path, pipeline: &str, run: &str, seconds: f64) -> Self {
        let rec = RunRecord::load(out, pipeline, run);
        let store = Store::new(out);
        let outcome = rec
            .as_ref()
            .and_then(|r| store.lookup(&r.keys.train, Stage::Train.files()).ok())
            .and_then(|d| TrainArtifacts::read(&d).ok())
            .map(|t| t.outcome);
        let metrics = rec
            .as_ref()
            .and_then(|r| store.lookup(&r.keys.evaluate, Stage::Evaluate.files()).ok())
            .and_then(|d| EvaluateArtifacts::read(&d).ok())
            .map(|e| e.metrics);
        ResultRow {
            pipeline: pipeline.to_string(),
            run: run.to_string(),
            id: rec.as_ref().map(|r| r.spec.id.clone()).unwrap_or_default(),
            status: rec.as_ref().map(|r| r.status.clone()),
            cached: None,
            epochs: outcome.as_ref().map(|o| o.history.epochs.len()),
            max_epochs: rec.as_ref().map(|r| r.spec.train.epochs),
            best_val: outcome
                .as_ref()
                .and_then(|o| o.history.best_val_accuracy().map(|e| (e.epoch, e.val_accuracy))),
            test_accuracy: metrics.map(|m| m.accuracy),
            train_seconds: outcome.map(|o| o.seconds),
            seconds,
        }
    }

    /// The status column: `done`, `cached` (training came from the cache), `diverged`, `failed in STAGE`,
    /// `interrupted`, or `no record`.
    pub fn status_word(&self) -> String {
        match &self.status {
            Some(RunStatus::Done) if self.cached == Some(true) => "cached".into(),
            Some(RunStatus::Done) => "done".into(),
            Some(RunStatus::Diverged { .. }) => "diverged".into(),
            Some(RunStatus::Failed { stage, .. }) => format!("failed in {stage}"),
            Some(RunStatus::Interrupted) => "interrupted".into(),
            None => "no record".into(),
        }
    }

    /// The `run --json` object (README's command table lists the fields).
    pub fn to_json(&self) -> Value {
        let message = match &self.status {
            Some(RunStatus::Diverged { message }) | Some(RunStatus::Failed { message, .. }) => {
                json!(message)
            }
            _ => Value::Null,
        };
        let failed_stage = match &self.status {
            Some(RunStatus::Failed { stage, .. }) => json!(stage),
            _ => Value::Null,
        };
        json!({
            "pipeline": self.pipeline,
            "run": self.run,
            "id": self.id,
            "status": self.status_word(),
            "failed_stage": failed_stage,
            "message": message,
            "cached": self.cached,
            "epochs": self.epochs,
            "max_epochs": self.max_epochs,
            "best_val_accuracy": self.best_val.map(|b| b.1),
            "best_epoch": self.best_val.map(|b| b.0),
            "test_accuracy": self.test_accuracy,
            "train_seconds": self.train_seconds,
            "seconds": self.seconds,
        })
    }
}

/// Print one row as a JSON line (flushed, so that a script reading the pipe sees each run as it ends).
pub fn print_json_line(row: &ResultRow) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", row.to_json());
    let _ = stdout.flush();
}

/// Print the table; after progress lines (not `quiet`) a blank line keeps it apart on a terminal.
pub fn print_table(rows: &[ResultRow], quiet: bool) {
    if !quiet {
        println!();
    }
    print!("{}", table(rows));
}

/// The aligned results table; the pipeline is named in the run column when the rows come from several.
pub fn table(rows: &[ResultRow]) -> String {
    let several = rows.iter().any(|r| r.pipeline != rows[0].pipeline);
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let header = [
        "run",
        "epochs",
        "best val acc @ epoch",
        "test acc",
        "time",
        "status",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                if several {
                    format!("{}/{}", r.pipeline, r.run)
                } else {
                    r.run.clone()
                },
                match (r.epochs, r.max_epochs) {
                    (Some(e), Some(m)) => format!("{e}/{m}"),
                    (None, Some(m)) => format!("0/{m}"),
                    _ => "-".into(),
                },
                r.best_val
                    .map(|(epoch, acc)| format!("{} @ {epoch}", pct(acc)))
                    .unwrap_or_else(|| "-".into()),
                r.test_accuracy.map(pct).unwrap_or_else(|| "-".into()),
                r.train_seconds.map(duration).unwrap_or_else(|| "-".into()),
                r.status_word(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Text columns left, numbers right.
    let line = |cols: [&str; 6]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            let cell = if i == 0 || i == 5 {
                format!("{c}{pad}")
            } else {
                format!("{pad}{c}")
            };
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&cell);
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    out += &line(widths.map(|w| "─".repeat(w)).each_ref().map(String::as_str));
    for row in &cells {
        out += &line(row.each_ref().map(String::as_str));
    }
    out
}

/// Seconds as `42.1s`, `3m05s` or `1h02m`.
fn duration(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, whole % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, status: RunStatus, cached: Option<bool>) -> ResultRow {
        ResultRow {
            pipeline: "p".into(),
            run: run.into(),
            id: "abc".into(),
            status: Some(status),
            cached,
            epochs: Some(3),
            max_epochs: Some(3),
            best_val: Some((2, 0.5)),
            test_accuracy: Some(0.4875),
            train_seconds: Some(75.0),
            seconds: 0.0,
        }
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let mut failed = row(
            "baseline[lr=0.0001]",
            RunStatus::Failed {
                stage: Stage::Train,
                message: "boom".into(),
            },
            Some(false),
        );
        failed.epochs = None;
        failed.best_val = None;
        failed.test_accuracy = None;
        failed.train_seconds = None;
        let t = table(&[
            row("baseline[lr=0.1]", RunStatus::Done, Some(true)),
            row("baseline[lr=0.01]", RunStatus::Done, Some(false)),
            failed,
        ]);
        let expected = "\
run                  epochs  best val acc @ epoch  test acc   time  status
───────────────────  ──────  ────────────────────  ────────  ─────  ───────────────
baseline[lr=0.1]        3/3            50.00% @ 2    48.75%  1m15s  cached
baseline[lr=0.01]       3/3            50.00% @ 2    48.75%  1m15s  done
baseline[lr=0.0001]     0/3                     -         -      -  failed in train
";
        assert_eq!(t, expected);
    }

    #[test]
    fn rows_of_several_pipelines_name_the_pipeline() {
        let mut other = row("baseline", RunStatus::Done, None);
        other.pipeline = "q".into();
        let t = table(&[row("baseline", RunStatus::Done, None), other]);
        assert!(t.contains("\np/baseline "), "{t}");
        assert!(t.contains("\nq/baseline "), "{t}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(4.04), "4.0s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
    }

    #[test]
    fn the_json_object_names_the_failure() {
        let r = row(
            "a",
            RunStatus::Failed {
                stage: Stage::Evaluate,
                message: "boom".into(),
            },
            Some(false),
        );
        let v = r.to_json();
        assert_eq!(v["status"], "failed in evaluate");
        assert_eq!(v["failed_stage"], "evaluate");
        assert_eq!(v["message"], "boom");
        assert_eq!(v["best_epoch"], 2);
        assert_eq!(v["cached"], false);
    }
}
