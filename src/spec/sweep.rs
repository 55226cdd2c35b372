//! `--sweep PATH=V1,V2`: axes from the command line, added to every experiment's `matrix:` so that a sweep's
//! runs are named, keyed and reported exactly as the same matrix written in the file would be.

use super::diagnostic::Diagnostic;
use super::locate::Pos;
use super::overrides::{self, SweepAxis, overlap};
use super::{Ctx, SpecError};
use serde_json::{Map, Value};

/// The `--sweep` items parsed and checked against the file's fields and the `-S` overrides.
pub(super) fn parse(
    ctx: &Ctx,
    base: &Value,
    set: &[(String, Value)],
    items: &[String],
) -> Result<Vec<SweepAxis>, SpecError> {
    let invalid = |d: Diagnostic| SpecError::Invalid(vec![d]);
    let axes = overrides::parse_sweeps(items).map_err(|e| {
        invalid(ctx.diag(None, e).help(
            "write sweeps as `--sweep train.optimizer.lr=0.1,0.01` or `--sweep 'train.scheduler=[{name: step, step_size: 10}, {name: constant}]'`",
        ))
    })?;
    let mut diags = Vec::new();
    for (path, values) in &axes {
        let label = format!("in `--sweep {path}=...`");
        if let Some((k, _)) = set.iter().find(|(k, _)| overlap(k, path)) {
            diags.push(
                ctx.diag(None, format!("`--sweep {path}` and `-S {k}` set the same field"))
                    .label(label.clone())
                    .help("sweep it, or set it, not both"),
            );
            continue;
        }
        // Only whether the path exists is checked here; each value's type is checked with its run.
        if let Err(e) = overrides::apply(&mut base.clone(), path, values[0].clone()) {
            let mut d = ctx.diag(None, e.message).label(label);
            if let Some(h) = e.suggestion {
                d = d.help(format!("did you mean `{h}`?"));
            }
            diags.push(d);
        }
    }
    if diags.is_empty() {
        Ok(axes)
    } else {
        Err(SpecError::Invalid(diags))
    }
}

/// The experiments to expand: the file's, or with sweeps and none in the file, the one run as `baseline`.
pub(super) fn experiments(
    written: Option<&Map<String, Value>>,
    sweeps: &[SweepAxis],
) -> Option<Map<String, Value>> {
    match written.filter(|e| !e.is_empty()) {
        Some(e) => Some(e.clone()),
        None if !sweeps.is_empty() => {
            let mut m = Map::new();
            m.insert("baseline".into(), Value::Object(Map::new()));
            Some(m)
        }
        None => written.cloned(),
    }
}

/// A sweep may not touch a field that experiment `name` already sweeps in its matrix or sets itself: one of
/// the two settings would silently win.
pub(super) fn check_conflicts(
    ctx: &Ctx,
    name: &str,
    pos: Option<Pos>,
    matrix: &[SweepAxis],
    fixed: &[(String, Value)],
    sweeps: &[SweepAxis],
    diags: &mut Vec<Diagnostic>,
) {
    for (path, _) in sweeps {
        if let Some((axis, _)) = matrix.iter().find(|(a, _)| overlap(a, path)) {
            let at = ctx
                .index
                .find_key(&format!("experiments.{name}.matrix.{axis}"))
                .or(pos);
            diags.push(
                ctx.diag(
                    at,
                    format!("`--sweep {path}`: experiment `{name}` already sweeps `{axis}` in its matrix"),
                )
                .label("this matrix axis")
                .help("add the values to this axis, or select other runs with `--only`"),
            );
        } else if let Some((key, _)) = fixed.iter().find(|(k, _)| overlap(k, path)) {
            let at = ctx.index.find_key(&format!("experiments.{name}.{key}")).or(pos);
            diags.push(
                ctx.diag(at, format!("`--sweep {path}`: experiment `{name}` sets `{key}`"))
                    .label("the sweep would replace this value")
                    .help("sweep a field the experiment leaves alone, or write a `matrix:` in the file"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CommandLine, Pipeline, SpecError, load_str, load_str_with};
    use std::path::Path;

    const BASE: &str = "name: t
data: {dataset: synthetic, train_size: 200, test_size: 50, val_split: 20}
model: {arch: simple_cnn}
train:
  epochs: 2
  batch_size: 32
  optimizer: {name: sgd, lr: 0.1}
";

    fn swept(text: &str, set: &[&str], sweep: &[&str]) -> Result<Pipeline, SpecError> {
        let cli = CommandLine {
            set: set.iter().map(|s| s.to_string()).collect(),
            sweep: sweep.iter().map(|s| s.to_string()).collect(),
        };
        load_str_with(Path::new("p.yaml"), text, &cli)
    }

    fn same_runs(a: &Pipeline, b: &Pipeline) {
        let names = |p: &Pipeline| p.runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(a), names(b));
        assert_eq!(a.runs, b.runs);
        assert_eq!(a.matrices, b.matrices);
    }

    #[test]
    fn a_sweep_of_a_file_without_experiments_is_a_baseline_matrix() {
        let by_flag = swept(
            BASE,
            &[],
            &["train.optimizer.lr=0.1,0.01,0.001", "train.batch_size=[16, 32]"],
        )
        .unwrap();
        let in_file = format!(
            "{BASE}experiments:\n  baseline:\n    matrix:\n      train.optimizer.lr: [0.1, 0.01, 0.001]\n      train.batch_size: [16, 32]\n"
        );
        let in_file = load_str(Path::new("p.yaml"), &in_file, &[]).unwrap();
        same_runs(&by_flag, &in_file);
        assert_eq!(by_flag.runs.len(), 6);
        assert_eq!(by_flag.runs[0].name, "baseline[lr=0.1,batch_size=16]");
        assert_eq!(by_flag.runs[5].name, "baseline[lr=0.001,batch_size=32]");
        assert_eq!(
            by_flag.matrices,
            [(
                "baseline".to_string(),
                vec!["train.optimizer.lr".to_string(), "train.batch_size".to_string()]
            )]
        );
    }

    #[test]
    fn a_sweep_adds_an_axis_to_every_experiment() {
        let file = format!(
            "{BASE}experiments:\n  baseline: {{}}\n  wide: {{model.dropout: 0.2}}\n  lr:\n    matrix:\n      train.optimizer.lr: [0.5, 0.01]\n"
        );
        let by_flag = swept(&file, &["train.epochs=1"], &["train.batch_size=16,32"]).unwrap();
        let in_file = format!(
            "{BASE}experiments:\n  baseline:\n    matrix: {{train.batch_size: [16, 32]}}\n  wide:\n    model.dropout: 0.2\n    matrix: {{train.batch_size: [16, 32]}}\n  lr:\n    matrix:\n      train.optimizer.lr: [0.5, 0.01]\n      train.batch_size: [16, 32]\n"
        );
        let in_file = swept(&in_file, &["train.epochs=1"], &[]).unwrap();
        same_runs(&by_flag, &in_file);
        let names: Vec<&str> = by_flag.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "baseline[batch_size=16][train.epochs=1]",
                "baseline[batch_size=32][train.epochs=1]",
                "wide[batch_size=16][train.epochs=1]",
                "wide[batch_size=32][train.epochs=1]",
                "lr[lr=0.5,batch_size=16][train.epochs=1]",
                "lr[lr=0.5,batch_size=32][train.epochs=1]",
                "lr[lr=0.01,batch_size=16][train.epochs=1]",
                "lr[lr=0.01,batch_size=32][train.epochs=1]",
            ]
        );
    }

    #[test]
    fn a_sweep_over_a_path_the_matrix_sweeps_points_at_the_axis() {
        let file = format!("{BASE}experiments:\n  lr:\n    matrix:\n      train.optimizer.lr: [0.1, 0.01]\n");
        let e = swept(&file, &[], &["train.optimizer.lr=0.5,0.05"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`--sweep train.optimizer.lr`: experiment `lr` already sweeps `train.optimizer.lr`"),
            "{e}"
        );
        assert!(e.contains("p.yaml:11:7"), "{e}");
        // A path inside the swept one is the same field.
        let e = swept(&file, &[], &["train.optimizer=[{name: adam, lr: 0.1}]"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already sweeps `train.optimizer.lr`"), "{e}");
    }

    #[test]
    fn a_sweep_over_a_path_an_experiment_sets_points_at_it() {
        let file = format!("{BASE}experiments:\n  fast:\n    train.optimizer.lr: 0.5\n");
        let e = swept(&file, &[], &["train.optimizer.lr=0.1,0.01"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("experiment `fast` sets `train.optimizer.lr`"), "{e}");
        assert!(e.contains("p.yaml:10:5"), "{e}");
    }

    #[test]
    fn sweep_errors_name_the_flag() {
        let e = swept(BASE, &[], &["train.optimiser.lr=0.1,0.01"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`train.optimiser.lr` is not a field of the pipeline"),
            "{e}"
        );
        assert!(e.contains("in `--sweep train.optimiser.lr=...`"), "{e}");
        assert!(e.contains("did you mean `train.optimizer.lr`?"), "{e}");
        let e = swept(BASE, &[], &["train.epochs=[]"]).unwrap_err().to_string();
        assert!(e.contains("no values to sweep"), "{e}");
        assert!(e.contains("p.yaml"), "{e}");
        let e = swept(BASE, &["train.epochs=3"], &["train.epochs=1,2"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`--sweep train.epochs` and `-S train.epochs` set the same field"),
            "{e}"
        );
        let e = swept(BASE, &[], &["train.epochs=1,many"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("run `baseline[epochs=many]`"), "{e}");
    }
}
