//! Plans and runs each run's stage graph against the cache: a stage whose key is already complete in the
//! cache is not run again; one that fails stops only its own run.

pub mod record;
pub mod stages;

use crate::cache::{Miss, StageDir, StageKey, Store};
use crate::data::normalize::{NormStats, stats_for};
use crate::data::split::{Split, split};
use crate::data::{Dataset, ImageSet, source};
use crate::model::checkpoint;
use crate::model::net::Net;
use crate::spec::{Pipeline, RunSpec};
use crate::train::evaluate::{TestMetrics, evaluate};
use crate::train::trainer::{self, TrainError, TrainJob, TrainOutcome};
use candle_core::Device;
use record::{RunRecord, RunStatus};
use serde::{Deserialize, Serialize};
use stages::StageKeys;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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
    pub stages: Vec<(&'static str, StageOutcome)>,
}

/// `dataset.json`: what the dataset stage decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Where the images came from.
    pub source: String,
    /// Class names.
    pub class_names: Vec<String>,
    /// Training images (after the validation split).
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Test images.
    pub test_images: usize,
    /// The normalization mode as written.
    pub normalize: crate::spec::file::Normalize,
    /// The statistics used.
    pub stats: NormStats,
}

/// Data ready for training and evaluation.
struct Prepared {
    train: Arc<ImageSet>,
    val: Arc<ImageSet>,
    test: Arc<ImageSet>,
    info: DatasetInfo,
}

/// Runs stages, keeping loaded datasets between runs of one pipeline.
pub struct Executor<'a> {
    opts: &'a Options,
    store: Store,
    datasets: HashMap<String, Arc<Dataset>>,
    fingerprints: HashMap<String, String>,
}

fn write_json(dir: &Path, name: &str, v: &impl Serialize) -> Result<(), String> {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Read a JSON artifact of a complete stage.
pub fn read_json<T: for<'de> Deserialize<'de>>(dir: &StageDir, name: &str) -> Result<T, String> {
    let p = dir.file(name);
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

impl<'a> Executor<'a> {
    /// An executor writing under `opts.out`.
    pub fn new(opts: &'a Options) -> Self {
        Executor {
            opts,
            store: Store::new(&opts.out),
            datasets: HashMap::new(),
            fingerprints: HashMap::new(),
        }
    }

    /// The stage keys of `run` (computing the data fingerprint once per source).
    pub fn keys(&mut self, run: &RunSpec) -> Result<StageKeys, String> {
        let source_id = serde_json::to_string(&(
            &run.data.dataset,
            &run.data.root,
            run.data.train_size,
            run.data.test_size,
        ))
        .unwrap_or_default();
        let fp = match self.fingerprints.get(&source_id) {
            Some(f) => f.clone(),
            None => {
                let f = source::fingerprint(&run.data).map_err(|e| e.to_string())?;
                self.fingerprints.insert(source_id, f.clone());
                f
            }
        };
        Ok(StageKeys::new(run, &fp, crate::device::kind(&self.opts.device)))
    }

    fn say(&self, run: &str, stage: &str, what: &str) {
        if !self.opts.quiet {
            eprintln!("{run}: {stage:<9}{what}");
        }
    }

    fn dataset(&mut self, run: &RunSpec) -> Result<Arc<Dataset>, String> {
        let id = serde_json::to_string(&(
            &run.data.dataset,
            &run.data.root,
            run.data.train_size,
            run.data.test_size,
        ))
        .unwrap_or_default();
        if let Some(d) = self.datasets.get(&id) {
            return Ok(d.clone());
        }
        let d = Arc::new(source::load(&run.data, !self.opts.quiet).map_err(|e| e.to_string())?);
        self.datasets.insert(id, d.clone());
        Ok(d)
    }

    /// Run every stage of every run in `pipeline`, isolating failures.
    pub fn run_pipeline(&mut self, pipeline: &Pipeline, runs: &[&RunSpec]) -> Vec<RunOutcome> {
        let mut out = Vec::new();
        for run in runs {
            let outcome = self.run_one(pipeline, run);
            let interrupted = outcome.status == RunStatus::Interrupted;
            out.push(outcome);
            if interrupted {
                break;
            }
        }
        out
    }

    fn run_one(&mut self, pipeline: &Pipeline, run: &RunSpec) -> RunOutcome {
        let mut stages_out: Vec<(&'static str, StageOutcome)> = Vec::new();
        let keys = match source::ensure_present(&run.data, !self.opts.quiet)
            .map_err(|e| e.to_string())
            .and_then(|()| self.keys(run))
        {
            Ok(k) => k,
            Err(e) => {
                let status = RunStatus::Failed {
                    stage: "dataset".into(),
                    message: e.clone(),
                };
                return RunOutcome {
                    name: run.name.clone(),
                    status,
                    stages: vec![("dataset", StageOutcome::Failed(e))],
                };
            }
        };
        // Recorded before any stage runs, so `labpipe clean` run meanwhile keeps this run's entries; a process
        // that dies leaves it marked as interrupted, which is what it is.
        let started = RunRecord {
            pipeline_file: pipeline.path.clone(),
            spec: run.clone(),
            keys: keys.clone(),
            status: RunStatus::Interrupted,
        };
        if RunRecord::load(&self.opts.out, &run.pipeline, &run.name).is_none_or(|r| r.keys != keys) {
            let _ = started.save(&self.opts.out);
        }
        let mut status = RunStatus::Done;
        let mut prepared: Option<Prepared> = None;
        for (i, key) in keys.all().into_iter().enumerate() {
            let stage = stages::STAGES[i];
            if matches!(status, RunStatus::Failed { .. } | RunStatus::Interrupted) {
                stages_out.push((stage, StageOutcome::Skipped));
                continue;
            }
            // Ctrl-C during a stage that cannot stop midway: start no further stage.
            if self.opts.interrupt.load(std::sync::atomic::Ordering::SeqCst)
                && self.store.lookup(key).is_err()
            {
                self.say(&run.name, stage, "interrupted before it started");
                stages_out.push((stage, StageOutcome::Skipped));
                status = RunStatus::Interrupted;
                continue;
            }
            match self.store.lookup(key) {
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
            let result = self.build_stage(stage, key, run, &keys, &mut prepared);
            match result {
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
                Ok(Built::Ran(extra)) => {
                    let secs = started.elapsed().as_secs_f64();
                    self.say(
                        &run.name,
                        stage,
                        &format!("ran in {secs:.1}s ({})", &key.key[..8]),
                    );
                    stages_out.push((stage, StageOutcome::Ran(secs)));
                    if let Some(msg) = extra {
                        status = RunStatus::Diverged { message: msg };
                    }
                }
                Err(StageError::Interrupted(msg)) => {
                    self.say(&run.name, stage, &msg);
                    stages_out.push((stage, StageOutcome::Failed(msg)));
                    status = RunStatus::Interrupted;
                }
                Err(StageError::Failed(msg)) => {
                    // Nothing half-written stays behind; only training keeps its work directory (to resume).
                    // Under the lock: another process may be building the same key by now.
                    if stage != "train"
                        && let Ok(Some(_lock)) = self.store.try_lock(key)
                    {
                        let _ = std::fs::remove_dir_all(self.store.partial_dir(key));
                    }
                    self.say(&run.name, stage, &format!("FAILED: {msg}"));
                    stages_out.push((stage, StageOutcome::Failed(msg.clone())));
                    status = RunStatus::Failed {
                        stage: stage.to_string(),
                        message: msg,
                    };
                }
            }
        }
        let record = RunRecord {
            pipeline_file: pipeline.path.clone(),
            spec: run.clone(),
            keys,
            status: status.clone(),
        };
        if let Err(e) = record.save(&self.opts.out) {
            self.say(
                &run.name,
                "record",
                &format!("could not write the run record: {e}"),
            );
        }
        RunOutcome {
            name: run.name.clone(),
            status,
            stages: stages_out,
        }
    }

    fn prepare(
        &mut self,
        run: &RunSpec,
        keys: &StageKeys,
        cache: &mut Option<Prepared>,
    ) -> Result<(), String> {
        if cache.is_some() {
            return Ok(());
        }
        let dir = self
            .store
            .lookup(&keys.dataset)
            .map_err(|m| format!("dataset stage unavailable: {m:?}"))?;
        let info: DatasetInfo = read_json(&dir, "dataset.json")?;
        let sp: Split = read_json(&dir, "split.json")?;
        let data = self.dataset(run)?;
        *cache = Some(Prepared {
            train: Arc::new(data.train.select(&sp.train)),
            val: Arc::new(data.train.select(&sp.val)),
            test: Arc::new(data.test.clone()),
            info,
        });
        Ok(())
    }

    /// Build one stage under its lock; `Built::Ran(Some(msg))` means the run diverged (the stage still
    /// completed).
    fn build_stage(
        &mut self,
        stage: &str,
        key: &StageKey,
        run: &RunSpec,
        keys: &StageKeys,
        prepared: &mut Option<Prepared>,
    ) -> Result<Built, StageError> {
        let fail = |e: String| StageError::Failed(e);
        let lock = self
            .store
            .lock_or_wait(key, || {
                self.say(
                    &run.name,
                    stage,
                    "waiting: another labpipe process is building this stage",
                )
            })
            .map_err(|e| fail(e.to_string()))?;
        // Another process may have finished this stage while we waited for the lock.
        if let Ok(dir) = self.store.lookup(key) {
            return Ok(Built::ByOther(dir));
        }
        let build = self.store.begin(key, lock).map_err(|e| fail(e.to_string()))?;
        let dir = build.dir().to_path_buf();
        let started = Instant::now();
        let mut diverged = None;
        match stage {
            "dataset" => {
                let data = self.dataset(run).map_err(fail)?;
                let val = run.data.val_split.count(data.train.len());
                if val == 0 || val >= data.train.len() {
                    return Err(fail(format!(
                        "data.val_split gives {val} validation images out of {} training images",
                        data.train.len()
                    )));
                }
                let sp = split(data.train.len(), val, run.train.seed);
                let stats = stats_for(&run.data.normalize, &data.train, &sp.train);
                let info = DatasetInfo {
                    source: source::describe(&run.data),
                    class_names: data.class_names.clone(),
                    train_images: sp.train.len(),
                    val_images: sp.val.len(),
                    test_images: data.test.len(),
                    normalize: run.data.normalize.clone(),
                    stats,
                };
                write_json(&dir, "dataset.json", &info).map_err(fail)?;
                write_json(&dir, "split.json", &sp).map_err(fail)?;
            }
            "model" => {
                let summary = crate::summary::summarize(&run.decl).map_err(|e| fail(e.to_string()))?;
                write_json(&dir, "summary.json", &summary).map_err(fail)?;
                std::fs::write(
                    dir.join("summary.txt"),
                    crate::summary::render_seed_text(&summary),
                )
                .map_err(|e| fail(e.to_string()))?;
                crate::summary::diagram::draw_diagram(
                    &run.decl,
                    &summary,
                    &dir.join("diagram.svg"),
                    &dir.join("diagram.png"),
                )
                .map_err(|e| fail(e.to_string()))?;
                write_json(&dir, "model.json", &run.decl).map_err(fail)?;
            }
            "train" => {
                // The dataset stage's artifacts are complete here (it ran or was cached just before).
                self.prepare(run, keys, prepared).map_err(fail)?;
                let p = prepared
                    .as_ref()
                    .ok_or_else(|| fail("data not prepared".into()))?;
                let job = TrainJob {
                    run,
                    train: p.train.clone(),
                    val: p.val.clone(),
                    stats: p.info.stats,
                    device: &self.opts.device,
                    workers: run.data.workers.unwrap_or(self.opts.workers),
                    work_dir: &dir,
                    quiet: self.opts.quiet,
                    interrupt: self.opts.interrupt.clone(),
                    tensorboard: None,
                };
                let outcome = match trainer::train(&job) {
                    Ok(o) => o,
                    Err(TrainError::Interrupted { epochs_done }) => {
                        return Err(StageError::Interrupted(format!(
                            "interrupted; {epochs_done} epoch(s) checkpointed, `labpipe run` again resumes"
                        )));
                    }
                    Err(e) => return Err(fail(e.to_string())),
                };
                write_json(&dir, "history.json", &outcome.history).map_err(fail)?;
                std::fs::write(dir.join("history.csv"), outcome.history.to_csv())
                    .map_err(|e| fail(e.to_string()))?;
                write_json(&dir, "outcome.json", &outcome).map_err(fail)?;
                write_json(&dir, "config.json", run).map_err(fail)?;
                trainer::clear_resume_state(&dir);
                if let Some(d) = &outcome.diverged {
                    diverged = Some(d.message());
                }
            }
            "evaluate" => {
                self.prepare(run, keys, prepared).map_err(fail)?;
                let p = prepared
                    .as_ref()
                    .ok_or_else(|| fail("data not prepared".into()))?;
                let train_dir = self
                    .store
                    .lookup(&keys.train)
                    .map_err(|m| fail(format!("train stage unavailable: {m:?}")))?;
                let metrics = evaluate_checkpoint(
                    run,
                    &train_dir.file(trainer::MODEL_FILE),
                    p,
                    &self.opts.device,
                    self.opts.workers,
                )
                .map_err(fail)?;
                write_json(&dir, "metrics.json", &metrics).map_err(fail)?;
            }
            "plot" => {
                let train_dir = self
                    .store
                    .lookup(&keys.train)
                    .map_err(|m| fail(format!("train stage unavailable: {m:?}")))?;
                let eval_dir = self
                    .store
                    .lookup(&keys.evaluate)
                    .map_err(|m| fail(format!("evaluate stage unavailable: {m:?}")))?;
                let outcome: TrainOutcome = read_json(&train_dir, "outcome.json").map_err(fail)?;
                let metrics: TestMetrics = read_json(&eval_dir, "metrics.json").map_err(fail)?;
                draw_run_figures(run, &outcome, &metrics, &dir).map_err(fail)?;
            }
            other => return Err(fail(format!("unknown stage {other}"))),
        }
        build
            .commit(started.elapsed().as_secs_f64(), &[])
            .map_err(|e| fail(e.to_string()))?;
        Ok(Built::Ran(diverged))
    }
}

impl Executor<'_> {
    /// Evaluate `checkpoint` (default: the run's chosen one) on the run's test set; returns the checkpoint path.
    pub fn evaluate_run(
        &mut self,
        run: &RunSpec,
        checkpoint: Option<&Path>,
    ) -> Result<(PathBuf, TestMetrics), String> {
        let keys = self.keys(run)?;
        let path = match checkpoint {
            Some(p) => p.to_path_buf(),
            None => self
                .store
                .lookup(&keys.train)
                .map(|d| d.file(trainer::MODEL_FILE))
                .map_err(|_| {
                    format!(
                        "run `{}` has not been trained yet: run `labpipe run` first, or pass --checkpoint",
                        run.name
                    )
                })?,
        };
        if self.store.lookup(&keys.dataset).is_err() {
            let mut none = None;
            self.build_stage("dataset", &keys.dataset, run, &keys, &mut none)
                .map_err(|e| match e {
                    StageError::Failed(m) | StageError::Interrupted(m) => m,
                })?;
        }
        let mut prepared = None;
        self.prepare(run, &keys, &mut prepared)?;
        let p = prepared.as_ref().ok_or("data not prepared")?;
        let metrics = evaluate_checkpoint(run, &path, p, &self.opts.device, self.opts.workers)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((path, metrics))
    }

    /// The cache this executor uses.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

enum StageError {
    Failed(String),
    Interrupted(String),
}

/// How a stage that was not in the cache at first came to be complete.
enum Built {
    /// This process ran it; `Some(message)` when training diverged.
    Ran(Option<String>),
    /// Another process completed it while this one waited for the stage's lock.
    ByOther(StageDir),
}

/// The divergence message of a complete train stage, if its run diverged.
fn cached_divergence(stage: &str, dir: &StageDir) -> Option<String> {
    if stage != "train" {
        return None;
    }
    let outcome = read_json::<TrainOutcome>(dir, "outcome.json").ok()?;
    outcome.diverged.map(|d| d.message())
}

fn evaluate_checkpoint(
    run: &RunSpec,
    path: &Path,
    p: &Prepared,
    device: &Device,
    workers: usize,
) -> Result<TestMetrics, String> {
    let net = Net::new(&run.decl, device, run.train.seed).map_err(|e| e.to_string())?;
    let tensors = checkpoint::load(path, device).map_err(|e| e.to_string())?;
    net.load_state_dict(&tensors)?;
    evaluate(
        &net,
        &p.test,
        p.info.stats,
        &p.info.class_names,
        run.train.eval_batch_size.unwrap_or(256),
        workers,
    )
    .map_err(|e| e.to_string())
}

fn draw_run_figures(
    run: &RunSpec,
    outcome: &TrainOutcome,
    metrics: &TestMetrics,
    dir: &Path,
) -> Result<(), String> {
    use crate::report::figures::{CurveMarks, draw_confusion, draw_curves};
    let title = format!("{} / {}", run.pipeline, run.name);
    let marks = CurveMarks {
        selected_epoch: outcome.selected_epoch,
        stopped_early_at: outcome.stopped_early_at,
    };
    draw_curves(
        &outcome.history,
        &title,
        &marks,
        &dir.join("curves.svg"),
        &dir.join("curves.png"),
    )
    .map_err(|e| e.to_string())?;
    draw_confusion(
        metrics,
        &format!("{title}: test confusion matrix"),
        &dir.join("confusion.svg"),
        &dir.join("confusion.png"),
    )
    .map_err(|e| e.to_string())
}
