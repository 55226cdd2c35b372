//! The CUDA path of the fused training BatchNorm (+ReLU, +residual add+ReLU): statistics in one kernel,
//! normalization and epilogue in a second, the backward in two more (src/cuda/kernels.cu). The math and the
//! op's contract are those of batch_norm.rs's CPU op.

use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::bn_parts::{Epilogue, ncl};
use crate::cuda::{self, Locked, Ncl};

fn code(e: Epilogue) -> cuda::EpilogueCode {
    match e {
        Epilogue::None => 0,
        Epilogue::Relu => 1,
        Epilogue::AddRelu => 2,
    }
}

/// (y, batch mean, biased batch variance) as [`super::batch_norm`] returns them, computed on the GPU.
pub(super) fn batch_norm_cuda(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    eps: f64,
    epilogue: Epilogue,
) -> Result<(Tensor, Tensor, Tensor)> {
    let x = x.contiguous()?;
    let (n, c, l) = ncl(x.dims());
    let sizes = Ncl { n, c, l };
    let dev = cuda::device_of(&x)?;
    let stats = {
        let xl = Locked::new(&x, "batch_norm input");
        cuda::tensor(cuda::bn_stats(&dev, &xl.view()?, sizes, eps)?, &dev, (3, c))
    };
    let op = BatchNormCuda {
        epilogue,
        sizes,
        stats: stats.clone(),
    };
    let y = match (epilogue, residual) {
        // A custom op takes at most three tensors: weight and bias travel stacked as [2, C].
        (Epilogue::AddRelu, Some(r)) => {
            x.apply_op3(&Tensor::stack(&[weight, bias], 0)?, &r.contiguous()?, op)?
        }
        (Epilogue::AddRelu, None) => bail!("batch_norm_add_relu: no residual given"),
        _ => x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?,
    };
    Ok((y, stats.get(0)?, stats.get(1)?))
}

/// The op's tensors are (x, weight, bias), or (x, [weight; bias], residual) for `AddRelu`; `stats` is the
/// `[3, C]` tensor of `cuda::bn_stats`.
struct BatchNormCuda {
    epilogue: Epilogue,
    sizes: Ncl,
    stats: Tensor,
}

impl CustomOp3 for BatchNormCuda {
    fn name(&self) -> &'static str {
        "labpipe-batch-norm-cuda"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("internal: the CUDA BatchNorm op was given CPU tensors")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = &xs.device;
        let x = cuda::view(xs, xl, "batch_norm input")?;
        let second = cuda::view(s2, l2, "batch_norm weight")?;
        let third = cuda::view(s3, l3, "batch_norm bias or residual")?;
        let stats = Locked::new(&self.stats, "batch_norm statistics");
        let stats = stats.view()?;
        let c = self.sizes.c;
        let y = if self.epilogue == Epilogue::AddRelu {
            let (w, b) = (second.slice(..c), second.slice(c..2 * c));
            cuda::bn_apply(dev, &x, &w, &b, &stats, Some(&third), self.sizes, 2)?
        } else {
            cuda::bn_apply(
                dev,
                &x,
                &second,
                &third,
                &stats,
                None,
                self.sizes,
                code(self.epilogue),
            )?
        };
        Ok((cuda::storage(y, dev), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        second: &Tensor,
        _third: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dev = cuda::device_of(x)?;
        let c = self.sizes.c;
        let (dx, dres, sums) = {
            let (xl, gl, yl) = (
                Locked::new(x, "batch_norm input"),
                Locked::new(&grad, "batch_norm grad"),
                Locked::new(res, "batch_norm output"),
            );
            let (sl, wl) = (
                Locked::new(&self.stats, "batch_norm statistics"),
                Locked::new(second, "batch_norm weight"),
            );
            let w = wl.view()?;
            let w = w.slice(..c);
            cuda::bn_backward(
                &dev,
                &xl.view()?,
                &gl.view()?,
                &yl.view()?,
                &sl.view()?,
                &w,
                self.sizes,
                code(self.epilogue),
            )?
        };
        let dx = Some(cuda::tensor(dx, &dev, x.shape()));
        // sums = [dweight; dbias]: exactly the stacked [weight; bias] operand's gradient for AddRelu.
        let sums = cuda::tensor(sums, &dev, (2, c));
        if self.epilogue == Epilogue::AddRelu {
            let dres = dres.map(|d| cuda::tensor(d, &dev, x.shape()));
            Ok((dx, Some(sums), dres))
        } else {
            Ok((dx, Some(sums.get(0)?), Some(sums.get(1)?)))
        }
    }
}
