//! `labpipe plan` / `run --dry-run`: prints what would run, and why (the logic is `pipeline::plan`).

use super::Exit;
use labpipe::pipeline::plan::{RunPlan, StagePlan, plan_run};
use labpipe::pipeline::stage::Fingerprints;
use labpipe::spec::{Pipeline, RunSpec};
use serde_json::{Value, json};
use std::path::Path;

/// `pipelines` hold only the selected runs (see `super::select`); with `as_json`, one JSON array of runs.
pub fn plan(
    pipelines: &[Pipeline],
    out: &Path,
    device: &candle_core::Device,
    as_json: bool,
) -> Result<i32, Exit> {
    let device = labpipe::device::kind(device);
    let mut fps = Fingerprints::default();
    let (mut images_to_train, mut macs_to_train) = (0u128, 0u128);
    let mut objects = Vec::new();
    for p in pipelines {
        if !as_json {
            println!("{} ({})", p.name, p.path.display());
        }
        for run in &p.runs {
            let plan = plan_run(run, out, device, &mut fps)
                .map_err(|e| Exit::BadInput(format!("error: run `{}`: {e}", run.name)))?;
            images_to_train += plan.images_to_train;
            macs_to_train += plan.macs_to_train;
            if as_json {
                objects.push(run_object(p, run, &plan));
                continue;
            }
            println!("  {}", run.name);
            for (stage, state) in &plan.stages {
                let state = match state {
                    StagePlan::Cached => "cached".to_string(),
                    StagePlan::WillRun(why) => format!("will run: {why}"),
                };
                println!("    {:<9}{state}", stage.name());
            }
        }
    }
    if as_json {
        let text = serde_json::to_string_pretty(&objects).map_err(|e| Exit::Failed(e.into()))?;
        println!("{text}");
        return Ok(0);
    }
    if images_to_train > 0 {
        let macs = macs_to_train as f64;
        let compute = if macs >= 1e11 {
            format!("{:.2} TMAC", macs / 1e12)
        } else {
            format!("{:.2} GMAC", macs / 1e9)
        };
        println!(
            "work to do: {images_to_train} training images (epochs × images), about {compute} of training compute"
        );
    } else {
        println!("everything is cached: nothing to train");
    }
    Ok(0)
}

/// One run of `plan --json` (README's command table lists the fields).
fn run_object(p: &Pipeline, run: &RunSpec, plan: &RunPlan) -> Value {
    let stages: Vec<Value> = plan
        .stages
        .iter()
        .map(|(stage, state)| {
            let (state, why) = match state {
                StagePlan::Cached => ("cached", Value::Null),
                StagePlan::WillRun(why) => ("will_run", json!(why)),
            };
            json!({"stage": stage, "key": plan.keys.get(*stage).key, "state": state, "why": why})
        })
        .collect();
    let count = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
    json!({
        "pipeline": p.name,
        "file": p.path,
        "run": run.name,
        "id": run.id,
        "stages": stages,
        "images_to_train": count(plan.images_to_train),
        "macs_to_train": count(plan.macs_to_train),
    })
}
