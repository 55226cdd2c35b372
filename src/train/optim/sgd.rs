//! SGD with optional momentum, dampening and Nesterov momentum.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{Result, Tensor, Var, backprop::GradStore, bail, inplace_op_multi};

#[cfg(feature = "cuda")]
use super::cuda;
use super::fused_cpu::{SgdHostMulti, SgdHostUpdate, SgdPart};
use super::scalars::SgdScalars;
use super::state::{Buffer, ParamSet, Slot, host_grad};
use super::{Optimizer, OptimizerConfig, UpdateKernel, check_lr, check_momentum};

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
    pub(super) fn new(
        config: &OptimizerConfig,
        params: Vec<(String, Var)>,
        kernel: UpdateKernel,
    ) -> Result<Self> {
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

impl Sgd {
    /// Every parameter with a gradient updated by one fused CPU operation (the same arithmetic as the
    /// per-parameter pass, so the same bits).
    fn step_multi_host(&mut self, grads: &GradStore, s: SgdScalars) -> Result<()> {
        let (mut targets, mut sources, mut parts) = (Vec::new(), Vec::new(), Vec::new());
        for slot in self.set.slots.iter_mut() {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            slot.step += 1;
            sources.push(host_grad(grad, slot)?);
            let first = s.momentum.is_some() && slot.buffers[0].is_none();
            let Slot { var, buffers, .. } = slot;
            let n = var.elem_count();
            let buf = match buffers.first_mut() {
                Some(b) => Some(b.get_or_insert_with(|| Buffer::Host(vec![0.0; n])).host_mut()?),
                None => None,
            };
            parts.push(SgdPart { first, buf });
            targets.push(var.as_tensor());
        }
        let sources: Vec<&Tensor> = sources.iter().collect();
        let op = SgdHostMulti {
            s,
            parts: RefCell::new(parts),
        };
        inplace_op_multi(&targets, &sources, &op)
    }
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
        if self.set.multi_host(grads) {
            return self.step_multi_host(grads, s);
        }
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
