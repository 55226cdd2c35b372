//! What `labpipe run` would do for each run and stage, and why, without running anything: the logic of
//! `labpipe plan` and `run --dry-run` (the CLI only prints it).

use super::record::{RunRecord, RunStatus};
use super::stage::{self, Fingerprints, Stage, StageKeys};
use crate::cache::key::changed_inputs;
use crate::cache::{Miss, StageKey, Store};
use crate::data::error::DataError;
use crate::device::DeviceKind;
use crate::spec::RunSpec;
use serde::Serialize;
use std::path::Path;

/// What will happen to one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "why")]
pub enum StagePlan {
    /// Complete in the cache: not run.
    Cached,
    /// Will run, for this reason (in the pipeline file's words).
    WillRun(String),
}

/// The plan of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPlan {
    /// Run name.
    pub run: String,
    /// Each stage with what will happen to it, in order.
    pub stages: Vec<(Stage, StagePlan)>,
    /// The stages' keys (the cache entries the run's results are, or will be, in).
    pub keys: StageKeys,
    /// Training images still to process (epochs × images).
    pub images_to_train: u128,
    /// Multiply-accumulates of training still to do.
    pub macs_to_train: u128,
}

/// Plan `run` made on `device` against the cache under `out`.
pub fn plan_run(
    run: &RunSpec,
    out: &Path,
    device: DeviceKind,
    fps: &mut Fingerprints,
) -> Result<RunPlan, DataError> {
    let keys = stage::stage_keys(run, device, fps)?;
    let store = Store::new(out);
    // A run with `-S` overrides that has not run yet is explained against the run it overrides.
    let previous = RunRecord::load(out, &run.pipeline, &run.name).or_else(|| {
        let plain = run.memberships.first().filter(|_| !run.set.is_empty())?;
        RunRecord::load(out, &run.pipeline, &plain.name)
    });
    let mut will_run: Vec<Stage> = Vec::new();
    let mut plan = RunPlan {
        run: run.name.clone(),
        stages: Vec::new(),
        keys: keys.clone(),
        images_to_train: 0,
        macs_to_train: 0,
    };
    for (stage, key) in keys.iter() {
        let state = match store.lookup(key, stage.files()) {
            Ok(_) => StagePlan::Cached,
            Err(miss) => {
                let why = reason(&store, stage, key, &miss, previous.as_ref(), &will_run);
                will_run.push(stage);
                if stage == Stage::Train {
                    // An interrupted build resumes: only the epochs it has not checkpointed are work.
                    let done = stage::train::resume_progress(&store.partial_dir(key))
                        .epochs_done
                        .unwrap_or(0);
                    (plan.images_to_train, plan.macs_to_train) = stage::train::work_left(run, done);
                }
                StagePlan::WillRun(why)
            }
        };
        plan.stages.push((stage, state));
    }
    Ok(plan)
}

/// Why `stage` with `key` must run, in the user's words.
fn reason(
    store: &Store,
    stage: Stage,
    key: &StageKey,
    miss: &Miss,
    previous: Option<&RunRecord>,
    will_run: &[Stage],
) -> String {
    if let Miss::Corrupt(w) = miss {
        return format!("artifact damaged: {w}");
    }
    let partial = store.partial_dir(key);
    if partial.is_dir() {
        if let Ok(None) = store.try_lock(key) {
            return "another labpipe process is building it now (`run` would wait, then reuse it)".into();
        }
        let point = stage::train::resume_progress(&partial);
        return match (point.epochs_done, point.damage) {
            (Some(done), None) => format!("interrupted earlier; resumes after epoch {done}"),
            (Some(done), Some(damage)) => {
                format!("interrupted earlier; {damage}; resumes after epoch {done} instead")
            }
            (None, Some(damage)) => {
                format!("interrupted earlier; {damage}; starts again from epoch 1")
            }
            (None, None) => "an earlier attempt did not finish; starts again".into(),
        };
    }
    let Some(rec) = previous else {
        return "new run".into();
    };
    let old = rec.keys.get(stage);
    let running_upstream: Vec<&str> = stage
        .upstream()
        .iter()
        .filter(|u| will_run.contains(u))
        .map(|u| u.name())
        .collect();
    if old.key == key.key {
        return match &rec.status {
            RunStatus::Failed { stage: failed, .. } if *failed == stage => {
                "failed last time; runs again".into()
            }
            _ if !running_upstream.is_empty() => {
                format!("upstream stage `{}` will run", running_upstream.join("`, `"))
            }
            RunStatus::Interrupted | RunStatus::Failed { .. } => "did not run last time".into(),
            _ => "artifacts missing (removed by `labpipe clean`?)".into(),
        };
    }
    let mut why = stage.explain_change(&old.input, &key.input);
    if !running_upstream.is_empty() {
        why.push(format!(
            "upstream stage `{}` will run",
            running_upstream.join("`, `")
        ));
    } else {
        let changed = changed_inputs(&old.input, &key.input);
        if !changed.is_empty() {
            why.push(format!("upstream stage `{}` changed", changed.join("`, `")));
        }
    }
    if why.is_empty() {
        "inputs changed".into()
    } else {
        why.join("; ")
    }
}
