//! `labpipe status`: one line per run.

use super::{Exit, records_for};
use labpipe::cache::{Miss, Store};
use labpipe::pipeline::record::{RunRecord, RunStatus};
use labpipe::pipeline::stage::{self, EvaluateArtifacts, Fingerprints, Stage, TrainArtifacts};
use labpipe::spec::{self, Pipeline};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn status(files: &[PathBuf], out: &Path, as_json: bool) -> Result<i32, Exit> {
    let pipelines: Vec<Pipeline> = files
        .iter()
        .map(|f| spec::load(f, &[]).map_err(|e| Exit::BadInput(e.to_string())))
        .collect::<Result<_, _>>()?;
    let store = Store::new(out);
    let mut fps = Fingerprints::default();
    let mut rows = Vec::new();
    // Runs declared in the given pipelines that have no record yet are listed as missing.
    for p in &pipelines {
        for r in &p.runs {
            if RunRecord::load(out, &p.name, &r.name).is_none() {
                let stages: Vec<_> = Stage::ALL
                    .iter()
                    .map(|s| json!({"stage": s, "state": "missing"}))
                    .collect();
                rows.push(json!({"pipeline": p.name, "run": r.name, "stages": stages, "status": "not run"}));
            }
        }
    }
    for rec in records_for(&pipelines, out) {
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
        let status = match &rec.status {
            RunStatus::Done => "done".to_string(),
            RunStatus::Diverged { .. } => "diverged".to_string(),
            RunStatus::Failed { stage, .. } => format!("failed in {stage}"),
            RunStatus::Interrupted => "interrupted".to_string(),
        };
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
            "{}/{}: {} | {} | epochs {}/{} | best val {} (epoch {}) | test {}",
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
        );
    }
    Ok(0)
}
