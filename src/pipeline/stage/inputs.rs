//! What building a stage takes besides its run: where it computes (`Compute`) and the run's images as the
//! dataset stage cut them (`PreparedData`).

use super::dataset::{DatasetArtifacts, DatasetInfo};
use crate::data::{Dataset, ImageSet};
use candle_core::Device;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Where and how stages compute.
#[derive(Debug, Clone)]
pub struct Compute<'a> {
    /// Compute device.
    pub device: &'a Device,
    /// Data worker threads.
    pub workers: usize,
    /// No progress output.
    pub quiet: bool,
    /// Set by Ctrl-C: training stops after the current batch.
    pub interrupt: Arc<AtomicBool>,
}

/// The train, validation and test images of a run, with what the dataset stage decided about them.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training split.
    pub train: Arc<ImageSet>,
    /// Validation split.
    pub val: Arc<ImageSet>,
    /// Test set.
    pub test: Arc<ImageSet>,
    /// Class names, sizes and normalization statistics.
    pub info: DatasetInfo,
}

impl PreparedData {
    /// Cut the loaded `data` as the dataset stage's `artifacts` say.
    pub fn new(data: &Dataset, artifacts: DatasetArtifacts) -> Self {
        PreparedData {
            train: Arc::new(data.train.select(&artifacts.split.train)),
            val: Arc::new(data.train.select(&artifacts.split.val)),
            test: Arc::new(data.test.clone()),
            info: artifacts.info,
        }
    }
}
