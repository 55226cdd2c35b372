//! Which runs a command works on. `run`, `plan`, `status`, `report`, `eval` and `summary` all select here, so
//! a run is the same run whichever command names it: `-S` overrides make a run of its own (named with them),
//! `--only` matches run names or their experiment's name.

use super::{Exit, Select, glob_match};
use labpipe::pipeline::record::RunRecord;
use labpipe::spec::{self, Pipeline, RunSpec};
use std::path::{Path, PathBuf};

impl Select {
    /// Whether `--only` picks `r` (by its name, an alias, or its experiment's name before `-S` overrides).
    fn picks(&self, r: &RunSpec) -> bool {
        self.only.as_ref().is_none_or(|g| {
            std::iter::once(&r.name)
                .chain(&r.aliases)
                .chain(r.memberships.iter().map(|m| &m.name))
                .any(|n| glob_match(g, n))
        })
    }

    /// Whether `--only` picks a recorded run (when no pipeline file is given).
    fn picks_record(&self, rec: &RunRecord) -> bool {
        self.picks(&rec.spec)
    }
}

/// The pipelines of `files` with only the runs `sel` picks, chosen as `labpipe run` chooses them: `-S` applied
/// (a run with overrides is its own run, named with them), then `--only`. `run`, `plan`, `status`, `report`,
/// `eval` and `summary` all select here.
pub(super) fn select(files: &[PathBuf], sel: &Select) -> Result<Vec<Pipeline>, Exit> {
    let command_line = spec::CommandLine {
        set: sel.set.clone(),
        sweep: sel.sweep.clone(),
    };
    let mut loaded = spec::load_all_with(files, &command_line).map_err(|e| Exit::BadInput(e.to_string()))?;
    for p in &mut loaded {
        let names: Vec<String> = p.runs.iter().map(|r| r.name.clone()).collect();
        p.runs.retain(|r| sel.picks(r));
        if p.runs.is_empty() {
            return Err(Exit::BadInput(format!(
                "error: no run of `{}` matches `--only {}`\n  = runs: {}",
                p.path.display(),
                sel.only.as_deref().unwrap_or(""),
                names.join(", ")
            )));
        }
    }
    Ok(loaded)
}

/// `-S` and `--sweep` change runs of pipeline files; without files there is nothing to apply them to.
pub(super) fn set_needs_files(files: &[PathBuf], sel: &Select) -> Result<(), Exit> {
    if files.is_empty() && !sel.set.is_empty() {
        return Err(Exit::BadInput(
            "error: `-S` needs the pipeline files whose runs it changes, e.g. `labpipe report P.yaml -S train.epochs=2`"
                .into(),
        ));
    }
    if files.is_empty() && !sel.sweep.is_empty() {
        return Err(Exit::BadInput(
            "error: `--sweep` needs the pipeline files whose runs it sweeps, e.g. `labpipe status P.yaml --sweep train.batch_size=64,128`"
                .into(),
        ));
    }
    Ok(())
}

/// Records of the given pipelines' selected runs (when no pipeline is given, every record `sel` picks).
pub(super) fn selected_records(pipelines: &[Pipeline], sel: &Select, out: &Path) -> Vec<RunRecord> {
    if pipelines.is_empty() {
        let mut records: Vec<RunRecord> = RunRecord::all(out, None)
            .into_iter()
            .filter(|r| sel.picks_record(r))
            .collect();
        records.sort_by_cached_key(|r| (r.spec.pipeline.clone(), file_order(r), r.spec.name.clone()));
        return records;
    }
    pipelines
        .iter()
        .flat_map(|p| {
            p.runs
                .iter()
                .filter_map(|r| RunRecord::load(out, &p.name, &r.name))
        })
        .collect()
}

/// Where a recorded run stands in its pipeline file: its first experiment entry's place in the expansion, so
/// matrix runs keep the order the file lists their values in (`lr=0.1, 0.01, 0.001`), not the names' order.
fn file_order(rec: &RunRecord) -> usize {
    rec.spec
        .memberships
        .iter()
        .map(|m| m.order)
        .min()
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::find_run;

    #[test]
    fn every_command_selects_runs_like_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(
            &file,
            "name: p\ndata: {dataset: synthetic, train_size: 100, test_size: 10, val_split: 10}\nmodel: {arch: simple_cnn}\ntrain: {epochs: 3, batch_size: 10, optimizer: {name: sgd, lr: 0.1}}\nexperiments:\n  baseline: {}\n  fast: {train.optimizer.lr: 0.5}\n",
        )
        .unwrap();
        let sel = Select {
            set: vec!["train.epochs=2".into()],
            only: Some("baseline".into()),
            ..Select::default()
        };
        let p = select(std::slice::from_ref(&file), &sel).unwrap().remove(0);
        let names: Vec<&str> = p.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["baseline[train.epochs=2]"]);
        assert_eq!(p.runs[0].set, ["train.epochs=2"]);
        assert_eq!(
            find_run(&p, &Some("baseline".into())).unwrap().name,
            "baseline[train.epochs=2]"
        );
        let plain = select(std::slice::from_ref(&file), &Select::default())
            .unwrap()
            .remove(0);
        assert_eq!(plain.runs.len(), 2);
        assert_eq!(plain.runs[0].name, "baseline");
        assert!(matches!(
            select(std::slice::from_ref(&file), &Select { only: Some("nope".into()), ..Select::default() }),
            Err(Exit::BadInput(m)) if m.contains("runs: baseline, fast")
        ));
    }
}
