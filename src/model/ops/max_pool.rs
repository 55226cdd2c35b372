//! 2-D max-pooling with any kernel, stride and padding, with PyTorch's exact forward and backward.
//!
//! Candle's own `max_pool2d` has no padding, refuses `kernel != stride` in backward and scales its
//! gradient by 1/(k·k); this op replaces it. On the CPU (f32) it is a custom op that records the
//! argmax of every window; on CUDA (f32) its twin in max_pool_cuda.rs does the same; elsewhere it is
//! composed of Candle ops so autograd derives the gradient.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};

use super::cpu_data::{contiguous_f32, is_cpu_f32, par_filled, par_filled2, with_f32, with_scratch};
use crate::model::decl::Window;

// The model's pooling window, with the geometry this op needs; its padding acts as −∞ here.
impl Window {
    /// Check the window against PyTorch's rules (padding at most half the kernel) for an input `h`×`w`.
    pub(crate) fn validate(&self, h: usize, w: usize) -> Result<()> {
        if self.kernel == 0 || self.stride == 0 {
            bail!(
                "max_pool2d: kernel ({}) and stride ({}) must be at least 1",
                self.kernel,
                self.stride
            )
        }
        if 2 * self.padding > self.kernel {
            bail!(
                "max_pool2d: padding {} must be at most half the kernel {} (PyTorch's rule)",
                self.padding,
                self.kernel
            )
        }
        if h + 2 * self.padding < self.kernel || w + 2 * self.padding < self.kernel {
            bail!(
                "max_pool2d: input {h}x{w} with padding {} is smaller than the kernel {}",
                self.padding,
                self.kernel
            )
        }
        Ok(())
    }

    /// Output length along one axis: floor((len + 2p − k) / s) + 1 (PyTorch, ceil_mode=False).
    pub fn out_len(&self, len: usize) -> usize {
        (len + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// The output positions `[lo, hi)` along an axis of `len` inputs (and `out` outputs) whose window tap
    /// `tap` lands inside the input rather than on the padding.
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

    /// The input index range `[start, end)` the window at output position `o` covers, clipped to `len`.
    fn span(&self, o: usize, len: usize) -> (usize, usize) {
        let start = (o * self.stride) as isize - self.padding as isize;
        let end = (start + self.kernel as isize).min(len as isize);
        (start.max(0) as usize, end as usize)
    }
}

/// Max-pool `x` `[N, C, H, W]` with a square window; padding acts as −∞ (PyTorch's `MaxPool2d`).
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let window = Window {
        kernel,
        stride,
        padding,
    };
    window.validate(h, w)?;
    if is_cpu_f32(x) {
        x.contiguous()?.apply_op1(MaxPool2d {
            window,
            argmax: OnceLock::new(),
        })
    } else {
        #[cfg(feature = "cuda")]
        if crate::cuda::is_cuda_f32(x) && crate::cuda::kernels_enabled() {
            return super::max_pool_cuda::max_pool2d_cuda(x, window);
        }
        max_pool2d_composed(x, window)
    }
}

/// The CPU op; `argmax` holds, per output element, the flat index within its `H×W` plane of the input
/// element it took (what the backward routes the gradient to).
struct MaxPool2d {
    window: Window,
    argmax: OnceLock<Vec<u32>>,
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "labpipe-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (oh, ow) = (self.window.out_len(h), self.window.out_len(w));
        let (out, argmax) = par_filled2(
            n * c * oh * ow,
            oh * ow,
            n * c * oh * ow,
            oh * ow,
            |plane, out, argmax| pool_plane(&x[plane * h * w..][..h * w], h, w, self.window, out, argmax),
        );
        if self.argmax.set(argmax).is_err() {
            bail!("max_pool2d: an op instance ran its forward pass twice")
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = arg.dims4()?;
        let (_, _, oh, ow) = res.dims4()?;
        let Some(argmax) = self.argmax.get() else {
            bail!("max_pool2d: backward called before the forward pass")
        };
        let dx = with_f32(grad_res, self.name(), |g| {
            Ok(par_filled(n * c * h * w, h * w, |plane, dx: &mut [f32]| {
                let at = plane * oh * ow;
                // Overlapping windows may pick the same element: their gradients add up.
                for (&gi, &ai) in g[at..][..oh * ow].iter().zip(&argmax[at..][..oh * ow]) {
                    dx[ai as usize] += gi;
                }
            }))
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, c, h, w), arg.device())?))
    }
}

/// Pool one `h×w` plane; ties keep the first maximum in row-major window order, a NaN wins (as PyTorch).
///
/// Each output row is built tap by tap across all its windows: the input row is first split into
/// `stride` phases (`phase[r][j] = row[j·stride + r]`), so every tap reads a contiguous run and the
/// compare-and-select over the output row vectorizes. (Looping window by window instead is 4–10×
/// slower: short loops and a mispredicted branch per element.)
pub(crate) fn pool_plane(x: &[f32], h: usize, w: usize, window: Window, out: &mut [f32], argmax: &mut [u32]) {
    let ow = window.out_len(w);
    let (s, pad) = (window.stride, window.padding);
    let pw = w.div_ceil(s);
    // Per kernel column: the outputs [lo, hi) it reaches inside the image, and where output `lo` reads
    // (its phase and index in that phase).
    let taps: Vec<(usize, usize, usize, usize)> = (0..window.kernel)
        .filter_map(|kx| {
            let (lo, hi) = window.tap_range(kx, ow, w);
            let first = lo * s + kx;
            (lo < hi).then(|| (lo, hi, (first - pad) % s, (first - pad) / s))
        })
        .collect();
    let first_col: Vec<u32> = (0..ow).map(|ox| window.span(ox, w).0 as u32).collect();
    let mut pool_rows = |phases: &[f32]| {
        for (oy, (out_row, arg_row)) in out
            .chunks_exact_mut(ow)
            .zip(argmax.chunks_exact_mut(ow))
            .enumerate()
        {
            let (y0, y1) = window.span(oy, h);
            out_row.fill(f32::NEG_INFINITY);
            // An all −∞ window reports its first in-image element, as PyTorch does.
            for (a, &x0) in arg_row.iter_mut().zip(&first_col) {
                *a = (y0 * w) as u32 + x0;
            }
            for y in y0..y1 {
                for &(lo, hi, r, j0) in &taps {
                    let src = &phases[(y * s + r) * pw + j0..][..hi - lo];
                    let at = (y * w + j0 * s + r) as u32;
                    select_max(src, &mut out_row[lo..hi], &mut arg_row[lo..hi], at, s as u32);
                }
            }
        }
    };
    if s == 1 {
        pool_rows(x);
        return;
    }
    with_scratch(h * s * pw, |phases| {
        for (row, ph) in x.chunks_exact(w).zip(phases.chunks_exact_mut(s * pw)) {
            if s == 2 {
                let (even, odd) = ph.split_at_mut(pw);
                for ((pair, e), o) in row.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
                    *e = pair[0];
                    *o = pair[1];
                }
                if w % 2 == 1 {
                    even[pw - 1] = row[w - 1];
                }
            } else {
                for (j, &v) in row.iter().enumerate() {
                    ph[(j % s) * pw + j / s] = v;
                }
            }
        }
        pool_rows(phases);
    });
}

/// Where `src[i]` beats `best[i]` (greater, or NaN as PyTorch), take it and the input index
/// `first + i·step`. Bit masks rather than `if` keep the loop branch-free and vectorized.
fn select_max(src: &[f32], best: &mut [f32], at: &mut [u32], first: u32, step: u32) {
    for (i, ((&v, b), a)) in src.iter().zip(best.iter_mut()).zip(at.iter_mut()).enumerate() {
        let (old_b, old_a) = (*b, *a);
        let take = (((v > old_b) | v.is_nan()) as u32).wrapping_neg();
        *b = f32::from_bits((v.to_bits() & take) | (old_b.to_bits() & !take));
        *a = ((first + i as u32 * step) & take) | (old_a & !take);
    }
}

/// The same pooling from Candle ops (for CUDA/Metal and non-f32 types): pad with −∞, stack the k² strided
/// views on a new last axis, and gather at their argmax, so autograd sends the gradient to the first maximum.
fn max_pool2d_composed(x: &Tensor, window: Window) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = (window.out_len(h), window.out_len(w));
    let x = pad_neg_inf(x, 2, window, oh)?;
    let x = pad_neg_inf(&x, 3, window, ow)?;
    let device = x.device();
    let taps = |len: usize, offset: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..len).map(|o| (o * window.stride + offset) as u32).collect();
        Tensor::from_vec(idx, len, device)
    };
    let mut views = Vec::with_capacity(window.kernel * window.kernel);
    for ky in 0..window.kernel {
        let rows = x.index_select(&taps(oh, ky)?, 2)?;
        for kx in 0..window.kernel {
            views.push(rows.index_select(&taps(ow, kx)?, 3)?);
        }
    }
    let stacked = Tensor::stack(&views, 4)?;
    // argmax keeps the first of equal maxima; gather's backward routes the gradient only there.
    let first_max = stacked.argmax_keepdim(4)?;
    stacked.gather(&first_max, 4)?.squeeze(4)
}

/// Pad axis `dim` with −∞ so exactly the `out` windows fit: `padding` before, whatever the last window
/// needs after (cropping input rows no window reaches, as floor-mode pooling ignores them).
fn pad_neg_inf(x: &Tensor, dim: usize, window: Window, out: usize) -> Result<Tensor> {
    let len = x.dim(dim)?;
    let needed = (out - 1) * window.stride + window.kernel;
    let kept = len.min(needed - window.padding);
    let after = needed - window.padding - kept;
    let x = x.narrow(dim, 0, kept)?;
    let border = |size: usize| -> Result<Option<Tensor>> {
        if size == 0 {
            return Ok(None);
        }
        let mut dims = x.dims().to_vec();
        dims[dim] = size;
        let t = Tensor::full(f32::NEG_INFINITY, dims, x.device())?;
        Ok(Some(if x.dtype() == DType::F32 {
            t
        } else {
            t.to_dtype(x.dtype())?
        }))
    };
    let parts: Vec<Tensor> = [border(window.padding)?, Some(x.clone()), border(after)?]
        .into_iter()
        .flatten()
        .collect();
    // index_select needs a contiguous source, which a lone narrowed part is not.
    Tensor::cat(&parts, dim)?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    /// A straightforward per-window reference over an explicitly −∞-padded plane.
    fn naive_forward(x: &[f32], dims: (usize, usize, usize, usize), win: Window) -> (Vec<f32>, Vec<usize>) {
        let (n, c, h, w) = dims;
        let (oh, ow) = (win.out_len(h), win.out_len(w));
        let (mut out, mut at) = (Vec::new(), Vec::new());
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut best, mut best_at) = (f32::NEG_INFINITY, usize::MAX);
                    for ky in 0..win.kernel {
                        for kx in 0..win.kernel {
                            let y = (oy * win.stride + ky) as isize - win.padding as isize;
                            let xx = (ox * win.stride + kx) as isize - win.padding as isize;
                            if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                continue;
                            }
                            let i = plane * h * w + y as usize * w + xx as usize;
                            if best_at == usize::MAX || x[i] > best {
                                best = x[i];
                                best_at = i;
                            }
                        }
                    }
                    out.push(best);
                    at.push(best_at);
                }
            }
        }
        (out, at)
    }

    /// The reference backward: each output's gradient goes to its window's first maximum.
    fn naive_backward(x_len: usize, at: &[usize], g: &[f32]) -> Vec<f32> {
        let mut dx = vec![0f32; x_len];
        for (&i, &gi) in at.iter().zip(g) {
            dx[i] += gi;
        }
        dx
    }

    /// Random data rounded to a few levels so windows often hold equal maxima.
    fn tied_input(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::stream(seed, "max-pool-test", 0);
        (0..len).map(|_| (rng.next_f32() * 4.0).floor() - 2.0).collect()
    }

    fn weights(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::stream(seed, "max-pool-weights", 0);
        (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    const CASES: [(Window, (usize, usize, usize, usize)); 7] = [
        (
            Window {
                kernel: 4,
                stride: 3,
                padding: 2,
            },
            (1, 2, 11, 10),
        ),
        (
            Window {
                kernel: 3,
                stride: 2,
                padding: 1,
            },
            (2, 2, 7, 9),
        ),
        (
            Window {
                kernel: 3,
                stride: 2,
                padding: 1,
            },
            (2, 3, 9, 8),
        ),
        (
            Window {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            (2, 3, 8, 7),
        ),
        (
            Window {
                kernel: 3,
                stride: 1,
                padding: 0,
            },
            (1, 4, 6, 5),
        ),
        (
            Window {
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            (2, 2, 5, 6),
        ),
        (
            Window {
                kernel: 3,
                stride: 2,
                padding: 1,
            },
            (3, 2, 16, 16),
        ),
    ];

    /// Output and input gradient of `pool` for `x` and upstream weights `r` (loss = Σ pool(x)·r).
    fn run(
        pool: impl Fn(&Tensor) -> Result<Tensor>,
        x: &[f32],
        dims: (usize, usize, usize, usize),
        r: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let var = Var::from_vec(x.to_vec(), dims, &Device::Cpu)?;
        let y = pool(var.as_tensor())?;
        let r = Tensor::from_vec(r.to_vec(), y.shape(), &Device::Cpu)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let dx = grads
            .get(var.as_tensor())
            .expect("input gradient")
            .flatten_all()?
            .to_vec1()?;
        Ok((y.flatten_all()?.to_vec1()?, dx))
    }

    #[test]
    fn forward_and_backward_match_the_naive_reference_with_ties() -> Result<()> {
        for (seed, (win, dims)) in CASES.into_iter().enumerate() {
            let len = dims.0 * dims.1 * dims.2 * dims.3;
            let x = tied_input(len, seed as u64);
            let (want, at) = naive_forward(&x, dims, win);
            let r = weights(want.len(), seed as u64);
            let want_dx = naive_backward(len, &at, &r);
            let (got, dx) = run(
                |t| max_pool2d(t, win.kernel, win.stride, win.padding),
                &x,
                dims,
                &r,
            )?;
            assert_eq!(got, want, "forward {win:?}");
            assert_eq!(dx, want_dx, "backward {win:?}");
            let (got_c, dx_c) = run(|t| max_pool2d_composed(t, win), &x, dims, &r)?;
            assert_eq!(got_c, want, "composed forward {win:?}");
            assert_eq!(dx_c, want_dx, "composed backward {win:?}");
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        // Distinct values (a permutation) keep every max unique, so the loss is locally linear.
        for (win, dims) in CASES {
            let len = dims.0 * dims.1 * dims.2 * dims.3;
            let mut idx: Vec<usize> = (0..len).collect();
            Rng::stream(7, "perm", 0).shuffle(&mut idx);
            let x: Vec<f32> = idx.iter().map(|&i| i as f32 * 0.01).collect();
            let out_len = dims.0 * dims.1 * win.out_len(dims.2) * win.out_len(dims.3);
            let r = weights(out_len, 3);
            let (_, dx) = run(
                |t| max_pool2d(t, win.kernel, win.stride, win.padding),
                &x,
                dims,
                &r,
            )?;
            let loss = |x: &[f32]| -> Result<f64> {
                let t = Tensor::from_vec(x.to_vec(), dims, &Device::Cpu)?;
                let y: Vec<f32> = max_pool2d(&t, win.kernel, win.stride, win.padding)?
                    .flatten_all()?
                    .to_vec1()?;
                Ok(y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum())
            };
            let h = 1e-3f32;
            for i in (0..len).step_by(7) {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += h;
                down[i] -= h;
                let fd = (loss(&up)? - loss(&down)?) / (2.0 * h as f64);
                assert!(
                    (fd - dx[i] as f64).abs() < 1e-3,
                    "{win:?} element {i}: fd {fd} vs {}",
                    dx[i]
                );
            }
        }
        Ok(())
    }

    #[test]
    fn single_maximum_gets_the_whole_gradient_not_one_over_k_squared() -> Result<()> {
        // Candle's own max_pool2d gives 0.25 here; PyTorch gives 1.
        let (_, dx) = run(
            |t| max_pool2d(t, 2, 2, 0),
            &[1.0, 2.0, 3.0, 4.0],
            (1, 1, 2, 2),
            &[1.0],
        )?;
        assert_eq!(dx, vec![0.0, 0.0, 0.0, 1.0]);
        let x: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let (_, dx) = run(|t| max_pool2d(t, 3, 3, 0), &x, (1, 1, 3, 3), &[1.0])?;
        assert_eq!(dx[8], 1.0);
        Ok(())
    }

    #[test]
    fn output_size_follows_pytorch_floor_mode() -> Result<()> {
        let x = Tensor::zeros((1, 1, 32, 31), DType::F32, &Device::Cpu)?;
        assert_eq!(max_pool2d(&x, 3, 2, 1)?.dims4()?, (1, 1, 16, 16));
        assert_eq!(max_pool2d(&x, 2, 2, 0)?.dims4()?, (1, 1, 16, 15));
        assert_eq!(max_pool2d(&x, 3, 1, 0)?.dims4()?, (1, 1, 30, 29));
        assert!(
            max_pool2d(&x, 3, 2, 2).is_err(),
            "padding over half the kernel is rejected"
        );
        Ok(())
    }

    #[test]
    fn strided_input_and_nan_follow_pytorch() -> Result<()> {
        let x = Tensor::from_vec(vec![1.0f32, f32::NAN, 3.0, 0.5], (1, 1, 2, 2), &Device::Cpu)?;
        let y: Vec<f32> = max_pool2d(&x, 2, 2, 0)?.flatten_all()?.to_vec1()?;
        assert!(y[0].is_nan(), "a NaN in the window propagates");
        // A transposed (non-contiguous) input pools like its contiguous copy.
        let t = Tensor::from_vec(
            (0..16).map(|i| i as f32).collect::<Vec<_>>(),
            (1, 1, 4, 4),
            &Device::Cpu,
        )?
        .t()?;
        let a: Vec<f32> = max_pool2d(&t, 2, 2, 0)?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = max_pool2d(&t.contiguous()?, 2, 2, 0)?.flatten_all()?.to_vec1()?;
        assert_eq!(a, b);
        Ok(())
    }
}
