//! Training and evaluation: the loop, loss, optimizers, schedules, the recorded history and test metrics.

pub mod config;
pub mod epoch_scalars;
pub mod evaluate;
pub mod history;
pub mod loss;
pub mod optim;
pub mod progress;
pub mod resume;
pub mod schedule;
pub mod trainer;
