//! The in-place optimizer updates on CUDA: one kernel launch per parameter (src/cuda/kernels.cu) instead of
//! about a dozen Candle ops, each with its own allocation. The arithmetic is the CPU kernels' line by line.

use candle_core::{CpuStorage, CudaStorage, InplaceOp2, Layout, Result, Tensor, bail};

use super::scalars::{AdamF32, AdamScalars, SgdScalars};
use super::state::{Buffer, Slot, host_grad};
use crate::cuda::{self, AdamArgs, Locked, SgdArgs};

/// The Adam update of one parameter by labpipe's CUDA kernel, in place (buffers already allocated).
pub(super) fn adam_update(slot: &Slot, grad: &Tensor, s: &AdamScalars) -> Result<()> {
    let grad = host_grad(grad, slot)?;
    let c = AdamF32::from(s);
    let args = AdamArgs {
        decay: c.decay,
        l2: c.l2,
        w1: c.w1,
        beta2: c.beta2,
        w2: c.w2,
        bc2_sqrt: c.bc2_sqrt,
        eps: c.eps,
        neg_step_size: c.neg_step_size,
    };
    let buffer = |i: usize| -> Result<Option<&Tensor>> {
        slot.buffers
            .get(i)
            .and_then(Option::as_ref)
            .map(Buffer::tensor)
            .transpose()
    };
    let (Some(m), Some(v)) = (buffer(0)?, buffer(1)?) else {
        bail!("internal: Adam buffers were not initialised");
    };
    let op = AdamCuda {
        args,
        m,
        v,
        vmax: buffer(2)?,
    };
    slot.var.as_tensor().inplace_op2(&grad, &op)
}

/// The SGD update of one parameter by labpipe's CUDA kernel, in place.
pub(super) fn sgd_update(slot: &mut Slot, grad: &Tensor, s: &SgdScalars) -> Result<()> {
    let grad = host_grad(grad, slot)?;
    let first = s.momentum.is_some() && slot.buffers.first().is_some_and(Option::is_none);
    if first {
        slot.buffers[0] = Some(Buffer::Device(slot.var.zeros_like()?));
    }
    let buf = match slot.buffers.first() {
        Some(Some(b)) if s.momentum.is_some() => Some(b.tensor()?),
        _ => None,
    };
    let args = SgdArgs {
        weight_decay: s.weight_decay.map(|x| x as f32),
        momentum: s.momentum.map(|x| x as f32),
        keep: s.keep as f32,
        nesterov: s.nesterov,
        neg_lr: s.neg_lr as f32,
        first,
    };
    let op = SgdCuda { args, buf };
    slot.var.as_tensor().inplace_op2(&grad, &op)
}

/// Adam/AdamW on one parameter; `m`, `v` (and `vmax`) are its state tensors, written in place.
struct AdamCuda<'a> {
    args: AdamArgs,
    m: &'a Tensor,
    v: &'a Tensor,
    vmax: Option<&'a Tensor>,
}

impl InplaceOp2 for AdamCuda<'_> {
    fn name(&self) -> &'static str {
        "labpipe-adam-update-cuda"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        bail!("internal: the CUDA Adam update was given CPU tensors")
    }

    fn cuda_fwd(&self, s1: &mut CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<()> {
        let dev = s1.device.clone();
        let p = cuda::view(s1, l1, "parameter")?;
        let g = cuda::view(s2, l2, "gradient")?;
        let (m, v) = (Locked::new(self.m, "exp_avg"), Locked::new(self.v, "exp_avg_sq"));
        let vmax = self.vmax.map(|t| Locked::new(t, "max_exp_avg_sq"));
        let vmax_view = vmax.as_ref().map(Locked::view).transpose()?;
        cuda::adam_update(
            &dev,
            &p,
            &g,
            &m.view()?,
            &v.view()?,
            vmax_view.as_ref(),
            self.args,
        )
    }
}

/// SGD on one parameter; `buf` is its momentum buffer (when momentum is on), written in place.
struct SgdCuda<'a> {
    args: SgdArgs,
    buf: Option<&'a Tensor>,
}

impl InplaceOp2 for SgdCuda<'_> {
    fn name(&self) -> &'static str {
        "labpipe-sgd-update-cuda"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        bail!("internal: the CUDA SGD update was given CPU tensors")
    }

    fn cuda_fwd(&self, s1: &mut CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<()> {
        let dev = s1.device.clone();
        let p = cuda::view(s1, l1, "parameter")?;
        let g = cuda::view(s2, l2, "gradient")?;
        let buf = self.buf.map(|t| Locked::new(t, "momentum_buffer"));
        let buf_view = buf.as_ref().map(Locked::view).transpose()?;
        cuda::sgd_update(&dev, &p, &g, buf_view.as_ref(), self.args)
    }
}
