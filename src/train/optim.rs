//! Optimizers with PyTorch's update rules and state names, owned by labpipe so their state can be saved and
//! restored for an exact resume.
//!
//! Every rule exists twice: a fused single pass over contiguous f32 CPU storage (one read of parameter,
//! gradient and moments and one write, instead of a dozen out-of-place tensor ops; large tensors are split
//! across threads), and generic tensor ops for any other device or dtype. Both perform the same f32
//! operations in the same order, so on CPU they agree bit for bit; the order is torch.optim's single-tensor
//! (`foreach=False`) implementation, with Python scalars rounded to f32 as PyTorch rounds them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The in-place updates on CUDA (only `slot.cuda` parameters, which need the `cuda` feature).
#[cfg(feature = "cuda")]
mod cuda;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, DType, Device, InplaceOp2, Layout, Result, Tensor, Var, backprop::GradStore, bail,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// torch.optim.Adam: weight decay is L2 added to the gradient.
    #[serde(rename = "adam")]
    Adam,
    /// torch.optim.AdamW: decoupled weight decay (default 0.01).
    #[serde(rename = "adamw")]
    AdamW,
    /// torch.optim.SGD with optional momentum, dampening and Nesterov momentum.
    #[serde(rename = "sgd")]
    Sgd,
}

impl OptimizerKind {
    /// The name used in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::Sgd => "sgd",
        }
    }
}

/// One problem found in a configuration: the field to point at and a message that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The YAML key the problem is about (e.g. `nesterov`).
    pub field: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl FieldProblem {
    /// A problem with `field`.
    pub fn new(field: &'static str, message: String) -> Self {
        FieldProblem { field, message }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `train.optimizer` in a pipeline file. Unset options take torch.optim's defaults.
///
/// A flat struct rather than a tagged enum so that serde-saphyr keeps line and column in its errors; which
/// fields apply to which `name` is checked by [`OptimizerConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Which optimizer.
    pub name: OptimizerKind,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    /// adam, adamw: coefficients of the running averages of the gradient and its square (0.9, 0.999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// adam, adamw: added to the denominator (1e-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// L2 penalty for adam and sgd, decoupled decay for adamw (0, adamw 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// adam, adamw: use the maximum of past squared-gradient averages (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amsgrad: Option<bool>,
    /// sgd: momentum factor (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// sgd: dampening of momentum (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// sgd: Nesterov momentum (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
}

impl OptimizerConfig {
    /// A configuration of `name` with learning rate `lr` and every option at its default.
    pub fn new(name: OptimizerKind, lr: f64) -> Self {
        OptimizerConfig {
            name,
            lr,
            betas: None,
            eps: None,
            weight_decay: None,
            amsgrad: None,
            momentum: None,
            dampening: None,
            nesterov: None,
        }
    }

    fn is_adam(&self) -> bool {
        matches!(self.name, OptimizerKind::Adam | OptimizerKind::AdamW)
    }

    /// Every problem with this configuration: fields that do not apply to `name` and values out of range.
    pub fn problems(&self) -> Vec<FieldProblem> {
        use OptimizerKind::*;
        let mut out = Vec::new();
        let kind = self.name;
        let mut not_for = |field: &'static str, set: bool, allowed: &[OptimizerKind]| {
            if set && !allowed.contains(&kind) {
                let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                out.push(FieldProblem::new(
                    field,
                    format!(
                        "`{field}` does not apply to {} (it is an option of: {}); remove it",
                        kind.as_str(),
                        names.join(", ")
                    ),
                ));
            }
        };
        not_for("betas", self.betas.is_some(), &[Adam, AdamW]);
        not_for("eps", self.eps.is_some(), &[Adam, AdamW]);
        not_for("amsgrad", self.amsgrad.is_some(), &[Adam, AdamW]);
        not_for("momentum", self.momentum.is_some(), &[Sgd]);
        not_for("dampening", self.dampening.is_some(), &[Sgd]);
        not_for("nesterov", self.nesterov.is_some(), &[Sgd]);

        let mut bad = |field: &'static str, message: String| out.push(FieldProblem::new(field, message));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bad("lr", format!("`lr` must be a number > 0, got {}", self.lr));
        }
        if let Some(betas) = self.betas {
            for (i, b) in betas.iter().enumerate() {
                if !(*b >= 0.0 && *b < 1.0) {
                    bad(
                        "betas",
                        format!("`betas` must both be in [0, 1), got betas[{i}] = {b}"),
                    );
                }
            }
        }
        if let Some(e) = self.eps
            && !(e.is_finite() && e >= 0.0)
        {
            bad("eps", format!("`eps` must be a number >= 0, got {e}"));
        }
        if let Some(w) = self.weight_decay
            && !(w.is_finite() && w >= 0.0)
        {
            bad(
                "weight_decay",
                format!("`weight_decay` must be a number >= 0, got {w}"),
            );
        }
        if let Some(m) = self.momentum
            && !(m.is_finite() && m >= 0.0)
        {
            bad("momentum", format!("`momentum` must be a number >= 0, got {m}"));
        }
        if let Some(d) = self.dampening {
            if !(0.0..=1.0).contains(&d) {
                bad("dampening", format!("`dampening` must be in [0, 1], got {d}"));
            } else if kind == Sgd && self.momentum.unwrap_or(0.0) == 0.0 && d != 0.0 {
                bad(
                    "dampening",
                    "`dampening` has no effect without `momentum`; set `momentum` or remove it".into(),
                );
            }
        }
        if kind == Sgd && self.nesterov == Some(true) {
            if self.momentum.unwrap_or(0.0) <= 0.0 {
                bad("nesterov", "`nesterov` needs `momentum` > 0".into());
            }
            if self.dampening.unwrap_or(0.0) != 0.0 {
                bad("nesterov", "`nesterov` needs `dampening` 0".into());
            }
        }
        out
    }

    /// Check the configuration; the error names the offending field(s) and says what was expected.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "))
        }
    }

    /// The configuration with every applicable default written out (for cache keys and saved configs).
    pub fn resolved(&self) -> OptimizerConfig {
        let mut r = OptimizerConfig::new(self.name, self.lr);
        r.weight_decay = Some(self.weight_decay());
        if self.is_adam() {
            let (b1, b2) = self.betas();
            r.betas = Some([b1, b2]);
            r.eps = Some(self.eps.unwrap_or(1e-8));
            r.amsgrad = Some(self.amsgrad.unwrap_or(false));
        } else {
            r.momentum = Some(self.momentum.unwrap_or(0.0));
            r.dampening = Some(self.dampening.unwrap_or(0.0));
            r.nesterov = Some(self.nesterov.unwrap_or(false));
        }
        r
    }

    /// This configuration with its momentum replaced, as OneCycleLR does when it is created: SGD's
    /// `momentum`, Adam's `beta1`. `None` leaves it as it is.
    pub fn with_momentum(&self, momentum: Option<f64>) -> OptimizerConfig {
        let mut c = self.clone();
        if let Some(m) = momentum {
            if self.is_adam() {
                c.betas = Some([m, self.betas().1]);
            } else {
                c.momentum = Some(m);
            }
        }
        c
    }

    fn betas(&self) -> (f64, f64) {
        let [b1, b2] = self.betas.unwrap_or([0.9, 0.999]);
        (b1, b2)
    }

    fn weight_decay(&self) -> f64 {
        let default = if self.name == OptimizerKind::AdamW {
            1e-2
        } else {
            0.0
        };
        self.weight_decay.unwrap_or(default)
    }
}

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
    /// ops for the rest.
    #[default]
    Auto,
    /// Tensor ops for every parameter (what other devices use; for comparisons and benchmarks).
    TensorOps,
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

/// A per-parameter state tensor, kept where its update runs.
#[derive(Debug, Clone)]
enum Buffer {
    /// Contiguous f32 values, updated in place by the fused CPU pass.
    Host(Vec<f32>),
    /// A tensor on the parameter's device and dtype, replaced by each update.
    Device(Tensor),
}

impl Buffer {
    fn zeros(slot_host: bool, var: &Var) -> Result<Buffer> {
        Ok(if slot_host {
            Buffer::Host(vec![0.0; var.elem_count()])
        } else {
            Buffer::Device(var.zeros_like()?)
        })
    }

    fn host_mut(&mut self) -> Result<&mut [f32]> {
        match self {
            Buffer::Host(v) => Ok(v),
            Buffer::Device(_) => bail!("internal: a device buffer reached the fused CPU update"),
        }
    }

    fn tensor(&self) -> Result<&Tensor> {
        match self {
            Buffer::Device(t) => Ok(t),
            Buffer::Host(_) => bail!("internal: a host buffer reached the tensor-op update"),
        }
    }
}

/// One parameter with its state.
struct Slot {
    name: String,
    var: Var,
    /// Updated by the fused CPU pass rather than tensor ops.
    host: bool,
    /// Updated in place by labpipe's CUDA kernel rather than tensor ops (its buffers are device tensors
    /// written in place, so `state` copies them).
    cuda: bool,
    /// Updates applied to this parameter (PyTorch's per-parameter `state["step"]`).
    step: u64,
    /// Indexed like the owning optimizer's buffer names; `None` until first needed, as in PyTorch.
    buffers: Vec<Option<Buffer>>,
}

/// The parameters of one optimizer and the bookkeeping shared by all of them: state export and import.
struct ParamSet {
    slots: Vec<Slot>,
    steps: u64,
    buffer_names: Vec<&'static str>,
    /// Whether `<param>.step` is part of the state (Adam) or not (SGD).
    per_param_step: bool,
}

impl ParamSet {
    fn new(
        params: Vec<(String, Var)>,
        kernel: UpdateKernel,
        buffer_names: Vec<&'static str>,
        per_param_step: bool,
    ) -> Result<Self> {
        let mut seen = HashSet::new();
        let mut slots = Vec::with_capacity(params.len());
        for (name, var) in params {
            if !seen.insert(name.clone()) {
                bail!("parameter `{name}` is given to the optimizer twice");
            }
            let host = kernel == UpdateKernel::Auto
                && var.device().is_cpu()
                && var.dtype() == DType::F32
                && var.layout().is_contiguous();
            let cuda = kernel == UpdateKernel::Auto && cuda_fused(&var);
            let buffers = vec![None; buffer_names.len()];
            slots.push(Slot {
                name,
                var,
                host,
                cuda,
                step: 0,
                buffers,
            });
        }
        Ok(ParamSet {
            slots,
            steps: 0,
            buffer_names,
            per_param_step,
        })
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for slot in &self.slots {
            if self.per_param_step && slot.step > 0 {
                out.push((
                    format!("{}.step", slot.name),
                    Tensor::new(slot.step as i64, &Device::Cpu)?,
                ));
            }
            for (buffer, suffix) in slot.buffers.iter().zip(&self.buffer_names) {
                let tensor = match buffer {
                    None => continue,
                    Some(Buffer::Host(v)) => Tensor::from_slice(v, slot.var.shape(), &Device::Cpu)?,
                    // The CUDA kernel writes its buffers in place: the state must be a copy.
                    Some(Buffer::Device(t)) if slot.cuda => t.copy()?,
                    // Otherwise device buffers are replaced, never written in place: sharing is a snapshot.
                    Some(Buffer::Device(t)) => t.clone(),
                };
                out.push((format!("{}.{suffix}", slot.name), tensor));
            }
        }
        out.push(("step".to_string(), Tensor::new(self.steps as i64, &Device::Cpu)?));
        Ok(out)
    }

    /// `all_or_nothing`: a parameter's step and buffers must be all present or all absent (Adam); otherwise
    /// buffers may be missing (SGD's momentum buffer before the first update).
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, all_or_nothing: bool) -> Result<()> {
        let index: HashMap<&str, usize> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        for key in tensors.keys() {
            let known = key == "step"
                || key.rsplit_once('.').is_some_and(|(param, suffix)| {
                    index.contains_key(param)
                        && (self.buffer_names.contains(&suffix) || (self.per_param_step && suffix == "step"))
                });
            if !known {
                bail!(
                    "unknown optimizer state `{key}`: expected <param>.{{{}}} for this optimizer's parameters; \
                     the checkpoint was written by another optimizer configuration or model",
                    self.buffer_names.join(",") + if self.per_param_step { ",step" } else { "" }
                );
            }
        }
        let steps = match tensors.get("step") {
            Some(t) => read_count(t, "step")?,
            None if tensors.is_empty() => 0,
            None => bail!("optimizer state has no `step` entry (the number of optimizer steps taken)"),
        };
        // Build everything first so that a failure leaves the optimizer as it was.
        let mut loaded = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let step_key = format!("{}.step", slot.name);
            let step = match tensors.get(&step_key) {
                Some(t) => Some(read_count(t, &step_key)?),
                None => None,
            };
            let mut buffers = Vec::with_capacity(self.buffer_names.len());
            for suffix in &self.buffer_names {
                let key = format!("{}.{suffix}", slot.name);
                buffers.push(match tensors.get(&key) {
                    Some(t) => Some(import_buffer(t, slot, &key)?),
                    None => None,
                });
            }
            if all_or_nothing {
                let present = buffers.iter().filter(|b| b.is_some()).count() + usize::from(step.is_some());
                let expected = buffers.len() + 1;
                if present != 0 && present != expected {
                    bail!(
                        "optimizer state for `{}` is incomplete: it needs `.step` and `.{}` together",
                        slot.name,
                        self.buffer_names.join("`, `.")
                    );
                }
            }
            loaded.push((step.unwrap_or(0), buffers));
        }
        self.steps = steps;
        for (slot, (step, buffers)) in self.slots.iter_mut().zip(loaded) {
            slot.step = step;
            slot.buffers = buffers;
        }
        Ok(())
    }
}

/// A non-negative integer count stored as a one-element tensor of any dtype (PyTorch stores f32 steps).
fn read_count(t: &Tensor, key: &str) -> Result<u64> {
    let values = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    match values.as_slice() {
        [v] if *v >= 0.0 && v.fract() == 0.0 && *v < 2f64.powi(53) => Ok(*v as u64),
        _ => bail!("optimizer state `{key}` must be one non-negative whole number, got {values:?}"),
    }
}

fn import_buffer(t: &Tensor, slot: &Slot, key: &str) -> Result<Buffer> {
    if t.dims() != slot.var.dims() {
        bail!(
            "optimizer state `{key}` has shape {:?} but parameter `{}` has shape {:?}",
            t.dims(),
            slot.name,
            slot.var.dims()
        );
    }
    Ok(if slot.host {
        Buffer::Host(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    } else if slot.cuda {
        // Written in place from now on: never share the caller's storage.
        Buffer::Device(t.to_device(slot.var.device())?.to_dtype(DType::F32)?.copy()?)
    } else {
        Buffer::Device(t.to_device(slot.var.device())?.to_dtype(slot.var.dtype())?)
    })
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

/// The contiguous f32 values of a CPU storage.
fn f32_values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what} must be f32 for the fused CPU update, got {:?}", s.dtype())
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{what} must be contiguous for the fused CPU update")
    };
    Ok(&v[start..end])
}

fn f32_values_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let dtype = s.dtype();
    let CpuStorage::F32(v) = s else {
        bail!("{what} must be f32 for the fused CPU update, got {dtype:?}")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{what} must be contiguous for the fused CPU update")
    };
    Ok(&mut v[start..end])
}

/// A gradient ready for the fused pass: same shape as the parameter, contiguous, f32.
fn host_grad(grad: &Tensor, slot: &Slot) -> Result<Tensor> {
    if grad.dims() != slot.var.dims() {
        bail!(
            "gradient of `{}` has shape {:?}, the parameter {:?}",
            slot.name,
            grad.dims(),
            slot.var.dims()
        );
    }
    grad.to_dtype(DType::F32)?.contiguous()
}

/// Whether `var` is updated by labpipe's CUDA kernels: a contiguous f32 parameter on a CUDA device.
#[cfg(feature = "cuda")]
fn cuda_fused(var: &Var) -> bool {
    crate::cuda::is_cuda_f32(var.as_tensor())
        && var.layout().is_contiguous()
        && crate::cuda::kernels_enabled()
}

/// Without the `cuda` feature no parameter is on a GPU.
#[cfg(not(feature = "cuda"))]
fn cuda_fused(_: &Var) -> bool {
    false
}

/// A 0-d tensor holding `v` in `like`'s dtype and device, for exact division by a scalar (candle's
/// `tensor / f64` multiplies by the reciprocal, PyTorch divides).
fn scalar_like(v: f64, like: &Tensor) -> Result<Tensor> {
    Tensor::new(v, like.device())?.to_dtype(like.dtype())
}

// ---------------------------------------------------------------------------------------------------------
// Adam and AdamW

/// Adam and AdamW exactly as torch.optim.Adam / AdamW (`foreach=False`, `maximize=False`).
pub struct Adam {
    set: ParamSet,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    amsgrad: bool,
}

/// The scalars of one Adam update of one parameter, computed in f64 as PyTorch does in Python.
#[derive(Debug, Clone, Copy)]
struct AdamScalars {
    /// AdamW: the parameter is first multiplied by `1 - lr * weight_decay`.
    decay: Option<f64>,
    /// Adam: `weight_decay * param` is added to the gradient.
    l2: Option<f64>,
    /// `1 - beta1`, the weight of `exp_avg.lerp_(grad, 1 - beta1)`.
    w1: f64,
    beta2: f64,
    /// `1 - beta2`.
    w2: f64,
    /// `sqrt(1 - beta2^step)`.
    bc2_sqrt: f64,
    eps: f64,
    /// `-lr / (1 - beta1^step)`.
    neg_step_size: f64,
}

impl Adam {
    fn new(config: &OptimizerConfig, params: Vec<(String, Var)>, kernel: UpdateKernel) -> Result<Self> {
        let amsgrad = config.amsgrad.unwrap_or(false);
        let mut names = vec!["exp_avg", "exp_avg_sq"];
        if amsgrad {
            names.push("max_exp_avg_sq");
        }
        let (beta1, beta2) = config.betas();
        Ok(Adam {
            set: ParamSet::new(params, kernel, names, true)?,
            beta1,
            beta2,
            eps: config.eps.unwrap_or(1e-8),
            weight_decay: config.weight_decay(),
            decoupled: config.name == OptimizerKind::AdamW,
            amsgrad,
        })
    }

    fn scalars(&self, lr: f64, step: u64) -> AdamScalars {
        // PyTorch: step is a float tensor, `beta ** step` and `bias_correction2 ** 0.5` are Python float pows.
        let step = step as f64;
        let bias_correction1 = 1.0 - self.beta1.powf(step);
        let bias_correction2 = 1.0 - self.beta2.powf(step);
        let wd = (self.weight_decay != 0.0).then_some(self.weight_decay);
        AdamScalars {
            decay: wd.filter(|_| self.decoupled).map(|wd| 1.0 - lr * wd),
            l2: wd.filter(|_| !self.decoupled),
            w1: 1.0 - self.beta1,
            beta2: self.beta2,
            w2: 1.0 - self.beta2,
            bc2_sqrt: bias_correction2.powf(0.5),
            eps: self.eps,
            neg_step_size: -(lr / bias_correction1),
        }
    }
}

impl Optimizer for Adam {
    fn set_momentum(&mut self, momentum: f64) -> Result<()> {
        check_momentum(momentum)?;
        self.beta1 = momentum;
        Ok(())
    }

    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.set.steps += 1;
        let amsgrad = self.amsgrad;
        for i in 0..self.set.slots.len() {
            let Some(grad) = grads.get(self.set.slots[i].var.as_tensor()) else {
                continue;
            };
            let step = self.set.slots[i].step + 1;
            let s = self.scalars(lr, step);
            let slot = &mut self.set.slots[i];
            slot.step = step;
            for b in slot.buffers.iter_mut() {
                if b.is_none() {
                    *b = Some(Buffer::zeros(slot.host, &slot.var)?);
                }
            }
            if slot.host {
                let grad = host_grad(grad, slot)?;
                let [m, v, rest @ ..] = slot.buffers.as_mut_slice() else {
                    bail!("internal: Adam state has fewer than two buffers");
                };
                let (Some(m), Some(v)) = (m, v) else {
                    bail!("internal: Adam buffers were not initialised");
                };
                let vmax = match rest.first_mut() {
                    Some(Some(b)) if amsgrad => Some(RefCell::new(b.host_mut()?)),
                    _ => None,
                };
                let op = AdamHostUpdate {
                    s,
                    exp_avg: RefCell::new(m.host_mut()?),
                    exp_avg_sq: RefCell::new(v.host_mut()?),
                    max_exp_avg_sq: vmax,
                };
                slot.var.as_tensor().inplace_op2(&grad, &op)?;
            } else if slot.cuda {
                #[cfg(feature = "cuda")]
                cuda::adam_update(slot, grad, &s)?;
            } else {
                adam_tensor_update(slot, grad, &s, amsgrad)?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.set.state()
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        self.set.load_state(tensors, true)
    }

    fn steps_taken(&self) -> u64 {
        self.set.steps
    }
}

/// The fused Adam update of one parameter, run in place on its CPU storage.
struct AdamHostUpdate<'a> {
    s: AdamScalars,
    exp_avg: RefCell<&'a mut [f32]>,
    exp_avg_sq: RefCell<&'a mut [f32]>,
    max_exp_avg_sq: Option<RefCell<&'a mut [f32]>>,
}

impl InplaceOp2 for AdamHostUpdate<'_> {
    fn name(&self) -> &'static str {
        "labpipe-adam-update"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let p = f32_values_mut(s1, l1, "parameter")?;
        let g = f32_values(s2, l2, "gradient")?;
        let mut m = self.exp_avg.borrow_mut();
        let mut v = self.exp_avg_sq.borrow_mut();
        let n = p.len();
        if g.len() != n || m.len() != n || v.len() != n {
            bail!("internal: Adam update over slices of different lengths");
        }
        let c = AdamF32::from(&self.s);
        let mut vmax_guard = self.max_exp_avg_sq.as_ref().map(RefCell::borrow_mut);
        let vmax: &mut [f32] = match vmax_guard.as_deref_mut() {
            Some(b) => b,
            None => &mut [],
        };
        let amsgrad = self.max_exp_avg_sq.is_some();
        if amsgrad && vmax.len() != n {
            bail!("internal: Adam update over slices of different lengths");
        }
        let kernel: AdamKernel = match (c.decay.is_some(), c.l2.is_some(), amsgrad) {
            (true, _, false) => adam_kernel::<true, false, false>,
            (false, true, false) => adam_kernel::<false, true, false>,
            (false, false, false) => adam_kernel::<false, false, false>,
            (true, _, true) => adam_kernel::<true, false, true>,
            (false, true, true) => adam_kernel::<false, true, true>,
            (false, false, true) => adam_kernel::<false, false, true>,
        };
        for_chunks(p, g, [&mut m, &mut v, vmax], |p, g, [m, v, vmax]| {
            kernel(p, g, m, v, vmax, &c)
        });
        Ok(())
    }
}

/// [`AdamScalars`] rounded to f32 as PyTorch rounds Python scalars for an f32 tensor op.
struct AdamF32 {
    decay: Option<f32>,
    l2: Option<f32>,
    w1: f32,
    beta2: f32,
    w2: f32,
    bc2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

impl From<&AdamScalars> for AdamF32 {
    fn from(s: &AdamScalars) -> Self {
        AdamF32 {
            decay: s.decay.map(|x| x as f32),
            l2: s.l2.map(|x| x as f32),
            w1: s.w1 as f32,
            beta2: s.beta2 as f32,
            w2: s.w2 as f32,
            bc2_sqrt: s.bc2_sqrt as f32,
            eps: s.eps as f32,
            neg_step_size: s.neg_step_size as f32,
        }
    }
}

type AdamKernel = fn(&mut [f32], &[f32], &mut [f32], &mut [f32], &mut [f32], &AdamF32);

/// `x * mul + add` exactly as candle's `affine` computes it, so both paths round alike.
#[inline(always)]
fn affine(x: f32, mul: f32, add: f32) -> f32 {
    x * mul + add
}

/// One fused Adam pass. Each line mirrors one op of torch's `_single_tensor_adam` and of
/// [`adam_tensor_update`]; the const parameters remove the branches from the loop.
#[inline(never)]
fn adam_kernel<const DECOUPLED: bool, const L2: bool, const AMSGRAD: bool>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    vmax: &mut [f32],
    c: &AdamF32,
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    let vmax = if AMSGRAD { &mut vmax[..n] } else { vmax };
    let decay = c.decay.unwrap_or(1.0);
    let l2 = c.l2.unwrap_or(0.0);
    for i in 0..n {
        let mut pi = p[i];
        if DECOUPLED {
            pi = affine(pi, decay, 0.0); // param.mul_(1 - lr * weight_decay)
        }
        let mut gi = g[i];
        if L2 {
            gi += affine(pi, l2, 0.0); // grad = grad.add(param, alpha=weight_decay)
        }
        let mi = m[i] + affine(gi - m[i], c.w1, 0.0); // exp_avg.lerp_(grad, 1 - beta1)
        let vi = affine(v[i], c.beta2, 0.0) + affine(gi, c.w2, 0.0) * gi; // mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        let vx = if AMSGRAD {
            let vm = if vmax[i] < vi { vi } else { vmax[i] }; // torch.maximum(max_exp_avg_sq, exp_avg_sq)
            vmax[i] = vm;
            vm
        } else {
            vi
        };
        let denom = affine(vx.sqrt() / c.bc2_sqrt, 1.0, c.eps); // (sqrt / bias_correction2_sqrt).add_(eps)
        p[i] = pi + affine(mi, c.neg_step_size, 0.0) / denom; // param.addcdiv_(exp_avg, denom, -step_size)
        m[i] = mi;
        v[i] = vi;
    }
}

/// The Adam update of one parameter with tensor ops (any device, any float dtype).
fn adam_tensor_update(slot: &mut Slot, grad: &Tensor, s: &AdamScalars, amsgrad: bool) -> Result<()> {
    // Detached so that neither the new parameter nor the stored moments keep an autograd graph alive.
    let mut p = slot.var.as_tensor().detach();
    let mut g = grad.detach().to_dtype(p.dtype())?;
    if let Some(decay) = s.decay {
        p = p.affine(decay, 0.0)?;
    }
    if let Some(l2) = s.l2 {
        g = (&g + p.affine(l2, 0.0)?)?;
    }
    let m_prev = slot.buffers[0].as_ref().map(Buffer::tensor).transpose()?.cloned();
    let v_prev = slot.buffers[1].as_ref().map(Buffer::tensor).transpose()?.cloned();
    let (Some(m_prev), Some(v_prev)) = (m_prev, v_prev) else {
        bail!("internal: Adam buffers were not initialised");
    };
    let m = (&m_prev + (&g - &m_prev)?.affine(s.w1, 0.0)?)?;
    let v = (v_prev.affine(s.beta2, 0.0)? + (g.affine(s.w2, 0.0)? * &g)?)?;
    let vx = if amsgrad {
        let Some(Some(vmax_prev)) = slot.buffers.get(2) else {
            bail!("internal: AMSGrad buffer was not initialised");
        };
        let vmax = vmax_prev.tensor()?.maximum(&v)?;
        slot.buffers[2] = Some(Buffer::Device(vmax.clone()));
        vmax
    } else {
        v.clone()
    };
    let denom = vx
        .sqrt()?
        .broadcast_div(&scalar_like(s.bc2_sqrt, &vx)?)?
        .affine(1.0, s.eps)?;
    let new_p = (&p + (m.affine(s.neg_step_size, 0.0)? / denom)?)?;
    slot.var.set(&new_p)?;
    slot.buffers[0] = Some(Buffer::Device(m));
    slot.buffers[1] = Some(Buffer::Device(v));
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// SGD

/// SGD exactly as torch.optim.SGD (`foreach=False`, `maximize=False`): the first momentum buffer is the
/// gradient itself, undampened.
pub struct Sgd {
    set: ParamSet,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
}

impl Sgd {
    fn new(config: &OptimizerConfig, params: Vec<(String, Var)>, kernel: UpdateKernel) -> Result<Self> {
        let momentum = config.momentum.unwrap_or(0.0);
        let names = if momentum != 0.0 {
            vec!["momentum_buffer"]
        } else {
            vec![]
        };
        Ok(Sgd {
            set: ParamSet::new(params, kernel, names, false)?,
            momentum,
            dampening: config.dampening.unwrap_or(0.0),
            nesterov: config.nesterov.unwrap_or(false),
            weight_decay: config.weight_decay(),
        })
    }
}

/// The scalars of one SGD update, rounded to f32 for the fused pass.
#[derive(Debug, Clone, Copy)]
struct SgdScalars {
    weight_decay: Option<f64>,
    momentum: Option<f64>,
    /// `1 - dampening`.
    keep: f64,
    nesterov: bool,
    neg_lr: f64,
}

impl Optimizer for Sgd {
    fn set_momentum(&mut self, momentum: f64) -> Result<()> {
        check_momentum(momentum)?;
        // The momentum buffer exists only when the optimizer was built with momentum (the state's layout).
        if self.set.buffer_names.is_empty() && momentum != 0.0 {
            bail!(
                "SGD was built without momentum; a momentum schedule needs it built with one \
                 (OneCycleLR sets it to `max_momentum` first: see SchedulerConfig::initial_momentum)"
            );
        }
        self.momentum = momentum;
        Ok(())
    }

    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.set.steps += 1;
        let s = SgdScalars {
            weight_decay: (self.weight_decay != 0.0).then_some(self.weight_decay),
            momentum: (self.momentum != 0.0).then_some(self.momentum),
            keep: 1.0 - self.dampening,
            nesterov: self.nesterov,
            neg_lr: -lr,
        };
        for slot in self.set.slots.iter_mut() {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            slot.step += 1;
            if slot.host {
                let grad = host_grad(grad, slot)?;
                let first = s.momentum.is_some() && slot.buffers[0].is_none();
                let buf = match slot.buffers.first_mut() {
                    Some(b) => {
                        let b = b.get_or_insert_with(|| Buffer::Host(vec![0.0; slot.var.elem_count()]));
                        Some(RefCell::new(b.host_mut()?))
                    }
                    None => None,
                };
                let op = SgdHostUpdate { s, first, buf };
                slot.var.as_tensor().inplace_op2(&grad, &op)?;
            } else if slot.cuda {
                #[cfg(feature = "cuda")]
                cuda::sgd_update(slot, grad, &s)?;
            } else {
                sgd_tensor_update(slot, grad, &s)?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.set.state()
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        self.set.load_state(tensors, false)
    }

    fn steps_taken(&self) -> u64 {
        self.set.steps
    }
}

/// The fused SGD update of one parameter, run in place on its CPU storage.
struct SgdHostUpdate<'a> {
    s: SgdScalars,
    /// The momentum buffer does not exist yet: it becomes the gradient.
    first: bool,
    buf: Option<RefCell<&'a mut [f32]>>,
}

impl InplaceOp2 for SgdHostUpdate<'_> {
    fn name(&self) -> &'static str {
        "labpipe-sgd-update"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let p = f32_values_mut(s1, l1, "parameter")?;
        let g = f32_values(s2, l2, "gradient")?;
        let n = p.len();
        let c = SgdF32 {
            weight_decay: self.s.weight_decay.unwrap_or(0.0) as f32,
            momentum: self.s.momentum.unwrap_or(0.0) as f32,
            keep: self.s.keep as f32,
            neg_lr: self.s.neg_lr as f32,
        };
        let mut guard = self.buf.as_ref().map(RefCell::borrow_mut);
        let buf: &mut [f32] = match guard.as_deref_mut() {
            Some(b) => b,
            None => &mut [],
        };
        let momentum = self.s.momentum.is_some();
        if g.len() != n || (momentum && buf.len() != n) {
            bail!("internal: SGD update over slices of different lengths");
        }
        let wd = self.s.weight_decay.is_some();
        let (first, nesterov) = (self.first, self.s.nesterov);
        let kernel: SgdKernel = match (wd, momentum, first, nesterov) {
            (false, false, _, _) => sgd_kernel::<false, false, false, false>,
            (true, false, _, _) => sgd_kernel::<true, false, false, false>,
            (false, true, false, false) => sgd_kernel::<false, true, false, false>,
            (false, true, false, true) => sgd_kernel::<false, true, false, true>,
            (false, true, true, false) => sgd_kernel::<false, true, true, false>,
            (false, true, true, true) => sgd_kernel::<false, true, true, true>,
            (true, true, false, false) => sgd_kernel::<true, true, false, false>,
            (true, true, false, true) => sgd_kernel::<true, true, false, true>,
            (true, true, true, false) => sgd_kernel::<true, true, true, false>,
            (true, true, true, true) => sgd_kernel::<true, true, true, true>,
        };
        for_chunks(p, g, [buf, &mut [], &mut []], |p, g, [buf, _, _]| {
            kernel(p, g, buf, &c)
        });
        Ok(())
    }
}

/// [`SgdScalars`] rounded to f32 as PyTorch rounds Python scalars for an f32 tensor op.
struct SgdF32 {
    weight_decay: f32,
    momentum: f32,
    keep: f32,
    neg_lr: f32,
}

type SgdKernel = fn(&mut [f32], &[f32], &mut [f32], &SgdF32);

/// One fused SGD pass; each line mirrors one op of torch's `_single_tensor_sgd` and of
/// [`sgd_tensor_update`]. `FIRST`: the momentum buffer does not exist yet and becomes the gradient.
#[inline(never)]
fn sgd_kernel<const WD: bool, const MOMENTUM: bool, const FIRST: bool, const NESTEROV: bool>(
    p: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
    c: &SgdF32,
) {
    let n = p.len();
    let g = &g[..n];
    let buf = if MOMENTUM { &mut buf[..n] } else { buf };
    for i in 0..n {
        let mut gi = g[i];
        if WD {
            gi += affine(p[i], c.weight_decay, 0.0); // grad = grad.add(param, alpha=weight_decay)
        }
        if MOMENTUM {
            let b = if FIRST {
                gi // buf = torch.clone(grad).detach()
            } else {
                affine(buf[i], c.momentum, 0.0) + affine(gi, c.keep, 0.0) // buf.mul_(momentum).add_(grad, alpha=1-dampening)
            };
            buf[i] = b;
            gi = if NESTEROV {
                gi + affine(b, c.momentum, 0.0)
            } else {
                b
            }; // grad.add(buf, alpha=momentum)
        }
        p[i] += affine(gi, c.neg_lr, 0.0); // param.add_(grad, alpha=-lr)
    }
}

/// Elements per task of the parallel fused passes: large enough to amortise scheduling, small enough that
/// the bigger tensors (ResNet-18's 2.4 M-element convolutions) spread over every core.
const CHUNK: usize = 1 << 16;

/// Run `f` over matching chunks of a parameter, its gradient and up to three state buffers (each either as
/// long as the parameter or empty), in parallel for large tensors. Every element is computed the same way
/// whatever the split, so results do not depend on the number of threads.
fn for_chunks<F>(p: &mut [f32], g: &[f32], buffers: [&mut [f32]; 3], f: F)
where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; 3]) + Sync,
{
    let n = p.len();
    if n < 2 * CHUNK {
        f(p, g, buffers);
        return;
    }
    let [a, b, c] = buffers;
    fn split(s: &mut [f32], n: usize) -> Vec<&mut [f32]> {
        if s.is_empty() {
            (0..n.div_ceil(CHUNK)).map(|_| &mut [][..]).collect()
        } else {
            s.chunks_mut(CHUNK).collect()
        }
    }
    let tasks: Vec<_> = p
        .chunks_mut(CHUNK)
        .zip(g.chunks(CHUNK))
        .zip(split(a, n).into_iter().zip(split(b, n)).zip(split(c, n)))
        .collect();
    tasks
        .into_par_iter()
        .for_each(|((p, g), ((a, b), c))| f(p, g, [a, b, c]));
}

/// The SGD update of one parameter with tensor ops (any device, any float dtype).
fn sgd_tensor_update(slot: &mut Slot, grad: &Tensor, s: &SgdScalars) -> Result<()> {
    let p = slot.var.as_tensor().detach();
    let mut g = grad.detach().to_dtype(p.dtype())?;
    if let Some(wd) = s.weight_decay {
        g = (&g + p.affine(wd, 0.0)?)?;
    }
    if let Some(momentum) = s.momentum {
        let buf = match &slot.buffers[0] {
            None => g.copy()?,
            Some(b) => (b.tensor()?.affine(momentum, 0.0)? + g.affine(s.keep, 0.0)?)?,
        };
        g = if s.nesterov {
            (&g + buf.affine(momentum, 0.0)?)?
        } else {
            buf.clone()
        };
        slot.buffers[0] = Some(Buffer::Device(buf));
    }
    let new_p = (&p + g.affine(s.neg_lr, 0.0)?)?;
    slot.var.set(&new_p)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use candle_core::safetensors;

    use super::*;

    fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim")
    }

    #[derive(Deserialize)]
    struct Fixture {
        params: Vec<String>,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        case: String,
        config: OptimizerConfig,
        lrs: Vec<f64>,
    }

    /// The torch reference run of tests/fixtures/optim (made by scripts/fixtures/optim_fixtures.py).
    struct Reference {
        fixture: Fixture,
        tensors: HashMap<String, Tensor>,
    }

    impl Reference {
        fn load() -> Reference {
            let dir = fixture_dir();
            let json = std::fs::read_to_string(dir.join("optimizers.json")).expect("optimizers.json");
            let fixture = serde_json::from_str(&json).expect("optimizers.json parses");
            let tensors =
                safetensors::load(dir.join("optimizers.safetensors"), &Device::Cpu).expect("safetensors");
            Reference { fixture, tensors }
        }

        fn get(&self, key: &str) -> &Tensor {
            self.tensors
                .get(key)
                .unwrap_or_else(|| panic!("fixture has no `{key}`"))
        }

        fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
            self.fixture
                .params
                .iter()
                .map(|name| {
                    let var =
                        Var::from_tensor(&self.get(&format!("{prefix}.{name}")).copy().unwrap()).unwrap();
                    (name.clone(), var)
                })
                .collect()
        }

        /// L = sum_k sum((scale_k * p_k - target_k)^2), as in the fixture script.
        fn loss(&self, vars: &[(String, Var)]) -> Tensor {
            let mut total: Option<Tensor> = None;
            for (name, var) in vars {
                let a = self.get(&format!("scale.{name}"));
                let t = self.get(&format!("target.{name}"));
                let term = ((var.as_tensor() * a).unwrap() - t)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                total = Some(match total {
                    None => term,
                    Some(s) => (s + term).unwrap(),
                });
            }
            total.expect("at least one parameter")
        }

        /// One training step: loss, backward, update; returns the loss before the update.
        fn step(&self, vars: &[(String, Var)], opt: &mut dyn Optimizer, lr: f64) -> f64 {
            let loss = self.loss(vars);
            let grads = loss.backward().unwrap();
            opt.step(&grads, lr).unwrap();
            loss.to_scalar::<f32>().unwrap() as f64
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Largest |a - b| / max(1, |b|) over the elements.
    fn max_rel_err(actual: &Tensor, expected: &Tensor) -> f64 {
        assert_eq!(actual.dims(), expected.dims());
        values(actual)
            .iter()
            .zip(values(expected))
            .map(|(&a, b)| (a as f64 - b as f64).abs() / (b as f64).abs().max(1.0))
            .fold(0.0, f64::max)
    }

    fn run(
        reference: &Reference,
        case: &Case,
        kernel: UpdateKernel,
    ) -> (Vec<(String, Var)>, Box<dyn Optimizer>) {
        let vars = reference.vars("init");
        let opt = build_with(&case.config, vars.clone(), kernel).unwrap();
        (vars, opt)
    }

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

    #[test]
    fn continues_from_torch_state() {
        let reference = Reference::load();
        for case in &reference.fixture.cases {
            let vars = reference.vars(&format!("{}.step2", case.case));
            let mut opt = build(&case.config, vars.clone()).unwrap();
            let prefix = format!("{}.state2.", case.case);
            let mut state: HashMap<String, Tensor> = reference
                .tensors
                .iter()
                .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|k| (k.to_string(), t.clone())))
                .collect();
            state.insert("step".into(), Tensor::new(2i64, &Device::Cpu).unwrap());
            opt.load_state(&state).unwrap();
            reference.step(&vars, opt.as_mut(), case.lrs[2]);
            for (name, var) in &vars {
                let key = format!("{}.step3.{name}", case.case);
                let err = max_rel_err(var.as_tensor(), reference.get(&key));
                assert!(err < 1e-4, "{key}: error {err}");
            }
        }
    }

    fn bits(vars: &[(String, Var)]) -> Vec<Vec<u32>> {
        vars.iter()
            .map(|(_, v)| values(v.as_tensor()).iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    #[test]
    fn fused_and_tensor_paths_agree_bit_for_bit() {
        let reference = Reference::load();
        for case in &reference.fixture.cases {
            let (fused_vars, mut fused) = run(&reference, case, UpdateKernel::Auto);
            let (tensor_vars, mut tensor) = run(&reference, case, UpdateKernel::TensorOps);
            for &lr in &case.lrs {
                reference.step(&fused_vars, fused.as_mut(), lr);
                reference.step(&tensor_vars, tensor.as_mut(), lr);
                assert_eq!(bits(&fused_vars), bits(&tensor_vars), "{}", case.case);
            }
            let fused_state = fused.state().unwrap();
            let tensor_state = tensor.state().unwrap();
            assert_eq!(fused_state.len(), tensor_state.len());
            for ((ka, a), (kb, b)) in fused_state.iter().zip(&tensor_state) {
                assert_eq!(ka, kb);
                let (a, b) = (a.to_dtype(DType::F64).unwrap(), b.to_dtype(DType::F64).unwrap());
                let (a, b): (Vec<f64>, Vec<f64>) = (
                    a.flatten_all().unwrap().to_vec1().unwrap(),
                    b.flatten_all().unwrap().to_vec1().unwrap(),
                );
                assert_eq!(a, b, "{} {ka}", case.case);
            }
        }
    }

    #[test]
    fn save_load_continue_equals_an_uninterrupted_run() {
        let reference = Reference::load();
        let dir = tempfile::tempdir().unwrap();
        for kernel in [UpdateKernel::Auto, UpdateKernel::TensorOps] {
            for case in &reference.fixture.cases {
                let (vars, mut opt) = run(&reference, case, kernel);
                for &lr in &case.lrs {
                    reference.step(&vars, opt.as_mut(), lr);
                }

                let (first_vars, mut first) = run(&reference, case, kernel);
                reference.step(&first_vars, first.as_mut(), case.lrs[0]);
                // Through a real checkpoint file: weights and optimizer state.
                let path = dir.path().join(format!("{}.safetensors", case.case));
                let mut saved: HashMap<String, Tensor> = first.state().unwrap().into_iter().collect();
                for (name, var) in &first_vars {
                    saved.insert(format!("model.{name}"), var.as_tensor().clone());
                }
                safetensors::save(&saved, &path).unwrap();
                drop((first_vars, first));

                let loaded = safetensors::load(&path, &Device::Cpu).unwrap();
                let resumed_vars = reference.vars("init");
                for (name, var) in &resumed_vars {
                    var.set(&loaded[&format!("model.{name}")]).unwrap();
                }
                let state: HashMap<String, Tensor> = loaded
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("model."))
                    .collect();
                let mut resumed = build_with(&case.config, resumed_vars.clone(), kernel).unwrap();
                resumed.load_state(&state).unwrap();
                assert_eq!(resumed.steps_taken(), 1);
                for &lr in &case.lrs[1..] {
                    reference.step(&resumed_vars, resumed.as_mut(), lr);
                }
                assert_eq!(bits(&resumed_vars), bits(&vars), "{kernel:?} {}", case.case);
            }
        }
    }

    /// Tensors above the parallel threshold are split into chunks across threads; the result must still be
    /// the tensor-op result bit for bit, odd tail included.
    #[test]
    fn chunked_parallel_updates_agree_with_tensor_ops() {
        let n = 2 * CHUNK + 12_345; // not a multiple of CHUNK
        let mut rng = crate::rng::Rng::stream(7, "optim-chunks", 0);
        let mut random = |scale: f64| -> Tensor {
            let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
            Tensor::from_vec(v, n, &Device::Cpu).unwrap()
        };
        let (init, target) = (random(0.5), random(0.5));
        let mut adam = OptimizerConfig::new(OptimizerKind::Adam, 0.05);
        adam.amsgrad = Some(true);
        adam.weight_decay = Some(0.01);
        let mut sgd = OptimizerConfig::new(OptimizerKind::Sgd, 0.05);
        (sgd.momentum, sgd.nesterov, sgd.weight_decay) = (Some(0.9), Some(true), Some(0.01));
        for config in [adam, sgd, OptimizerConfig::new(OptimizerKind::AdamW, 0.05)] {
            let mut results = Vec::new();
            for kernel in [UpdateKernel::Auto, UpdateKernel::TensorOps] {
                let var = Var::from_tensor(&init).unwrap();
                let mut opt = build_with(&config, vec![("w".into(), var.clone())], kernel).unwrap();
                for _ in 0..3 {
                    let loss = (var.as_tensor() - &target)
                        .unwrap()
                        .sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap();
                    opt.step(&loss.backward().unwrap(), 0.05).unwrap();
                }
                results.push(bits(&[("w".into(), var)]));
            }
            assert_eq!(results[0], results[1], "{:?}", config.name);
            assert_ne!(
                results[0],
                bits(&[("w".into(), Var::from_tensor(&init).unwrap())])
            );
        }
    }

    fn tiny_vars() -> Vec<(String, Var)> {
        vec![
            (
                "a.weight".to_string(),
                Var::new(&[[1.0f32, -2.0], [0.5, 3.0]], &Device::Cpu).unwrap(),
            ),
            (
                "a.bias".to_string(),
                Var::new(&[0.25f32, -0.75], &Device::Cpu).unwrap(),
            ),
        ]
    }

    fn tiny_grads(vars: &[(String, Var)]) -> GradStore {
        let loss = vars
            .iter()
            .map(|(_, v)| v.as_tensor().sqr().unwrap().sum_all().unwrap());
        loss.reduce(|a, b| (a + b).unwrap()).unwrap().backward().unwrap()
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

    #[test]
    fn parameters_without_gradient_are_left_alone() {
        let vars = tiny_vars();
        let config = OptimizerConfig::new(OptimizerKind::AdamW, 0.1);
        let mut opt = build(&config, vars.clone()).unwrap();
        let grads = tiny_grads(&vars[..1]);
        let bias_before = values(vars[1].1.as_tensor());
        opt.step(&grads, 0.1).unwrap();
        assert_eq!(values(vars[1].1.as_tensor()), bias_before);
        let names: Vec<String> = opt.state().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            vec!["a.weight.step", "a.weight.exp_avg", "a.weight.exp_avg_sq", "step"]
        );
    }

    #[test]
    fn load_state_rejects_foreign_or_broken_state_and_changes_nothing() {
        let vars = tiny_vars();
        let adam = OptimizerConfig::new(OptimizerKind::Adam, 0.1);
        let mut sgd_config = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
        sgd_config.momentum = Some(0.9);
        let mut sgd = build(&sgd_config, vars.clone()).unwrap();
        sgd.step(&tiny_grads(&vars), 0.1).unwrap();
        let sgd_state: HashMap<String, Tensor> = sgd.state().unwrap().into_iter().collect();

        let mut opt = build(&adam, vars.clone()).unwrap();
        opt.step(&tiny_grads(&vars), 0.1).unwrap();
        let before = opt.state().unwrap();
        let err = opt.load_state(&sgd_state).unwrap_err().to_string();
        assert!(
            err.contains("momentum_buffer") && err.contains("another optimizer"),
            "{err}"
        );

        let mut good: HashMap<String, Tensor> = before.iter().cloned().collect();
        let mut wrong_shape = good.clone();
        wrong_shape.insert(
            "a.bias.exp_avg".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        let err = opt.load_state(&wrong_shape).unwrap_err().to_string();
        assert!(err.contains("a.bias.exp_avg") && err.contains("shape"), "{err}");

        good.remove("a.bias.exp_avg_sq");
        let err = opt.load_state(&good).unwrap_err().to_string();
        assert!(err.contains("incomplete") && err.contains("a.bias"), "{err}");

        let mut no_step: HashMap<String, Tensor> = before.iter().cloned().collect();
        no_step.remove("step");
        assert!(
            opt.load_state(&no_step)
                .unwrap_err()
                .to_string()
                .contains("`step`")
        );

        let after = opt.state().unwrap();
        assert_eq!(before.len(), after.len());
        for ((ka, a), (kb, b)) in before.iter().zip(&after) {
            assert_eq!(ka, kb);
            assert_eq!(values(a), values(b), "{ka}");
        }
    }

    #[test]
    fn state_is_a_snapshot() {
        let vars = tiny_vars();
        let mut opt = build(&OptimizerConfig::new(OptimizerKind::Adam, 0.1), vars.clone()).unwrap();
        opt.step(&tiny_grads(&vars), 0.1).unwrap();
        let snapshot = opt.state().unwrap();
        let copy: Vec<Vec<f32>> = snapshot.iter().map(|(_, t)| values(t)).collect();
        opt.step(&tiny_grads(&vars), 0.1).unwrap();
        let again: Vec<Vec<f32>> = snapshot.iter().map(|(_, t)| values(t)).collect();
        assert_eq!(copy, again);
    }

    #[test]
    fn f64_parameters_use_the_tensor_path() {
        let var = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
        let vars = vec![("w".to_string(), var.clone())];
        let mut opt = build(&OptimizerConfig::new(OptimizerKind::Adam, 0.1), vars.clone()).unwrap();
        opt.step(&tiny_grads(&vars), 0.1).unwrap();
        // The first Adam step moves every element by lr against the sign of its gradient.
        let w: Vec<f64> = var.as_tensor().to_vec1().unwrap();
        assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] + 1.9).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn duplicate_parameter_names_are_refused() {
        let mut vars = tiny_vars();
        vars[1].0 = vars[0].0.clone();
        let err = build(&OptimizerConfig::new(OptimizerKind::Sgd, 0.1), vars)
            .err()
            .expect("duplicate");
        assert!(err.to_string().contains("a.weight"), "{err}");
    }

    fn parse(yaml: &str) -> OptimizerConfig {
        serde_saphyr::from_str(yaml).expect("valid optimizer yaml")
    }

    #[test]
    fn validate_names_the_field_at_fault() {
        let cases = [
            (
                "{name: adam, lr: 0.001, nesterov: true}",
                "nesterov",
                "does not apply to adam",
            ),
            (
                "{name: adamw, lr: 0.001, momentum: 0.9}",
                "momentum",
                "option of: sgd",
            ),
            (
                "{name: sgd, lr: 0.1, betas: [0.9, 0.99]}",
                "betas",
                "option of: adam, adamw",
            ),
            ("{name: adam, lr: 0.0}", "lr", "> 0"),
            ("{name: adam, lr: -1.0}", "lr", "> 0"),
            ("{name: adam, lr: 0.001, betas: [0.9, 1.0]}", "betas", "[0, 1)"),
            ("{name: adam, lr: 0.001, eps: -1.0}", "eps", ">= 0"),
            (
                "{name: sgd, lr: 0.1, nesterov: true}",
                "nesterov",
                "needs `momentum`",
            ),
            (
                "{name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true}",
                "nesterov",
                "dampening",
            ),
            (
                "{name: sgd, lr: 0.1, dampening: 0.5}",
                "dampening",
                "without `momentum`",
            ),
            ("{name: sgd, lr: 0.1, weight_decay: -0.1}", "weight_decay", ">= 0"),
        ];
        for (yaml, field, words) in cases {
            let config = parse(yaml);
            let problems = config.problems();
            assert!(problems.iter().any(|p| p.field == field), "{yaml}: {problems:?}");
            let err = config.validate().expect_err(yaml);
            assert!(
                err.contains(&format!("`{field}`")) && err.contains(words),
                "{yaml}: {err}"
            );
            assert!(build(&config, tiny_vars()).is_err(), "{yaml}");
        }
        for ok in [
            "{name: adam, lr: 0.001}",
            "{name: adam, lr: 0.001, betas: [0.8, 0.99], eps: 1.0e-6, weight_decay: 0.0001, amsgrad: true}",
            "{name: adamw, lr: 0.001, weight_decay: 0.05}",
            "{name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0005}",
            "{name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.1}",
        ] {
            assert_eq!(parse(ok).validate(), Ok(()), "{ok}");
        }
    }

    #[test]
    fn unknown_fields_and_names_are_rejected_with_a_location() {
        let err = serde_saphyr::from_str::<OptimizerConfig>("name: adam\nlr: 0.001\nmomentun: 0.9\n")
            .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.contains("momentun") && text.contains('3'), "{text}");
        let err = serde_saphyr::from_str::<OptimizerConfig>("name: adamax\nlr: 0.001\n").expect_err("name");
        assert!(err.to_string().contains("adamax"), "{err}");
    }

    #[test]
    fn resolved_writes_torch_defaults() {
        let r = parse("{name: adamw, lr: 0.001}").resolved();
        assert_eq!(r.weight_decay, Some(0.01));
        assert_eq!(r.betas, Some([0.9, 0.999]));
        assert_eq!(r.eps, Some(1e-8));
        assert_eq!(r.momentum, None);
        assert_eq!(r.resolved(), r);
        assert_eq!(r.validate(), Ok(()));
        let r = parse("{name: sgd, lr: 0.1}").resolved();
        assert_eq!(
            (r.momentum, r.dampening, r.nesterov, r.weight_decay),
            (Some(0.0), Some(0.0), Some(false), Some(0.0))
        );
        assert_eq!(r.validate(), Ok(()));
    }
}

#[cfg(test)]
mod bench {
    use std::time::Instant;

    use super::*;
    use crate::model::builtins::{Stem, resnet18};
    use crate::rng::Rng;

    /// Median seconds of an optimizer step over ResNet-18's 11.2 M parameters, fused vs tensor ops.
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
            for kernel in [UpdateKernel::Auto, UpdateKernel::TensorOps] {
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
