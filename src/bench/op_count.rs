//! Device operations per training step: how many operations one steady-state step (forward, loss, backward,
//! optimizer step, accuracy count) dispatches, counted by the counter labpipe's patched Candle keeps at its
//! storage dispatch layer (vendor/candle-core/LABPIPE-PATCH.md). On a GPU each is at least one kernel launch
//! or memset, and at a few hundred launches per step the launch cost, not the arithmetic, sets the step time.
//!
//! The counter is process-wide: a count is only right when nothing else in the process runs tensor
//! operations meanwhile (`labpipe bench` runs one thing at a time; the test below measures in a child
//! process of its own).

use super::{BenchError, BenchTarget, class_count, random_batch, tensor_err, train_step, train_step_marked};
use crate::model::net::Net;
use crate::model::ops::{Composition, set_composition};
use crate::train::optim::{self, Optimizer, UpdateKernel};
use candle_core::Device;
use serde::Serialize;

/// The parts of a training step, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPart {
    /// The batch becomes tensors (host-to-device uploads: not counted as operations).
    Upload,
    /// `Net::forward` in training mode.
    Forward,
    /// Cross-entropy (its value is read back after the step).
    Loss,
    /// Backpropagation.
    Backward,
    /// The optimizer's update of every parameter.
    Optimizer,
    /// The count of correct predictions.
    Accuracy,
}

/// Operations one training step dispatches, in all and per part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpsPerStep {
    /// The whole step.
    pub total: u64,
    /// Building the input tensors.
    pub upload: u64,
    /// Forward pass.
    pub forward: u64,
    /// Loss.
    pub loss: u64,
    /// Backward pass.
    pub backward: u64,
    /// Optimizer step.
    pub optimizer: u64,
    /// Accuracy count.
    pub accuracy: u64,
}

/// Run one training step on `net` and count the operations it dispatches. Run a step first: the count is
/// meant for a steady-state step, after the optimizer has created its state.
pub fn count_train_step(
    net: &Net,
    opt: &mut dyn Optimizer,
    pixels: &[f32],
    labels: &[u32],
    lr: f64,
    label_smoothing: f64,
) -> candle_core::Result<OpsPerStep> {
    let mut ops = OpsPerStep::default();
    candle_core::op_count::reset();
    let mut last = 0;
    train_step_marked(net, opt, pixels, labels, lr, label_smoothing, &mut |part| {
        let now = candle_core::op_count::get();
        let n = now - last;
        last = now;
        match part {
            StepPart::Upload => ops.upload = n,
            StepPart::Forward => ops.forward = n,
            StepPart::Loss => ops.loss = n,
            StepPart::Backward => ops.backward = n,
            StepPart::Optimizer => ops.optimizer = n,
            StepPart::Accuracy => ops.accuracy = n,
        }
    })?;
    ops.total = last;
    Ok(ops)
}

/// A CPU count of the paths CUDA runs: Candle dispatches the same storage operations on both devices, so the
/// count carries over (on a GPU each is at least one launch; labpipe's own kernels may launch two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpsOnCuda {
    /// With labpipe's CUDA kernels (`LABPIPE_CUDA_KERNELS=1`).
    pub with_kernels: OpsPerStep,
    /// Candle's compositions, CUDA's default.
    pub composed: OpsPerStep,
}

/// Which implementation of labpipe's operations a count is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpPath {
    /// Every hand-written kernel: the CPU's path.
    Kernels,
    /// As CUDA runs with `LABPIPE_CUDA_KERNELS=1`: labpipe's kernels where a CUDA one exists, Candle's ops for
    /// the rest (convolutions, adaptive average pooling).
    CudaKernels,
    /// As CUDA runs by default: Candle-op compositions everywhere, the optimizer's tensor-op update included.
    Composed,
}

impl OpPath {
    fn composition(self) -> Composition {
        match self {
            OpPath::Kernels => Composition::None,
            OpPath::CudaKernels => Composition::CpuOnlyOps,
            OpPath::Composed => Composition::All,
        }
    }
}

/// Restores the CPU's path when a count ends, also on an error.
struct CompositionGuard;

impl CompositionGuard {
    fn set(c: Composition) -> Self {
        set_composition(c);
        CompositionGuard
    }
}

impl Drop for CompositionGuard {
    fn drop(&mut self) {
        set_composition(Composition::None);
    }
}

/// A fresh network of `target` with `batch` random inputs: one warm-up step, then the counted step.
pub fn measure(
    target: &BenchTarget,
    batch: usize,
    device: &Device,
    path: OpPath,
) -> Result<OpsPerStep, BenchError> {
    let terr = tensor_err("counting operations");
    // Only a CPU count can stand in for another path: on CUDA the device's own path is what runs.
    let _composition = device.is_cpu().then(|| CompositionGuard::set(path.composition()));
    let kernel = match path {
        OpPath::Kernels => UpdateKernel::Auto,
        // CUDA has no multi-tensor update kernel yet: one launch per parameter.
        OpPath::CudaKernels => UpdateKernel::FusedPerParameter,
        OpPath::Composed => UpdateKernel::TensorOps,
    };
    let net = Net::new(&target.decl, device, target.seed).map_err(&terr)?;
    let mut opt = optim::build_with(&target.optimizer, net.params(), kernel).map_err(&terr)?;
    let classes = class_count(&target.decl);
    let (pixels, labels) = random_batch(&target.decl, batch, classes, target.seed, "bench_train");
    let (lr, smoothing) = (target.optimizer.lr, target.label_smoothing);
    train_step(&net, opt.as_mut(), &pixels, &labels, lr, smoothing).map_err(&terr)?;
    count_train_step(&net, opt.as_mut(), &pixels, &labels, lr, smoothing).map_err(&terr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::target;
    use std::process::Command;

    /// Set in the child process that measures alone.
    const CHILD: &str = "LABPIPE_OP_COUNT_CHILD";

    /// Today's counts per path: the CPU's kernels, CUDA with labpipe's kernels, CUDA's default composition.
    /// They can only go down. History of the CPU path (SimpleCNN, ResNet-18): 155, 599 at first; 83, 311 once
    /// the backward pass stored a gradient's first contribution instead of adding it to zeros
    /// (vendor/candle-core/LABPIPE-PATCH.md); 65, 191 with BatchNorm's running statistics updated in one op;
    /// 36, 162 with the fused cross-entropy and correct count (src/train/loss/fused.rs); 23, 101 with the
    /// multi-tensor optimizer update (one op for all parameters, src/train/optim/fused_cpu.rs). CUDA with kernels
    /// (ResNet-18): 272 when first counted, 251 once Candle's convolution backward skipped the data's input
    /// gradient and stopped adding the weight gradient to zeros, 222 with the fused loss.
    /// (model, the seed's batch size, the pin of each path).
    type Pin = (&'static str, usize, [(OpPath, u64); 3]);

    const PINS: [Pin; 2] = [
        (
            "simple_cnn",
            128,
            [
                (OpPath::Kernels, 23),
                (OpPath::CudaKernels, 53),
                (OpPath::Composed, 518),
            ],
        ),
        (
            "resnet18",
            64,
            [
                (OpPath::Kernels, 101),
                (OpPath::CudaKernels, 222),
                (OpPath::Composed, 2211),
            ],
        ),
    ];

    #[test]
    fn ops_per_train_step_can_only_go_down() {
        if std::env::var_os(CHILD).is_some() {
            measure_and_check();
            println!("op counts checked");
            return;
        }
        // The counter is process-wide and other tests run tensor operations in parallel threads, so the
        // measurement runs in a child process that runs only this test.
        let name = concat!(module_path!(), "::ops_per_train_step_can_only_go_down");
        let name = name.split_once("::").map_or(name, |(_, rest)| rest);
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // "op counts checked" proves the child ran the measurement, not zero tests.
        assert!(
            out.status.success() && text.contains("op counts checked"),
            "{text}"
        );
    }

    fn measure_and_check() {
        for (model, batch, pins) in PINS {
            let t = target(model).unwrap();
            assert_eq!(t.batch, batch, "{model}: the seed's batch size");
            for (path, pin) in pins {
                let ops = measure(&t, batch, &Device::Cpu, path).unwrap();
                println!("{model} batch {batch} {path:?}: {ops:?}");
                assert!(ops.total > 0, "{model} {path:?}: nothing was counted");
                assert_eq!(
                    ops.total,
                    ops.upload + ops.forward + ops.loss + ops.backward + ops.optimizer + ops.accuracy,
                    "{model} {path:?}: the parts add up to the step"
                );
                assert!(
                    ops.total <= pin,
                    "{model} batch {batch} {path:?}: {} operations per training step, pinned at {pin} ({ops:?}); \
                     the count can only go down: update the pin when you reduce it",
                    ops.total
                );
                // The launch count depends on the network, not the batch size.
                let small = measure(&t, 2, &Device::Cpu, path).unwrap();
                assert_eq!(small, ops, "{model} {path:?}: batch 2 vs {batch}");
            }
        }
    }
}
