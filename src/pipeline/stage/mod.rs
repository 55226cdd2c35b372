//! The five stages of a run — dataset → model → train → evaluate → plot — as a type. Each stage's file owns
//! its key input, how it is built, the names of the files it writes, a typed reader of them, and the mapping
//! from its key fields back to the pipeline file's words. Nobody outside these files spells an artifact name.
//!
//! This file only declares and re-exports: `kind` is the `Stage` type, `keys` computes every stage's key,
//! `artifact` holds the artifact helpers and the leaf error, `inputs` what a build takes.

pub mod artifact;
pub mod dataset;
pub mod evaluate;
pub mod inputs;
pub mod keys;
pub mod kind;
pub mod model;
pub mod plot;
pub mod train;

pub use artifact::{ArtifactError, StageFailure};
pub use dataset::{DatasetArtifacts, DatasetInfo};
pub use evaluate::EvaluateArtifacts;
pub use inputs::{Compute, PreparedData};
pub use keys::{Fingerprints, StageKeys, keys_with_fingerprint, stage_keys};
pub use kind::{Stage, StageError};
pub use model::ModelArtifacts;
pub use plot::PlotArtifacts;
pub use train::TrainArtifacts;
