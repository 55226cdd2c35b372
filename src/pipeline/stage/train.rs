//! The train stage: the training loop with a resumable checkpoint at every epoch. Writes the selected
//! weights (`model.safetensors`), the last epoch's (`last.safetensors`), the history (`history.json`,
//! `history.csv`), the outcome (`outcome.json`) and the resolved run (`config.json`).

use super::artifact::{ArtifactError, StageFailure, existing, read_json, write_json};
use super::inputs::{Compute, PreparedData};
use crate::cache::StageDir;
use crate::cache::key::Seg;
use crate::device::DeviceKind;
use crate::spec::RunSpec;
use crate::train::resume::ResumePoint;
use crate::train::trainer::{self, TrainJob, TrainOutcome};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The stage's name.
pub const NAME: &str = "train";
const MODEL: &str = "model.safetensors";
const LAST: &str = "last.safetensors";
const HISTORY_JSON: &str = "history.json";
const HISTORY_CSV: &str = "history.csv";
const OUTCOME: &str = "outcome.json";
const CONFIG: &str = "config.json";
/// The files a complete build holds.
pub const FILES: &[&str] = &[MODEL, LAST, HISTORY_JSON, HISTORY_CSV, OUTCOME, CONFIG];
/// The files [`publish_history`] puts in a run's folder under `runs/`.
pub const PUBLISHED: &[&str] = &[HISTORY_CSV];
/// The code that decides what the stage writes (see `Stage::sources`): the loop, optimizers, schedules and
/// losses, the network and its kernels on every device (build.rs compiles the CUDA ones), the data pipeline
/// and augmentations, the RNG.
pub const SOURCES: &[&str] = &[
    "src/train/",
    "src/model/",
    "src/data/",
    "src/rng.rs",
    "src/device.rs",
    "src/cuda/",
    "vendor/candle-core/src/",
    "build.rs",
    "src/pipeline/stage/inputs.rs",
    "src/pipeline/stage/train.rs",
];

/// Whether an unfinished build may hold `name` besides [`FILES`]: the resume state.
pub fn is_work_file(name: &str) -> bool {
    trainer::is_resume_file(name)
}

/// A complete train stage, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainArtifacts {
    /// History, selection, divergence.
    pub outcome: TrainOutcome,
    /// The selected weights (PyTorch state_dict names).
    pub model_file: PathBuf,
    /// The per-epoch history as CSV.
    pub history_csv: PathBuf,
}

impl TrainArtifacts {
    /// Read the artifacts of a complete train stage.
    pub fn read(dir: &StageDir) -> Result<Self, ArtifactError> {
        Ok(TrainArtifacts {
            outcome: read_json(&dir.path, OUTCOME)?,
            model_file: existing(&dir.path, MODEL)?,
            history_csv: existing(&dir.path, HISTORY_CSV)?,
        })
    }
}

/// What the train stage's key hashes: the train section, the augmentations and the device kind.
pub(crate) fn key_input(run: &RunSpec, device: DeviceKind) -> Value {
    let mut spec = serde_json::to_value(&run.train).unwrap_or_default();
    if let Some(m) = spec.as_object_mut() {
        // On the CPU the evaluation batch size changes nothing but speed (validation loss is summed per image
        // and rows are computed batch-size-invariantly: `trainer::forward_rows_invariant`); cuBLAS picks its
        // kernels by shape, so on a GPU it changes the validation loss's last bits, and with it selection
        // and early stopping.
        if device == DeviceKind::Cpu {
            m.remove("eval_batch_size");
        }
        m.insert(
            "augment".into(),
            serde_json::to_value(&run.data.augment).unwrap_or_default(),
        );
        m.insert("device".into(), json!(device));
    }
    spec
}

/// Where a train key field comes from in the pipeline file.
pub(crate) fn user_path(path: &[Seg]) -> String {
    match Seg::first_key(path) {
        Some("device") => "device (--device)".into(),
        Some("augment") => Seg::join("data", path),
        _ => Seg::join("train", path),
    }
}

/// Copy the history into `run_files` (`runs/<pipeline>/<run>/`), a path that does not change with the key;
/// returns where it went.
pub fn publish_history(trained: &TrainArtifacts, run_files: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(run_files)?;
    let dest = run_files.join(HISTORY_CSV);
    let tmp = dest.with_extension(format!("csv.tmp-{}", std::process::id()));
    std::fs::copy(&trained.history_csv, &tmp)?;
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// Where the next `run` resumes the unfinished build in `partial` (the epochs of its newest intact resume
/// state), and what damaged state it passes over.
pub fn resume_progress(partial: &Path) -> ResumePoint {
    trainer::resume_progress(partial)
}

/// Training images (epochs × images) and multiply-accumulates still to do for `run`, `done` epochs in.
pub fn work_left(run: &RunSpec, done: usize) -> (u128, u128) {
    // An image folder's size is known only once read: its estimate is zero until then.
    let all = run
        .data
        .train_size
        .or(run.data.dataset.default_train_size())
        .unwrap_or(0);
    let train_images = all - run.data.val_split.count(all).min(all);
    let images = run.train.epochs.saturating_sub(done) as u128 * train_images as u128;
    // Forward + backward ≈ 3× the forward multiply-accumulates.
    let macs = crate::summary::summarize(&run.decl)
        .map(|s| images * 3 * s.flops.thop_macs as u128)
        .unwrap_or(0);
    (images, macs)
}

/// Build the stage into `dir`; `Ok(Some(message))` when training diverged (the stage still completes).
pub(crate) fn build(
    run: &RunSpec,
    data: &PreparedData,
    compute: &Compute,
    dir: &Path,
    tensorboard: PathBuf,
) -> Result<Option<String>, StageFailure> {
    let label = run.label();
    let job = TrainJob {
        label: &label,
        spec: &run.train,
        decl: &run.decl,
        augment: &run.data.augment,
        classes: data.info.class_names.len(),
        train: data.train.clone(),
        val: data.val.clone(),
        stats: data.info.stats.clone(),
        device: compute.device,
        workers: run.data.workers.unwrap_or(compute.workers),
        work_dir: dir,
        model_file: &dir.join(MODEL),
        last_file: &dir.join(LAST),
        quiet: compute.quiet,
        interrupt: compute.interrupt.clone(),
        tensorboard: Some(tensorboard),
    };
    let outcome = trainer::train(&job)?;
    write_json(dir, HISTORY_JSON, &outcome.history)?;
    let csv = dir.join(HISTORY_CSV);
    std::fs::write(&csv, outcome.history.to_csv())
        .map_err(|source| StageFailure::Io { path: csv, source })?;
    write_json(dir, OUTCOME, &outcome)?;
    write_json(dir, CONFIG, run)?;
    trainer::clear_resume_state(dir);
    Ok(outcome.diverged.as_ref().map(|d| d.message()))
}
