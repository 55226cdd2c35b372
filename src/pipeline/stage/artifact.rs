//! What stages read and write: typed errors for a missing or damaged artifact, the JSON artifact helpers,
//! and `StageFailure`, the leaf error of a stage that could not be built.

use crate::cache::CacheError;
use crate::data::error::DataError;
use crate::figure::FigureError;
use crate::model::checkpoint::CheckpointError;
use crate::model::decl::ShapeError;
use crate::summary::diagram::DiagramError;
use crate::train::trainer::TrainError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A complete stage's artifact that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file is not there.
    #[error("artifact `{}` is missing; re-run `labpipe run` to rebuild it", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file is there but cannot be read as what it should be.
    #[error("artifact `{}` is damaged ({reason}); re-run `labpipe run` to rebuild it", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Read the JSON artifact `name` in a stage directory.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Result<T, ArtifactError> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ArtifactError::Missing { path: path.clone() },
        _ => ArtifactError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        },
    })?;
    serde_json::from_str(&text).map_err(|e| ArtifactError::Damaged {
        path,
        reason: e.to_string(),
    })
}

/// The artifact file `name` in a stage directory, which must exist.
pub(crate) fn existing(dir: &Path, name: &str) -> Result<PathBuf, ArtifactError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ArtifactError::Missing { path })
    }
}

/// Write a JSON artifact into a stage's build directory.
pub(crate) fn write_json(dir: &Path, name: &str, v: &impl Serialize) -> Result<(), StageFailure> {
    let path = dir.join(name);
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| StageFailure::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, bytes).map_err(|source| StageFailure::Io { path, source })
}

/// Why a stage could not be built: the leaf error, kept typed.
#[derive(Debug, thiserror::Error)]
pub enum StageFailure {
    /// Loading or checking the data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The network's shapes do not fit.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// Drawing the model diagram.
    #[error(transparent)]
    Diagram(#[from] DiagramError),
    /// Drawing a figure.
    #[error(transparent)]
    Figure(#[from] FigureError),
    /// Training.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Reading a checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An upstream stage's artifact.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A tensor operation.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// A stage this one consumes is not complete.
    #[error("the {stage} stage it needs (key {key}) is unavailable ({why})")]
    Upstream {
        /// The upstream stage's name.
        stage: String,
        /// Its key.
        key: String,
        /// Why.
        why: String,
    },
    /// No selected checkpoint exists yet.
    #[error("run `{run}` has not been trained yet: run `labpipe run` first, or pass --checkpoint")]
    NotTrained {
        /// The run.
        run: String,
    },
    /// A checkpoint that does not fit the network.
    #[error("{0}")]
    StateDict(String),
    /// The validation split leaves nothing to train or validate on.
    #[error("data.val_split gives {val} validation images out of {train} training images")]
    ValSplit {
        /// Validation images asked for.
        val: usize,
        /// Training images available.
        train: usize,
    },
    /// Writing an artifact.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_missing_or_damaged_artifact_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_json::<Value>(dir.path(), "x.json").unwrap_err();
        assert!(matches!(missing, ArtifactError::Missing { .. }), "{missing}");
        std::fs::write(dir.path().join("x.json"), "{").unwrap();
        let damaged = read_json::<Value>(dir.path(), "x.json").unwrap_err();
        assert!(matches!(damaged, ArtifactError::Damaged { .. }), "{damaged}");
        assert!(damaged.to_string().contains("re-run `labpipe run`"), "{damaged}");
    }
}
