//! labpipe: declarative, reproducible deep-learning lab pipelines on Candle.
//!
//! Where things happen: `spec` reads pipeline files, `data` is where images enter, `model` builds networks,
//! `summary` counts and draws them, `train` trains and evaluates, `cache` stores stage artifacts,
//! `pipeline` plans and runs stages, `report` renders the lab report.

pub mod bench;
pub mod cache;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod data;
pub mod device;
pub mod figure;
pub mod launch;
pub mod memory;
pub mod model;
pub mod out_dir;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod slurm;
pub mod spec;
pub mod summary;
pub mod tensorboard;
pub mod train;

#[cfg(test)]
mod architecture_tests;
