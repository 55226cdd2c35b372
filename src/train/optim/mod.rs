//! Optimizers with PyTorch's update rules and state names, owned by labpipe so their state can be saved and
//! restored for an exact resume.
//!
//! Every rule exists twice: a fused single pass over contiguous f32 CPU storage (one read of parameter,
//! gradient and moments and one write, instead of a dozen out-of-place tensor ops; large tensors are split
//! across threads), and generic tensor ops for any other device or dtype. Both perform the same f32
//! operations in the same order, so on CPU they agree bit for bit; the order is torch.optim's single-tensor
//! (`foreach=False`) implementation, with Python scalars rounded to f32 as PyTorch rounds them.

mod adam;
mod config;
/// The in-place updates on CUDA (only `slot.cuda` parameters, which need the `cuda` feature).
#[cfg(feature = "cuda")]
mod cuda;
mod fused_cpu;
mod scalars;
mod sgd;
mod state;
#[cfg(test)]
mod test_support;

use candle_core::{Result, Tensor, Var, backprop::GradStore, bail};
use std::collections::HashMap;

pub use adam::Adam;
pub use config::{FieldProblem, OptimizerConfig, OptimizerKind};
pub use sgd::Sgd;

/// A parameter update rule over a fixed list of named trainable tensors.
pub trait Optimizer {
    /// Apply one update with learning rate `lr` from the gradients in `grads`. Parameters without a gradient
    /// are left alone, state included (as torch.optim does).
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;
    /// Set the momentum for the next steps, as OneCycleLR does per batch: SGD's `momentum`, Adam's `beta1`.
    fn set_momentum(&mut self, momentum: f64) -> Result<()>;
    /// A snapshot of the optimizer's state as named tensors: `<param>.exp_avg`, `<param>.exp_avg_sq`,
    /// `<param>.max_exp_avg_sq`, `<param>.step` (Adam, AdamW), `<param>.momentum_buffer` (SGD), and `step`,
    /// the number of `step` calls. Only parameters that have been updated have entries, as in PyTorch.
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Replace the state with one produced by [`Optimizer::state`] of the same configuration and parameters.
    /// Fails, changing nothing, on a name it does not know, a shape that does not fit or an incomplete entry.
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()>;
    /// The number of `step` calls so far (restored by `load_state`).
    fn steps_taken(&self) -> u64;
}

/// Which implementation applies the updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateKernel {
    /// The fused in-place pass for contiguous f32 parameters (CPU, or CUDA with the `cuda` feature), tensor
    /// ops for the rest; on the CPU one operation updates every parameter.
    #[default]
    Auto,
    /// Tensor ops for every parameter (what other devices use; for comparisons and benchmarks).
    TensorOps,
    /// The fused pass one parameter (one operation) at a time, as before the multi-tensor update (for
    /// comparisons and benchmarks).
    FusedPerParameter,
}

/// Build the configured optimizer over `params`.
pub fn build(config: &OptimizerConfig, params: Vec<(String, Var)>) -> Result<Box<dyn Optimizer>> {
    build_with(config, params, UpdateKernel::Auto)
}

/// Build the configured optimizer over `params` with a chosen update implementation.
pub fn build_with(
    config: &OptimizerConfig,
    params: Vec<(String, Var)>,
    kernel: UpdateKernel,
) -> Result<Box<dyn Optimizer>> {
    if let Err(e) = config.validate() {
        bail!("invalid optimizer configuration: {e}");
    }
    match config.name {
        OptimizerKind::Adam | OptimizerKind::AdamW => Ok(Box::new(Adam::new(config, params, kernel)?)),
        OptimizerKind::Sgd => Ok(Box::new(Sgd::new(config, params, kernel)?)),
    }
}

fn check_momentum(momentum: f64) -> Result<()> {
    if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) {
        bail!("momentum must be in [0, 1), got {momentum}");
    }
    Ok(())
}

fn check_lr(lr: f64) -> Result<()> {
    if !(lr.is_finite() && lr >= 0.0) {
        bail!("learning rate must be a finite number >= 0, got {lr}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::test_support::{Reference, bits, max_rel_err, run, tiny_grads, tiny_vars, values};
    use super::*;

    #[test]
    fn every_case_matches_torch_weights_losses_and_state() {
        let reference = Reference::load();
        let mut worst_weight = 0.0f64;
        let mut worst_loss = 0.0f64;
        let mut worst_state = 0.0f64;
        for kernel in [UpdateKernel::Auto, UpdateKernel::TensorOps] {
            for case in &reference.fixture.cases {
                let (vars, mut opt) = run(&reference, case, kernel);
                let torch_losses = values(reference.get(&format!("{}.losses", case.case)));
                for (i, &lr) in case.lrs.iter().enumerate() {
                    let loss = reference.step(&vars, opt.as_mut(), lr);
                    let expected = torch_losses[i] as f64;
                    let err = (loss - expected).abs() / expected.abs();
                    assert!(
                        err < 1e-5,
                        "{} step {}: loss {loss} vs torch {expected}",
                        case.case,
                        i + 1
                    );
                    worst_loss = worst_loss.max(err);
                    for (name, var) in &vars {
                        let key = format!("{}.step{}.{name}", case.case, i + 1);
                        let err = max_rel_err(var.as_tensor(), reference.get(&key));
                        assert!(err < 1e-4, "{kernel:?} {key}: error {err}");
                        worst_weight = worst_weight.max(err);
                    }
                }
                let state: HashMap<String, Tensor> = opt.state().unwrap().into_iter().collect();
                assert_eq!(state["step"].to_scalar::<i64>().unwrap(), 3);
                let prefix = format!("{}.state3.", case.case);
                let torch_keys: Vec<&String> = reference
                    .tensors
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .collect();
                assert_eq!(
                    state.len(),
                    torch_keys.len() + 1,
                    "{}: state names {:?}",
                    case.case,
                    state.keys()
                );
                for key in torch_keys {
                    let ours = &state[&key[prefix.len()..]];
                    let err = max_rel_err(ours, reference.get(key));
                    assert!(err < 1e-5, "{kernel:?} {key}: error {err}");
                    worst_state = worst_state.max(err);
                }
            }
        }
        eprintln!(
            "max relative error vs torch: weights {worst_weight:e}, losses {worst_loss:e}, state {worst_state:e}"
        );
    }

    /// Parameters after two steps with the momentum set to `m` before each (or as built when `None`).
    fn after_two_steps(config: &OptimizerConfig, m: Option<f64>) -> Vec<Vec<u32>> {
        let vars = tiny_vars();
        let mut opt = build(config, vars.clone()).unwrap();
        for _ in 0..2 {
            if let Some(m) = m {
                opt.set_momentum(m).unwrap();
            }
            opt.step(&tiny_grads(&vars), 0.1).unwrap();
        }
        bits(&vars)
    }

    #[test]
    fn set_momentum_acts_like_building_with_that_momentum() {
        for kind in [OptimizerKind::Adam, OptimizerKind::AdamW, OptimizerKind::Sgd] {
            let mut built = OptimizerConfig::new(kind, 0.1);
            built.momentum = (kind == OptimizerKind::Sgd).then_some(0.9);
            let set = built.with_momentum(Some(0.5));
            let expected = after_two_steps(&set, None);
            assert_eq!(after_two_steps(&built, Some(0.5)), expected, "{kind:?}");
            assert_ne!(
                after_two_steps(&built, None),
                expected,
                "{kind:?}: momentum matters"
            );
        }
        let adam = OptimizerConfig::new(OptimizerKind::Adam, 0.1).with_momentum(Some(0.95));
        assert_eq!(adam.betas, Some([0.95, 0.999]));
        let sgd = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
        assert_eq!(sgd.with_momentum(None).momentum, None);
        assert_eq!(sgd.with_momentum(Some(0.95)).momentum, Some(0.95));
    }

    #[test]
    fn set_momentum_rejects_bad_values_and_sgd_built_without_momentum() {
        let mut sgd = build(&OptimizerConfig::new(OptimizerKind::Sgd, 0.1), tiny_vars()).unwrap();
        let e = sgd.set_momentum(0.9).unwrap_err().to_string();
        assert!(e.contains("built without momentum"), "{e}");
        assert!(sgd.set_momentum(0.0).is_ok());
        let mut adam = build(&OptimizerConfig::new(OptimizerKind::Adam, 0.1), tiny_vars()).unwrap();
        for bad in [1.0, -0.1, f64::NAN] {
            let e = adam.set_momentum(bad).unwrap_err().to_string();
            assert!(e.contains("momentum must be in [0, 1)"), "{e}");
        }
    }
}

#[cfg(test)]
mod bench {
    use std::time::Instant;

    use candle_core::Device;

    use super::*;
    use crate::model::builtins::{Stem, resnet18};
    use crate::rng::Rng;

    /// Median seconds of an optimizer step over ResNet-18's 11.2 M parameters: multi-tensor, per-parameter
    /// fused, tensor ops.
    /// `cargo test --release --lib train::optim::bench -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark; run in release"]
    fn resnet18_step_time() {
        let decl = resnet18(10, Stem::Imagenet, 64);
        let mut rng = Rng::stream(0, "optim-bench", 0);
        let mut params = Vec::new();
        let mut terms = Vec::new();
        for t in decl.tensors().expect("resnet18 shapes") {
            if !t.role.trainable() {
                continue;
            }
            let n: usize = t.shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 0.05).collect();
            let var = Var::from_vec(values, t.shape.clone(), &Device::Cpu).unwrap();
            let r: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 0.01).collect();
            let r = Tensor::from_vec(r, t.shape.clone(), &Device::Cpu).unwrap();
            terms.push((var.as_tensor() * r).unwrap().sum_all().unwrap());
            params.push((t.name.clone(), var));
        }
        let count: usize = params.iter().map(|(_, v)| v.elem_count()).sum();
        let loss = terms.into_iter().reduce(|a, b| (a + b).unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let mut sgd = OptimizerConfig::new(OptimizerKind::Sgd, 0.01);
        sgd.momentum = Some(0.9);
        for config in [OptimizerConfig::new(OptimizerKind::AdamW, 1e-3), sgd] {
            for kernel in [
                UpdateKernel::Auto,
                UpdateKernel::FusedPerParameter,
                UpdateKernel::TensorOps,
            ] {
                let mut opt = build_with(&config, params.clone(), kernel).unwrap();
                let mut times = Vec::new();
                for _ in 0..12 {
                    let start = Instant::now();
                    opt.step(&grads, 1e-3).unwrap();
                    times.push(start.elapsed().as_secs_f64());
                }
                times.sort_by(f64::total_cmp);
                eprintln!(
                    "{} {kernel:?}: {:.1} ms per step over {count} parameters",
                    config.name.as_str(),
                    times[times.len() / 2] * 1e3
                );
            }
        }
    }
}
