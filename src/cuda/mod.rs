//! labpipe's own CUDA kernels (kernels.cu, compiled to PTX by build.rs with the `cuda` feature) and typed
//! launchers for them: the GPU halves of the fused ops in `model::ops` and of the optimizer update.
//!
//! Candle runs each tensor op as its own kernel with its own allocation and launch (~10 µs of host time per
//! op on an H200); a training step of ResNet-18 composed from Candle ops is thousands of them. These kernels
//! do a BatchNorm, a max-pool or a parameter update in one to three launches.

use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, LaunchArgs, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Device, Layout, Result, Shape, Storage, StorageRef, Tensor, bail};

/// The PTX of kernels.cu, loaded once per device by Candle's module cache.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/labpipe_kernels.ptx"));
/// The name Candle caches the loaded module under.
const MODULE: &str = "labpipe";
/// Threads per block; the reductions assume a multiple of 32 and at most 1024.
const BLOCK: u32 = 256;

/// Whether the CUDA kernels apply: an f32 tensor on a CUDA device.
pub(crate) fn is_cuda_f32(t: &Tensor) -> bool {
    t.device().is_cuda() && t.dtype() == DType::F32
}

/// The CUDA device `t` lives on.
pub(crate) fn device_of(t: &Tensor) -> Result<CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d.clone()),
        other => bail!("expected a CUDA tensor, got one on {:?}", other.location()),
    }
}

/// A read lock on a contiguous f32 CUDA tensor's storage.
pub(crate) struct Locked<'a> {
    storage: StorageRef<'a>,
    layout: &'a Layout,
    what: &'static str,
}

impl<'a> Locked<'a> {
    /// Lock `t` (which must be contiguous; call `.contiguous()` first where it may not be).
    pub(crate) fn new(t: &'a Tensor, what: &'static str) -> Self {
        let (storage, layout) = t.storage_and_layout();
        Self {
            storage,
            layout,
            what,
        }
    }

    /// The tensor's elements on the device.
    pub(crate) fn view(&self) -> Result<CudaView<'_, f32>> {
        match &*self.storage {
            Storage::Cuda(s) => view(s, self.layout, self.what),
            _ => bail!("{}: expected a CUDA tensor", self.what),
        }
    }
}

/// The contiguous f32 region `l` describes in `s`, or an error naming `what`.
pub(crate) fn view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!(
            "{what}: expected a contiguous tensor, got strides {:?}",
            l.stride()
        )
    };
    Ok(s.as_cuda_slice::<f32>()?.slice(start..end))
}

/// A fresh tensor (no gradient history) owning `slice`.
pub(crate) fn tensor<T: candle_core::cuda_backend::CudaDType>(
    slice: CudaSlice<T>,
    dev: &CudaDevice,
    shape: impl Into<Shape>,
) -> Tensor {
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
    Tensor::from_storage(storage, shape, BackpropOp::none(), false)
}

/// Wrap `slice` as the storage a custom op's `cuda_fwd` returns.
pub(crate) fn storage(slice: CudaSlice<f32>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

/// A grid-stride launch over `total` elements (capped: each thread loops).
fn elementwise(total: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((total.div_ceil(BLOCK as usize)).clamp(1, 1 << 16) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per channel.
fn per_channel(c: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (c as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A kernel of kernels.cu, loaded on first use.
struct Kernel {
    func: CudaFunction,
    stream: std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
}

impl Kernel {
    fn builder(&self) -> LaunchArgs<'_> {
        self.stream.launch_builder(&self.func)
    }
}

fn kernel(dev: &CudaDevice, name: &str) -> Result<Kernel> {
    let func = dev
        .get_or_load_custom_func(name, MODULE, PTX)?
        .into_cuda_function();
    Ok(Kernel {
        func,
        stream: dev.cuda_stream(),
    })
}

/// `[N, C, L]` sizes as the kernels take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ncl {
    pub n: usize,
    pub c: usize,
    pub l: usize,
}

impl Ncl {
    fn total(&self) -> usize {
        self.n * self.c * self.l
    }
}

/// Batch statistics `[mean; biased var; 1/sqrt(var + eps)]`, `3·C` values.
pub(crate) fn bn_stats(dev: &CudaDevice, x: &CudaView<f32>, s: Ncl, eps: f64) -> Result<CudaSlice<f32>> {
    let f = kernel(dev, "lp_bn_stats")?;
    // SAFETY: every element is written by the kernel.
    let out = unsafe { dev.alloc::<f32>(3 * s.c)? };
    let (n, c, l) = (s.n as i32, s.c as i32, s.l as i64);
    let mut b = f.builder();
    b.arg(x).arg(&n).arg(&c).arg(&l).arg(&eps).arg(&out);
    // SAFETY: the argument list matches lp_bn_stats's signature.
    unsafe { b.launch(per_channel(s.c)) }.w()?;
    Ok(out)
}

/// What follows the normalization: 0 nothing, 1 ReLU, 2 residual add + ReLU (kernels.cu's `epilogue`).
pub(crate) type EpilogueCode = i32;

/// `y = epilogue(x·scale + shift)` per channel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_apply(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    w: &CudaView<f32>,
    bias: &CudaView<f32>,
    stats: &CudaView<f32>,
    residual: Option<&CudaView<f32>>,
    s: Ncl,
    epilogue: EpilogueCode,
) -> Result<CudaSlice<f32>> {
    let f = kernel(dev, "lp_bn_apply")?;
    let total = s.total();
    // SAFETY: every element is written by the kernel.
    let y = unsafe { dev.alloc::<f32>(total)? };
    let (c, l, t) = (s.c as i32, s.l as i64, total as i64);
    let mut b = f.builder();
    // Without a residual the kernel never reads that pointer; `x` stands in.
    b.arg(x).arg(w).arg(bias).arg(stats).arg(residual.unwrap_or(x));
    b.arg(&y).arg(&c).arg(&l).arg(&t).arg(&epilogue);
    // SAFETY: the argument list matches lp_bn_apply's signature.
    unsafe { b.launch(elementwise(total)) }.w()?;
    Ok(y)
}

/// The backward pass: (dx, the residual's gradient if `epilogue` is 2, `[dweight; dbias]` as `2·C` values).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn bn_backward(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    grad: &CudaView<f32>,
    y: &CudaView<f32>,
    stats: &CudaView<f32>,
    w: &CudaView<f32>,
    s: Ncl,
    epilogue: EpilogueCode,
) -> Result<(CudaSlice<f32>, Option<CudaSlice<f32>>, CudaSlice<f32>)> {
    let total = s.total();
    let (n, c, l, t) = (s.n as i32, s.c as i32, s.l as i64, total as i64);
    // SAFETY: every element of each buffer is written by the kernels below.
    let sums = unsafe { dev.alloc::<f32>(2 * s.c)? };
    let dx = unsafe { dev.alloc::<f32>(total)? };
    let dres = if epilogue == 2 {
        Some(unsafe { dev.alloc::<f32>(total)? })
    } else {
        None
    };
    let reduce = kernel(dev, "lp_bn_bwd_reduce")?;
    let mut b = reduce.builder();
    b.arg(x)
        .arg(grad)
        .arg(y)
        .arg(stats)
        .arg(&n)
        .arg(&c)
        .arg(&l)
        .arg(&epilogue)
        .arg(&sums);
    // SAFETY: the argument list matches lp_bn_bwd_reduce's signature.
    unsafe { b.launch(per_channel(s.c)) }.w()?;
    let apply = kernel(dev, "lp_bn_bwd_apply")?;
    let mut b = apply.builder();
    b.arg(x).arg(grad).arg(y).arg(stats).arg(w).arg(&sums).arg(&dx);
    // Without a residual the kernel never writes that pointer; `dx` stands in.
    b.arg(dres.as_ref().unwrap_or(&dx));
    b.arg(&n).arg(&c).arg(&l).arg(&t).arg(&epilogue);
    // SAFETY: the argument list matches lp_bn_bwd_apply's signature.
    unsafe { b.launch(elementwise(total)) }.w()?;
    Ok((dx, dres, sums))
}

/// A max-pool's geometry: `planes` = N·C input planes of `h`×`w`, output `oh`×`ow`, square window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PoolGeometry {
    fn args(&self) -> (i64, [i32; 7]) {
        let g = [
            self.h,
            self.w,
            self.oh,
            self.ow,
            self.kernel,
            self.stride,
            self.padding,
        ]
        .map(|v| v as i32);
        (self.planes as i64, g)
    }
}

/// Max-pool forward: the output and, per output element, the flat index in its input plane it took.
pub(crate) fn max_pool_forward(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    g: PoolGeometry,
) -> Result<(CudaSlice<f32>, CudaSlice<u32>)> {
    let total = g.planes * g.oh * g.ow;
    // SAFETY: every element is written by the kernel.
    let y = unsafe { dev.alloc::<f32>(total)? };
    let argmax = unsafe { dev.alloc::<u32>(total)? };
    let f = kernel(dev, "lp_max_pool_fwd")?;
    let (planes, [h, w, oh, ow, k, s, p]) = g.args();
    let mut b = f.builder();
    b.arg(x).arg(&y).arg(&argmax).arg(&planes);
    b.arg(&h).arg(&w).arg(&oh).arg(&ow).arg(&k).arg(&s).arg(&p);
    // SAFETY: the argument list matches lp_max_pool_fwd's signature.
    unsafe { b.launch(elementwise(total)) }.w()?;
    Ok((y, argmax))
}

/// Max-pool backward: routes each output gradient to the input element its window took.
pub(crate) fn max_pool_backward(
    dev: &CudaDevice,
    grad: &CudaView<f32>,
    argmax: &CudaView<u32>,
    g: PoolGeometry,
) -> Result<CudaSlice<f32>> {
    let total = g.planes * g.h * g.w;
    // SAFETY: every element is written by the kernel.
    let dx = unsafe { dev.alloc::<f32>(total)? };
    let f = kernel(dev, "lp_max_pool_bwd")?;
    let (planes, [h, w, oh, ow, k, s, p]) = g.args();
    let mut b = f.builder();
    b.arg(grad).arg(argmax).arg(&dx).arg(&planes);
    b.arg(&h).arg(&w).arg(&oh).arg(&ow).arg(&k).arg(&s).arg(&p);
    // SAFETY: the argument list matches lp_max_pool_bwd's signature.
    unsafe { b.launch(elementwise(total)) }.w()?;
    Ok(dx)
}

/// Adam's f32 scalars in kernels.cu's argument order (see `train::optim::scalars::AdamF32`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamArgs {
    pub decay: Option<f32>,
    pub l2: Option<f32>,
    pub w1: f32,
    pub beta2: f32,
    pub w2: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
    pub neg_step_size: f32,
}

/// One Adam/AdamW update in place: `p`, `m`, `v` (and `vmax` for AMSGrad) are overwritten.
pub(crate) fn adam_update(
    dev: &CudaDevice,
    p: &CudaView<f32>,
    g: &CudaView<f32>,
    m: &CudaView<f32>,
    v: &CudaView<f32>,
    vmax: Option<&CudaView<f32>>,
    a: AdamArgs,
) -> Result<()> {
    let n = p.len();
    if g.len() != n || m.len() != n || v.len() != n || vmax.is_some_and(|x| x.len() != n) {
        bail!("internal: Adam update over buffers of different lengths");
    }
    let f = kernel(dev, "lp_adam")?;
    let (len, decoupled, l2_on, amsgrad) = (
        n as i64,
        i32::from(a.decay.is_some()),
        i32::from(a.l2.is_some()),
        i32::from(vmax.is_some()),
    );
    let (decay, l2) = (a.decay.unwrap_or(1.0), a.l2.unwrap_or(0.0));
    let mut b = f.builder();
    // Without AMSGrad the kernel never touches `vmax`; `m` stands in.
    b.arg(p).arg(g).arg(m).arg(v).arg(vmax.unwrap_or(m)).arg(&len);
    b.arg(&decoupled)
        .arg(&l2_on)
        .arg(&amsgrad)
        .arg(&decay)
        .arg(&l2)
        .arg(&a.w1);
    b.arg(&a.beta2)
        .arg(&a.w2)
        .arg(&a.bc2_sqrt)
        .arg(&a.eps)
        .arg(&a.neg_step_size);
    // SAFETY: the argument list matches lp_adam's signature; the kernel writes p, m, v, vmax in place, which
    // the caller holds exclusively for the update.
    unsafe { b.launch(elementwise(n)) }.w()?;
    Ok(())
}

/// SGD's f32 scalars (see `train::optim::scalars::SgdF32`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SgdArgs {
    pub weight_decay: Option<f32>,
    pub momentum: Option<f32>,
    pub keep: f32,
    pub nesterov: bool,
    pub neg_lr: f32,
    /// The momentum buffer does not exist yet and becomes the gradient.
    pub first: bool,
}

/// A BatchNorm's running `[mean; var]` (`2·C` values) moved towards the batch's, into a new slice;
/// `factors` = (keep, take, unbias) as `model::ops::running_stats` rounds them.
pub(crate) fn bn_running_update(
    dev: &CudaDevice,
    running: &CudaView<f32>,
    mean: &CudaView<f32>,
    var: &CudaView<f32>,
    c: usize,
    factors: [f32; 3],
) -> Result<CudaSlice<f32>> {
    let f = kernel(dev, "lp_bn_running")?;
    // SAFETY: every element is written by the kernel.
    let out = unsafe { dev.alloc::<f32>(2 * c)? };
    let ci = c as i32;
    let mut b = f.builder();
    b.arg(running).arg(mean).arg(var).arg(&out).arg(&ci);
    b.arg(&factors[0]).arg(&factors[1]).arg(&factors[2]);
    // SAFETY: the argument list matches lp_bn_running's signature.
    unsafe { b.launch(elementwise(c)) }.w()?;
    Ok(out)
}

/// One SGD update in place: `p` (and the momentum buffer `buf`) are overwritten.
pub(crate) fn sgd_update(
    dev: &CudaDevice,
    p: &CudaView<f32>,
    g: &CudaView<f32>,
    buf: Option<&CudaView<f32>>,
    a: SgdArgs,
) -> Result<()> {
    let n = p.len();
    if g.len() != n || buf.is_some_and(|b| b.len() != n) || (a.momentum.is_some() != buf.is_some()) {
        bail!("internal: SGD update over buffers of different lengths");
    }
    let f = kernel(dev, "lp_sgd")?;
    let flags = [
        i32::from(a.weight_decay.is_some()),
        i32::from(a.momentum.is_some()),
        i32::from(a.first),
        i32::from(a.nesterov),
    ];
    let (len, wd, momentum) = (n as i64, a.weight_decay.unwrap_or(0.0), a.momentum.unwrap_or(0.0));
    let mut b = f.builder();
    // Without momentum the kernel never touches `buf`; `g` stands in.
    b.arg(p).arg(g).arg(buf.unwrap_or(g)).arg(&len);
    b.arg(&flags[0]).arg(&flags[1]).arg(&flags[2]).arg(&flags[3]);
    b.arg(&wd).arg(&momentum).arg(&a.keep).arg(&a.neg_lr);
    // SAFETY: the argument list matches lp_sgd's signature; p and buf are held exclusively for the update.
    unsafe { b.launch(elementwise(n)) }.w()?;
    Ok(())
}

/// Whether labpipe's own kernels are used on CUDA (`LABPIPE_CUDA_KERNELS=1`) rather than Candle's op
/// compositions (the default). The compositions were checked on an H200 (loss parity with the CPU build,
/// BENCHMARKS.md); the kernels passed their tests only where no GPU ran them (the tests skip without one), so
/// they stay opt-in until `scripts/cuda/gpu_check.sh --tests` has passed on a card.
pub(crate) fn kernels_enabled() -> bool {
    #[cfg(test)]
    if tests::FORCE_KERNELS.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("LABPIPE_CUDA_KERNELS").is_ok_and(|v| v.trim() == "1"))
}

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------------------
// Fused cross-entropy and correct-prediction count (src/train/loss/fused.rs).

/// The contiguous u32 region `l` describes in `s` (class labels), or an error naming `what`.
pub(crate) fn labels_view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, u32>> {
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!(
            "{what}: expected a contiguous tensor, got strides {:?}",
            l.stride()
        )
    };
    Ok(s.as_cuda_slice::<u32>()?.slice(start..end))
}

/// One block reducing over all rows (a fixed summation order for a given batch).
fn single_block() -> LaunchConfig {
    LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Mean smoothed cross-entropy of logits `[n, k]` against labels `[n]`: one value. A label outside `0..k`
/// makes it NaN (the kernel cannot raise an error without the host waiting for it).
pub(crate) fn cross_entropy_forward(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    y: &CudaView<u32>,
    n: usize,
    k: usize,
    eps: f64,
) -> Result<CudaSlice<f32>> {
    // SAFETY: the kernel writes the one element.
    let out = unsafe { dev.alloc::<f32>(1)? };
    let f = kernel(dev, "lp_ce_fwd")?;
    let (n, k) = (n as i32, k as i32);
    let mut b = f.builder();
    b.arg(x).arg(y).arg(&n).arg(&k).arg(&eps).arg(&out);
    // SAFETY: the argument list matches lp_ce_fwd's signature.
    unsafe { b.launch(single_block()) }.w()?;
    Ok(out)
}

/// The loss's gradient with respect to the logits, `[n, k]`, scaled by the upstream gradient `g` (one value).
pub(crate) fn cross_entropy_backward(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    y: &CudaView<u32>,
    g: &CudaView<f32>,
    n: usize,
    k: usize,
    eps: f64,
) -> Result<CudaSlice<f32>> {
    // SAFETY: every element is written by the kernel.
    let dx = unsafe { dev.alloc::<f32>(n * k)? };
    let f = kernel(dev, "lp_ce_bwd")?;
    let (ni, ki) = (n as i32, k as i32);
    let mut b = f.builder();
    b.arg(x).arg(y).arg(g).arg(&ni).arg(&ki).arg(&eps).arg(&dx);
    // SAFETY: the argument list matches lp_ce_bwd's signature; one thread per row.
    unsafe { b.launch(elementwise(n)) }.w()?;
    Ok(dx)
}

/// Number of rows of logits `[n, k]` whose first maximum is at the label, as one f32 value.
pub(crate) fn correct_count(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    y: &CudaView<u32>,
    n: usize,
    k: usize,
) -> Result<CudaSlice<f32>> {
    // SAFETY: the kernel writes the one element.
    let out = unsafe { dev.alloc::<f32>(1)? };
    let f = kernel(dev, "lp_correct")?;
    let (n, k) = (n as i32, k as i32);
    let mut b = f.builder();
    b.arg(x).arg(y).arg(&n).arg(&k).arg(&out);
    // SAFETY: the argument list matches lp_correct's signature.
    unsafe { b.launch(single_block()) }.w()?;
    Ok(out)
}
