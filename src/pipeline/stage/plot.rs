//! The plot stage: the run's training curves and test confusion matrix, as SVG and PNG.

use super::artifact::{ArtifactError, StageFailure, existing};
use super::evaluate::EvaluateArtifacts;
use super::train::TrainArtifacts;
use crate::cache::StageDir;
use crate::figure::{CurveMarks, draw_confusion, draw_curves};
use crate::spec::RunSpec;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The stage's name.
pub const NAME: &str = "plot";
const CURVES_SVG: &str = "curves.svg";
const CURVES_PNG: &str = "curves.png";
const CONFUSION_SVG: &str = "confusion.svg";
const CONFUSION_PNG: &str = "confusion.png";
/// The files a complete build holds.
pub const FILES: &[&str] = &[CURVES_SVG, CURVES_PNG, CONFUSION_SVG, CONFUSION_PNG];
/// The code that decides what the stage writes (see `Stage::sources`).
pub const SOURCES: &[&str] = &["src/figure/", "src/pipeline/stage/plot.rs"];

/// A complete plot stage, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotArtifacts {
    /// Loss and accuracy curves (PNG).
    pub curves_png: PathBuf,
    /// The test confusion matrix (PNG).
    pub confusion_png: PathBuf,
}

impl PlotArtifacts {
    /// Read the artifacts of a complete plot stage.
    pub fn read(dir: &StageDir) -> Result<Self, ArtifactError> {
        Ok(PlotArtifacts {
            curves_png: existing(&dir.path, CURVES_PNG)?,
            confusion_png: existing(&dir.path, CONFUSION_PNG)?,
        })
    }
}

/// What the plot stage's key hashes (besides its inputs' keys).
pub(crate) fn key_input() -> Value {
    json!({"figures": ["curves", "confusion"]})
}

/// Build the stage into `dir`.
pub(crate) fn build(
    run: &RunSpec,
    trained: &TrainArtifacts,
    evaluated: &EvaluateArtifacts,
    dir: &Path,
) -> Result<(), StageFailure> {
    let outcome = &trained.outcome;
    let title = format!("{} / {}", run.pipeline, run.name);
    let marks = CurveMarks {
        selected_epoch: outcome.selected_epoch,
        stopped_early_at: outcome.stopped_early_at,
    };
    draw_curves(
        &outcome.history,
        &title,
        &marks,
        &dir.join(CURVES_SVG),
        &dir.join(CURVES_PNG),
    )?;
    draw_confusion(
        &evaluated.metrics,
        &format!("{title}: test confusion matrix"),
        &dir.join(CONFUSION_SVG),
        &dir.join(CONFUSION_PNG),
    )?;
    Ok(())
}
