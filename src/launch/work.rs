//! Which runs still need work, and their input data put in place once before several processes need it.

use super::RunTask;
use crate::data::error::DataError;
use crate::data::source;
use crate::device::DeviceKind;
use crate::pipeline::plan::{StagePlan, plan_run};
use crate::pipeline::stage::Fingerprints;
use crate::spec::{Pipeline, RunSpec};
use std::collections::HashSet;
use std::path::Path;

/// Downloads the input data of `runs` that is not here yet, once per source: the processes started next
/// would otherwise all fetch the same archive at the same time.
pub fn prepare_data<'a>(
    runs: impl IntoIterator<Item = &'a RunSpec>,
    progress: bool,
) -> Result<(), DataError> {
    let mut seen = HashSet::new();
    for run in runs {
        if seen.insert(source::source_id(&run.data)) {
            source::ensure_present(&run.data, progress)?;
        }
    }
    Ok(())
}

/// Whether `plan` finds a stage of `run` still to run, for any of the device kinds it may be computed on.
pub fn needs_work(
    run: &RunSpec,
    out: &Path,
    kinds: &[DeviceKind],
    fps: &mut Fingerprints,
) -> Result<bool, DataError> {
    for &kind in kinds {
        let plan = plan_run(run, out, kind, fps)?;
        if plan
            .stages
            .iter()
            .any(|(_, s)| matches!(s, StagePlan::WillRun(_)))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The selected runs of each pipeline that still need work on any of `kinds`, as tasks in pipeline and run
/// order, each naming its pipeline file by an absolute path (a Slurm job does not start where sbatch ran).
pub fn runs_needing_work(
    selected: &[(&Pipeline, Vec<&RunSpec>)],
    out: &Path,
    kinds: &[DeviceKind],
) -> Result<Vec<RunTask>, DataError> {
    let mut fps = Fingerprints::default();
    let mut tasks = Vec::new();
    for (pipeline, runs) in selected {
        let file = std::path::absolute(&pipeline.path).unwrap_or_else(|_| pipeline.path.clone());
        for run in runs {
            if needs_work(run, out, kinds, &mut fps)? {
                tasks.push(RunTask {
                    pipeline: file.clone(),
                    run: run.name.clone(),
                });
            }
        }
    }
    Ok(tasks)
}
