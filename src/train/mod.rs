//! Training and evaluation: the loop, loss, optimizers, schedules, the recorded history and test metrics.

pub mod evaluate;
pub mod history;
pub mod loss;
pub mod optim;
#[cfg(feature = "cuda")]
mod optim_cuda;
pub mod progress;
pub mod schedule;
pub mod trainer;
