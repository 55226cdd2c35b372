//! `labpipe plan` / `run --dry-run`: what would run, and why.

use super::{Exit, selected};
use labpipe::cache::key::{changed_inputs, explain_change};
use labpipe::cache::{Miss, StageKey, Store};
use labpipe::pipeline::record::RunRecord;
use labpipe::pipeline::record::RunStatus;
use labpipe::pipeline::stages::STAGES;
use labpipe::pipeline::{Executor, Options};
use labpipe::spec::Pipeline;
use labpipe::train::trainer::resume_progress;
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

/// Why the stage at position `i` with `key` must run, in the user's words.
fn reason(
    store: &Store,
    key: &StageKey,
    i: usize,
    miss: &Miss,
    previous: Option<&RunRecord>,
    will_run: &[&str],
) -> String {
    if let Miss::Corrupt(w) = miss {
        return format!("artifact damaged: {w}");
    }
    let partial = store.partial_dir(key);
    if partial.is_dir() {
        if let Ok(None) = store.try_lock(key) {
            return "another labpipe process is building it now (`run` would wait, then reuse it)".into();
        }
        return match resume_progress(&partial) {
            Some(done) => format!("interrupted earlier; resumes after epoch {done}"),
            None => "an earlier attempt did not finish; starts again".into(),
        };
    }
    let Some(rec) = previous else {
        return "new run".into();
    };
    let old = rec.keys.all()[i];
    let running_upstream: Vec<String> = upstream(key)
        .into_iter()
        .filter(|u| will_run.contains(&u.as_str()))
        .collect();
    if old.key == key.key {
        return match &rec.status {
            RunStatus::Failed { stage, .. } if stage == STAGES[i] => "failed last time; runs again".into(),
            _ if !running_upstream.is_empty() => {
                format!("upstream stage `{}` will run", running_upstream.join("`, `"))
            }
            RunStatus::Interrupted | RunStatus::Failed { .. } => "did not run last time".into(),
            _ => "artifacts missing (removed by `labpipe clean`?)".into(),
        };
    }
    let mut why = explain_change(&old.input, &key.input);
    if !running_upstream.is_empty() {
        why.push(format!(
            "upstream stage `{}` will run",
            running_upstream.join("`, `")
        ));
    } else {
        let changed = changed_inputs(&old.input, &key.input);
        if !changed.is_empty() {
            why.push(format!("upstream stage `{}` changed", changed.join("`, `")));
        }
    }
    if why.is_empty() {
        "inputs changed".into()
    } else {
        why.join("; ")
    }
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
                        let why = reason(&store, key, i, &miss, previous.as_ref(), &will_run);
                        will_run.push(stage);
                        if stage == "train" {
                            let all = run.data.train_size.unwrap_or(
                                if run.data.dataset == labpipe::spec::file::DatasetKind::Cifar10 {
                                    50_000
                                } else {
                                    labpipe::data::synthetic::DEFAULT_TRAIN
                                },
                            );
                            let train_images = all - run.data.val_split.count(all).min(all);
                            // An interrupted build resumes: only the epochs it has not checkpointed are work.
                            let done = resume_progress(&store.partial_dir(key)).unwrap_or(0);
                            let images = run.train.epochs.saturating_sub(done) as u128 * train_images as u128;
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
