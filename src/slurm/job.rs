//! A submitted job: its ID and the folder of its script and logs (the leaf the other files build on).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A Slurm job ID, as sbatch prints it (for an array: the ID of the whole array, `%A`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// A job labpipe submitted: its ID and the folder that holds its script and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The job's (for an array: the whole array's) ID.
    pub id: JobId,
    /// The batch script sbatch was given.
    pub script: PathBuf,
    /// The submission folder; logs are `<id>_<index>.out` (array) or `<id>.out` (single job).
    pub dir: PathBuf,
}

impl Submission {
    /// The log file of array element `index`, or of the job itself for `None`.
    pub fn log_path(&self, index: Option<u32>) -> PathBuf {
        log_path(&self.dir, self.id, index)
    }
}

/// Where Slurm writes a job's output in a submission folder: `<job>_<index>.out` for an array element
/// (`%A_%a.out`), `<job>.out` for a single job (`%j.out`).
pub fn log_path(dir: &Path, job: JobId, index: Option<u32>) -> PathBuf {
    match index {
        Some(i) => dir.join(format!("{job}_{i}.out")),
        None => dir.join(format!("{job}.out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_follow_the_output_patterns() {
        let dir = Path::new("/o/slurm/s");
        assert_eq!(log_path(dir, JobId(7), Some(2)), Path::new("/o/slurm/s/7_2.out"));
        assert_eq!(log_path(dir, JobId(8), None), Path::new("/o/slurm/s/8.out"));
    }
}
