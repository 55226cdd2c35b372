//! `labpipe status`: one line per run.

use super::select::selected_records;
use super::{Exit, Select};
use labpipe::cache::{Miss, Store};
use labpipe::pipeline::record::{RunRecord, RunStatus};
use labpipe::pipeline::stage::{self, EvaluateArtifacts, Fingerprints, Stage, TrainArtifacts};
use labpipe::spec::Pipeline;
use serde_json::json;
use std::path::Path;

/// A run's status word; a run recorded as interrupted whose stage lock a live process holds is running now.
fn status_word(rec: &RunRecord, store: &Store) -> String {
    match &rec.status {
        RunStatus::Done => "done".to_string(),
        RunStatus::Diverged { .. } => "diverged".to_string(),
        RunStatus::Failed { stage, .. } => format!("failed in {stage}"),
        RunStatus::Interrupted => match rec.keys.iter().find(|(_, key)| store.is_locked(key)) {
            Some((Stage::Train, _)) => "training".to_string(),
            Some((stage, _)) => format!("running {stage}"),
            None => "interrupted".to_string(),
        },
    }
}

/// `pipelines` hold only the selected runs (see `super::select`); with none, every record `sel` picks.
pub fn status(pipelines: &[Pipeline], sel: &Select, out: &Path, as_json: bool) -> Result<i32, Exit> {
    let store = Store::new(out);
    let mut fps = Fingerprints::default();
    let mut rows = Vec::new();
    // In the files' order: runs declared in the given pipelines that have no record yet are listed as missing.
    let entries: Vec<Result<RunRecord, (&str, &str)>> = if pipelines.is_empty() {
        selected_records(pipelines, sel, out)
            .into_iter()
            .map(Ok)
            .collect()
    } else {
        pipelines
            .iter()
            .flat_map(|p| {
                p.runs
                    .iter()
                    .map(|r| RunRecord::load(out, &p.name, &r.name).ok_or((p.name.as_str(), r.name.as_str())))
            })
            .collect()
    };
    for entry in entries {
        let rec = match entry {
            Ok(rec) => rec,
            Err((pipeline, run)) => {
                let stages: Vec<_> = Stage::ALL
                    .iter()
                    .map(|s| json!({"stage": s, "state": "missing"}))
                    .collect();
                rows.push(json!({"pipeline": pipeline, "run": run, "stages": stages, "status": "not run"}));
                continue;
            }
        };
        let current = pipelines
            .iter()
            .find(|p| p.name == rec.spec.pipeline)
            .and_then(|p| p.runs.iter().find(|r| r.name == rec.spec.name))
            // The keys the run would have now, on the device it was made on.
            .and_then(|r| stage::stage_keys(r, rec.device, &mut fps).ok());
        let mut stages = Vec::new();
        for (stage, key) in rec.keys.iter() {
            let state = match (store.lookup(key, stage.files()), &current) {
                (Ok(_), Some(cur)) if cur.get(stage).key != key.key => "stale".to_string(),
                (Ok(_), _) => "done".to_string(),
                (Err(Miss::Corrupt(w)), _) => format!("damaged ({w})"),
                (Err(Miss::Absent), _) => "missing".to_string(),
            };
            stages.push(json!({"stage": stage, "state": state}));
        }
        let outcome = store
            .lookup(&rec.keys.train, Stage::Train.files())
            .ok()
            .and_then(|d| TrainArtifacts::read(&d).ok())
            .map(|t| t.outcome);
        let metrics = store
            .lookup(&rec.keys.evaluate, Stage::Evaluate.files())
            .ok()
            .and_then(|d| EvaluateArtifacts::read(&d).ok())
            .map(|e| e.metrics);
        let best = outcome
            .as_ref()
            .and_then(|o| o.history.best_val_accuracy().map(|e| (e.epoch, e.val_accuracy)));
        let status = status_word(&rec, &store);
        rows.push(json!({
            "pipeline": rec.spec.pipeline,
            "run": rec.spec.name,
            "id": rec.spec.id,
            "status": status,
            "stages": stages,
            "epochs_done": outcome.as_ref().map(|o| o.history.epochs.len()),
            "epochs": rec.spec.train.epochs,
            "best_val_accuracy": best.map(|b| b.1),
            "best_epoch": best.map(|b| b.0),
            "test_accuracy": metrics.as_ref().map(|m| m.accuracy),
        }));
    }
    let queue_note = super::slurm_status::annotate(&mut rows, out);
    if let Some(note) = &queue_note {
        eprintln!("{note}");
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no runs in {}", out.display());
    }
    for r in &rows {
        let stages: Vec<String> = r["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{} {}",
                    s["stage"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or("")
                )
            })
            .collect();
        let num = |v: &serde_json::Value| {
            v.as_f64()
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{}/{}: {} | {} | epochs {}/{} | best val {} (epoch {}) | test {}{}",
            r["pipeline"].as_str().unwrap_or(""),
            r["run"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            stages.join(", "),
            r["epochs_done"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "0".into()),
            r["epochs"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            num(&r["best_val_accuracy"]),
            r["best_epoch"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            num(&r["test_accuracy"]),
            super::slurm_status::column(r),
        );
    }
    Ok(0)
}
