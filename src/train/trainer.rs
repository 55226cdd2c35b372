//! The training loop: epochs of shuffled, augmented batches; validation; checkpoint selection; early
//! stopping; divergence detection; and a resumable checkpoint at every epoch boundary.

use super::config::{Select, StopMetric, TrainSpec};
use super::history::{EpochRecord, TrainHistory};
use super::loss::{correct, correct_count, cross_entropy, per_sample_cross_entropy};
use super::optim;
use super::progress::EpochProgress;
use super::resume::{self, ResumeInfo};
use crate::data::ImageSet;
use crate::data::augment::Augment;
use crate::data::batches::{Batch, BatchPlan, Prefetcher};
use crate::data::normalize::NormStats;
use crate::model::checkpoint;
use crate::model::decl::ModelDecl;
use crate::model::net::{Mode, Net};
use crate::tensorboard::{self, EventWriter, HParamValue, RunStatus};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Why training could not finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("run `{run}`: {source}")]
    Tensor {
        /// Run name.
        run: String,
        /// Candle's error.
        source: candle_core::Error,
    },
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TensorBoard event file could not be written.
    #[error(transparent)]
    Tensorboard(#[from] tensorboard::TensorboardError),
    /// The user pressed Ctrl-C; the last complete epoch is checkpointed.
    #[error("interrupted after epoch {epochs_done}; `labpipe run` again resumes from there")]
    Interrupted {
        /// Epochs completed and checkpointed.
        epochs_done: usize,
    },
    /// The model's output does not have one score per class of the dataset (known only once an image
    /// folder is read; other datasets are checked when the pipeline is read).
    #[error(
        "run `{run}`: the model predicts {model} classes but the dataset has {dataset}; set `model.num_classes` \
         (or the last linear's `out_features`) to {dataset}"
    )]
    ClassCount {
        /// Run name.
        run: String,
        /// The model's output size.
        model: usize,
        /// Classes in the dataset.
        dataset: usize,
    },
    /// The images do not have the shape the model was built for.
    #[error("run `{run}`: the model takes {model} images but the dataset's are {dataset}")]
    InputShape {
        /// Run name.
        run: String,
        /// The model's input `[C, H, W]`.
        model: String,
        /// The images' shape.
        dataset: String,
    },
}

/// A run whose loss became NaN or infinite, or whose epoch loss exceeded the `train.divergence` bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based batch within the epoch (the epoch's last batch when the epoch's mean loss broke the bound).
    pub batch: usize,
    /// Learning rate at that moment.
    pub lr: f64,
    /// The loss value as text (`NaN`, `inf`, or the epoch's mean training loss).
    pub loss: String,
    /// The bound the epoch's mean training loss exceeded (None: the loss was NaN or infinite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<DivergenceBound>,
}

/// The numbers of a broken `train.divergence` bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergenceBound {
    /// `train.divergence.factor`.
    pub factor: f64,
    /// The initial loss it multiplies.
    pub initial_loss: f64,
}

/// A learning rate as people write it: `0.001`, `1e6`.
fn lr_text(lr: f64) -> String {
    if lr != 0.0 && !(1e-4..1e4).contains(&lr.abs()) {
        format!("{lr:e}")
    } else {
        format!("{lr}")
    }
}

impl Divergence {
    /// What to try next.
    pub const HINT: &str = "Try a learning rate 3-10x smaller, a warmup, or normalized inputs.";

    /// What happened, in one sentence.
    pub fn what(&self) -> String {
        match &self.bound {
            None => format!(
                "the loss became {} at epoch {}, batch {} (learning rate {})",
                self.loss,
                self.epoch,
                self.batch,
                lr_text(self.lr)
            ),
            Some(b) => format!(
                "epoch {}'s mean training loss {} is more than {} × the initial loss {:.4} (learning rate {}; \
                 `train.divergence`)",
                self.epoch,
                self.loss,
                b.factor,
                b.initial_loss,
                lr_text(self.lr)
            ),
        }
    }

    /// A one-paragraph explanation for the user.
    pub fn message(&self) -> String {
        format!(
            "training diverged: {}; the history and the best checkpoint so far are kept. {}",
            self.what(),
            Self::HINT
        )
    }
}

/// What a finished (or stopped) training run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// Per-epoch history.
    pub history: TrainHistory,
    /// The checkpoint policy.
    pub select: Select,
    /// The epoch whose weights were kept (None when no epoch completed).
    pub selected_epoch: Option<usize>,
    /// Set when early stopping ended training before `epochs`.
    pub stopped_early_at: Option<usize>,
    /// Set when the loss diverged.
    pub diverged: Option<Divergence>,
    /// Epochs that were restored from a resume checkpoint rather than trained in this process.
    pub resumed_epochs: usize,
    /// Wall seconds spent training in this process.
    pub seconds: f64,
}

/// Everything the loop needs.
pub struct TrainJob<'a> {
    /// Which run this is: names progress lines, errors and the checkpoints' metadata.
    pub label: &'a RunLabel,
    /// How to train.
    pub spec: &'a TrainSpec,
    /// The network to train.
    pub decl: &'a ModelDecl,
    /// Training-time augmentations, in order.
    pub augment: &'a [Augment],
    /// Classes in the dataset; the model's output must have this size.
    pub classes: usize,
    /// Training split.
    pub train: Arc<ImageSet>,
    /// Validation split.
    pub val: Arc<ImageSet>,
    /// Normalization.
    pub stats: NormStats,
    /// Compute device.
    pub device: &'a Device,
    /// Background data workers.
    pub workers: usize,
    /// Directory for the resume state (kept across crashes).
    pub work_dir: &'a Path,
    /// Where the selected epoch's weights go.
    pub model_file: &'a Path,
    /// Where the last epoch's weights go.
    pub last_file: &'a Path,
    /// Suppress progress output.
    pub quiet: bool,
    /// Set by Ctrl-C: stop after the current batch.
    pub interrupt: Arc<AtomicBool>,
    /// Directory for the run's TensorBoard event files (None: write none).
    pub tensorboard: Option<PathBuf>,
}

/// The identity of a run as training needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLabel {
    /// Pipeline name.
    pub pipeline: String,
    /// Run name.
    pub name: String,
    /// Content ID of the resolved run.
    pub id: String,
}

/// Metadata written into every checkpoint's safetensors header.
pub fn checkpoint_metadata(label: &RunLabel, decl: &ModelDecl, epoch: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("format".into(), "pt".into()),
        ("labpipe.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("labpipe.pipeline".into(), label.pipeline.clone()),
        ("labpipe.run".into(), label.name.clone()),
        ("labpipe.run_id".into(), label.id.clone()),
        ("labpipe.model".into(), decl.class_name.clone()),
        ("labpipe.epoch".into(), epoch.to_string()),
    ])
}

/// Opens the run's TensorBoard log with its hyperparameters: a new file beside the earlier process's when
/// resuming (TensorBoard merges a directory's files), a replaced log when training starts from scratch.
fn open_board(
    dir: &Path,
    t: &TrainSpec,
    model: &str,
    resumed_epochs: usize,
) -> Result<EventWriter, TrainError> {
    let mut board = if resumed_epochs > 0 {
        EventWriter::create(dir)?
    } else {
        EventWriter::replace(dir)?
    };
    let mut hparams = tensorboard::hparams_from_config(&serde_json::to_value(t).unwrap_or_default());
    hparams.insert("model".into(), HParamValue::Text(model.into()));
    board.add_hparams(&hparams);
    board.add_restart(resumed_epochs as i64 + 1);
    board.flush()?;
    Ok(board)
}

/// Loss and accuracy of `net` over `set`, in evaluation mode. The loss is the mean of the per-image losses
/// summed one image at a time in f64, so its bits do not depend on `batch_size` (which is not in any key):
/// `best_val_loss` selection and early stopping read it.
pub fn evaluate_loss(
    net: &Net,
    set: &Arc<ImageSet>,
    stats: NormStats,
    batch_size: usize,
    workers: usize,
    mut on_batch: impl FnMut(&Tensor, &Batch) -> candle_core::Result<()>,
) -> candle_core::Result<(f64, f64)> {
    let plan = BatchPlan {
        images: set.clone(),
        stats,
        augment: Arc::new(Vec::new()),
        batch_size,
        shuffle: None,
    };
    let (mut loss_sum, mut right, mut n) = (0.0f64, 0usize, 0usize);
    for batch in Prefetcher::start(plan, workers) {
        let (x, y) = to_tensors(&batch, net.device())?;
        let logits = forward_rows_invariant(net, &x)?;
        let losses = per_sample_cross_entropy(&logits, &y)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        for l in losses {
            loss_sum += l as f64;
        }
        right += correct(&logits, &y)?;
        n += batch.len();
        on_batch(&logits, &batch)?;
    }
    Ok((loss_sum / n.max(1) as f64, right as f64 / n.max(1) as f64))
}

/// Fewest rows an evaluation batch is run with on the CPU. The GEMM (the `gemm` crate, under Candle's matmul
/// and labpipe's convolution) blocks the inner dimension differently for products of at most 64 rows and
/// columns, and takes another path for a strided operand below about 64 rows; from 65 rows on, each output
/// element is summed in an order that depends on the layer alone. Measured in
/// `validation_and_test_loss_do_not_depend_on_the_eval_batch_size` (src/train/evaluate.rs).
const MIN_EVAL_ROWS: usize = 65;

/// `net`'s evaluation-mode output for the images `x`, each row's bits independent of how many images `x`
/// holds: on the CPU a short batch is padded with zero images to [`MIN_EVAL_ROWS`] (evaluation mode treats
/// every image on its own, so the padding changes no real row) and their rows are dropped again. On CUDA,
/// cuBLAS picks kernels by shape, so there the evaluation batch size is part of the train and evaluate keys
/// instead (src/pipeline/stage/train.rs).
pub fn forward_rows_invariant(net: &Net, x: &Tensor) -> candle_core::Result<Tensor> {
    let n = x.dim(0)?;
    if !net.device().is_cpu() || n >= MIN_EVAL_ROWS {
        return net.forward(x, Mode::Eval);
    }
    let mut shape = x.dims().to_vec();
    shape[0] = MIN_EVAL_ROWS - n;
    let padded = Tensor::cat(&[x, &Tensor::zeros(shape, x.dtype(), x.device())?], 0)?;
    net.forward(&padded, Mode::Eval)?.narrow(0, 0, n)
}

fn to_tensors(batch: &Batch, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let n = batch.len();
    let x = Tensor::from_slice(&batch.pixels, batch.dims(), device)?;
    let y = Tensor::from_slice(&batch.labels, n, device)?;
    Ok((x, y))
}

/// Refuses a job whose model does not fit its data: the images' shape and the class count.
fn check_fit(job: &TrainJob) -> Result<(), TrainError> {
    let run = job.label.name.clone();
    let shape = job.train.shape;
    if job.decl.input != shape.dims() {
        return Err(TrainError::InputShape {
            run,
            model: crate::model::decl::fmt_shape(&job.decl.input),
            dataset: shape.to_string(),
        });
    }
    let model = job
        .decl
        .output_shape()
        .map(|s| s.iter().product::<usize>())
        .unwrap_or(job.classes);
    if model != job.classes {
        return Err(TrainError::ClassCount {
            run,
            model,
            dataset: job.classes,
        });
    }
    Ok(())
}

/// Train `job.run` to completion (or early stop, divergence, interrupt), resuming from `work_dir` if a
/// previous process left a resumable state there.
pub fn train(job: &TrainJob) -> Result<TrainOutcome, TrainError> {
    let run = job.label;
    let t = job.spec;
    let terr = |source| TrainError::Tensor {
        run: run.name.clone(),
        source,
    };
    check_fit(job)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(job.work_dir).map_err(io(job.work_dir))?;
    let fresh = || -> candle_core::Result<_> {
        let net = Net::new(job.decl, job.device, t.seed)?;
        let opt = optim::build(
            &t.optimizer.with_momentum(t.scheduler.initial_momentum()),
            net.params(),
        )?;
        Ok((net, opt))
    };
    let (mut net, mut opt) = fresh().map_err(terr)?;

    let mut info = ResumeInfo {
        epochs_done: 0,
        state_file: String::new(),
        state_bytes: 0,
        state_blake3: String::new(),
        stopped_early_at: None,
        history: TrainHistory::default(),
        best_epoch: None,
        best_metric: None,
        stop_best: None,
        stop_since: 0,
        dropout_rng: net.dropout_rng(),
        initial_loss: None,
        previous: None,
    };
    // The newest intact state the network and optimizer accept; a damaged one is passed over and said so
    // (even with -q: the user should know a checkpoint went bad).
    let (resumed, damage) = resume::resume_from(job.work_dir, |saved, bytes| {
        let (model, optim) = resume::tensors(bytes, job.device).map_err(|e| e.to_string())?;
        net.load_state_dict(&model).map_err(|e| e.to_string())?;
        opt.load_state(&optim).map_err(|e| e.to_string())?;
        net.set_dropout_rng(saved.dropout_rng.clone());
        Ok(())
    });
    match (&resumed, &damage) {
        (Some(saved), Some(damage)) => eprintln!(
            "  {}: {damage}; resuming after epoch {} of {} instead",
            run.name, saved.epochs_done, t.epochs
        ),
        (None, Some(damage)) => {
            eprintln!("  {}: {damage}; training starts again from epoch 1", run.name)
        }
        (Some(saved), None) if !job.quiet => eprintln!(
            "  {}: resuming after epoch {} of {}",
            run.name, saved.epochs_done, t.epochs
        ),
        _ => {}
    }
    if resumed.is_none() && damage.is_some() {
        // A state that failed to load part-way must not leave its tensors in the network: start afresh.
        (net, opt) = fresh().map_err(terr)?;
    }
    // What the next epoch's record keeps as the state to fall back to.
    let mut last_recorded = resumed.clone();
    if let Some(saved) = resumed {
        info = saved;
    }
    let resumed_epochs = info.epochs_done;
    let mut board = match &job.tensorboard {
        Some(dir) => Some(open_board(dir, t, &job.decl.class_name, resumed_epochs)?),
        None => None,
    };

    // Until an epoch completes, the selected and last checkpoints are the initial weights: a run that diverges
    // in its first epoch keeps those, not the exploded ones.
    if info.epochs_done == 0 {
        let state = net.state_dict().map_err(terr)?;
        let meta = checkpoint_metadata(run, job.decl, 0);
        checkpoint::save(job.model_file, &state, &meta)?;
        checkpoint::save(job.last_file, &state, &meta)?;
    }
    // The loss of a uniform guess over the classes: the floor of the initial loss the divergence bound uses.
    let classes = job
        .decl
        .output_shape()
        .ok()
        .and_then(|s| s.first().copied())
        .unwrap_or(10)
        .max(2);
    let uniform_loss = (classes as f64).ln();

    let started = Instant::now();
    let eval_batch = t.eval_batch_size.unwrap_or(256);
    let base_lr = t.optimizer.lr;
    let augment = Arc::new(job.augment.to_vec());
    let mut diverged = None;
    let mut stopped_early_at = info.stopped_early_at;
    // An early stop that was checkpointed but not committed before a crash stays stopped.
    let end = if stopped_early_at.is_some() {
        info.epochs_done
    } else {
        t.epochs
    };

    for epoch in info.epochs_done..end {
        let epoch_start = Instant::now();
        let plan = BatchPlan {
            images: job.train.clone(),
            stats: job.stats.clone(),
            augment: augment.clone(),
            batch_size: t.batch_size,
            shuffle: Some((t.seed, epoch as u64)),
        };
        let total = plan.batch_count();
        let mut progress = EpochProgress::start(&run.name, epoch + 1, t.epochs, total, job.quiet);
        let mut batches = Prefetcher::start(plan, job.workers);
        let mut sums = EpochSums::default();
        let mut queued: Option<QueuedBatch> = None;
        let mut first_lr = None;
        for (b, batch) in batches.by_ref().enumerate() {
            let lr = t.scheduler.lr_at(base_lr, epoch, b, total, t.epochs);
            if let Some(m) = t.scheduler.momentum_at(epoch, b, total, t.epochs) {
                opt.set_momentum(m).map_err(terr)?;
            }
            first_lr.get_or_insert(lr);
            let (x, y) = to_tensors(&batch, job.device).map_err(terr)?;
            let logits = net.forward(&x, Mode::Train).map_err(terr)?;
            let loss = cross_entropy(&logits, &y, t.label_smoothing).map_err(terr)?;
            let grads = loss.backward().map_err(terr)?;
            opt.step(&grads, lr).map_err(terr)?;
            let right = correct_count(&logits, &y).map_err(terr)?;
            let this = QueuedBatch {
                number: b + 1,
                lr,
                rows: batch.len(),
                // Detached: the queued values must not keep this batch's graph (its activations) alive.
                loss: loss.detach(),
                right: right.detach(),
            };
            // The previous batch's numbers are read only now, with this batch's step queued behind them, so
            // the device never idles while the host waits. A diverged batch's successor has been stepped as
            // well by then: harmless, since nothing of a diverged epoch is kept.
            let ready = if lag_reads() {
                queued.replace(this)
            } else {
                Some(this)
            };
            if let Some(q) = ready {
                diverged = sums
                    .settle(q, epoch, &mut info.initial_loss, &mut progress)
                    .map_err(terr)?;
                if diverged.is_some() {
                    break;
                }
            }
            if job.interrupt.load(Ordering::SeqCst) {
                progress.finish();
                return Err(TrainError::Interrupted {
                    epochs_done: info.epochs_done,
                });
            }
        }
        if diverged.is_none()
            && let Some(q) = queued.take()
        {
            diverged = sums
                .settle(q, epoch, &mut info.initial_loss, &mut progress)
                .map_err(terr)?;
        }
        let EpochSums {
            loss_sum,
            right,
            seen,
        } = sums;
        let data_wait = batches.waited.as_secs_f64();
        drop(batches);
        progress.finish();
        if diverged.is_some() {
            break;
        }
        let train_loss = loss_sum / seen.max(1) as f64;
        let initial_loss = info.initial_loss.unwrap_or(uniform_loss).max(uniform_loss);
        if let Some(factor) = t.divergence.factor()
            && train_loss > factor * initial_loss
        {
            diverged = Some(Divergence {
                epoch: epoch + 1,
                batch: total,
                lr: first_lr.unwrap_or(base_lr),
                loss: format!("{train_loss:.4e}"),
                bound: Some(DivergenceBound { factor, initial_loss }),
            });
            break;
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let (val_loss, val_accuracy) = evaluate_loss(
            &net,
            &job.val,
            job.stats.clone(),
            eval_batch,
            job.workers,
            |_, _| Ok(()),
        )
        .map_err(terr)?;
        if !val_loss.is_finite() {
            diverged = Some(Divergence {
                epoch: epoch + 1,
                batch: total,
                lr: first_lr.unwrap_or(base_lr),
                loss: format!("{val_loss} (validation)"),
                bound: None,
            });
            break;
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            lr: first_lr.unwrap_or(base_lr),
            train_loss,
            train_accuracy: right as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
            data_wait_seconds: data_wait,
            images_per_second: seen as f64 / train_seconds.max(1e-9),
        };
        if !job.quiet {
            eprintln!(
                "  {} epoch {}/{}: train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} | lr {:.3e} | {:.1}s, {:.0} img/s",
                run.name,
                record.epoch,
                t.epochs,
                record.train_loss,
                record.train_accuracy,
                record.val_loss,
                record.val_accuracy,
                record.lr,
                record.seconds,
                record.images_per_second
            );
        }
        info.history.epochs.push(record.clone());
        info.epochs_done = epoch + 1;

        let state = net.state_dict().map_err(terr)?;
        let metric = match t.select {
            Select::BestValAccuracy => Some(record.val_accuracy),
            Select::BestValLoss => Some(-record.val_loss),
            Select::Last => None,
        };
        let improved = match (metric, info.best_metric) {
            (None, _) => true,
            (Some(m), Some(best)) => m > best,
            (Some(_), None) => true,
        };
        if improved {
            info.best_epoch = Some(record.epoch);
            info.best_metric = metric;
            checkpoint::save(
                job.model_file,
                &state,
                &checkpoint_metadata(run, job.decl, record.epoch),
            )?;
        }
        checkpoint::save(
            job.last_file,
            &state,
            &checkpoint_metadata(run, job.decl, record.epoch),
        )?;

        if let Some(es) = &t.early_stopping {
            let value = match es.metric {
                StopMetric::ValAccuracy => record.val_accuracy,
                StopMetric::ValLoss => -record.val_loss,
            };
            match info.stop_best {
                Some(best) if value <= best + es.min_delta => info.stop_since += 1,
                _ => {
                    info.stop_best = Some(value);
                    info.stop_since = 0;
                }
            }
            if info.stop_since >= es.patience && epoch + 1 < t.epochs {
                stopped_early_at = Some(record.epoch);
                info.stopped_early_at = stopped_early_at;
            }
        }

        // The resume state goes last: it must never describe an epoch whose checkpoints are not on disk.
        info.dropout_rng = net.dropout_rng();
        let mut resume = state;
        for (k, v) in opt.state().map_err(terr)? {
            resume.insert(format!("optimizer/{k}"), v);
        }
        info.state_file = resume::state_name(info.epochs_done);
        let state_path = job.work_dir.join(&info.state_file);
        checkpoint::save(
            &state_path,
            &resume,
            &checkpoint_metadata(run, job.decl, record.epoch),
        )?;
        // Hashed as read back, so the record vouches for what is on disk; the previous state stays until the
        // record naming this one is in place.
        (info.state_bytes, info.state_blake3) =
            resume::size_and_hash(&state_path).map_err(io(&state_path))?;
        let resume_json = resume::info_path(job.work_dir);
        resume::record(job.work_dir, &info, last_recorded.as_ref()).map_err(io(&resume_json))?;
        last_recorded = Some(info.clone());
        // After the resume state, so that no point on the curves belongs to an epoch a resume trains again.
        if let Some(board) = board.as_mut() {
            board.add_epoch(&record);
            board.flush()?;
        }

        if stopped_early_at.is_some() {
            if !job.quiet {
                eprintln!(
                    "  {}: early stopping after epoch {} (no improvement for {} epochs)",
                    run.name, record.epoch, info.stop_since
                );
            }
            break;
        }
        // After the last epoch there is nothing left to resume: finish instead.
        if job.interrupt.load(Ordering::SeqCst) && epoch + 1 < t.epochs {
            return Err(TrainError::Interrupted {
                epochs_done: info.epochs_done,
            });
        }
    }
    if let Some(board) = board.as_mut() {
        board.add_session_end(match diverged {
            Some(_) => RunStatus::Failure,
            None => RunStatus::Success,
        });
        board.flush()?;
    }
    Ok(TrainOutcome {
        history: info.history,
        select: t.select,
        selected_epoch: info.best_epoch,
        stopped_early_at,
        diverged,
        resumed_epochs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A training batch whose step is queued on the device and whose loss and correct count are not read yet.
struct QueuedBatch {
    /// 1-based batch number within the epoch.
    number: usize,
    lr: f64,
    rows: usize,
    loss: Tensor,
    right: Tensor,
}

/// The running sums of a training epoch, over the batches read so far.
#[derive(Default)]
struct EpochSums {
    loss_sum: f64,
    right: usize,
    seen: usize,
}

impl EpochSums {
    /// Read `q`'s loss and correct count (waiting for the device) and add them in, or, when its loss is not
    /// finite, leave the sums alone and say where training diverged.
    fn settle(
        &mut self,
        q: QueuedBatch,
        epoch: usize,
        initial_loss: &mut Option<f64>,
        progress: &mut EpochProgress,
    ) -> candle_core::Result<Option<Divergence>> {
        let loss = q.loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            return Ok(Some(Divergence {
                epoch: epoch + 1,
                batch: q.number,
                lr: q.lr,
                loss: format!("{loss}"),
                bound: None,
            }));
        }
        initial_loss.get_or_insert(loss);
        self.loss_sum += loss * q.rows as f64;
        self.right += q.right.to_scalar::<f32>()? as usize;
        self.seen += q.rows;
        progress.update(
            q.number,
            self.loss_sum / self.seen as f64,
            self.right as f64 / self.seen as f64,
            self.seen,
        );
        Ok(None)
    }
}

#[cfg(test)]
thread_local! {
    /// Off in the test that compares a run with lagged reads against one without.
    static LAG_READS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Whether a batch's loss and count are read after the next batch's step is queued (always, outside tests).
fn lag_reads() -> bool {
    #[cfg(test)]
    return LAG_READS.with(|l| l.get());
    #[cfg(not(test))]
    true
}

/// Where training of the interrupted build in `work_dir` resumes (the epochs of its newest intact resume
/// state) and what damaged state it passes over: what `plan` says and `train` does.
pub fn resume_progress(work_dir: &Path) -> resume::ResumePoint {
    resume::resume_point(work_dir)
}

/// Whether an unfinished build may hold `name` as part of its resume state.
pub fn is_resume_file(name: &str) -> bool {
    resume::is_resume_file(name)
}

/// Remove the resume state once the stage's artifacts are final.
pub fn clear_resume_state(work_dir: &Path) {
    resume::clear(work_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::normalize::stats_for;
    use crate::data::split::split;
    use crate::data::synthetic;

    const PIPELINE: &str = "name: t
data: {dataset: synthetic, train_size: 120, test_size: 10, val_split: 40, normalize: train_mean_std}
model:
  layers:
    - flatten
    - linear: {out_features: 10}
train:
  epochs: 6
  batch_size: 40
  optimizer: {name: sgd, lr: 0.01}
  early_stopping: {metric: val_loss, patience: 1, min_delta: 10.0}
";

    fn job_parts() -> (crate::spec::RunSpec, Arc<ImageSet>, Arc<ImageSet>, NormStats) {
        job_parts_with(&[])
    }

    fn job_parts_with(set: &[&str]) -> (crate::spec::RunSpec, Arc<ImageSet>, Arc<ImageSet>, NormStats) {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let p = crate::spec::load_str(Path::new("t.yaml"), PIPELINE, &set).unwrap();
        let run = p.runs[0].clone();
        let data = synthetic::generate(120, 10);
        let sp = split(120, 40, 0);
        let stats = stats_for(&run.data.normalize, &data.train, &sp.train);
        let train = Arc::new(data.train.select(&sp.train));
        let val = Arc::new(data.train.select(&sp.val));
        (run, train, val, stats)
    }

    /// A 1×12×12 set of noise images with labels 0..9 in turn.
    fn greyscale_set(n: usize) -> ImageSet {
        let shape = crate::data::shape::InputShape::new(1, 12, 12);
        let mut rng = crate::rng::Rng::new(5);
        ImageSet {
            shape,
            pixels: (0..n * shape.values()).map(|_| rng.below(256) as u8).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
        }
    }

    #[test]
    fn greyscale_images_of_another_size_train_and_a_model_that_does_not_fit_is_refused() {
        let (run, ..) = job_parts();
        let set = greyscale_set(40);
        let train_set = Arc::new(set.select(&(0..30).collect::<Vec<_>>()));
        let val = Arc::new(set.select(&(30..40).collect::<Vec<_>>()));
        let decl = crate::model::builtins::simple_cnn_for(set.shape, 10, 0.0).unwrap();
        let mut spec = run.train.clone();
        spec.epochs = 2;
        spec.early_stopping = None;
        let augment: Vec<Augment> = serde_saphyr::from_str(
            "- random_crop: {size: 12, padding: 2, padding_mode: reflect}\n\
             - random_horizontal_flip: {}\n\
             - random_rotation: {degrees: 10, interpolation: bilinear}\n\
             - random_erasing: {p: 1}\n",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let label = run.label();
        let mut job = TrainJob {
            label: &label,
            spec: &spec,
            decl: &decl,
            augment: &augment,
            classes: 10,
            train: train_set,
            val,
            stats: NormStats {
                mean: vec![0.5],
                std: vec![0.25],
            },
            device: &Device::Cpu,
            workers: 2,
            work_dir: dir.path(),
            model_file: &dir.path().join("selected-weights.safetensors"),
            last_file: &dir.path().join("final-weights.safetensors"),
            quiet: true,
            interrupt: Arc::new(AtomicBool::new(false)),
            tensorboard: None,
        };
        let outcome = train(&job).unwrap();
        assert_eq!(outcome.history.epochs.len(), 2);
        assert!(
            outcome
                .history
                .epochs
                .iter()
                .all(|e| e.train_loss.is_finite() && e.val_loss.is_finite())
        );

        job.classes = 7;
        let err = train(&job).unwrap_err().to_string();
        assert!(err.contains("predicts 10 classes but the dataset has 7"), "{err}");
        job.classes = 10;
        let mnist =
            crate::model::builtins::simple_cnn_for(crate::data::shape::InputShape::MNIST, 10, 0.0).unwrap();
        job.decl = &mnist;
        let err = train(&job).unwrap_err().to_string();
        assert!(
            err.contains("takes [1, 28, 28] images but the dataset's are 1×12×12"),
            "{err}"
        );
    }

    #[test]
    fn an_early_stop_that_was_checkpointed_stays_stopped_on_resume() {
        let (run, train_set, val, stats) = job_parts();
        let dir = tempfile::tempdir().unwrap();
        let label = run.label();
        let job = TrainJob {
            label: &label,
            spec: &run.train,
            decl: &run.decl,
            augment: &run.data.augment,
            classes: 10,
            train: train_set,
            val,
            stats,
            device: &Device::Cpu,
            workers: 1,
            work_dir: dir.path(),
            model_file: &dir.path().join("selected-weights.safetensors"),
            last_file: &dir.path().join("final-weights.safetensors"),
            quiet: true,
            interrupt: Arc::new(AtomicBool::new(false)),
            tensorboard: None,
        };
        // A min_delta nothing can beat: the second epoch is "no improvement" and patience 1 stops there.
        let first = train(&job).unwrap();
        assert_eq!(first.stopped_early_at, Some(2));
        assert_eq!(first.history.epochs.len(), 2);
        assert_eq!(resume_progress(dir.path()).epochs_done, Some(2));
        // Two state files: the one resume.json names and the epoch before's; older ones are gone.
        let mut states: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_resume_file(n) && n.ends_with(".safetensors"))
            .collect();
        states.sort();
        assert_eq!(states, [resume::state_name(1), resume::state_name(2)]);

        // The process died before the stage was committed: the next one must not train epochs 3-6.
        let again = train(&job).unwrap();
        assert_eq!(again.resumed_epochs, 2);
        assert_eq!(again.stopped_early_at, Some(2));
        assert_eq!(again.history, first.history);
        assert_eq!(again.selected_epoch, first.selected_epoch);

        clear_resume_state(dir.path());
        assert_eq!(resume_progress(dir.path()), resume::ResumePoint::default());
        assert!(!dir.path().join(resume::state_name(2)).exists());
    }

    /// Trains the test pipeline with `set` overrides in a fresh directory; returns the outcome and the directory.
    fn train_with(set: &[&str]) -> (TrainOutcome, tempfile::TempDir, crate::spec::RunSpec) {
        let (run, train_set, val, stats) = job_parts_with(set);
        let dir = tempfile::tempdir().unwrap();
        let label = run.label();
        let job = TrainJob {
            label: &label,
            spec: &run.train,
            decl: &run.decl,
            augment: &run.data.augment,
            classes: 10,
            train: train_set,
            val,
            stats,
            device: &Device::Cpu,
            workers: 1,
            work_dir: dir.path(),
            model_file: &dir.path().join("selected-weights.safetensors"),
            last_file: &dir.path().join("final-weights.safetensors"),
            quiet: true,
            interrupt: Arc::new(AtomicBool::new(false)),
            tensorboard: None,
        };
        (train(&job).unwrap(), dir, run)
    }

    /// The outcome of `train_with(set)` with or without lagged reads, its timings zeroed.
    fn outcome_with_lag(lag: bool, set: &[&str]) -> TrainOutcome {
        LAG_READS.with(|l| l.set(lag));
        let (mut out, _dir, _) = train_with(set);
        LAG_READS.with(|l| l.set(true));
        for e in &mut out.history.epochs {
            (e.seconds, e.data_wait_seconds, e.images_per_second) = (0.0, 0.0, 0.0);
        }
        out.seconds = 0.0;
        out
    }

    #[test]
    fn reading_each_batch_after_the_next_is_queued_changes_no_result() {
        for set in [
            &["train.early_stopping=null", "train.epochs=3"][..],
            // Diverges to NaN within the first epoch: the same batch is reported.
            &[
                "train.early_stopping=null",
                "train.optimizer={name: sgd, lr: 3e38}",
            ][..],
            // Diverges by the bound at an epoch's end.
            &[
                "train.early_stopping=null",
                "train.optimizer={name: adam, lr: 1e6}",
            ][..],
        ] {
            let lagged = outcome_with_lag(true, set);
            let direct = outcome_with_lag(false, set);
            assert_eq!(lagged.history, direct.history, "{set:?}");
            assert_eq!(lagged.diverged, direct.diverged, "{set:?}");
            assert_eq!(lagged.selected_epoch, direct.selected_epoch, "{set:?}");
            if set[1].contains("3e38") {
                let d = lagged.diverged.expect("a NaN loss diverges");
                assert!(d.bound.is_none() && d.epoch == 1, "{d:?}");
            } else if set[1] == "train.epochs=3" {
                assert_eq!(lagged.history.epochs.len(), 3);
            }
        }
    }

    #[test]
    fn an_exploding_loss_that_stays_finite_is_divergence() {
        for optimizer in ["{name: adam, lr: 1e6}", "{name: sgd, lr: 1e6}"] {
            let o = format!("train.optimizer={optimizer}");
            let (out, dir, run) = train_with(&[&o, "train.early_stopping=null"]);
            let d = out
                .diverged
                .as_ref()
                .unwrap_or_else(|| panic!("{optimizer}: not diverged: {out:?}"));
            assert_eq!(d.epoch, 1, "{optimizer}: {d:?}");
            let b = d.bound.as_ref().expect("diverged by the bound, not NaN");
            assert_eq!(b.factor, 10.0);
            assert!(b.initial_loss >= 10f64.ln() - 1e-9, "{b:?}");
            assert!(
                d.message().contains("more than 10 × the initial loss"),
                "{}",
                d.message()
            );
            assert!(d.message().contains("learning rate 1e6"), "{}", d.message());
            // Nothing of the exploded epoch is kept: no history, and the checkpoint is the initial weights.
            assert!(out.history.epochs.is_empty() && out.selected_epoch.is_none());
            let kept =
                checkpoint::load(&dir.path().join("selected-weights.safetensors"), &Device::Cpu).unwrap();
            let init = Net::new(&run.decl, &Device::Cpu, run.train.seed)
                .unwrap()
                .state_dict()
                .unwrap();
            for (name, t) in &init {
                let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                let b: Vec<f32> = kept[name].flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(a, b, "{name} is not the initial weights");
            }
        }
        // A sane learning rate is not diverged; the rule can be turned off.
        let (out, _dir, _) = train_with(&[
            "train.optimizer={name: sgd, lr: 0.001}",
            "train.early_stopping=null",
            "train.epochs=2",
        ]);
        assert!(out.diverged.is_none(), "{:?}", out.diverged);
        let (out, _dir, _) = train_with(&[
            "train.optimizer={name: adam, lr: 1e6}",
            "train.early_stopping=null",
            "train.epochs=2",
            "train.divergence=none",
        ]);
        assert!(out.diverged.is_none(), "{:?}", out.diverged);
        assert_eq!(out.history.epochs.len(), 2);
    }

    #[test]
    fn an_interrupt_stops_after_the_current_batch_with_nothing_checkpointed() {
        let (run, train_set, val, stats) = job_parts();
        let dir = tempfile::tempdir().unwrap();
        let label = run.label();
        let job = TrainJob {
            label: &label,
            spec: &run.train,
            decl: &run.decl,
            augment: &run.data.augment,
            classes: 10,
            train: train_set,
            val,
            stats,
            device: &Device::Cpu,
            workers: 1,
            work_dir: dir.path(),
            model_file: &dir.path().join("selected-weights.safetensors"),
            last_file: &dir.path().join("final-weights.safetensors"),
            quiet: true,
            interrupt: Arc::new(AtomicBool::new(true)),
            tensorboard: None,
        };
        match train(&job) {
            Err(TrainError::Interrupted { epochs_done }) => assert_eq!(epochs_done, 0),
            other => panic!("expected an interrupt, got {other:?}"),
        }
        assert_eq!(resume_progress(dir.path()), resume::ResumePoint::default());
    }

    /// Trains the runs of tests/fixtures/tensorboard/check_output.txt into `logdir`: `baseline` trains 2
    /// epochs; `resumed` (lr 0.05) trains 1, then a second call extends the same work directory to 2, as a
    /// resume does (its first file's `epochs` is then 1: TensorBoard shows a run's first hyperparameters).
    fn write_tensorboard_runs(logdir: &Path, work_dir: &Path) {
        let (mut run, train_set, val, stats) = job_parts();
        run.train.epochs = 2;
        run.train.early_stopping = None;
        let mut resumed = run.clone();
        resumed.train.optimizer.lr = 0.05;
        let mut first_part = resumed.clone();
        first_part.train.epochs = 1;
        for (name, run) in [
            ("baseline", &run),
            ("resumed", &first_part),
            ("resumed", &resumed),
        ] {
            let work = work_dir.join(name);
            let label = run.label();
            let job = TrainJob {
                label: &label,
                spec: &run.train,
                decl: &run.decl,
                augment: &run.data.augment,
                classes: 10,
                train: train_set.clone(),
                val: val.clone(),
                stats: stats.clone(),
                device: &Device::Cpu,
                workers: 1,
                work_dir: &work,
                model_file: &work.join("selected-weights.safetensors"),
                last_file: &work.join("final-weights.safetensors"),
                quiet: true,
                interrupt: Arc::new(AtomicBool::new(false)),
                tensorboard: Some(logdir.join(name)),
            };
            train(&job).unwrap();
        }
    }

    #[test]
    fn tensorboard_gets_every_epoch_and_a_resume_continues_in_a_new_file() {
        use crate::tensorboard::{
            EventKind, SessionStatus, event_files, read_run, run_hparams, scalar_series,
        };
        use crate::train::epoch_scalars::EPOCH_TAGS;
        let (runs, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_tensorboard_runs(runs.path(), work.path());
        let runs = runs.path();
        let mut tags: Vec<&str> = EPOCH_TAGS.to_vec();
        tags.sort();

        let baseline = read_run(&runs.join("baseline")).unwrap();
        let series = scalar_series(&baseline);
        assert_eq!(series.keys().map(String::as_str).collect::<Vec<_>>(), tags);
        for points in series.values() {
            assert_eq!(points.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2]);
        }
        // The values are the history's, rounded to f32.
        let resume = std::fs::read_to_string(resume::info_path(&work.path().join("baseline"))).unwrap();
        let info: ResumeInfo = serde_json::from_str(&resume).unwrap();
        let val_acc: Vec<f32> = info
            .history
            .epochs
            .iter()
            .map(|e| e.val_accuracy as f32)
            .collect();
        assert_eq!(
            series["val/accuracy"].iter().map(|p| p.1).collect::<Vec<_>>(),
            val_acc
        );
        let hp = run_hparams(&baseline).unwrap();
        assert_eq!(hp["optimizer"], HParamValue::Text("sgd".into()));
        assert_eq!(hp["optimizer.lr"], HParamValue::Number(0.01));
        assert_eq!(hp["epochs"], HParamValue::Number(2.0));
        assert_eq!(hp["batch_size"], HParamValue::Number(40.0));
        assert_eq!(hp["seed"], HParamValue::Number(0.0));
        assert_eq!(hp["model"], HParamValue::Text("Net".into()));

        let resumed_dir = runs.join("resumed");
        assert_eq!(event_files(&resumed_dir).unwrap().len(), 2);
        let resumed = read_run(&resumed_dir).unwrap();
        for points in scalar_series(&resumed).values() {
            assert_eq!(points.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2]);
        }
        let restarts: Vec<i64> = resumed
            .iter()
            .filter(|e| e.what == EventKind::SessionLog(SessionStatus::Start))
            .map(|e| e.step)
            .collect();
        assert_eq!(restarts, [1, 2], "each process marks where it starts");
        assert_eq!(
            run_hparams(&resumed).unwrap()["optimizer.lr"],
            HParamValue::Number(0.05)
        );

        // Training from scratch again replaces the log rather than adding a third file.
        let work = tempfile::tempdir().unwrap();
        write_tensorboard_runs(runs, work.path());
        assert_eq!(event_files(&runs.join("baseline")).unwrap().len(), 1);
        assert_eq!(event_files(&resumed_dir).unwrap().len(), 2);
    }

    /// tests/fixtures/tensorboard/check_output.txt as (run, scalar tag, steps) and (run, hparam, value).
    type BoardSummary = (
        BTreeMap<(String, String), Vec<i64>>,
        BTreeMap<(String, String), HParamValue>,
    );

    fn parse_check_output(text: &str) -> BoardSummary {
        let (mut scalars, mut hparams) = (BTreeMap::new(), BTreeMap::new());
        let mut run = String::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(name) = line.strip_prefix("run ") {
                run = name.to_string();
            } else if let Some(rest) = line.trim_start().strip_prefix("scalar ") {
                let (tag, steps) = rest.split_once(": ").unwrap();
                let steps = steps.split_once("steps ").unwrap().1;
                let steps: Vec<i64> = serde_json::from_str(steps).unwrap();
                scalars.insert((run.clone(), tag.to_string()), steps);
            } else if let Some(rest) = line.trim_start().strip_prefix("hparam ") {
                let (key, value) = rest.split_once(" = ").unwrap();
                let value = match serde_json::from_str::<serde_json::Value>(value).unwrap() {
                    serde_json::Value::Number(n) => HParamValue::Number(n.as_f64().unwrap()),
                    serde_json::Value::String(s) => HParamValue::Text(s),
                    serde_json::Value::Bool(b) => HParamValue::Bool(b),
                    other => panic!("hparam {key}: {other}"),
                };
                hparams.insert((run.clone(), key.to_string()), value);
            }
        }
        (scalars, hparams)
    }

    #[test]
    fn tensorboards_reading_in_the_fixture_matches_what_training_writes_now() {
        let fixture = include_str!("../../tests/fixtures/tensorboard/check_output.txt");
        let (want_scalars, want_hparams) = parse_check_output(fixture);
        assert!(want_scalars.len() >= 12 && want_hparams.len() >= 10, "{fixture}");

        let (runs, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_tensorboard_runs(runs.path(), work.path());
        let (mut scalars, mut hparams) = (BTreeMap::new(), BTreeMap::new());
        for run in ["baseline", "resumed"] {
            let events = crate::tensorboard::read_run(&runs.path().join(run)).unwrap();
            for (tag, points) in crate::tensorboard::scalar_series(&events) {
                scalars.insert(
                    (run.to_string(), tag),
                    points.iter().map(|p| p.0).collect::<Vec<_>>(),
                );
            }
            for (key, value) in crate::tensorboard::run_hparams(&events).unwrap() {
                hparams.insert((run.to_string(), key), value);
            }
        }
        assert_eq!(scalars, want_scalars);
        assert_eq!(hparams, want_hparams);
    }

    /// Writes the logdir that scripts/check_tensorboard.py reads for the fixture:
    /// `LABPIPE_TENSORBOARD_LOGDIR=/tmp/tb cargo test --lib write_tensorboard_fixture_logdir -- --ignored`.
    #[test]
    #[ignore = "writes the fixture's event files; see tests/fixtures/tensorboard/check_output.txt"]
    fn write_tensorboard_fixture_logdir() {
        let logdir = std::env::var_os("LABPIPE_TENSORBOARD_LOGDIR").expect("LABPIPE_TENSORBOARD_LOGDIR");
        let work = tempfile::tempdir().unwrap();
        write_tensorboard_runs(Path::new(&logdir), work.path());
    }
}
