//! `labpipe plan` / `run --dry-run`: what would run, and why.

use super::{Exit, selected};
use labpipe::cache::key::explain_change;
use labpipe::cache::{Miss, Store};
use labpipe::pipeline::record::RunRecord;
use labpipe::pipeline::stages::STAGES;
use labpipe::pipeline::{Executor, Options};
use labpipe::spec::Pipeline;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The stages a stage's key says it consumes.
fn upstream(key: &labpipe::cache::StageKey) -> Vec<String> {
    key.input["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["stage"].as_str().map(String::from))
        .collect()
}

pub fn plan(
    pipelines: &[Pipeline],
    only: &Option<String>,
    out: &Path,
    device: &candle_core::Device,
) -> Result<i32, Exit> {
    let opts = Options {
        out: out.to_path_buf(),
        device: device.clone(),
        workers: 1,
        quiet: true,
        interrupt: Arc::new(AtomicBool::new(false)),
    };
    let mut exec = Executor::new(&opts);
    let store = Store::new(out);
    let (mut images_to_train, mut macs_to_train) = (0u128, 0u128);
    for p in pipelines {
        println!("{} ({})", p.name, p.path.display());
        for run in selected(p, only)? {
            let keys = exec
                .keys(run)
                .map_err(|e| Exit::BadInput(format!("error: run `{}`: {e}", run.name)))?;
            let previous = RunRecord::load(out, &p.name, &run.name);
            println!("  {}", run.name);
            let mut will_run: Vec<&str> = Vec::new();
            for (i, key) in keys.all().into_iter().enumerate() {
                let stage = STAGES[i];
                let state = match store.lookup(key) {
                    Ok(_) => "cached".to_string(),
                    Err(miss) => {
                        let why = match (&miss, &previous) {
                            (Miss::Corrupt(w), _) => format!("artifact damaged: {w}"),
                            (Miss::Absent, _)
                                if upstream(key).iter().any(|u| will_run.contains(&u.as_str())) =>
                            {
                                let ups: Vec<String> = upstream(key)
                                    .into_iter()
                                    .filter(|u| will_run.contains(&u.as_str()))
                                    .collect();
                                format!("upstream stage `{}` will run", ups.join("`, `"))
                            }
                            (Miss::Absent, Some(rec)) => {
                                let old = rec.keys.all()[i];
                                if old.key == key.key {
                                    "artifacts missing (removed by `labpipe clean`?)".into()
                                } else {
                                    let changes = explain_change(&old.input, &key.input);
                                    if changes.is_empty() {
                                        "inputs changed".into()
                                    } else {
                                        changes.join("; ")
                                    }
                                }
                            }
                            (Miss::Absent, None) => "new run".into(),
                        };
                        will_run.push(stage);
                        if stage == "train" {
                            let images = run.train.epochs as u128
                                * run.data.train_size.unwrap_or(
                                    if run.data.dataset == labpipe::spec::file::DatasetKind::Cifar10 {
                                        50_000
                                    } else {
                                        labpipe::data::synthetic::DEFAULT_TRAIN
                                    },
                                ) as u128;
                            images_to_train += images;
                            if let Ok(s) = labpipe::summary::summarize(&run.decl) {
                                // Forward + backward ≈ 3× the forward multiply-accumulates.
                                macs_to_train += images * 3 * s.flops.thop_macs as u128;
                            }
                        }
                        format!("will run: {why}")
                    }
                };
                println!("    {stage:<9}{state}");
            }
        }
    }
    if images_to_train > 0 {
        println!(
            "work to do: {} training images (epochs × images), about {:.2} TMAC of training compute",
            images_to_train,
            macs_to_train as f64 / 1e12
        );
    } else {
        println!("everything is cached: nothing to train");
    }
    Ok(0)
}
