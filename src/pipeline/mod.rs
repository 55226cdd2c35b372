//! Runs each run's stage graph against the cache: a stage whose key is already complete in the cache is not
//! run again; one that fails stops only its own run. What each stage is lives in `stage/`; `plan` says what a
//! `run` would do; `record` is the per-run index that `report` and `status` read.

pub mod plan;
pub mod record;
pub mod stage;

use crate::cache::{Miss, StageDir, Store};
use crate::data::error::DataError;
use crate::data::{Dataset, source};
use crate::out_dir::OutDir;
use crate::spec::{Pipeline, RunSpec};
use crate::train::evaluate::TestMetrics;
use candle_core::Device;
use record::{RunRecord, RunStatus};
use stage::{
    ArtifactError, Compute, DatasetArtifacts, EvaluateArtifacts, Fingerprints, PreparedData, Stage,
    StageError, StageFailure, StageKeys, TrainArtifacts,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How to run.
pub struct Options {
    /// The out directory (cache and run records).
    pub out: PathBuf,
    /// Compute device.
    pub device: Device,
    /// Data worker threads.
    pub workers: usize,
    /// No progress output.
    pub quiet: bool,
    /// Set by Ctrl-C.
    pub interrupt: Arc<AtomicBool>,
}

impl Options {
    fn compute(&self) -> Compute<'_> {
        Compute {
            device: &self.device,
            workers: self.workers,
            quiet: self.quiet,
            interrupt: self.interrupt.clone(),
        }
    }
}

/// What happened to one stage.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    /// Found complete in the cache.
    Cached,
    /// Run now, taking this many seconds.
    Ran(f64),
    /// Not run because an earlier stage failed.
    Skipped,
    /// Failed with this message.
    Failed(String),
}

/// What happened to one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Run name.
    pub name: String,
    /// Final status.
    pub status: RunStatus,
    /// Each stage's outcome, in order.
    pub stages: Vec<(Stage, StageOutcome)>,
}

/// Runs stages, keeping loaded datasets between runs of one pipeline.
pub struct Executor<'a> {
    opts: &'a Options,
    store: Store,
    datasets: HashMap<String, Arc<Dataset>>,
    fingerprints: Fingerprints,
}

/// How a stage that was not in the cache at first came to be complete, or why it is not yet.
enum Built {
    /// This process ran it; `Some(message)` when training diverged.
    Ran(Option<String>),
    /// Another process completed it while this one waited for the stage's lock.
    ByOther(StageDir),
    /// Another live process holds the stage's lock, and this one was told not to wait for it.
    Busy,
}

/// One try at a run: finished (for better or worse), or left for later because another process is on it.
enum Attempt {
    /// Every stage was looked at; the run's record is written.
    Finished(RunOutcome),
    /// Another live labpipe process is building this stage of it; nothing was recorded.
    Busy(Stage),
}

impl<'a> Executor<'a> {
    /// An executor writing under `opts.out`.
    pub fn new(opts: &'a Options) -> Self {
        Executor {
            opts,
            store: Store::new(&opts.out),
            datasets: HashMap::new(),
            fingerprints: Fingerprints::default(),
        }
    }

    /// The stage keys of `run` on this executor's device.
    pub fn keys(&mut self, run: &RunSpec) -> Result<StageKeys, DataError> {
        stage::stage_keys(
            run,
            crate::device::kind(&self.opts.device),
            &mut self.fingerprints,
        )
    }

    fn say(&self, run: &str, stage: Stage, what: &str) {
        if !self.opts.quiet {
            eprintln!("{run}: {:<9}{what}", stage.name());
        }
    }

    fn dataset(&mut self, run: &RunSpec) -> Result<Arc<Dataset>, DataError> {
        let id = source::source_id(&run.data);
        if let Some(d) = self.datasets.get(&id) {
            return Ok(d.clone());
        }
        let d = Arc::new(source::load(&run.data, !self.opts.quiet)?);
        self.datasets.insert(id, d.clone());
        Ok(d)
    }

    /// Run every stage of every run in `pipeline`, isolating failures; outcomes come back in `runs` order.
    ///
    /// Several labpipe processes on one out directory share the work: a run whose next stage another live
    /// process is building is left for later, and this process takes the next run. When every run left is
    /// busy so, it looks again every half second; the last run left is waited for on its lock. A run taken
    /// up again finds what the other process built in the cache (or resumes its work, if that one died).
    pub fn run_pipeline(&mut self, pipeline: &Pipeline, runs: &[&RunSpec]) -> Vec<RunOutcome> {
        self.run_pipeline_each(pipeline, runs, |_| {})
    }

    /// [`Executor::run_pipeline`], calling `finished` with each run as it finishes (in the order they finish).
    pub fn run_pipeline_each(
        &mut self,
        pipeline: &Pipeline,
        runs: &[&RunSpec],
        mut finished: impl FnMut(&RunOutcome),
    ) -> Vec<RunOutcome> {
        let mut done: Vec<(usize, RunOutcome)> = Vec::new();
        let mut left: Vec<usize> = (0..runs.len()).collect();
        let mut announced = vec![false; runs.len()];
        'passes: while !left.is_empty() {
            let may_skip = left.len() > 1;
            let mut busy = Vec::new();
            for &i in &left {
                match self.run_one(pipeline, runs[i], may_skip) {
                    Attempt::Busy(stage) => {
                        if !std::mem::replace(&mut announced[i], true) {
                            self.say(
                                &runs[i].name,
                                stage,
                                "busy: another labpipe process is building it; taking the next run first",
                            );
                        }
                        busy.push(i);
                    }
                    Attempt::Finished(outcome) => {
                        let interrupted = outcome.status == RunStatus::Interrupted;
                        finished(&outcome);
                        done.push((i, outcome));
                        if interrupted {
                            break 'passes;
                        }
                    }
                }
            }
            if busy.len() == left.len() {
                // Every run left is another process's for now.
                std::thread::sleep(std::time::Duration::from_millis(500));
                if self.opts.interrupt.load(Ordering::SeqCst) {
                    // Ctrl-C while the others work: these runs stop here (nothing of them was started).
                    done.extend(busy.iter().map(|&i| {
                        let stages = Stage::ALL.iter().map(|&s| (s, StageOutcome::Skipped)).collect();
                        let status = RunStatus::Interrupted;
                        let name = runs[i].name.clone();
                        (i, RunOutcome { name, status, stages })
                    }));
                    break;
                }
            }
            left = busy;
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, o)| o).collect()
    }

    /// One run's stages in order. With `may_skip`, a stage whose lock another live process holds ends the
    /// attempt ([`Attempt::Busy`]) instead of waiting for it.
    fn run_one(&mut self, pipeline: &Pipeline, run: &RunSpec, may_skip: bool) -> Attempt {
        let device = crate::device::kind(&self.opts.device);
        let keys = match source::ensure_present(&run.data, !self.opts.quiet).and_then(|()| self.keys(run)) {
            Ok(k) => k,
            Err(e) => {
                let message = e.to_string();
                return Attempt::Finished(RunOutcome {
                    name: run.name.clone(),
                    status: RunStatus::Failed {
                        stage: Stage::Dataset,
                        message: message.clone(),
                    },
                    stages: vec![(Stage::Dataset, StageOutcome::Failed(message))],
                });
            }
        };
        let record = |status: RunStatus| RunRecord {
            pipeline_file: pipeline.path.clone(),
            spec: run.clone(),
            device,
            keys: keys.clone(),
            status,
        };
        // Recorded before any stage runs, so `labpipe clean` run meanwhile keeps this run's entries; a process
        // that dies leaves it marked as interrupted, which is what it is.
        if RunRecord::load(&self.opts.out, &run.pipeline, &run.name).is_none_or(|r| r.keys != keys) {
            let _ = record(RunStatus::Interrupted).save(&self.opts.out);
        }
        let mut status = RunStatus::Done;
        let mut stages_out: Vec<(Stage, StageOutcome)> = Vec::new();
        let mut prepared: Option<PreparedData> = None;
        for (stage, key) in keys.iter() {
            if matches!(status, RunStatus::Failed { .. } | RunStatus::Interrupted) {
                stages_out.push((stage, StageOutcome::Skipped));
                continue;
            }
            // Ctrl-C during a stage that cannot stop midway: start no further stage.
            if self.opts.interrupt.load(Ordering::SeqCst) && self.store.lookup(key, stage.files()).is_err() {
                self.say(&run.name, stage, "interrupted before it started");
                stages_out.push((stage, StageOutcome::Skipped));
                status = RunStatus::Interrupted;
                continue;
            }
            match self.store.lookup(key, stage.files()) {
                Ok(dir) => {
                    self.say(&run.name, stage, &format!("cached ({})", &key.key[..8]));
                    stages_out.push((stage, StageOutcome::Cached));
                    if let Some(message) = cached_divergence(stage, &dir) {
                        status = RunStatus::Diverged { message };
                    }
                    continue;
                }
                Err(Miss::Corrupt(why)) => self.say(
                    &run.name,
                    stage,
                    &format!("cache entry damaged ({why}); running again"),
                ),
                Err(Miss::Absent) => {}
            }
            let started = Instant::now();
            match self.build_stage(stage, run, &keys, &mut prepared, !may_skip) {
                Ok(Built::Busy) => return Attempt::Busy(stage),
                Ok(Built::ByOther(dir)) => {
                    self.say(
                        &run.name,
                        stage,
                        &format!(
                            "cached ({}; another labpipe process built it meanwhile)",
                            &key.key[..8]
                        ),
                    );
                    stages_out.push((stage, StageOutcome::Cached));
                    if let Some(message) = cached_divergence(stage, &dir) {
                        status = RunStatus::Diverged { message };
                    }
                }
                Ok(Built::Ran(diverged)) => {
                    let secs = started.elapsed().as_secs_f64();
                    self.say(
                        &run.name,
                        stage,
                        &format!("ran in {secs:.1}s ({})", &key.key[..8]),
                    );
                    stages_out.push((stage, StageOutcome::Ran(secs)));
                    if let Some(message) = diverged {
                        status = RunStatus::Diverged { message };
                    }
                }
                Err(e) if e.is_interrupt() => {
                    let msg = match &*e.source {
                        StageFailure::Train(crate::train::trainer::TrainError::Interrupted {
                            epochs_done,
                        }) => {
                            format!(
                                "interrupted; {epochs_done} epoch(s) checkpointed, `labpipe run` again resumes"
                            )
                        }
                        other => other.to_string(),
                    };
                    self.say(&run.name, stage, &msg);
                    stages_out.push((stage, StageOutcome::Failed(msg)));
                    status = RunStatus::Interrupted;
                }
                Err(e) => {
                    // Nothing half-written stays behind; only training keeps its work directory (to resume).
                    // Under the lock: another process may be building the same key by now.
                    if stage != Stage::Train
                        && let Ok(Some(_lock)) = self.store.try_lock(key)
                    {
                        let _ = std::fs::remove_dir_all(self.store.partial_dir(key));
                    }
                    let message = e.source.to_string();
                    self.say(&run.name, stage, &format!("FAILED: {message}"));
                    stages_out.push((stage, StageOutcome::Failed(message.clone())));
                    status = RunStatus::Failed { stage, message };
                }
            }
        }
        if let Ok(dir) = self.store.lookup(&keys.train, Stage::Train.files())
            && let Ok(trained) = TrainArtifacts::read(&dir)
        {
            let dest = OutDir::new(&self.opts.out).run_files(&run.pipeline, &run.name);
            if let Err(e) = stage::train::publish_history(&trained, &dest)
                && !self.opts.quiet
            {
                eprintln!(
                    "{}: could not copy the history into {}: {e}",
                    run.name,
                    dest.display()
                );
            }
        }
        if let Err(e) = record(status.clone()).save(&self.opts.out)
            && !self.opts.quiet
        {
            eprintln!("{}: could not write the run record: {e}", run.name);
        }
        Attempt::Finished(RunOutcome {
            name: run.name.clone(),
            status,
            stages: stages_out,
        })
    }

    /// A complete upstream stage's artifacts.
    fn upstream<T>(
        &self,
        stage: Stage,
        keys: &StageKeys,
        read: fn(&StageDir) -> Result<T, ArtifactError>,
    ) -> Result<T, StageFailure> {
        let key = keys.get(stage);
        let dir = self
            .store
            .lookup(key, stage.files())
            .map_err(|m| StageFailure::Upstream {
                stage: key.stage.clone(),
                key: key.key.clone(),
                why: match m {
                    Miss::Absent => "not in the cache".into(),
                    Miss::Corrupt(w) => w,
                },
            })?;
        Ok(read(&dir)?)
    }

    /// The run's images cut as its dataset stage decided (complete by the time a later stage asks).
    fn prepare<'p>(
        &mut self,
        run: &RunSpec,
        keys: &StageKeys,
        cache: &'p mut Option<PreparedData>,
    ) -> Result<&'p PreparedData, StageFailure> {
        let prepared = match cache.take() {
            Some(p) => p,
            None => {
                if let Some(data) = self.datasets.get(&source::source_id(&run.data)).cloned() {
                    let artifacts = self.upstream(Stage::Dataset, keys, DatasetArtifacts::read)?;
                    PreparedData::new(&data, artifacts)
                } else {
                    // An image folder decoded by an earlier process is read back, not decoded again.
                    let (artifacts, decoded) = self.upstream(Stage::Dataset, keys, |dir| {
                        let artifacts = DatasetArtifacts::read(dir)?;
                        let decoded = stage::dataset::read_decoded(&dir.path, &artifacts.info.class_names)?;
                        Ok((artifacts, decoded))
                    })?;
                    match decoded {
                        Some(data) => PreparedData::new(&data, artifacts),
                        None => PreparedData::new(&*self.dataset(run)?, artifacts),
                    }
                }
            }
        };
        Ok(cache.insert(prepared))
    }

    /// Build one stage under its lock. When another process holds the lock: wait for it with `wait`,
    /// else return [`Built::Busy`] at once.
    fn build_stage(
        &mut self,
        stage: Stage,
        run: &RunSpec,
        keys: &StageKeys,
        prepared: &mut Option<PreparedData>,
        wait: bool,
    ) -> Result<Built, StageError> {
        let at = |source: StageFailure| StageError::new(stage, source);
        let key = keys.get(stage);
        let lock = if wait {
            self.store.lock_or_wait(key, || {
                self.say(
                    &run.name,
                    stage,
                    "waiting: another labpipe process is building this stage",
                )
            })
        } else {
            match self.store.try_lock(key) {
                Ok(Some(lock)) => Ok(lock),
                Ok(None) => return Ok(Built::Busy),
                Err(e) => Err(e),
            }
        }
        .map_err(|e| at(e.into()))?;
        // Another process may have finished this stage while we waited for the lock.
        if let Ok(dir) = self.store.lookup(key, stage.files()) {
            return Ok(Built::ByOther(dir));
        }
        let build = self.store.begin(key, lock).map_err(|e| at(e.into()))?;
        let dir = build.dir().to_path_buf();
        let started = Instant::now();
        let compute = self.opts.compute();
        let diverged = match stage {
            Stage::Dataset => {
                let data = self.dataset(run).map_err(|e| at(e.into()))?;
                stage::dataset::build(run, &data, &dir).map(|()| None)
            }
            Stage::Model => stage::model::build(run, &dir).map(|()| None),
            Stage::Train => self.prepare(run, keys, prepared).and_then(|data| {
                let board = OutDir::new(&self.opts.out).tensorboard(&run.pipeline, &run.name);
                stage::train::build(run, data, &compute, &dir, board)
            }),
            Stage::Evaluate => self
                .upstream(Stage::Train, keys, TrainArtifacts::read)
                .and_then(|trained| {
                    let data = self.prepare(run, keys, prepared)?;
                    stage::evaluate::build(run, data, &trained, &compute, &dir)
                })
                .map(|()| None),
            Stage::Plot => self
                .upstream(Stage::Train, keys, TrainArtifacts::read)
                .and_then(|trained| {
                    let evaluated = self.upstream(Stage::Evaluate, keys, EvaluateArtifacts::read)?;
                    stage::plot::build(run, &trained, &evaluated, &dir)
                })
                .map(|()| None),
        }
        .map_err(at)?;
        build
            .commit(started.elapsed().as_secs_f64(), stage.files())
            .map_err(|e| at(e.into()))?;
        Ok(Built::Ran(diverged))
    }

    /// Evaluate `checkpoint` (default: the run's selected one) on the run's test set; returns the checkpoint
    /// path. Builds the dataset stage when it is missing.
    pub fn evaluate_run(
        &mut self,
        run: &RunSpec,
        checkpoint: Option<&Path>,
    ) -> Result<(PathBuf, TestMetrics), StageError> {
        let at = |stage| move |source: StageFailure| StageError::new(stage, source);
        let keys = self.keys(run).map_err(|e| at(Stage::Dataset)(e.into()))?;
        let path = match checkpoint {
            Some(p) => p.to_path_buf(),
            None => {
                self.upstream(Stage::Train, &keys, TrainArtifacts::read)
                    .map_err(|_| {
                        at(Stage::Train)(StageFailure::NotTrained {
                            run: run.name.clone(),
                        })
                    })?
                    .model_file
            }
        };
        if self.store.lookup(&keys.dataset, Stage::Dataset.files()).is_err() {
            self.build_stage(Stage::Dataset, run, &keys, &mut None, true)?;
        }
        let mut prepared = None;
        let data = self
            .prepare(run, &keys, &mut prepared)
            .map_err(at(Stage::Evaluate))?;
        let metrics = stage::evaluate::evaluate_checkpoint(run, &path, data, &self.opts.compute())
            .map_err(at(Stage::Evaluate))?;
        Ok((path, metrics))
    }

    /// The cache this executor uses.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The divergence message of a complete train stage, if its run diverged.
fn cached_divergence(stage: Stage, dir: &StageDir) -> Option<String> {
    if stage != Stage::Train {
        return None;
    }
    let trained = TrainArtifacts::read(dir).ok()?;
    trained.outcome.diverged.map(|d| d.message())
}
