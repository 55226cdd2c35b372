//! `--sweep` from the command line: the same runs, names and stage keys as the equivalent `matrix:` in the
//! file, so one's results are the other's cache; every command selects the swept runs; errors name the flag.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::files::write;
use crate::util::pipeline::linear_pipeline;
use serde_json::Value;

fn base() -> String {
    linear_pipeline("s", 1)
}

/// The same file with the sweep written as a matrix.
fn matrix_file() -> String {
    format!(
        "{}experiments:\n  baseline:\n    matrix:\n      train.optimizer.lr: [0.1, 0.01]\n      train.batch_size: [20, 40]\n",
        base()
    )
}

const SWEEP: [&str; 4] = [
    "--sweep",
    "train.optimizer.lr=0.1,0.01",
    "--sweep",
    "train.batch_size=[20, 40]",
];

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

/// `plan --json` of the runs: names with their stage keys.
fn planned(dir: &std::path::Path, file: &str, extra: &[&str]) -> Vec<(String, Vec<String>)> {
    let o = labpipe(dir, &args(&["plan", "--json", file], extra));
    assert!(o.status.success(), "{}", stderr(&o));
    let runs: Value = serde_json::from_str(&stdout(&o)).expect("plan --json is JSON");
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let keys = r["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| format!("{}={}", s["stage"].as_str().unwrap(), s["key"].as_str().unwrap()))
                .collect();
            (r["run"].as_str().unwrap().to_string(), keys)
        })
        .collect()
}

#[test]
fn a_sweep_gives_the_runs_and_keys_of_the_equivalent_matrix_and_shares_its_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "swept.yaml", &base());
    write(dir, "matrix.yaml", &matrix_file());

    let by_flag = planned(dir, "swept.yaml", &SWEEP);
    let in_file = planned(dir, "matrix.yaml", &[]);
    let names: Vec<&str> = by_flag.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline[lr=0.1,batch_size=20]",
            "baseline[lr=0.1,batch_size=40]",
            "baseline[lr=0.01,batch_size=20]",
            "baseline[lr=0.01,batch_size=40]",
        ]
    );
    assert_eq!(by_flag, in_file);
    // Four runs, four train keys.
    let mut train: Vec<&String> = by_flag.iter().map(|(_, k)| &k[2]).collect();
    train.dedup();
    assert_eq!(train.len(), 4);

    // Running the sweep fills the cache the matrix file finds: nothing runs again.
    let o = labpipe(dir, &args(&["run", "swept.yaml", "--workers", "1"], &SWEEP));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(dir, &["run", "matrix.yaml", "--workers", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stderr(&o)
            .matches("up to date, nothing ran (every stage was in the cache)")
            .count(),
        4,
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o).matches("  cached\n").count(), 4, "{}", stdout(&o));

    // status, report, summary and eval select the swept runs with the same flags.
    let o = labpipe(
        dir,
        &args(&["status", "swept.yaml", "--only", "*lr=0.01*"], &SWEEP),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("s/baseline[lr=0.01,batch_size=20]: done"),
        "{lines:?}"
    );
    let o = labpipe(dir, &args(&["report", "swept.yaml"], &SWEEP));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("baseline[lr=0.01,batch_size=40]"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("not run yet"), "{}", stdout(&o));
    let run = ["--run", "baseline[lr=0.01,batch_size=40]"];
    let o = labpipe(
        dir,
        &args(
            &args(&["eval", "swept.yaml", "--json", "--device", "cpu"], &run),
            &SWEEP,
        ),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = labpipe(dir, &args(&args(&["summary", "swept.yaml"], &run), &SWEEP));
    assert!(o.status.success(), "{}", stderr(&o));
    // Without the sweep the file has its one plain run, not run yet.
    let o = labpipe(dir, &["status", "swept.yaml"]);
    assert!(stdout(&o).starts_with("s/baseline: not run"), "{}", stdout(&o));
}

#[test]
fn sweep_errors_are_located_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &base());
    write(dir, "m.yaml", &matrix_file());
    let fails = |a: &[&str], wanted: &[&str]| {
        let o = labpipe(dir, a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        for w in wanted {
            assert!(stderr(&o).contains(w), "{a:?}: wanted {w:?} in\n{}", stderr(&o));
        }
    };
    fails(
        &["run", "p.yaml", "--sweep", "train.optimiser.lr=0.1,0.01"],
        &[
            "`train.optimiser.lr` is not a field of the pipeline",
            "--> p.yaml",
            "in `--sweep train.optimiser.lr=...`",
            "did you mean `train.optimizer.lr`?",
        ],
    );
    fails(
        &["plan", "p.yaml", "--sweep", "train.epochs="],
        &["sweep `train.epochs=`: no values to sweep", "--> p.yaml"],
    );
    fails(
        &["status", "m.yaml", "--sweep", "train.batch_size=10,20"],
        &[
            "`--sweep train.batch_size`: experiment `baseline` already sweeps `train.batch_size` in its matrix",
            "--> m.yaml:15:7",
        ],
    );
    fails(
        &[
            "report",
            "p.yaml",
            "-S",
            "train.epochs=2",
            "--sweep",
            "train.epochs=1,2",
        ],
        &["`--sweep train.epochs` and `-S train.epochs` set the same field"],
    );
    fails(
        &["status", "--sweep", "train.epochs=1,2"],
        &["`--sweep` needs the pipeline files"],
    );
}
