//! `labpipe bench`: training and evaluation throughput of a model with the trainer's own step, the machine's
//! state while it ran (threads, peak memory, load, other processes' CPU share), and the share of an epoch a
//! pipeline's trainer waits for its data.
//!
//! A training step is exactly the trainer's per-batch work: the batch becomes tensors, `Net::forward` in
//! `Mode::Train`, `cross_entropy`, backward, the optimizer step, the accuracy count, then the loss and count
//! read back (the trainer reads them one batch later, so that the device is never idle while the host waits).
//! Inputs are N(0,1) and labels uniform over the classes, as in the PyTorch reference benchmark, so no data
//! path is involved; [`data_wait`] adds it back for a pipeline.

pub mod data_wait;
pub mod op_count;
pub mod system;
pub mod throughput;

use crate::model::builtins::{Stem, resnet18, simple_cnn};
use crate::model::decl::ModelDecl;
use crate::model::net::{Mode, Net};
use crate::rng::Rng;
use crate::spec::{self, RunSpec};
use crate::train::loss::{correct, correct_count, cross_entropy};
use crate::train::optim::{self, Optimizer, OptimizerConfig, OptimizerKind};
use candle_core::{Device, Tensor};
use data_wait::DataWait;
use op_count::{OpPath, OpsOnCuda, OpsPerStep, StepPart};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use system::{CpuMeter, CpuShare};
use throughput::Throughput;

/// The built-in models `--model` accepts by name.
pub const BUILTIN_MODELS: [&str; 2] = ["simple_cnn", "resnet18"];

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `--model` is neither a built-in name nor a pipeline file.
    #[error(
        "unknown model `{0}`: expected simple_cnn, resnet18 or a pipeline file (e.g. pipelines/quickstart.yaml)"
    )]
    UnknownModel(String),
    /// The pipeline file does not load.
    #[error("{0}")]
    Spec(#[from] spec::SpecError),
    /// The pipeline file declares no run.
    #[error("{path}: the pipeline has no runs to benchmark")]
    NoRuns {
        /// The pipeline file.
        path: PathBuf,
    },
    /// A count is out of range.
    #[error("{field} must be at least {min}, got {value}")]
    TooSmall {
        /// The option.
        field: &'static str,
        /// The least accepted value.
        min: usize,
        /// The value given.
        value: usize,
    },
    /// A tensor operation failed.
    #[error("{phase}: {source}")]
    Tensor {
        /// Which phase (`training`, `evaluation`, `data-wait epoch`).
        phase: &'static str,
        /// Candle's error.
        source: candle_core::Error,
    },
    /// The pipeline's dataset could not be prepared for the data-wait epoch.
    #[error("data-wait epoch of pipeline `{pipeline}`: {message}")]
    Data {
        /// The pipeline's name.
        pipeline: String,
        /// What went wrong.
        message: String,
    },
}

fn tensor_err(phase: &'static str) -> impl Fn(candle_core::Error) -> BenchError {
    move |source| BenchError::Tensor { phase, source }
}

/// What to benchmark: a model and the trainer settings that shape its step.
#[derive(Debug, Clone)]
pub struct BenchTarget {
    /// `simple_cnn`, `resnet18`, or `PIPELINE/RUN`.
    pub name: String,
    /// The network.
    pub decl: ModelDecl,
    /// Training batch size (the seed's: 128 for SimpleCNN, 64 for ResNet-18; a pipeline's own).
    pub batch: usize,
    /// Evaluation batch size (256 unless a pipeline sets `eval_batch_size`).
    pub eval_batch: usize,
    /// The optimizer (Adam, lr 1e-3 for the built-ins; a pipeline's own).
    pub optimizer: OptimizerConfig,
    /// Label smoothing of the loss (0 for the built-ins).
    pub label_smoothing: f64,
    /// Seed of the weights and of the random inputs.
    pub seed: u64,
    /// The pipeline run, when the target came from a pipeline file (its data path can then be measured).
    pub run: Option<RunSpec>,
}

impl BenchTarget {
    /// A bare model with the seed's optimizer (Adam, lr 1e-3) and the given batch sizes.
    pub fn model(name: &str, decl: ModelDecl, batch: usize) -> BenchTarget {
        BenchTarget {
            name: name.to_string(),
            decl,
            batch,
            eval_batch: 256,
            optimizer: OptimizerConfig::new(OptimizerKind::Adam, 1e-3),
            label_smoothing: 0.0,
            seed: 0,
            run: None,
        }
    }

    /// The first run of a pipeline file, with its model, batch sizes, optimizer and data path.
    pub fn pipeline(path: &Path) -> Result<BenchTarget, BenchError> {
        let p = spec::load(path, &[])?;
        let run = p
            .runs
            .into_iter()
            .next()
            .ok_or_else(|| BenchError::NoRuns { path: path.into() })?;
        let t = &run.train;
        Ok(BenchTarget {
            name: format!("{}/{}", p.name, run.name),
            decl: run.decl.clone(),
            batch: t.batch_size,
            eval_batch: t.eval_batch_size.unwrap_or(256),
            optimizer: t.optimizer.clone(),
            label_smoothing: t.label_smoothing,
            seed: t.seed,
            run: Some(run),
        })
    }
}

/// Resolve `--model`: `simple_cnn`, `resnet18` (the seed's networks, 10 classes) or a pipeline file.
pub fn target(model: &str) -> Result<BenchTarget, BenchError> {
    match model {
        "simple_cnn" => Ok(BenchTarget::model(model, simple_cnn(10, 0.5), 128)),
        "resnet18" => Ok(BenchTarget::model(model, resnet18(10, Stem::Imagenet, 64), 64)),
        path if path.ends_with(".yaml") || path.ends_with(".yml") || Path::new(path).is_file() => {
            BenchTarget::pipeline(Path::new(path))
        }
        other => Err(BenchError::UnknownModel(other.to_string())),
    }
}

/// How long to measure and where.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Override of the training batch size.
    pub batch: Option<usize>,
    /// Override of the evaluation batch size.
    pub eval_batch: Option<usize>,
    /// Timed steps per phase (at least 1; 20 by default).
    pub steps: usize,
    /// Untimed steps before each phase (3 by default).
    pub warmup: usize,
    /// Compute device.
    pub device: Device,
    /// For a pipeline target, also run one epoch of its data path against the model step.
    pub data_wait: bool,
    /// Data worker threads for that epoch (default: the pipeline's `data.workers`, else the core count, as
    /// `labpipe run` does).
    pub workers: Option<usize>,
    /// Before starting, wait up to this long for other processes to use < 10% of the machine.
    pub wait_quiet: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            batch: None,
            eval_batch: None,
            steps: 20,
            warmup: 3,
            device: Device::Cpu,
            data_wait: true,
            workers: None,
            wait_quiet: Duration::ZERO,
        }
    }
}

/// Thread pools in use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threads {
    /// rayon's global pool (labpipe's kernels, Candle's matmuls).
    pub rayon: usize,
    /// Cores the OS offers this process.
    pub available_parallelism: usize,
    /// Candle's elementwise pool (`CANDLE_NUM_THREADS`, else rayon's count); labpipe's CLI sets 1.
    pub candle_elementwise: usize,
}

impl Threads {
    /// The thread counts of this process now.
    pub fn current() -> Threads {
        let rayon = rayon::current_num_threads();
        Threads {
            rayon,
            available_parallelism: system::cores(),
            candle_elementwise: std::env::var("CANDLE_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(rayon),
        }
    }
}

/// The machine while the benchmark ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// Processor model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// 1/5/15-minute load averages at the start.
    pub load_before: Option<[f64; 3]>,
    /// 1/5/15-minute load averages at the end.
    pub load_after: Option<[f64; 3]>,
    /// Seconds spent waiting for a quiet machine before starting.
    pub quiet_wait_s: f64,
    /// Other processes' CPU share in the last 3 s before starting (`None` when not waited for).
    pub foreign_cpu_before_start: Option<f64>,
}

/// Everything `labpipe bench` measured (its `--json` output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// What was measured: `simple_cnn`, `resnet18` or `PIPELINE/RUN`.
    pub model: String,
    /// The network's class name.
    pub class_name: String,
    /// Trainable parameters.
    pub params: usize,
    /// `cpu` or `cuda`.
    pub device: String,
    /// The optimizer and its learning rate, e.g. `adam lr=0.001`.
    pub optimizer: String,
    /// Training steps (forward + loss + backward + optimizer step).
    pub train: Throughput,
    /// Evaluation forwards (Mode::Eval, loss and accuracy read back).
    pub eval: Throughput,
    /// Operations (kernel launches on a GPU) one steady-state training step dispatches.
    pub ops_per_train_step: u64,
    /// The same count split into the step's parts.
    pub ops_per_train_step_parts: OpsPerStep,
    /// On the CPU, the same step counted along the paths CUDA runs (absent on other devices).
    pub ops_per_train_step_as_on_cuda: Option<OpsOnCuda>,
    /// The loss of the last training step (finite when the step works).
    pub last_train_loss: f64,
    /// Thread pools.
    pub threads: Threads,
    /// Peak resident memory (VmHWM) after the training phase, before evaluation ran: a training process's peak.
    pub peak_rss_train_bytes: Option<u64>,
    /// Peak resident memory at the end of everything.
    pub peak_rss_bytes: Option<u64>,
    /// The machine and its load.
    pub machine: Machine,
    /// One epoch of the pipeline's data path against the model step (pipeline targets only).
    pub data_wait: Option<DataWait>,
}

/// Deterministic N(0,1) images and uniform labels for `batch` inputs of `decl`.
fn random_batch(
    decl: &ModelDecl,
    batch: usize,
    classes: usize,
    seed: u64,
    label: &str,
) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::stream(seed, label, 0);
    let per_image: usize = decl.input.iter().product();
    let pixels = (0..batch * per_image).map(|_| rng.normal() as f32).collect();
    let labels = (0..batch)
        .map(|_| rng.below(classes.max(1) as u64) as u32)
        .collect();
    (pixels, labels)
}

/// The number of classes `decl` outputs (10 when its output shape cannot be worked out).
fn class_count(decl: &ModelDecl) -> usize {
    decl.output_shape()
        .ok()
        .and_then(|s| s.first().copied())
        .unwrap_or(10)
}

/// The model's input shape for `n` images, `[n, C, H, W]`.
fn input_dims(decl: &ModelDecl, n: usize) -> Vec<usize> {
    std::iter::once(n).chain(decl.input.iter().copied()).collect()
}

/// The trainer's per-batch work on one batch; returns the loss.
pub fn train_step(
    net: &Net,
    opt: &mut dyn Optimizer,
    pixels: &[f32],
    labels: &[u32],
    lr: f64,
    label_smoothing: f64,
) -> candle_core::Result<f32> {
    train_step_marked(net, opt, pixels, labels, lr, label_smoothing, &mut |_| {})
}

/// [`train_step`], calling `done` as each part of the step finishes, so that one step can be split up
/// (see [`op_count`]) without a second copy of the step that could drift from the trainer's.
fn train_step_marked(
    net: &Net,
    opt: &mut dyn Optimizer,
    pixels: &[f32],
    labels: &[u32],
    lr: f64,
    label_smoothing: f64,
    done: &mut dyn FnMut(StepPart),
) -> candle_core::Result<f32> {
    let n = labels.len();
    let x = Tensor::from_slice(pixels, input_dims(net.decl(), n), net.device())?;
    let y = Tensor::from_slice(labels, n, net.device())?;
    done(StepPart::Upload);
    let logits = net.forward(&x, Mode::Train)?;
    done(StepPart::Forward);
    let loss = cross_entropy(&logits, &y, label_smoothing)?;
    done(StepPart::Loss);
    let grads = loss.backward()?;
    done(StepPart::Backward);
    opt.step(&grads, lr)?;
    done(StepPart::Optimizer);
    let right = correct_count(&logits, &y)?;
    done(StepPart::Accuracy);
    // The trainer reads these one step later (src/train/trainer.rs): the reads are the same, only their
    // moment differs, and the bench times a step at a time.
    std::hint::black_box(right.to_scalar::<f32>()?);
    loss.to_scalar::<f32>()
}

/// The evaluator's per-batch work: forward in evaluation mode, loss and accuracy read back.
fn eval_step(net: &Net, x: &Tensor, y: &Tensor) -> candle_core::Result<()> {
    let logits = net.forward(x, Mode::Eval)?;
    std::hint::black_box(cross_entropy(&logits, y, 0.0)?.to_scalar::<f32>()?);
    std::hint::black_box(correct(&logits, y)?);
    Ok(())
}

/// Run `step` `warmup` times untimed, then `steps` times timed.
fn timed(
    batch: usize,
    warmup: usize,
    steps: usize,
    mut step: impl FnMut() -> Result<(), BenchError>,
) -> Result<Throughput, BenchError> {
    for _ in 0..warmup {
        step()?;
    }
    let meter = CpuMeter::start();
    let mut seconds = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        step()?;
        seconds.push(t.elapsed().as_secs_f64());
    }
    let CpuShare {
        own_cpu_seconds,
        foreign_cpu_share,
        ..
    } = meter.stop();
    let mut t = Throughput::from_step_seconds(batch, warmup, &seconds);
    t.cpu_seconds_per_step = own_cpu_seconds / steps as f64;
    t.foreign_cpu_share = foreign_cpu_share;
    Ok(t)
}

fn at_least(field: &'static str, value: usize, min: usize) -> Result<(), BenchError> {
    if value < min {
        return Err(BenchError::TooSmall { field, min, value });
    }
    Ok(())
}

/// Measure `target`: training steps, then evaluation forwards, then (pipelines) one epoch with its data path.
pub fn run(target: &BenchTarget, opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let batch = opts.batch.unwrap_or(target.batch);
    let eval_batch = opts.eval_batch.unwrap_or(target.eval_batch);
    at_least("--batch", batch, 1)?;
    at_least("--eval-batch", eval_batch, 1)?;
    at_least("--steps", opts.steps, 1)?;

    let load_before = system::load_average();
    let (foreign_cpu_before_start, quiet_wait_s) = if opts.wait_quiet.is_zero() {
        (None, 0.0)
    } else {
        system::wait_quiet(opts.wait_quiet, 0.10)
    };

    let terr = tensor_err("training");
    let classes = class_count(&target.decl);
    let net = Net::new(&target.decl, &opts.device, target.seed).map_err(&terr)?;
    let params = target.decl.param_count().unwrap_or(0);
    let mut opt = optim::build(&target.optimizer, net.params()).map_err(&terr)?;
    let (pixels, labels) = random_batch(&target.decl, batch, classes, target.seed, "bench_train");
    let (lr, smoothing) = (target.optimizer.lr, target.label_smoothing);
    let mut last_loss = f32::NAN;
    let train = timed(batch, opts.warmup, opts.steps, || {
        last_loss = train_step(&net, opt.as_mut(), &pixels, &labels, lr, smoothing).map_err(&terr)?;
        Ok(())
    })?;
    // After the warm-up and timed steps the optimizer state exists: this is a steady-state step.
    let ops_per_train_step_parts =
        op_count::count_train_step(&net, opt.as_mut(), &pixels, &labels, lr, smoothing).map_err(&terr)?;
    drop(pixels);
    let peak_rss_train_bytes = system::peak_rss_bytes();
    let ops_per_train_step_as_on_cuda = if opts.device.is_cpu() {
        Some(OpsOnCuda {
            with_kernels: op_count::measure(target, batch, &opts.device, OpPath::CudaKernels)?,
            composed: op_count::measure(target, batch, &opts.device, OpPath::Composed)?,
        })
    } else {
        None
    };

    let terr = tensor_err("evaluation");
    let (pixels, labels) = random_batch(&target.decl, eval_batch, classes, target.seed, "bench_eval");
    let x = Tensor::from_vec(pixels, input_dims(&target.decl, eval_batch), &opts.device).map_err(&terr)?;
    let y = Tensor::from_vec(labels, eval_batch, &opts.device).map_err(&terr)?;
    let eval = timed(eval_batch, opts.warmup, opts.steps, || {
        eval_step(&net, &x, &y).map_err(&terr)
    })?;
    drop((x, y));

    let data_wait = match (&target.run, opts.data_wait) {
        (Some(run), true) => {
            let workers = run.data.workers.or(opts.workers).unwrap_or_else(system::cores);
            Some(data_wait::epoch(
                run,
                &net,
                opt.as_mut(),
                batch,
                workers,
                target.optimizer.lr,
            )?)
        }
        _ => None,
    };

    Ok(BenchReport {
        model: target.name.clone(),
        class_name: target.decl.class_name.clone(),
        params,
        device: crate::device::kind(&opts.device).to_string(),
        optimizer: format!("{} lr={}", target.optimizer.name.as_str(), target.optimizer.lr),
        train,
        eval,
        ops_per_train_step: ops_per_train_step_parts.total,
        ops_per_train_step_parts,
        ops_per_train_step_as_on_cuda,
        last_train_loss: last_loss as f64,
        threads: Threads::current(),
        peak_rss_train_bytes,
        // The kernel refreshes VmHWM lazily (when mappings go away), so a later reading can be lower than an
        // earlier one; the overall peak is at least the training peak.
        peak_rss_bytes: system::peak_rss_bytes().max(peak_rss_train_bytes),
        machine: Machine {
            cpu: system::cpu_model(),
            cores: system::cores(),
            load_before,
            load_after: system::load_average(),
            quiet_wait_s,
            foreign_cpu_before_start,
        },
        data_wait,
    })
}

/// A few human lines: the numbers `--json` prints, for a terminal.
pub fn render_text(r: &BenchReport) -> String {
    let mib = |b: Option<u64>| b.map_or("n/a".to_string(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
    let share = |s: Option<f64>| s.map_or("n/a".to_string(), |s| format!("{:.0}%", s * 100.0));
    let phase = |name: &str, t: &Throughput| {
        format!(
            "{name:<6} batch {:<4} {:>8.1} img/s median ({:.1}–{:.1} over {} steps after {} warm-up), {:.1} ms/step, {:.2} CPU s/step, other processes {}\n",
            t.batch,
            t.median_img_per_s,
            t.min_img_per_s,
            t.max_img_per_s,
            t.steps,
            t.warmup,
            t.median_step_s * 1e3,
            t.cpu_seconds_per_step,
            share(t.foreign_cpu_share),
        )
    };
    let load = |l: Option<[f64; 3]>| {
        l.map_or("n/a".to_string(), |l| {
            format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
        })
    };
    let mut s = format!(
        "{} ({}, {} params) on {}, {}\n",
        r.model, r.class_name, r.params, r.device, r.optimizer
    );
    s += &phase("train", &r.train);
    s += &phase("eval", &r.eval);
    let o = &r.ops_per_train_step_parts;
    s += &format!(
        "ops per training step: {} (forward {}, loss {}, backward {}, optimizer {}, accuracy {})\n",
        o.total, o.forward, o.loss, o.backward, o.optimizer, o.accuracy
    );
    if let Some(c) = &r.ops_per_train_step_as_on_cuda {
        s += &format!(
            "ops per training step as CUDA would run it: {} with LABPIPE_CUDA_KERNELS=1, {} without\n",
            c.with_kernels.total, c.composed.total
        );
    }
    s += &format!(
        "threads: rayon {}, cores {}, candle elementwise {}\npeak RSS: {} after training, {} overall\n",
        r.threads.rayon,
        r.threads.available_parallelism,
        r.threads.candle_elementwise,
        mib(r.peak_rss_train_bytes),
        mib(r.peak_rss_bytes)
    );
    s += &format!(
        "machine: {} ({} cores), load {} → {}\n",
        r.machine.cpu,
        r.machine.cores,
        load(r.machine.load_before),
        load(r.machine.load_after)
    );
    if let Some(d) = &r.data_wait {
        s += &format!(
            "data wait: {:.1}% of a {:.1} s epoch ({} batches of {} images, {} workers, {:.1} img/s){}\n",
            d.share * 100.0,
            d.epoch_seconds,
            d.batches,
            d.batch,
            d.workers,
            d.img_per_s,
            if d.share < data_wait::TARGET_SHARE {
                ""
            } else {
                "  (above the 5% target)"
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decl::{Node, Op, Window};

    /// A network small enough to step in milliseconds: conv → BN → ReLU → pool → flatten → linear.
    fn tiny() -> ModelDecl {
        ModelDecl {
            class_name: "Tiny".into(),
            input: vec![3, 32, 32],
            layers: vec![
                Node::new(
                    "conv",
                    Op::Conv2d {
                        out_channels: 4,
                        kernel: 3,
                        stride: 2,
                        padding: 1,
                        bias: false,
                    },
                ),
                Node::new("bn", Op::BatchNorm2d),
                Node::new("relu", Op::Relu),
                Node::new(
                    "pool",
                    Op::MaxPool2d(Window {
                        kernel: 4,
                        stride: 4,
                        padding: 0,
                    }),
                ),
                Node::new("", Op::View),
                Node::new(
                    "fc",
                    Op::Linear {
                        out_features: 10,
                        bias: true,
                    },
                ),
            ],
        }
    }

    fn quick() -> BenchOptions {
        BenchOptions {
            batch: Some(4),
            eval_batch: Some(8),
            steps: 2,
            warmup: 1,
            ..BenchOptions::default()
        }
    }

    #[test]
    fn two_steps_of_a_tiny_model_give_every_json_field() {
        let report = run(&BenchTarget::model("tiny", tiny(), 16), &quick()).unwrap();
        let j = serde_json::to_value(&report).unwrap();
        assert_eq!(j["model"], "tiny");
        assert_eq!(j["class_name"], "Tiny");
        assert_eq!(j["params"], tiny().param_count().unwrap());
        assert_eq!(j["device"], "cpu");
        assert_eq!(j["optimizer"], "adam lr=0.001");
        for (phase, batch) in [("train", 4), ("eval", 8)] {
            let t = &j[phase];
            assert_eq!(t["batch"], batch, "{phase}");
            assert_eq!(t["steps"], 2, "{phase}");
            assert_eq!(t["warmup"], 1, "{phase}");
            let (lo, med, hi) = (
                t["min_img_per_s"].as_f64().unwrap(),
                t["median_img_per_s"].as_f64().unwrap(),
                t["max_img_per_s"].as_f64().unwrap(),
            );
            assert!(lo > 0.0 && lo <= med && med <= hi, "{phase}: {lo} {med} {hi}");
            assert!(t["median_step_s"].as_f64().unwrap() > 0.0);
            assert!(t["cpu_seconds_per_step"].as_f64().unwrap() >= 0.0);
            assert!(t.get("foreign_cpu_share").is_some());
        }
        let ops = j["ops_per_train_step"].as_u64().unwrap();
        assert!(ops > 0, "a training step dispatches operations");
        assert_eq!(j["ops_per_train_step_parts"]["total"], ops);
        let on_cuda = &j["ops_per_train_step_as_on_cuda"];
        let (with_kernels, composed) = (
            on_cuda["with_kernels"]["total"].as_u64().unwrap(),
            on_cuda["composed"]["total"].as_u64().unwrap(),
        );
        // Other tests run tensor operations in parallel and the counter is process-wide, so only presence is
        // checked here; op_count's test measures the paths alone and pins them.
        assert!(with_kernels > 0 && composed > 0, "{with_kernels} {composed}");
        assert!(render_text(&report).contains("as CUDA would run it"));
        let line = format!("ops per training step: {ops} (forward ");
        assert!(render_text(&report).contains(&line));
        // Ten classes and a fresh network: the loss starts near ln 10.
        let loss = j["last_train_loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.5 && loss < 10.0, "{loss}");
        assert!(j["threads"]["rayon"].as_u64().unwrap() >= 1);
        assert!(j["threads"]["available_parallelism"].as_u64().unwrap() >= 1);
        assert!(j["threads"]["candle_elementwise"].as_u64().unwrap() >= 1);
        if cfg!(target_os = "linux") {
            let train_peak = j["peak_rss_train_bytes"].as_u64().unwrap();
            assert!(train_peak > 0 && train_peak <= j["peak_rss_bytes"].as_u64().unwrap());
            assert_eq!(j["machine"]["load_before"].as_array().unwrap().len(), 3);
        }
        assert!(j["machine"]["cores"].as_u64().unwrap() >= 1);
        assert!(j["machine"]["cpu"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(j["data_wait"].is_null(), "a bare model has no data path");
        let text = render_text(&report);
        assert!(
            text.contains("train  batch 4") && text.contains("eval   batch 8"),
            "{text}"
        );
    }

    #[test]
    fn builtins_keep_the_seed_batch_sizes() {
        let s = target("simple_cnn").unwrap();
        assert_eq!(
            (s.batch, s.eval_batch, s.decl.class_name.as_str()),
            (128, 256, "SimpleCNN")
        );
        let r = target("resnet18").unwrap();
        assert_eq!(
            (r.batch, r.eval_batch, r.decl.class_name.as_str()),
            (64, 256, "ResNet18")
        );
        assert_eq!(r.optimizer, OptimizerConfig::new(OptimizerKind::Adam, 1e-3));
        let e = target("vgg").unwrap_err().to_string();
        assert!(
            e.contains("unknown model `vgg`") && e.contains("simple_cnn"),
            "{e}"
        );
    }

    #[test]
    fn rejects_zero_steps() {
        let opts = BenchOptions { steps: 0, ..quick() };
        let e = run(&BenchTarget::model("tiny", tiny(), 4), &opts)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--steps must be at least 1, got 0");
    }

    #[test]
    fn random_inputs_are_standard_normal_and_deterministic() {
        let (a, la) = random_batch(&tiny(), 8, 10, 0, "x");
        let (b, lb) = random_batch(&tiny(), 8, 10, 0, "x");
        assert_eq!((a.len(), la.len()), (8 * 3 * 32 * 32, 8));
        assert_eq!((&a, &la), (&b, &lb));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "{mean} {var}");
        assert!(la.iter().all(|&l| l < 10));
    }
}
