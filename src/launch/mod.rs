//! Running a pipeline's runs elsewhere than one after another in this process: as child processes on this
//! machine (`run --jobs N`, `local`), or as a Slurm job array (`run --executor slurm`, `array`, followed by
//! `follow`). Either way each run is `labpipe run PIPELINE --run NAME` of this same binary on the same out
//! directory, and the cache's per-stage locks make the processes cooperate: no stage is computed twice
//! (`pipeline::Executor::run_pipeline`). `work` finds the runs that still need work.

pub mod array;
pub mod follow;
pub mod local;
pub mod work;

pub use array::{ArrayRequest, LaunchError, Submitted};
pub use follow::{QueueState, RunInQueue};
pub use local::{ChildEnd, LocalJobs, TaskEnd};
pub use work::{prepare_data, runs_needing_work};

/// One run of one pipeline file, as a launcher hands it to a `labpipe run` process.
pub use crate::slurm::ArrayTask as RunTask;

/// The same run of the same pipeline file (paths compared after resolving links).
pub(crate) fn same_task(a: &RunTask, b: &RunTask) -> bool {
    let canon = |p: &std::path::PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    a.run == b.run && canon(&a.pipeline) == canon(&b.pipeline)
}
