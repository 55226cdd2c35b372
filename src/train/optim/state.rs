//! The parameters of one optimizer and their per-parameter state: which path updates each parameter, and
//! the state's export and import for an exact resume.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Device, Result, Tensor, Var, backprop::GradStore, bail};

use super::UpdateKernel;

/// A per-parameter state tensor, kept where its update runs.
#[derive(Debug, Clone)]
pub(super) enum Buffer {
    /// Contiguous f32 values, updated in place by the fused CPU pass.
    Host(Vec<f32>),
    /// A tensor on the parameter's device and dtype, replaced by each update.
    Device(Tensor),
}

impl Buffer {
    pub(super) fn zeros(slot_host: bool, var: &Var) -> Result<Buffer> {
        Ok(if slot_host {
            Buffer::Host(vec![0.0; var.elem_count()])
        } else {
            Buffer::Device(var.zeros_like()?)
        })
    }

    pub(super) fn host_mut(&mut self) -> Result<&mut [f32]> {
        match self {
            Buffer::Host(v) => Ok(v),
            Buffer::Device(_) => bail!("internal: a device buffer reached the fused CPU update"),
        }
    }

    pub(super) fn tensor(&self) -> Result<&Tensor> {
        match self {
            Buffer::Device(t) => Ok(t),
            Buffer::Host(_) => bail!("internal: a host buffer reached the tensor-op update"),
        }
    }
}

/// One parameter with its state.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) var: Var,
    /// Updated by the fused CPU pass rather than tensor ops.
    pub(super) host: bool,
    /// Updated in place by labpipe's CUDA kernel rather than tensor ops (its buffers are device tensors
    /// written in place, so `state` copies them).
    pub(super) cuda: bool,
    /// Updates applied to this parameter (PyTorch's per-parameter `state["step"]`).
    pub(super) step: u64,
    /// Indexed like the owning optimizer's buffer names; `None` until first needed, as in PyTorch.
    pub(super) buffers: Vec<Option<Buffer>>,
}

/// The parameters of one optimizer and the bookkeeping shared by all of them: state export and import.
pub(super) struct ParamSet {
    pub(super) slots: Vec<Slot>,
    pub(super) steps: u64,
    pub(super) buffer_names: Vec<&'static str>,
    /// Whether the fused CPU pass may update every parameter in one operation.
    multi: bool,
    /// Whether `<param>.step` is part of the state (Adam) or not (SGD).
    per_param_step: bool,
}

impl ParamSet {
    pub(super) fn new(
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
            let host = kernel != UpdateKernel::TensorOps
                && var.device().is_cpu()
                && var.dtype() == DType::F32
                && var.layout().is_contiguous();
            let cuda = kernel != UpdateKernel::TensorOps && cuda_fused(&var);
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
            multi: kernel == UpdateKernel::Auto,
            per_param_step,
        })
    }

    /// Whether one multi-tensor operation updates every parameter with a gradient: all of them take the
    /// fused CPU pass (and there is at least one).
    pub(super) fn multi_host(&self, grads: &GradStore) -> bool {
        let mut with_grad = self
            .slots
            .iter()
            .filter(|s| grads.get(s.var.as_tensor()).is_some())
            .peekable();
        self.multi && with_grad.peek().is_some() && with_grad.all(|s| s.host)
    }

    pub(super) fn state(&self) -> Result<Vec<(String, Tensor)>> {
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
    pub(super) fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        all_or_nothing: bool,
    ) -> Result<()> {
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

/// A gradient ready for the fused pass: same shape as the parameter, contiguous, f32.
pub(super) fn host_grad(grad: &Tensor, slot: &Slot) -> Result<Tensor> {
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

#[cfg(test)]
mod tests {
    use candle_core::safetensors;

    use super::super::test_support::{Reference, bits, max_rel_err, run, tiny_grads, tiny_vars, values};
    use super::super::{OptimizerConfig, OptimizerKind, build, build_with};
    use super::*;

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
}
