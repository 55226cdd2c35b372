//! The generated pipelines of the cache tests: synthetic data and a model with every kind of state a resume
//! must restore, small enough to train in seconds.

/// Conv + BatchNorm (running stats, `num_batches_tracked`) + dropout (its RNG): every piece of state a
/// resume must restore.
const MODEL: &str = "model:
  layers:
    - conv2d: {out_channels: 8, kernel: 3, padding: 1}
    - batch_norm2d
    - relu
    - max_pool2d: {kernel: 4}
    - flatten
    - dropout: {p: 0.3}
    - linear: {out_features: 10}
";

/// A synthetic pipeline of `epochs` epochs, 5 batches each; `extra_train` is appended to `train:`.
pub fn pipeline(name: &str, epochs: usize, extra_train: &str) -> String {
    sized_pipeline(name, epochs, 240, extra_train)
}

/// Images in [`long_pipeline`]: 50 batches an epoch, long enough (a few tenths of a second) to signal a
/// process reliably in the middle of an epoch.
pub const LONG_TRAIN_SIZE: usize = 2040;

/// [`pipeline`] with 50 batches an epoch.
pub fn long_pipeline(name: &str, epochs: usize) -> String {
    sized_pipeline(name, epochs, LONG_TRAIN_SIZE, "")
}

/// A synthetic pipeline with `train_size` images (40 of them for validation), batches of 40.
pub fn sized_pipeline(name: &str, epochs: usize, train_size: usize, extra_train: &str) -> String {
    format!(
        "name: {name}
data:
  dataset: synthetic
  train_size: {train_size}
  test_size: 60
  val_split: 40
  normalize: first_image
  augment:
    - random_crop: {{size: 32, padding: 4}}
    - random_horizontal_flip: {{p: 0.5}}
{MODEL}train:
  epochs: {epochs}
  batch_size: 40
  optimizer: {{name: adam, lr: 0.01}}
  scheduler: {{name: step, step_size: 1, gamma: 0.5}}
  seed: 1
{extra_train}"
    )
}

/// A linear model on 100 synthetic images (20 for validation), SGD at lr 0.1, batches of 40: each run trains
/// in well under a second. Experiments may follow.
pub fn linear_pipeline(name: &str, epochs: usize) -> String {
    format!(
        "name: {name}
data: {{dataset: synthetic, train_size: 100, test_size: 20, val_split: 20, normalize: train_mean_std}}
model:
  layers:
    - flatten
    - linear: {{out_features: 10}}
train:
  epochs: {epochs}
  batch_size: 40
  optimizer: {{name: sgd, lr: 0.1}}
"
    )
}
