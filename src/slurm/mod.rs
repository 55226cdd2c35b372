//! Running a pipeline's runs as a Slurm job array, and following it.
//!
//! `job` names a submitted job, `options` reads what to ask Slurm for, `script` writes the batch scripts (one array element per run, and a
//! report job after them), `submit` hands them to sbatch, `queue` reads each element's state from scontrol
//! and waits for the end, and `record` keeps in the submission folder which jobs were submitted and which
//! run each element trains. Nothing here trains: each element runs `labpipe run` for its one run.

pub mod job;
pub mod options;
pub mod queue;
mod quote;
pub mod record;
pub mod script;
pub mod submit;

#[cfg(test)]
mod cluster_tests;

pub use job::{JobId, Submission, log_path};
pub use options::{MemSize, OptionsError, SlurmOptions, TimeLimit};
pub use queue::{Element, QueueError, TaskState, WaitOptions};
pub use record::{RecordError, SubmissionRecord};
pub use script::{ArrayJob, ArrayTask, ReportJob, RunSelector, ScriptError, submission_dir};
pub use submit::{SlurmTools, SubmitError};
