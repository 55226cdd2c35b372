//! Training and evaluation: the loop, the optimizers, the schedules and the recorded history.

pub mod history;
pub mod optim;
pub mod schedule;
