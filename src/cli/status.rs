//! `labpipe status`: one line per run.

use super::{Exit, records_for};
use labpipe::cache::Store;
use labpipe::pipeline::record::RunStatus;
use labpipe::pipeline::stages::STAGES;
use labpipe::pipeline::{Executor, Options, read_json};
use labpipe::spec::{self, Pipeline};
use labpipe::train::evaluate::TestMetrics;
use labpipe::train::trainer::TrainOutcome;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub fn status(files: &[PathBuf], out: &Path, as_json: bool) -> Result<i32, Exit> {
    let pipelines: Vec<Pipeline> = files
        .iter()
        .map(|f| spec::load(f, &[]).map_err(|e| Exit::BadInput(e.to_string())))
        .collect::<Result<_, _>>()?;
    let store = Store::new(out);
    let opts = Options {
        out: out.to_path_buf(),
        device: candle_core::Device::Cpu,
        workers: 1,
        quiet: true,
        interrupt: Arc::new(AtomicBool::new(false)),
    };
    let mut exec = Executor::new(&opts);
    let mut rows = Vec::new();
    // Runs declared in the given pipelines that have no record yet are listed as missing.
    for p in &pipelines {
        for r in &p.runs {
            if labpipe::pipeline::record::RunRecord::load(out, &p.name, &r.name).is_none() {
                rows.push(json!({"pipeline": p.name, "run": r.name, "stages": STAGES.iter().map(|s| json!({"stage": s, "state": "missing"})).collect::<Vec<_>>(), "status": "not run"}));
            }
        }
    }
    for rec in records_for(&pipelines, out) {
        let current = pipelines
            .iter()
            .find(|p| p.name == rec.spec.pipeline)
            .and_then(|p| p.runs.iter().find(|r| r.name == rec.spec.name))
            .and_then(|r| exec.keys(r).ok());
        let mut stages = Vec::new();
        for (i, key) in rec.keys.all().into_iter().enumerate() {
            let state = match (store.lookup(key), &current) {
                (Ok(_), Some(cur)) if cur.all()[i].key != key.key => "stale".to_string(),
                (Ok(_), _) => "done".to_string(),
                (Err(labpipe::cache::Miss::Corrupt(w)), _) => format!("damaged ({w})"),
                (Err(_), _) => "missing".to_string(),
            };
            stages.push(json!({"stage": STAGES[i], "state": state}));
        }
        let outcome: Option<TrainOutcome> = store
            .lookup(&rec.keys.train)
            .ok()
            .and_then(|d| read_json(&d, "outcome.json").ok());
        let metrics: Option<TestMetrics> = store
            .lookup(&rec.keys.evaluate)
            .ok()
            .and_then(|d| read_json(&d, "metrics.json").ok());
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
