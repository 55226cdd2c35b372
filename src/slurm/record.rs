//! `<dir>/submission.json`: which Slurm jobs a submission folder stands for and which run each array element
//! trains, so that a later `labpipe status` can follow them without the process that submitted them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::job::{JobId, Submission};
use super::script::ArrayTask;
use crate::out_dir::OutDir;

/// The record's file name in a submission folder.
pub const RECORD_FILE: &str = "submission.json";

/// What was submitted from one submission folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    /// The job array.
    pub array_job: JobId,
    /// The report job after it, if one was submitted.
    pub report_job: Option<JobId>,
    /// Element N's pipeline and run.
    pub tasks: Vec<ArrayTask>,
}

/// Why a record cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading, writing or listing failed.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a record.
    #[error("`{}` is not a labpipe submission record: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

impl SubmissionRecord {
    /// Writes `<dir>/submission.json` (through a temporary file, so a reader never sees half of it).
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        let path = dir.join(RECORD_FILE);
        let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
        let io = |source| RecordError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|source| RecordError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Reads `<dir>/submission.json`.
    pub fn load(dir: &Path) -> Result<SubmissionRecord, RecordError> {
        let path = dir.join(RECORD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| RecordError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| RecordError::Json { path, source })
    }

    /// The newest submission folder under `<out>/slurm/` that has a record, with the record; `None` when
    /// nothing was ever submitted from this out directory.
    pub fn latest(out: &Path) -> Result<Option<(PathBuf, SubmissionRecord)>, RecordError> {
        match Self::folders(out)?.pop() {
            Some(dir) => {
                let record = SubmissionRecord::load(&dir)?;
                Ok(Some((dir, record)))
            }
            None => Ok(None),
        }
    }

    /// Every submission folder under `<out>/slurm/` that has a readable record, oldest first, with its
    /// record (a damaged record is left out).
    pub fn all(out: &Path) -> Result<Vec<(PathBuf, SubmissionRecord)>, RecordError> {
        Ok(Self::folders(out)?
            .into_iter()
            .filter_map(|dir| SubmissionRecord::load(&dir).ok().map(|r| (dir, r)))
            .collect())
    }

    /// The submission folders that have a record file, oldest first.
    fn folders(out: &Path) -> Result<Vec<PathBuf>, RecordError> {
        let parent = OutDir::new(out).slurm();
        let entries = match std::fs::read_dir(&parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RecordError::Io { path: parent, source }),
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(RECORD_FILE).is_file())
            .collect();
        dirs.sort_by_key(|p| order_key(p));
        Ok(dirs)
    }

    /// The array job as a [`Submission`] of the folder `dir`.
    pub fn array(&self, dir: &Path) -> Submission {
        Submission {
            id: self.array_job,
            script: dir.join(super::script::ARRAY_SCRIPT),
            dir: dir.to_path_buf(),
        }
    }

    /// The report job, if any, as a [`Submission`] of the folder `dir`.
    pub fn report(&self, dir: &Path) -> Option<Submission> {
        self.report_job.map(|id| Submission {
            id,
            script: dir.join(super::script::REPORT_SCRIPT),
            dir: dir.to_path_buf(),
        })
    }
}

/// Folders are `<stamp>` or `<stamp>-<n>` (a second submission in the same second): order by both.
fn order_key(dir: &Path) -> (String, u32) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A stamp is YYYYMMDD-HHMMSS (15 characters); anything after it is `-<n>`.
    match name
        .get(15..)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse().ok())
    {
        Some(n) => (name[..15].to_string(), n),
        None => (name, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::script::submission_dir_at;

    fn record(id: u64) -> SubmissionRecord {
        SubmissionRecord {
            array_job: JobId(id),
            report_job: None,
            tasks: vec![ArrayTask {
                pipeline: "/lab/ci.yaml".into(),
                run: "lr[lr=0.01,scheduler=step]".into(),
            }],
        }
    }

    #[test]
    fn saves_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = record(7);
        r.report_job = Some(JobId(8));
        r.save(tmp.path()).unwrap();
        assert_eq!(SubmissionRecord::load(tmp.path()).unwrap(), r);
        let text = std::fs::read_to_string(tmp.path().join(RECORD_FILE)).unwrap();
        assert!(
            text.contains("\"array_job\": 7") && text.contains("\"report_job\": 8"),
            "{text}"
        );
        assert_eq!(r.array(tmp.path()).script, tmp.path().join("array.sbatch"));
        assert_eq!(r.report(tmp.path()).unwrap().id, JobId(8));
    }

    #[test]
    fn latest_is_the_newest_folder_with_a_record() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(SubmissionRecord::latest(tmp.path()).unwrap().is_none());
        for (stamp, id) in [
            ("20260102-030405", 1),
            ("20260102-030405", 2),
            ("20260101-235959", 3),
        ] {
            let dir = submission_dir_at(tmp.path(), stamp).unwrap();
            record(id).save(&dir).unwrap();
        }
        for _ in 3..=10 {
            let dir = submission_dir_at(tmp.path(), "20260102-030405").unwrap();
            record(10).save(&dir).unwrap();
        }
        // A newer folder without a record (sbatch refused it) does not count.
        submission_dir_at(tmp.path(), "20260103-000000").unwrap();
        let (dir, r) = SubmissionRecord::latest(tmp.path()).unwrap().unwrap();
        assert_eq!(dir.file_name().unwrap(), "20260102-030405-10");
        assert_eq!(r.array_job, JobId(10));
        let all = SubmissionRecord::all(tmp.path()).unwrap();
        let names: Vec<String> = all
            .iter()
            .map(|(d, _)| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 11);
        assert_eq!(
            names[..3],
            ["20260101-235959", "20260102-030405", "20260102-030405-2"]
        );
        assert_eq!(names[10], "20260102-030405-10");
    }

    #[test]
    fn a_damaged_record_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(RECORD_FILE), "{").unwrap();
        let e = SubmissionRecord::load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("is not a labpipe submission record"), "{e}");
    }
}
