//! `out/runs/<pipeline>/<run>.json`: which stage keys a run's results live under, its status, and the
//! resolved spec — the index `labpipe report` and `labpipe status` read.

use super::stage::{Stage, StageKeys};
use crate::cache::{EntryKind, Foreign, entry_kind, is_temporary, sorted_children};
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

/// What `labpipe clean --all` finds under `runs/`: labpipe's records and files, and anything else.
#[derive(Debug, Default)]
pub struct RunsSurvey {
    /// Run records that parse, with their files, sorted by path.
    pub records: Vec<(PathBuf, RunRecord)>,
    /// labpipe's other files: what a run's folder publishes, temporary files of atomic writes.
    pub files: Vec<PathBuf>,
    /// The folders holding them, innermost first.
    pub dirs: Vec<PathBuf>,
    /// Anything labpipe did not make (symbolic links included: they are never followed).
    pub foreign: Vec<Foreign>,
}

/// Survey `out/runs/`: `runs/<pipeline>/<run>.json` records that parse, `runs/<pipeline>/<run>/` folders
/// holding what the train stage publishes, and temporary files; anything else is foreign.
pub fn survey(out: &Path) -> RunsSurvey {
    let mut found = RunsSurvey::default();
    let root = OutDir::new(out).runs();
    match entry_kind(&root) {
        None => return found,
        Some(EntryKind::Dir) => {}
        Some(EntryKind::File) => {
            found.foreign.push(Foreign::new(
                &root,
                "a file where the run records folder should be",
            ));
            return found;
        }
        Some(EntryKind::Other(why)) => {
            found.foreign.push(Foreign::new(&root, why));
            return found;
        }
    }
    for folder in sorted_children(&root) {
        match entry_kind(&folder) {
            Some(EntryKind::Dir) => {}
            Some(EntryKind::Other(why)) => {
                found.foreign.push(Foreign::new(&folder, why));
                continue;
            }
            _ => {
                found
                    .foreign
                    .push(Foreign::new(&folder, "not a pipeline's folder of run records"));
                continue;
            }
        }
        for p in sorted_children(&folder) {
            let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
            match entry_kind(&p) {
                Some(EntryKind::File) if is_temporary(&name) => found.files.push(p),
                Some(EntryKind::File) if name.ends_with(".json") => {
                    match std::fs::read_to_string(&p)
                        .ok()
                        .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok())
                    {
                        Some(record) => found.records.push((p, record)),
                        None => found
                            .foreign
                            .push(Foreign::new(&p, "not a run record labpipe can read")),
                    }
                }
                Some(EntryKind::Dir) => {
                    for f in sorted_children(&p) {
                        let file = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
                        match entry_kind(&f) {
                            Some(EntryKind::File)
                                if is_temporary(&file)
                                    || super::stage::train::PUBLISHED.contains(&file.as_str()) =>
                            {
                                found.files.push(f)
                            }
                            Some(EntryKind::Other(why)) => found.foreign.push(Foreign::new(&f, why)),
                            _ => found
                                .foreign
                                .push(Foreign::new(&f, "not a file labpipe publishes for a run")),
                        }
                    }
                    found.dirs.push(p);
                }
                Some(EntryKind::Other(why)) => found.foreign.push(Foreign::new(&p, why)),
                _ => found.foreign.push(Foreign::new(&p, "not a run record")),
            }
        }
        found.dirs.push(folder);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_survey_of_runs_tells_records_from_anything_else() {
        let out = tempfile::tempdir().unwrap();
        let runs = OutDir::new(out.path()).runs();
        std::fs::create_dir_all(runs.join("p/baseline")).unwrap();
        std::fs::write(runs.join("p/baseline/history.csv"), "epoch\n").unwrap();
        std::fs::write(runs.join("p/baseline.json.tmp-12"), "{").unwrap();
        std::fs::write(runs.join("p/broken.json"), "{").unwrap();
        std::fs::write(runs.join("p/baseline/notes.md"), "mine").unwrap();
        std::fs::write(runs.join("keep.txt"), "x").unwrap();
        let found = survey(out.path());
        let rel = |p: &Path| p.strip_prefix(&runs).unwrap().to_string_lossy().into_owned();
        let foreign: Vec<(String, &str)> = found
            .foreign
            .iter()
            .map(|f| (rel(&f.path), f.why.as_str()))
            .collect();
        assert_eq!(
            foreign,
            [
                ("keep.txt".to_string(), "not a pipeline's folder of run records"),
                (
                    "p/baseline/notes.md".to_string(),
                    "not a file labpipe publishes for a run"
                ),
                ("p/broken.json".to_string(), "not a run record labpipe can read"),
            ]
        );
        let files: Vec<String> = found.files.iter().map(|p| rel(p)).collect();
        assert_eq!(files, ["p/baseline/history.csv", "p/baseline.json.tmp-12"]);
        let dirs: Vec<String> = found.dirs.iter().map(|p| rel(p)).collect();
        assert_eq!(dirs, ["p/baseline", "p"]);
        assert!(found.records.is_empty());
    }
}
