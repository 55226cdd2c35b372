//! 2-D convolution (groups 1, dilation 1) as a custom op: im2col + GEMM forward and a GEMM backward.
//!
//! Candle 0.11's CPU conv backward runs a direct, mostly serial `conv_transpose2d` for the input gradient
//! and a dilated "conv with the gradient as kernel" for the weight gradient; both dominate a training step.
//! Here, with `col` the im2col matrix `[Cin·KH·KW, OH·OW]` of one image:
//! forward `Y = W·col (+ b)`, weight grad `dW = Σ dY·colᵀ`, input grad `col2im(Wᵀ·dY)`, bias grad `Σ dY`.
//! Maps with many output pixels run one image per task (sequential GEMM each, im2col in a per-thread
//! buffer); small maps gather the whole batch into one wide matrix and run one multi-threaded GEMM.
//! Off the CPU (or for non-f32 types) Candle's own conv2d is used.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use gemm::Parallelism;
use rayon::prelude::*;

use std::borrow::Cow;
use std::sync::{Mutex, OnceLock};

use super::cpu_data::{CpuF32, contiguous_f32, is_cpu_f32_cpu_only, par_filled, with_scratch};
use super::lanes;

/// Output maps with at least this many pixels are convolved image by image; smaller ones batch-wide.
const PER_IMAGE_MIN_PIXELS: usize = 64;

/// Convolve `x` `[N, Cin, H, W]` with `w` `[Cout, Cin, KH, KW]` (+ `b` `[Cout]`), PyTorch's `Conv2d` with
/// groups 1 and dilation 1; `input_grad = false` skips the gradient for `x` (use it when `x` is data).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    let shape = ConvShape::new(x.dims(), w.dims(), stride, padding)?;
    if let Some(b) = b
        && b.dims() != [shape.cout]
    {
        bail!(
            "conv2d: bias has shape {:?}, expected [{}] (one per output channel)",
            b.dims(),
            shape.cout
        )
    }
    let on_cpu = is_cpu_f32_cpu_only(x) && is_cpu_f32_cpu_only(w) && b.is_none_or(is_cpu_f32_cpu_only);
    if !on_cpu {
        return conv2d_candle(x, w, b, stride, padding, input_grad);
    }
    let op = Conv2d {
        stride,
        padding,
        input_grad: input_grad && x.track_op(),
        live_weight: OnceLock::new(),
    };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

/// Candle's conv2d plus a broadcast bias: the path for CUDA/Metal and non-f32 types.
fn conv2d_candle(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    input_grad: bool,
) -> Result<Tensor> {
    let x = if input_grad { x.clone() } else { x.detach() };
    let y = x.conv2d(w, padding, stride, 1, 1)?;
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// Every size a convolution needs, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConvShape {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    oh: usize,
    ow: usize,
    /// The kernel taps (ky, kx) that read at least one input pixel. The others only ever see padding
    /// (e.g. the outer ring of a 3×3 kernel on a 1×1 map): they add nothing to the output and get a
    /// zero gradient, so they are left out of the GEMMs (8/9 of the work for ResNet's layer4).
    taps: Vec<(usize, usize)>,
}

impl ConvShape {
    fn new(x: &[usize], w: &[usize], stride: usize, padding: usize) -> Result<Self> {
        let &[n, cin, h, wd] = x else {
            bail!("conv2d: input has shape {x:?}, expected [N, C, H, W]")
        };
        let &[cout, wcin, kh, kw] = w else {
            bail!("conv2d: weight has shape {w:?}, expected [Cout, Cin, KH, KW]")
        };
        if wcin != cin {
            bail!("conv2d: weight expects {wcin} input channels, the input has {cin}")
        }
        if stride == 0 || kh == 0 || kw == 0 {
            bail!("conv2d: stride ({stride}) and kernel ({kh}x{kw}) must be at least 1")
        }
        if h + 2 * padding < kh || wd + 2 * padding < kw {
            bail!("conv2d: input {h}x{wd} with padding {padding} is smaller than the kernel {kh}x{kw}")
        }
        let mut s = Self {
            n,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            stride,
            padding,
            oh: (h + 2 * padding - kh) / stride + 1,
            ow: (wd + 2 * padding - kw) / stride + 1,
            taps: Vec::new(),
        };
        s.taps = (0..kh)
            .flat_map(|ky| (0..kw).map(move |kx| (ky, kx)))
            .filter(|&(ky, kx)| {
                let (y_lo, y_hi) = s.tap_range(ky, s.oh, s.h);
                let (x_lo, x_hi) = s.tap_range(kx, s.ow, s.w);
                y_lo < y_hi && x_lo < x_hi
            })
            .collect();
        Ok(s)
    }

    /// Rows of the im2col matrix (the GEMM depth of the forward pass): input channels × live taps.
    fn k(&self) -> usize {
        self.cin * self.taps.len()
    }

    /// Whether every kernel tap is live (the weight needs no compaction).
    fn all_taps(&self) -> bool {
        self.taps.len() == self.kh * self.kw
    }

    /// Output pixels per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn in_image(&self) -> usize {
        self.cin * self.h * self.w
    }

    fn out_image(&self) -> usize {
        self.cout * self.p()
    }

    /// A 1×1, stride-1, unpadded conv: the im2col matrix is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    fn per_image(&self) -> bool {
        self.p() >= PER_IMAGE_MIN_PIXELS
    }

    /// (input channel, ky, kx) of im2col row `r`.
    fn tap(&self, r: usize) -> (usize, usize, usize) {
        let (ky, kx) = self.taps[r % self.taps.len()];
        (r / self.taps.len(), ky, kx)
    }

    /// The output positions `[lo, hi)` along an axis of `len` inputs (and `out` outputs) whose kernel tap
    /// `tap` lands inside the image rather than on the zero border.
    fn tap_range(&self, tap: usize, out: usize, len: usize) -> (usize, usize) {
        let (s, pad) = (self.stride, self.padding);
        let lo = if tap >= pad { 0 } else { (pad - tap).div_ceil(s) };
        let hi = if len + pad > tap {
            out.min((len + pad - tap).div_ceil(s))
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// The weight as the `[cout, k]` GEMM operand: `w` itself, or its live-tap columns.
    fn weight_matrix<'a>(&self, w: &'a [f32]) -> Cow<'a, [f32]> {
        if self.all_taps() {
            return Cow::Borrowed(w);
        }
        let taps = self.kh * self.kw;
        let mut m = Vec::with_capacity(self.cout * self.k());
        for kernel in w.chunks_exact(taps) {
            m.extend(self.taps.iter().map(|&(ky, kx)| kernel[ky * self.kw + kx]));
        }
        Cow::Owned(m)
    }

    /// The weight gradient `[cout, Cin·KH·KW]` from its live-tap columns `[cout, k]` (dead taps get 0).
    fn full_weight_grad(&self, dw: Vec<f32>) -> Vec<f32> {
        if self.all_taps() {
            return dw;
        }
        let taps = self.kh * self.kw;
        let mut full = Vec::with_capacity(self.cout * self.cin * taps);
        for live in dw.chunks_exact(self.taps.len()) {
            let mut next = self.taps.iter().zip(live).peekable();
            for t in 0..taps {
                full.push(match next.next_if(|(tap, _)| tap.0 * self.kw + tap.1 == t) {
                    Some((_, &v)) => v,
                    None => 0.0,
                });
            }
        }
        full
    }

    /// Fill one im2col row (`p` values): tap (`ky`, `kx`) of one input `plane` at every output pixel.
    fn im2col_row(&self, plane: &[f32], ky: usize, kx: usize, row: &mut [f32]) {
        let (s, pad, w, ow) = (self.stride, self.padding, self.w, self.ow);
        let (y_lo, y_hi) = self.tap_range(ky, self.oh, self.h);
        let (x_lo, x_hi) = self.tap_range(kx, ow, w);
        for (oy, out) in row.chunks_exact_mut(ow).enumerate() {
            if oy < y_lo || oy >= y_hi {
                out.fill(0.0);
                continue;
            }
            let src = &plane[(oy * s + ky - pad) * w..][..w];
            out[..x_lo].fill(0.0);
            out[x_hi..].fill(0.0);
            if s == 1 {
                out[x_lo..x_hi].copy_from_slice(&src[x_lo + kx - pad..x_hi + kx - pad]);
            } else {
                for (ox, o) in (x_lo..x_hi).zip(&mut out[x_lo..x_hi]) {
                    *o = src[ox * s + kx - pad];
                }
            }
        }
    }

    /// Add one column-gradient row (`p` values) back onto the input `plane` positions tap (`ky`, `kx`) read.
    fn col2im_row(&self, row: &[f32], ky: usize, kx: usize, plane: &mut [f32]) {
        let (s, pad, w, ow) = (self.stride, self.padding, self.w, self.ow);
        let (y_lo, y_hi) = self.tap_range(ky, self.oh, self.h);
        let (x_lo, x_hi) = self.tap_range(kx, ow, w);
        for oy in y_lo..y_hi {
            let dst = &mut plane[(oy * s + ky - pad) * w..][..w];
            let src = &row[oy * ow..][..ow];
            if s == 1 {
                let dst = &mut dst[x_lo + kx - pad..x_hi + kx - pad];
                for (d, v) in dst.iter_mut().zip(&src[x_lo..x_hi]) {
                    *d += v;
                }
            } else {
                for ox in x_lo..x_hi {
                    dst[ox * s + kx - pad] += src[ox];
                }
            }
        }
    }

    /// Whether im2col/col2im go through the [`ConvShape::gather_table`] rather than row copies: for
    /// narrow or strided rows, where copies are short and call overhead dominates.
    fn gathers(&self) -> bool {
        self.ow < ROW_COPY_MIN_WIDTH || self.stride > 1
    }

    /// The im2col matrix `[k, p]` of one image (`table` from [`ConvShape::gather_table`] when
    /// [`ConvShape::gathers`]).
    fn im2col_image(&self, image: &[f32], table: Option<&[u32]>, col: &mut [f32]) {
        let (p, hw, a) = (self.p(), self.h * self.w, self.taps.len());
        for (r, row) in col.chunks_exact_mut(p).enumerate() {
            let (c, ky, kx) = self.tap(r);
            let plane = &image[c * hw..][..hw];
            match table {
                Some(table) => gather(plane, &table[(r % a) * p..][..p], row),
                None => self.im2col_row(plane, ky, kx, row),
            }
        }
    }

    /// Scatter-add one image's column gradient `[k, p]` into its input gradient.
    fn col2im_image(&self, dcol: &[f32], table: Option<&[u32]>, image: &mut [f32]) {
        let (p, hw, a) = (self.p(), self.h * self.w, self.taps.len());
        for (r, row) in dcol.chunks_exact(p).enumerate() {
            let (c, ky, kx) = self.tap(r);
            let plane = &mut image[c * hw..][..hw];
            match table {
                Some(table) => scatter_add(row, &table[(r % a) * p..][..p], plane),
                None => self.col2im_row(row, ky, kx, plane),
            }
        }
    }

    /// For small maps: per live tap `a` and output pixel `q`, the offset in an input plane that tap reads
    /// at that pixel, or [`PADDING`]. Gathering through it beats row copies of 1–16 elements.
    fn gather_table(&self) -> Vec<u32> {
        let (s, pad) = (self.stride as isize, self.padding as isize);
        let mut table = Vec::with_capacity(self.taps.len() * self.p());
        for &(ky, kx) in &self.taps {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let iy = oy as isize * s + ky as isize - pad;
                    let ix = ox as isize * s + kx as isize - pad;
                    let inside = (0..self.h as isize).contains(&iy) && (0..self.w as isize).contains(&ix);
                    table.push(if inside {
                        (iy as usize * self.w + ix as usize) as u32
                    } else {
                        PADDING
                    });
                }
            }
        }
        table
    }
}

/// A [`ConvShape::gather_table`] entry for a tap that falls on the zero padding.
const PADDING: u32 = u32::MAX;

/// Output rows at least this wide (stride 1) are im2col'ed by row copies, narrower ones by gathers.
const ROW_COPY_MIN_WIDTH: usize = 16;

/// `out[q] = plane[offsets[q]]`, 0 where the offset is [`PADDING`].
fn gather(plane: &[f32], offsets: &[u32], out: &mut [f32]) {
    for (v, &o) in out.iter_mut().zip(offsets) {
        *v = if o == PADDING { 0.0 } else { plane[o as usize] };
    }
}

/// `plane[offsets[q]] += values[q]`, skipping [`PADDING`].
fn scatter_add(values: &[f32], offsets: &[u32], plane: &mut [f32]) {
    for (&v, &o) in values.iter().zip(offsets) {
        if o != PADDING {
            plane[o as usize] += v;
        }
    }
}

/// A read-only strided matrix: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn last_index(&self) -> usize {
        (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
    }
}

/// `dst = a·b` (or `dst += a·b` when `accumulate`), element (i, j) of `dst` at `i·dst.0 + j·dst.1`;
/// `threads` above 1 lets the GEMM itself use rayon.
fn matmul(
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    a: Mat,
    b: Mat,
    threads: usize,
) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + (n - 1) * dst_cs < dst.len(),
        "matmul: destination too small"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_rs + j * dst_cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!(
        a.last_index() < a.data.len() && b.last_index() < b.data.len(),
        "matmul: operand too small"
    );
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm touches inside the three slices, and `dst`
    // is borrowed mutably, so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Forward pass on contiguous data: the output `[N, Cout, OH, OW]`.
/// `w` is the `[cout, k]` GEMM operand ([`ConvShape::weight_matrix`]).
fn forward(s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let (k, p) = (s.k(), s.p());
    let wm = Mat::row_major(w, s.cout, k);
    let add_bias = |out_image: &mut [f32]| {
        if let Some(b) = b {
            for (row, &bias) in out_image.chunks_exact_mut(p).zip(b) {
                row.iter_mut().for_each(|v| *v += bias);
            }
        }
    };
    if s.per_image() {
        let table = s.gathers().then(|| s.gather_table());
        return par_filled(s.n * s.out_image(), s.out_image(), |i, y| {
            let image = &x[i * s.in_image()..][..s.in_image()];
            if s.is_pointwise() {
                matmul(y, (p, 1), false, wm, Mat::row_major(image, k, p), 1);
            } else {
                with_scratch(k * p, |col| {
                    s.im2col_image(image, table.as_deref(), col);
                    matmul(y, (p, 1), false, wm, Mat::row_major(col, k, p), 1);
                });
            }
            add_bias(y);
        });
    }
    let np = s.n * p;
    with_scratch(k * np + s.cout * np, |buf| {
        let (col, y_wide) = buf.split_at_mut(k * np);
        batch_im2col(s, x, &s.gather_table(), col);
        let threads = rayon::current_num_threads();
        matmul(y_wide, (np, 1), false, wm, Mat::row_major(col, k, np), threads);
        let y_wide = &*y_wide;
        par_filled(s.n * s.out_image(), s.out_image(), |i, y| {
            for (co, row) in y.chunks_exact_mut(p).enumerate() {
                row.copy_from_slice(&y_wide[co * np + i * p..][..p]);
            }
            add_bias(y);
        })
    })
}

/// The batch-wide im2col matrix `[k, N·p]` (image `i`'s pixels in columns `i·p..(i+1)·p`).
fn batch_im2col(s: &ConvShape, x: &[f32], table: &[u32], col: &mut [f32]) {
    let (p, hw, a) = (s.p(), s.h * s.w, s.taps.len());
    col.par_chunks_mut(s.n * p).enumerate().for_each(|(r, row)| {
        let (c, t) = (r / a, r % a);
        let offsets = &table[t * p..][..p];
        for (i, cols) in row.chunks_exact_mut(p).enumerate() {
            gather(&x[(i * s.cin + c) * hw..][..hw], offsets, cols);
        }
    });
}

/// Gradients of a convolution: input (when asked), weight, bias (when asked).
struct ConvGrads {
    dx: Option<Vec<f32>>,
    dw: Vec<f32>,
    db: Option<Vec<f32>>,
}

/// Images per task in the per-image backward. Fixed, not derived from the thread count, so the order
/// in which partial weight gradients are summed, and hence the bits of the result, never depend on it.
const IMAGES_PER_TASK: usize = 8;

/// Backward pass on contiguous data, `dy` the output gradient `[N, Cout, OH, OW]`, `w` the `[cout, k]`
/// GEMM operand; the weight gradient comes back `[cout, k]` too.
fn backward(s: &ConvShape, x: &[f32], w: &[f32], dy: &[f32], want_dx: bool, want_db: bool) -> ConvGrads {
    if s.n == 0 || s.p() == 0 {
        return ConvGrads {
            dx: want_dx.then(|| vec![0.0; s.n * s.in_image()]),
            dw: vec![0.0; s.cout * s.k()],
            db: want_db.then(|| vec![0.0; s.cout]),
        };
    }
    if s.per_image() {
        backward_per_image(s, x, w, dy, want_dx, want_db)
    } else {
        backward_batched(s, x, w, dy, want_dx, want_db)
    }
}

/// `src` `[rows, cols]` transposed to `[cols, rows]`, in cache-sized tiles.
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut dst = vec![0f32; rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    dst
}

/// Per-image backward: tasks of [`IMAGES_PER_TASK`] images run in parallel, each summing its own
/// partial weight and bias gradients (summed in task order afterwards).
fn backward_per_image(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_db: bool,
) -> ConvGrads {
    let (k, p) = (s.k(), s.p());
    let tasks = s.n.div_ceil(IMAGES_PER_TASK);
    let wt = Mat::row_major(w, s.cout, k).t();
    let table = s.gathers().then(|| s.gather_table());
    // Partial (dWᵀ `[k, cout]`, db) per task, each slot written once by its task.
    let partials: Vec<Mutex<(Vec<f32>, Vec<f32>)>> = (0..tasks).map(|_| Mutex::default()).collect();
    let task = |t: usize, mut dx: Option<&mut [f32]>| {
        let first = t * IMAGES_PER_TASK;
        let count = IMAGES_PER_TASK.min(s.n - first);
        let mut dw_t = vec![0f32; k * s.cout];
        let mut db = vec![0f32; if want_db { s.cout } else { 0 }];
        let scratch = if s.is_pointwise() { 0 } else { 2 * k * p };
        with_scratch(scratch, |buf| {
            let (col, dcol) = buf.split_at_mut(scratch / 2);
            for j in 0..count {
                let i = first + j;
                let image = &x[i * s.in_image()..][..s.in_image()];
                let dy_i = &dy[i * s.out_image()..][..s.out_image()];
                let col: &[f32] = if s.is_pointwise() {
                    image
                } else {
                    s.im2col_image(image, table.as_deref(), col);
                    col
                };
                let dy_m = Mat::row_major(dy_i, s.cout, p);
                // dW += dY·colᵀ, stored transposed (column-major dW): ~30% faster in gemm.
                matmul(
                    &mut dw_t,
                    (1, s.cout),
                    true,
                    dy_m,
                    Mat::row_major(col, k, p).t(),
                    1,
                );
                for (acc, row) in db.iter_mut().zip(dy_i.chunks_exact(p)) {
                    *acc += lanes::sum(row);
                }
                if let Some(dx) = dx.as_deref_mut() {
                    let dx_i = &mut dx[j * s.in_image()..][..s.in_image()];
                    if s.is_pointwise() {
                        matmul(dx_i, (p, 1), false, wt, dy_m, 1);
                    } else {
                        matmul(dcol, (p, 1), false, wt, dy_m, 1);
                        s.col2im_image(dcol, table.as_deref(), dx_i);
                    }
                }
            }
        });
        if let Ok(mut slot) = partials[t].lock() {
            *slot = (dw_t, db);
        }
    };
    let dx = if want_dx {
        Some(par_filled(
            s.n * s.in_image(),
            IMAGES_PER_TASK * s.in_image(),
            |t, dx| task(t, Some(dx)),
        ))
    } else {
        (0..tasks).into_par_iter().for_each(|t| task(t, None));
        None
    };
    let mut dw_t = vec![0f32; k * s.cout];
    let mut db = vec![0f32; s.cout];
    for slot in partials {
        let (pdw, pdb) = slot.into_inner().unwrap_or_default();
        dw_t.iter_mut().zip(&pdw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&pdb).for_each(|(a, b)| *a += b);
    }
    ConvGrads {
        dx,
        dw: transpose(&dw_t, k, s.cout),
        db: want_db.then_some(db),
    }
}

/// Batch-wide backward for small maps: one wide im2col matrix and output gradient, multi-threaded GEMMs.
fn backward_batched(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_db: bool,
) -> ConvGrads {
    let (k, p, np) = (s.k(), s.p(), s.n * s.p());
    let threads = rayon::current_num_threads();
    let table = s.gather_table();
    let mut dw = vec![0f32; s.cout * k];
    let mut db = want_db.then(|| vec![0f32; s.cout]);
    let mut dx = None;
    with_scratch(k * np + s.cout * np, |buf| {
        let (col, dy_wide) = buf.split_at_mut(k * np);
        batch_im2col(s, x, &table, col);
        // dY as [Cout, N·p], the column layout of `col`.
        dy_wide.par_chunks_mut(np).enumerate().for_each(|(co, row)| {
            for (i, cols) in row.chunks_exact_mut(p).enumerate() {
                cols.copy_from_slice(&dy[(i * s.cout + co) * p..][..p]);
            }
        });
        let dy_m = Mat::row_major(dy_wide, s.cout, np);
        matmul(
            &mut dw,
            (k, 1),
            false,
            dy_m,
            Mat::row_major(col, k, np).t(),
            threads,
        );
        if let Some(db) = db.as_mut() {
            for (acc, row) in db.iter_mut().zip(dy_wide.chunks_exact(np)) {
                *acc = lanes::sum(row);
            }
        }
        if want_dx {
            // `col` is spent: reuse it for the column gradient Wᵀ·dY.
            let dcol = col;
            matmul(
                dcol,
                (np, 1),
                false,
                Mat::row_major(w, s.cout, k).t(),
                dy_m,
                threads,
            );
            let dcol = &*dcol;
            let a = s.taps.len();
            dx = Some(par_filled(s.n * s.in_image(), s.h * s.w, |plane_idx, plane| {
                let (i, c) = (plane_idx / s.cin, plane_idx % s.cin);
                for t in 0..a {
                    let row = &dcol[(c * a + t) * np + i * p..][..p];
                    scatter_add(row, &table[t * p..][..p], plane);
                }
            }));
        }
    });
    ConvGrads { dx, dw, db }
}

/// The CPU custom op (applied as `CustomOp2` without bias, `CustomOp3` with).
struct Conv2d {
    stride: usize,
    padding: usize,
    input_grad: bool,
    /// The weight's live-tap columns, when some taps are dead: built by the forward pass, reused by the
    /// backward pass.
    live_weight: OnceLock<Vec<f32>>,
}

impl Conv2d {
    fn cpu_forward(
        &self,
        (xs, xl): (&CpuStorage, &Layout),
        (ws, wl): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let s = ConvShape::new(xl.dims(), wl.dims(), self.stride, self.padding)?;
        let x = contiguous_f32(xs, xl, "conv2d input")?;
        let w = contiguous_f32(ws, wl, "conv2d weight")?;
        let b = bias
            .map(|(bs, bl)| contiguous_f32(bs, bl, "conv2d bias"))
            .transpose()?;
        let w = match s.weight_matrix(w) {
            Cow::Borrowed(w) => w,
            Cow::Owned(live) => self.live_weight.get_or_init(|| live),
        };
        let out = forward(&s, x, w, b);
        Ok((CpuStorage::F32(out), Shape::from((s.n, s.cout, s.oh, s.ow))))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        want_db: bool,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s = ConvShape::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let grad = grad.contiguous()?;
        let (xd, wd, gd) = (
            CpuF32::lock(x, "conv2d input")?,
            CpuF32::lock(w, "conv2d weight")?,
            CpuF32::lock(&grad, "conv2d grad")?,
        );
        let live = match self.live_weight.get() {
            Some(live) => Cow::Borrowed(live.as_slice()),
            None => s.weight_matrix(wd.as_slice()),
        };
        let g = backward(&s, xd.as_slice(), &live, gd.as_slice(), self.input_grad, want_db);
        let device = x.device();
        let dx =
            g.dx.map(|dx| Tensor::from_vec(dx, x.shape(), device))
                .transpose()?;
        let dw = Tensor::from_vec(s.full_weight_grad(g.dw), w.shape(), device)?;
        let db = g.db.map(|db| Tensor::from_vec(db, s.cout, device)).transpose()?;
        Ok((dx, Some(dw), db))
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "labpipe-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.grads(x, w, grad, false)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "labpipe-conv2d-bias"
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
        self.cpu_forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, grad, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(len: usize, seed: u64, label: &str) -> Vec<f32> {
        let mut rng = Rng::stream(seed, label, 0);
        (0..len).map(|_| rng.normal() as f32).collect()
    }

    struct Case {
        n: usize,
        cin: usize,
        hw: usize,
        /// Width when it differs from the height `hw` (0: square).
        wide: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    }

    #[allow(clippy::too_many_arguments)] // one row of the layer table reads best positionally
    const fn case(
        n: usize,
        cin: usize,
        hw: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Case {
        Case {
            n,
            cin,
            hw,
            wide: 0,
            cout,
            k,
            stride,
            padding,
            bias,
        }
    }

    impl Case {
        fn width(&self) -> usize {
            if self.wide == 0 { self.hw } else { self.wide }
        }

        const fn with_width(self, wide: usize) -> Self {
            Case { wide, ..self }
        }
    }

    /// The conv layers of SimpleCNN and ResNet-18 (torchvision ImageNet stem on 32×32), small batches.
    const NET_LAYERS: [Case; 16] = [
        case(2, 3, 1, 4, 3, 1, 1, true).with_width(66), // per-image with dead taps (rows ky=0, 2)
        case(19, 4, 8, 5, 3, 1, 1, true),               // several per-image tasks (partial gradients summed)
        case(3, 3, 32, 32, 3, 1, 1, true),              // SimpleCNN conv1
        case(3, 32, 16, 64, 3, 1, 1, true),             // SimpleCNN conv2
        case(3, 64, 8, 128, 3, 1, 1, true),             // SimpleCNN conv3
        case(2, 3, 32, 64, 7, 2, 3, false),             // ResNet conv1 7×7 s2 p3
        case(2, 64, 8, 64, 3, 1, 1, false),             // layer1
        case(2, 64, 8, 128, 3, 2, 1, false),            // layer2.0.conv1 3×3 s2
        case(2, 64, 8, 128, 1, 2, 0, false),            // layer2.0.downsample 1×1 s2
        case(2, 128, 4, 128, 3, 1, 1, false),           // layer2
        case(2, 128, 4, 256, 3, 2, 1, false),           // layer3.0.conv1
        case(2, 128, 4, 256, 1, 2, 0, false),           // layer3.0.downsample
        case(2, 256, 2, 512, 3, 2, 1, false),           // layer4.0.conv1 (1×1 output)
        case(2, 256, 2, 512, 1, 2, 0, false),           // layer4.0.downsample
        case(2, 512, 1, 512, 3, 1, 1, false),           // layer4 on 1×1 maps
        case(2, 16, 9, 8, 1, 1, 0, true),               // pointwise, per-image path
    ];

    /// Output, dX, dW, db of Σ conv(x)·r through `conv`.
    fn outputs(
        c: &Case,
        conv: impl Fn(&Tensor, &Tensor, Option<&Tensor>) -> Result<Tensor>,
    ) -> Result<[Vec<f32>; 4]> {
        let dev = Device::Cpu;
        let x = Var::from_vec(
            random(c.n * c.cin * c.hw * c.width(), 1, "x"),
            (c.n, c.cin, c.hw, c.width()),
            &dev,
        )?;
        let w = Var::from_vec(
            random(c.cout * c.cin * c.k * c.k, 2, "w"),
            (c.cout, c.cin, c.k, c.k),
            &dev,
        )?;
        let b = Var::from_vec(random(c.cout, 3, "b"), c.cout, &dev)?;
        let y = conv(x.as_tensor(), w.as_tensor(), c.bias.then_some(b.as_tensor()))?;
        let r = Tensor::from_vec(random(y.elem_count(), 4, "r"), y.shape(), &dev)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let flat =
            |t: Option<&Tensor>| -> Result<Vec<f32>> { t.map_or(Ok(vec![]), |t| t.flatten_all()?.to_vec1()) };
        Ok([
            flat(Some(&y))?,
            flat(grads.get(x.as_tensor()))?,
            flat(grads.get(w.as_tensor()))?,
            flat(grads.get(b.as_tensor()))?,
        ])
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale + 1e-5 * w.abs(),
                "{what}[{i}]: {g} vs {w} (scale {scale})"
            );
        }
    }

    #[test]
    fn matches_candle_conv2d_forward_and_gradients_on_the_network_shapes() -> Result<()> {
        for c in &NET_LAYERS {
            let ours = outputs(c, |x, w, b| conv2d(x, w, b, c.stride, c.padding, true))?;
            let candle = outputs(c, |x, w, b| conv2d_candle(x, w, b, c.stride, c.padding, true))?;
            let label = format!(
                "n{} {}→{} @{}x{} k{} s{} p{}",
                c.n,
                c.cin,
                c.cout,
                c.hw,
                c.width(),
                c.k,
                c.stride,
                c.padding
            );
            for (name, (o, w)) in ["y", "dx", "dw", "db"].iter().zip(ours.iter().zip(&candle)) {
                assert_close(o, w, &format!("{label} {name}"));
            }
            assert!(
                !ours[1].is_empty() && !ours[2].is_empty(),
                "{label}: gradients present"
            );
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        // Both paths (per-image and batch-wide), odd sizes and padding that leaves rows unread.
        let cases = [
            case(2, 3, 9, 4, 3, 2, 1, true),
            case(2, 2, 5, 3, 3, 1, 1, true),
            case(1, 2, 10, 2, 4, 3, 2, true),
            case(1, 2, 1, 3, 3, 1, 1, true).with_width(70),
            case(2, 3, 1, 2, 3, 2, 1, true).with_width(3),
        ];
        for c in &cases {
            let [_, dx, dw, db] = outputs(c, |x, w, b| conv2d(x, w, b, c.stride, c.padding, true))?;
            let (xs, ws, bs) = (
                random(c.n * c.cin * c.hw * c.width(), 1, "x"),
                random(c.cout * c.cin * c.k * c.k, 2, "w"),
                random(c.cout, 3, "b"),
            );
            let loss = |x: &[f32], w: &[f32], b: &[f32]| -> Result<f64> {
                let dev = Device::Cpu;
                let x = Tensor::from_vec(x.to_vec(), (c.n, c.cin, c.hw, c.width()), &dev)?;
                let w = Tensor::from_vec(w.to_vec(), (c.cout, c.cin, c.k, c.k), &dev)?;
                let b = Tensor::from_vec(b.to_vec(), c.cout, &dev)?;
                let y: Vec<f32> = conv2d(&x, &w, Some(&b), c.stride, c.padding, true)?
                    .flatten_all()?
                    .to_vec1()?;
                let r = random(y.len(), 4, "r");
                Ok(y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum())
            };
            let h = 1e-2f32;
            let check = |analytic: &[f32], which: usize| -> Result<()> {
                for i in 0..analytic.len() {
                    let mut v = [xs.clone(), ws.clone(), bs.clone()];
                    v[which][i] += h;
                    let up = loss(&v[0], &v[1], &v[2])?;
                    v[which][i] -= 2.0 * h;
                    let down = loss(&v[0], &v[1], &v[2])?;
                    let fd = (up - down) / (2.0 * h as f64);
                    let a = analytic[i] as f64;
                    assert!(
                        (fd - a).abs() <= 2e-3 * (1.0 + a.abs()),
                        "arg {which} [{i}]: fd {fd} vs {a}"
                    );
                }
                Ok(())
            };
            check(&dx, 0)?;
            check(&dw, 1)?;
            check(&db, 2)?;
        }
        Ok(())
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() -> Result<()> {
        let run = |threads: usize, c: &Case| -> Result<[Vec<f32>; 4]> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            pool.install(|| outputs(c, |x, w, b| conv2d(x, w, b, c.stride, c.padding, true)))
        };
        // Per-image (several tasks) and batch-wide paths.
        for c in [
            case(19, 4, 8, 5, 3, 1, 1, true),
            case(6, 32, 4, 16, 3, 1, 1, true),
        ] {
            assert_eq!(run(1, &c)?, run(3, &c)?, "n{} @{}", c.n, c.hw);
        }
        Ok(())
    }

    #[test]
    fn taps_that_only_see_padding_are_dropped() -> Result<()> {
        let live = |x: [usize; 4], w: [usize; 4], s: usize, p: usize| -> Result<Vec<(usize, usize)>> {
            Ok(ConvShape::new(&x, &w, s, p)?.taps)
        };
        assert_eq!(live([1, 8, 1, 1], [4, 8, 3, 3], 1, 1)?, vec![(1, 1)]);
        assert_eq!(
            live([1, 8, 2, 2], [4, 8, 3, 3], 2, 1)?,
            vec![(1, 1), (1, 2), (2, 1), (2, 2)]
        );
        assert_eq!(live([1, 8, 4, 4], [4, 8, 3, 3], 1, 1)?.len(), 9);
        Ok(())
    }

    #[test]
    fn input_grad_false_skips_only_the_input_gradient() -> Result<()> {
        let c = case(2, 3, 8, 4, 3, 1, 1, true);
        let with = outputs(&c, |x, w, b| conv2d(x, w, b, 1, 1, true))?;
        let without = outputs(&c, |x, w, b| conv2d(x, w, b, 1, 1, false))?;
        assert!(without[1].is_empty(), "no input gradient");
        assert_eq!(with[0], without[0]);
        assert_eq!(with[2], without[2]);
        assert_eq!(with[3], without[3]);
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &dev).expect("x");
        let w = Tensor::zeros((4, 2, 3, 3), candle_core::DType::F32, &dev).expect("w");
        assert!(conv2d(&x, &w, None, 1, 1, true).is_err(), "channel mismatch");
        let w = Tensor::zeros((4, 3, 3, 3), candle_core::DType::F32, &dev).expect("w");
        let b = Tensor::zeros(5, candle_core::DType::F32, &dev).expect("b");
        assert!(conv2d(&x, &w, Some(&b), 1, 1, true).is_err(), "bias length");
        assert!(conv2d(&x, &w, None, 0, 1, true).is_err(), "stride 0");
    }
}
