//! The evaluate stage: test loss, accuracy, per-class accuracy and the confusion matrix of the selected
//! checkpoint. Writes `metrics.json`.

use super::artifact::{ArtifactError, StageFailure, read_json, write_json};
use super::inputs::{Compute, PreparedData};
use super::train::TrainArtifacts;
use crate::cache::StageDir;
use crate::device::DeviceKind;
use crate::model::checkpoint;
use crate::model::net::Net;
use crate::spec::RunSpec;
use crate::train::evaluate::{TestMetrics, evaluate};
use serde_json::{Value, json};
use std::path::Path;

/// The stage's name.
pub const NAME: &str = "evaluate";
const METRICS: &str = "metrics.json";
/// The files a complete build holds.
pub const FILES: &[&str] = &[METRICS];
/// The evaluation batch size when the pipeline sets none (the trainer's default too).
const EVAL_BATCH_SIZE: usize = 256;
/// The code that decides what the stage writes (see `Stage::sources`): the network's forward pass on every
/// device, the loss and metrics, and how the test images are prepared.
pub const SOURCES: &[&str] = &[
    "src/train/",
    "src/model/",
    "src/data/",
    "src/device.rs",
    "src/cuda/",
    "vendor/candle-core/src/",
    "build.rs",
    "src/pipeline/stage/inputs.rs",
    "src/pipeline/stage/evaluate.rs",
];

/// A complete evaluate stage, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateArtifacts {
    /// The test metrics.
    pub metrics: TestMetrics,
}

impl EvaluateArtifacts {
    /// Read the artifacts of a complete evaluate stage.
    pub fn read(dir: &StageDir) -> Result<Self, ArtifactError> {
        Ok(EvaluateArtifacts {
            metrics: read_json(&dir.path, METRICS)?,
        })
    }
}

/// What the evaluate stage's key hashes (besides its inputs' keys).
pub(crate) fn key_input(run: &RunSpec, device: DeviceKind) -> Value {
    // The evaluation batch size changes the test loss's bits only on a GPU (see `train::key_input`).
    match device {
        DeviceKind::Cpu => json!({"split": "test", "device": device}),
        _ => json!({
            "split": "test",
            "device": device,
            "eval_batch_size": run.train.eval_batch_size.unwrap_or(EVAL_BATCH_SIZE),
        }),
    }
}

/// Test metrics of the weights in `checkpoint_file` for `run`'s network.
pub fn evaluate_checkpoint(
    run: &RunSpec,
    checkpoint_file: &Path,
    data: &PreparedData,
    compute: &Compute,
) -> Result<TestMetrics, StageFailure> {
    let net = Net::new(&run.decl, compute.device, run.train.seed)?;
    let tensors = checkpoint::load(checkpoint_file, compute.device)?;
    net.load_state_dict(&tensors).map_err(StageFailure::StateDict)?;
    Ok(evaluate(
        &net,
        &data.test,
        data.info.stats.clone(),
        &data.info.class_names,
        run.train.eval_batch_size.unwrap_or(EVAL_BATCH_SIZE),
        compute.workers,
    )?)
}

/// Build the stage into `dir`.
pub(crate) fn build(
    run: &RunSpec,
    data: &PreparedData,
    trained: &TrainArtifacts,
    compute: &Compute,
    dir: &Path,
) -> Result<(), StageFailure> {
    let metrics = evaluate_checkpoint(run, &trained.model_file, data, compute)?;
    write_json(dir, METRICS, &metrics)
}
