//! One training epoch of a pipeline with its real data path — the dataset it names, its validation split and
//! normalization, `BatchPlan` + `Prefetcher` with its augmentations — against the model step, to measure the
//! share of the epoch the trainer stood waiting for a batch.

use super::{BenchError, tensor_err, train_step};
use crate::data::batches::{BatchPlan, Prefetcher};
use crate::data::normalize::stats_for;
use crate::data::source;
use crate::data::split::split;
use crate::model::net::Net;
use crate::spec::RunSpec;
use crate::train::optim::Optimizer;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Above this share of an epoch spent waiting for data, the data path is the bottleneck worth fixing.
pub const TARGET_SHARE: f64 = 0.05;

/// How long one epoch's trainer waited for its data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataWait {
    /// The pipeline's name.
    pub pipeline: String,
    /// The run whose data path ran.
    pub run: String,
    /// Training images in the epoch (after the validation split).
    pub images: usize,
    /// Batches in the epoch.
    pub batches: usize,
    /// Images per batch.
    pub batch: usize,
    /// Background data worker threads.
    pub workers: usize,
    /// Augmentations applied, by name.
    pub augment: Vec<String>,
    /// Wall seconds of the epoch's training loop (no validation).
    pub epoch_seconds: f64,
    /// Seconds the loop waited for a batch that was not ready (`Prefetcher::waited`).
    pub data_wait_seconds: f64,
    /// `data_wait_seconds ÷ epoch_seconds`; the target is below [`TARGET_SHARE`].
    pub share: f64,
    /// Training images per second over the whole epoch, data path included.
    pub img_per_s: f64,
}

/// Train `net` for one epoch of `run`'s training split, fed by its data path, and time the waits.
pub fn epoch(
    run: &RunSpec,
    net: &Net,
    opt: &mut dyn Optimizer,
    batch: usize,
    workers: usize,
    lr: f64,
) -> Result<DataWait, BenchError> {
    let data_err = |message: String| BenchError::Data {
        pipeline: run.pipeline.clone(),
        message,
    };
    let data = source::load(&run.data, false).map_err(|e| data_err(e.to_string()))?;
    let val = run.data.val_split.count(data.train.len());
    if val >= data.train.len() {
        return Err(data_err(format!(
            "data.val_split leaves no training images ({val} of {})",
            data.train.len()
        )));
    }
    // The same split and statistics as the pipeline's dataset stage.
    let sp = split(data.train.len(), val, run.train.seed);
    let stats = stats_for(&run.data.normalize, &data.train, &sp.train);
    let images = Arc::new(data.train.select(&sp.train));
    let plan = BatchPlan {
        images: images.clone(),
        stats,
        augment: Arc::new(run.data.augment.clone()),
        batch_size: batch,
        shuffle: Some((run.train.seed, 0)),
    };
    let batches = plan.batch_count();
    let terr = tensor_err("data-wait epoch");
    // Timed as the trainer times an epoch: from starting the prefetcher to the last step.
    let started = Instant::now();
    let mut prefetcher = Prefetcher::start(plan, workers);
    for b in prefetcher.by_ref() {
        train_step(net, opt, &b.pixels, &b.labels, lr, run.train.label_smoothing).map_err(&terr)?;
    }
    let epoch_seconds = started.elapsed().as_secs_f64();
    let waited = prefetcher.waited.as_secs_f64();
    drop(prefetcher);
    Ok(DataWait {
        pipeline: run.pipeline.clone(),
        run: run.name.clone(),
        images: images.len(),
        batches,
        batch,
        workers,
        augment: run.data.augment.iter().map(|a| a.name().to_string()).collect(),
        epoch_seconds,
        data_wait_seconds: waited,
        share: waited / epoch_seconds.max(1e-9),
        img_per_s: images.len() as f64 / epoch_seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{BenchOptions, BenchTarget, run};
    use std::io::Write;

    #[test]
    fn a_pipeline_target_measures_one_epoch_of_its_data_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.yaml");
        let mut f = std::fs::File::create(&path).unwrap();
        write!(
            f,
            "name: tiny\ndata:\n  dataset: synthetic\n  train_size: 40\n  test_size: 8\n  val_split: 8\n  \
             normalize: first_image\n  augment:\n    - random_crop: {{size: 32, padding: 4}}\n    \
             - random_horizontal_flip: {{p: 0.5}}\nmodel:\n  layers:\n    - conv2d: {{out_channels: 4, kernel: 3, stride: 4}}\n    \
             - batch_norm2d\n    - relu\n    - flatten\n    - linear: {{out_features: 10}}\ntrain:\n  epochs: 1\n  \
             batch_size: 16\n  optimizer: {{name: adam, lr: 0.001}}\n  seed: 0\n"
        )
        .unwrap();
        drop(f);
        let target = BenchTarget::pipeline(&path).unwrap();
        assert_eq!((target.name.as_str(), target.batch), ("tiny/baseline", 16));
        let opts = BenchOptions {
            steps: 2,
            warmup: 1,
            workers: Some(2),
            ..BenchOptions::default()
        };
        let report = run(&target, &opts).unwrap();
        let j = serde_json::to_value(&report).unwrap();
        let d = &j["data_wait"];
        // 40 images less 8 for validation, in batches of 16: 16 + 16.
        assert_eq!(d["images"], 32);
        assert_eq!(d["batches"], 2);
        assert_eq!(d["batch"], 16);
        assert_eq!(d["workers"], 2);
        assert_eq!(d["augment"].as_array().unwrap().len(), 2);
        let (wait, secs, share) = (
            d["data_wait_seconds"].as_f64().unwrap(),
            d["epoch_seconds"].as_f64().unwrap(),
            d["share"].as_f64().unwrap(),
        );
        assert!(wait >= 0.0 && wait <= secs && (0.0..=1.0).contains(&share), "{d}");
        assert!((share - wait / secs).abs() < 1e-9);

        let skip = BenchOptions {
            data_wait: false,
            ..opts
        };
        assert!(run(&target, &skip).unwrap().data_wait.is_none());
    }
}
