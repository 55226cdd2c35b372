//! Adam and AdamW.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{Result, Tensor, Var, backprop::GradStore, bail, inplace_op_multi};

#[cfg(feature = "cuda")]
use super::cuda;
use super::fused_cpu::{AdamHostMulti, AdamHostUpdate, AdamPart};
use super::scalars::AdamScalars;
use super::state::{Buffer, ParamSet, Slot, host_grad};
use super::{Optimizer, OptimizerConfig, OptimizerKind, UpdateKernel, check_lr, check_momentum};

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

impl Adam {
    pub(super) fn new(
        config: &OptimizerConfig,
        params: Vec<(String, Var)>,
        kernel: UpdateKernel,
    ) -> Result<Self> {
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

impl Adam {
    /// Every parameter with a gradient updated by one fused CPU operation (the same arithmetic as the
    /// per-parameter pass, so the same bits).
    fn step_multi_host(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let scalars: Vec<Option<AdamScalars>> = self
            .set
            .slots
            .iter()
            .map(|slot| {
                grads
                    .get(slot.var.as_tensor())
                    .map(|_| self.scalars(lr, slot.step + 1))
            })
            .collect();
        let amsgrad = self.amsgrad;
        let (mut targets, mut sources, mut parts) = (Vec::new(), Vec::new(), Vec::new());
        for (slot, s) in self.set.slots.iter_mut().zip(scalars) {
            let (Some(s), Some(grad)) = (s, grads.get(slot.var.as_tensor())) else {
                continue;
            };
            slot.step += 1;
            for b in slot.buffers.iter_mut() {
                if b.is_none() {
                    *b = Some(Buffer::zeros(true, &slot.var)?);
                }
            }
            sources.push(host_grad(grad, slot)?);
            let Slot { var, buffers, .. } = slot;
            let [Some(m), Some(v), rest @ ..] = buffers.as_mut_slice() else {
                bail!("internal: Adam buffers were not initialised");
            };
            let max_exp_avg_sq = match rest.first_mut() {
                Some(Some(b)) if amsgrad => Some(b.host_mut()?),
                _ => None,
            };
            parts.push(AdamPart {
                s,
                exp_avg: m.host_mut()?,
                exp_avg_sq: v.host_mut()?,
                max_exp_avg_sq,
            });
            targets.push(var.as_tensor());
        }
        let sources: Vec<&Tensor> = sources.iter().collect();
        let op = AdamHostMulti {
            parts: RefCell::new(parts),
        };
        inplace_op_multi(&targets, &sources, &op)
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
        if self.set.multi_host(grads) {
            return self.step_multi_host(grads, lr);
        }
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

/// A 0-d tensor holding `v` in `like`'s dtype and device, for exact division by a scalar (candle's
/// `tensor / f64` multiplies by the reciprocal, PyTorch divides).
fn scalar_like(v: f64, like: &Tensor) -> Result<Tensor> {
    Tensor::new(v, like.device())?.to_dtype(like.dtype())
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
