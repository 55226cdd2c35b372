//! The in-place optimizer updates on CUDA: one kernel launch per parameter (src/cuda/kernels.cu) instead of
//! about a dozen Candle ops, each with its own allocation. The arithmetic is the CPU kernels' line by line.

use candle_core::{CpuStorage, CudaStorage, InplaceOp2, Layout, Result, Tensor, bail};

use crate::cuda::{self, AdamArgs, Locked, SgdArgs};

/// Adam/AdamW on one parameter; `m`, `v` (and `vmax`) are its state tensors, written in place.
pub(super) struct AdamCuda<'a> {
    pub(super) args: AdamArgs,
    pub(super) m: &'a Tensor,
    pub(super) v: &'a Tensor,
    pub(super) vmax: Option<&'a Tensor>,
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
pub(super) struct SgdCuda<'a> {
    pub(super) args: SgdArgs,
    pub(super) buf: Option<&'a Tensor>,
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
