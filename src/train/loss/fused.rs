//! Cross-entropy and the correct-prediction count as single custom ops: the forward loss, its gradient and
//! the count each dispatch one device operation instead of Candle's 4–10 composed ones (launch overhead sets
//! a GPU step's time). The CPU halves are here; the CUDA halves launch kernels.cu's `lp_ce_*` and
//! `lp_correct` (only when `crate::cuda::kernels_enabled()`; the caller picks the composed ops otherwise).
//!
//! Each row's log-sum-exp is taken in f64 after subtracting the row's maximum, and the rows' losses are summed
//! in f64 in row order, so the result does not depend on how rows are split across threads.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, bail};
use rayon::prelude::*;

/// Rows × classes from which the CPU kernels split rows across threads (below it a thread hand-off costs
/// more than the work).
const PARALLEL_ELEMENTS: usize = 1 << 16;

/// Mean cross-entropy of logits `[N, K]` (f32) against labels `[N]` (u32) with label smoothing `eps`.
pub(super) struct CrossEntropy {
    pub eps: f64,
}

/// Its gradient with respect to the logits, scaled by the upstream gradient (a scalar tensor).
pub(super) struct CrossEntropyGrad {
    pub eps: f64,
}

/// Number of rows of logits `[N, K]` (f32) whose first maximum is at the row's label `[N]` (u32), as f32.
pub(super) struct CorrectCount;

/// The contiguous elements of a CPU storage region of dtype `T`, or an error naming `what`.
fn region<'a, T>(data: Option<&'a [T]>, layout: &Layout, what: &str, dtype: DType) -> Result<&'a [T]> {
    let Some(data) = data else {
        bail!("{what}: expected {dtype:?} data")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!(
            "{what}: expected a contiguous tensor, got strides {:?}",
            layout.stride()
        ),
    }
}

fn f32_region<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => Some(v.as_slice()),
        _ => None,
    };
    region(data, l, what, DType::F32)
}

fn u32_region<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [u32]> {
    let data = match s {
        CpuStorage::U32(v) => Some(v.as_slice()),
        _ => None,
    };
    region(data, l, what, DType::U32)
}

/// `(N, K)` of logits `[N, K]` and labels `[N]`, checked against each other.
pub(super) fn rows_and_classes(logits: &Layout, labels: &Layout, op: &str) -> Result<(usize, usize)> {
    let (n, k) = logits.shape().dims2()?;
    let m = labels.shape().dims1()?;
    if m != n {
        bail!("{op}: {n} rows of logits but {m} labels")
    }
    if k == 0 {
        bail!("{op}: logits have no classes")
    }
    Ok((n, k))
}

/// `(N, K)`, the logits and the labels of a CUDA op's inputs, checked against each other.
#[cfg(feature = "cuda")]
#[allow(clippy::type_complexity)]
fn cuda_inputs<'a>(
    s1: &'a candle_core::CudaStorage,
    l1: &Layout,
    s2: &'a candle_core::CudaStorage,
    l2: &Layout,
    op: &str,
) -> Result<(
    usize,
    usize,
    candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>,
    candle_core::cuda_backend::cudarc::driver::CudaView<'a, u32>,
)> {
    let (n, k) = rows_and_classes(l1, l2, op)?;
    let x = crate::cuda::view(s1, l1, op)?;
    let y = crate::cuda::labels_view(s2, l2, op)?;
    Ok((n, k, x, y))
}

/// An error naming the first label that is not a class index.
fn check_labels(labels: &[u32], k: usize, op: &str) -> Result<()> {
    if let Some((row, &label)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= k) {
        bail!(
            "{op}: label {label} of row {row} is out of range: the model has {k} classes (labels 0..{k}); \
             check the dataset's labels against the model's output size"
        )
    }
    Ok(())
}

/// The row's maximum and its log-sum-exp, in f64.
fn log_sum_exp(row: &[f32]) -> (f64, f64) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    (max, max + sum.ln())
}

/// The smoothed cross-entropy of one row: (1 − ε)·(lse − x_y) + ε·(lse − mean x).
fn row_loss(row: &[f32], label: usize, eps: f64) -> f64 {
    let (_, lse) = log_sum_exp(row);
    let nll = lse - row[label] as f64;
    if eps == 0.0 {
        return nll;
    }
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / row.len() as f64;
    (1.0 - eps) * nll + eps * (lse - mean)
}

/// `f(i, row_i, out_i)` for every row, in parallel when the logits are large.
fn for_rows<T: Send>(x: &[f32], k: usize, out: &mut [T], f: impl Fn(usize, &[f32], &mut T) + Sync + Send) {
    if x.len() >= PARALLEL_ELEMENTS {
        out.par_iter_mut()
            .zip(x.par_chunks(k))
            .enumerate()
            .for_each(|(i, (o, row))| f(i, row, o));
    } else {
        for (i, (o, row)) in out.iter_mut().zip(x.chunks(k)).enumerate() {
            f(i, row, o);
        }
    }
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "labpipe-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = rows_and_classes(l1, l2, "cross_entropy")?;
        let x = f32_region(s1, l1, "cross_entropy logits")?;
        let y = u32_region(s2, l2, "cross_entropy labels")?;
        check_labels(y, k, "cross_entropy")?;
        let mut losses = vec![0f64; n];
        for_rows(x, k, &mut losses, |i, row, o| {
            *o = row_loss(row, y[i] as usize, self.eps)
        });
        // Summed in row order: the same bits however the rows were split.
        let mean = losses.iter().sum::<f64>() / n.max(1) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, k, x, y) = cuda_inputs(s1, l1, s2, l2, "cross_entropy")?;
        let dev = &s1.device;
        let out = crate::cuda::cross_entropy_forward(dev, &x, &y, n, k, self.eps)?;
        Ok((crate::cuda::storage(out, dev), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &candle_core::Tensor,
        labels: &candle_core::Tensor,
        _res: &candle_core::Tensor,
        grad_res: &candle_core::Tensor,
    ) -> Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
        let grad = logits.apply_op3_no_bwd(labels, grad_res, &CrossEntropyGrad { eps: self.eps })?;
        Ok((Some(grad), None))
    }
}

impl CustomOp3 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "labpipe-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = rows_and_classes(l1, l2, "cross_entropy backward")?;
        let x = f32_region(s1, l1, "cross_entropy logits")?;
        let y = u32_region(s2, l2, "cross_entropy labels")?;
        check_labels(y, k, "cross_entropy backward")?;
        let Some(&g) = f32_region(s3, l3, "cross_entropy upstream gradient")?.first() else {
            bail!("cross_entropy backward: the upstream gradient is empty")
        };
        let scale = g as f64 / n.max(1) as f64;
        let (on, off) = (1.0 - self.eps + self.eps / k as f64, self.eps / k as f64);
        let mut dx = vec![0f32; n * k];
        let mut rows: Vec<&mut [f32]> = dx.chunks_mut(k).collect();
        for_rows(x, k, &mut rows, |i, row, out| {
            let (_, lse) = log_sum_exp(row);
            let label = y[i] as usize;
            for (j, (o, &v)) in out.iter_mut().zip(row).enumerate() {
                let target = if j == label { on } else { off };
                *o = (((v as f64 - lse).exp() - target) * scale) as f32;
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((n, k))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, k, x, y) = cuda_inputs(s1, l1, s2, l2, "cross_entropy backward")?;
        let dev = &s1.device;
        let g = crate::cuda::view(s3, l3, "cross_entropy upstream gradient")?;
        let dx = crate::cuda::cross_entropy_backward(dev, &x, &y, &g, n, k, self.eps)?;
        Ok((crate::cuda::storage(dx, dev), Shape::from((n, k))))
    }
}

/// Index of the row's first maximum; a NaN counts as the maximum (torch.argmax).
fn first_argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate().skip(1) {
        let b = row[best];
        if !b.is_nan() && (v > b || v.is_nan()) {
            best = j;
        }
    }
    best
}

impl CustomOp2 for CorrectCount {
    fn name(&self) -> &'static str {
        "labpipe-correct-count"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, k) = rows_and_classes(l1, l2, "correct")?;
        let x = f32_region(s1, l1, "correct logits")?;
        let y = u32_region(s2, l2, "correct labels")?;
        let right = x
            .chunks(k)
            .zip(y)
            .filter(|&(row, &label)| first_argmax(row) == label as usize)
            .count();
        Ok((CpuStorage::F32(vec![right as f32]), Shape::from(())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, k, x, y) = cuda_inputs(s1, l1, s2, l2, "correct")?;
        let dev = &s1.device;
        let out = crate::cuda::correct_count(dev, &x, &y, n, k)?;
        Ok((crate::cuda::storage(out, dev), Shape::from(())))
    }
}
