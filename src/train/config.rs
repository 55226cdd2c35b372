//! The `train:` section of a pipeline file: epochs, batches, optimizer, schedule, checkpoint selection.
//! Parsed by src/spec, consumed here in src/train.

use super::optim::OptimizerConfig;
use super::schedule::SchedulerConfig;
use serde::{Deserialize, Serialize};

/// Which checkpoint is kept as the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The epoch with the highest validation accuracy (the seed's choice).
    #[default]
    BestValAccuracy,
    /// The epoch with the lowest validation loss.
    BestValLoss,
    /// The last epoch.
    Last,
}

/// `train.early_stopping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// `val_accuracy` or `val_loss`.
    pub metric: StopMetric,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Metric watched by early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMetric {
    /// Higher is better.
    ValAccuracy,
    /// Lower is better.
    ValLoss,
}

/// `train:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per training batch.
    pub batch_size: usize,
    /// Images per evaluation batch (default 256; does not change results).
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule (default constant).
    #[serde(default = "SchedulerConfig::constant")]
    pub scheduler: SchedulerConfig,
    /// Which checkpoint becomes the model.
    #[serde(default)]
    pub select: Select,
    /// Stop when the watched metric stops improving.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Cross-entropy label smoothing in [0, 1).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Seed of every random choice: initial weights, split, order, augmentation, dropout.
    #[serde(default)]
    pub seed: u64,
}
