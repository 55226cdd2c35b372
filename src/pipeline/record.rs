//! `out/runs/<pipeline>/<run>.json`: which stage keys a run's results live under, its status, and the
//! resolved spec — the index `labpipe report` and `labpipe status` read.

use super::stage::{Stage, StageKeys};
use crate::device::DeviceKind;
use crate::out_dir::OutDir;
use crate::spec::RunSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every stage completed.
    Done,
    /// Training diverged; the stages after it ran on the best checkpoint so far.
    Diverged {
        /// The explanation.
        message: String,
    },
    /// A stage failed.
    Failed {
        /// The stage.
        stage: Stage,
        /// The error.
        message: String,
    },
    /// Stopped by Ctrl-C; the next run resumes.
    Interrupted,
}

/// One run's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The pipeline file it came from.
    pub pipeline_file: PathBuf,
    /// The resolved run.
    pub spec: RunSpec,
    /// The kind of device it was made on (its train and evaluate keys depend on it).
    #[serde(default)]
    pub device: DeviceKind,
    /// Its stage keys.
    pub keys: StageKeys,
    /// How it ended.
    pub status: RunStatus,
}

/// Where a run's record lives.
pub fn path(out: &Path, pipeline: &str, run: &str) -> PathBuf {
    OutDir::new(out).run_record(pipeline, run)
}

impl RunRecord {
    /// Write atomically.
    pub fn save(&self, out: &Path) -> std::io::Result<()> {
        let p = path(out, &self.spec.pipeline, &self.spec.name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = p.with_extension(format!("json.tmp-{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())?;
        std::fs::rename(&tmp, &p)
    }

    /// Read a run's record, if there is one.
    pub fn load(out: &Path, pipeline: &str, run: &str) -> Option<RunRecord> {
        let text = std::fs::read_to_string(path(out, pipeline, run)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Every record of `pipeline` (all pipelines when None), sorted by pipeline then file name.
    pub fn all(out: &Path, pipeline: Option<&str>) -> Vec<RunRecord> {
        let root = OutDir::new(out).runs();
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&root)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .flatten()
            .map(|e| e.into_path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter(|p| {
                pipeline.is_none_or(|name| p.parent() == Some(OutDir::new(out).pipeline_runs(name).as_path()))
            })
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
            .collect()
    }
}
