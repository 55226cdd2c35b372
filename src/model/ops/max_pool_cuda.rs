//! The CUDA path of [`super::max_pool2d`]: one kernel records each window's maximum and argmax, one routes the
//! gradient back through the argmax (src/cuda/kernels.cu), instead of Candle's k² strided gathers.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

use crate::cuda::{self, PoolGeometry};
use crate::model::decl::Window;

/// Max-pool `x` `[N, C, H, W]` (f32, CUDA) with the CPU op's exact semantics.
pub(super) fn max_pool2d_cuda(x: &Tensor, window: Window) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool2dCuda {
        window,
        argmax: OnceLock::new(),
    })
}

struct MaxPool2dCuda {
    window: Window,
    /// Per output element, the flat index in its input plane of the element it took (a u32 tensor).
    argmax: OnceLock<Tensor>,
}

impl MaxPool2dCuda {
    fn geometry(&self, dims: &[usize]) -> Result<PoolGeometry> {
        let &[n, c, h, w] = dims else {
            bail!("max_pool2d: expected an [N, C, H, W] input, got {dims:?}")
        };
        Ok(PoolGeometry {
            planes: n * c,
            h,
            w,
            oh: self.window.out_len(h),
            ow: self.window.out_len(w),
            kernel: self.window.kernel,
            stride: self.window.stride,
            padding: self.window.padding,
        })
    }
}

impl CustomOp1 for MaxPool2dCuda {
    fn name(&self) -> &'static str {
        "labpipe-max-pool2d-cuda"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("internal: the CUDA max-pool op was given a CPU tensor")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = &storage.device;
        let g = self.geometry(layout.dims())?;
        let x = cuda::view(storage, layout, "max_pool2d input")?;
        let (y, argmax) = cuda::max_pool_forward(dev, &x, g)?;
        let shape = Shape::from((layout.dims()[0], layout.dims()[1], g.oh, g.ow));
        if self.argmax.set(cuda::tensor(argmax, dev, shape.clone())).is_err() {
            bail!("max_pool2d: an op instance ran its forward pass twice")
        }
        Ok((cuda::storage(y, dev), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let Some(argmax) = self.argmax.get() else {
            bail!("max_pool2d: backward called before the forward pass")
        };
        let g = self.geometry(arg.dims())?;
        let dev = cuda::device_of(arg)?;
        let grad = grad_res.contiguous()?;
        let dx = {
            let gl = cuda::Locked::new(&grad, "max_pool2d grad");
            let (storage, layout) = argmax.storage_and_layout();
            let candle_core::Storage::Cuda(s) = &*storage else {
                bail!("internal: max_pool2d argmax is not on the GPU")
            };
            let a = s.as_cuda_slice::<u32>()?.slice(layout.start_offset()..);
            cuda::max_pool_backward(&dev, &gl.view()?, &a, g)?
        };
        Ok(Some(cuda::tensor(dx, &dev, arg.shape())))
    }
}
