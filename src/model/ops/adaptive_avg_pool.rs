//! 2-D adaptive average pooling to any output size, with PyTorch's windows, forward and backward.
//!
//! Output `i` along an axis of `len` inputs and `out` outputs averages the inputs
//! `floor(i·len/out) .. ceil((i+1)·len/out)`: when `out` divides `len` these are the non-overlapping
//! windows of an ordinary average pool, otherwise neighbouring windows differ in size and may share an
//! input (8 → 7: every window has two inputs, and each inner input is in two windows).
//!
//! A 1×1 output and a size that divides the input keep Candle's mean and average pool, as before. Any
//! other size runs, for f32 on the CPU, a custom op that adds and divides in PyTorch's CPU order
//! (`sum / kh / kw`; the backward adds `grad / kh / kw` to every input of the window); elsewhere it is a
//! product with two averaging matrices, so autograd derives the gradient.

use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Tensor, bail};

use super::cpu_data::{contiguous_f32, is_cpu_f32_cpu_only, par_filled, with_f32};

/// The input range `[start, end)` that output `i` of `out` averages along an axis of `len` inputs:
/// PyTorch's `start = floor(i·len/out)`, `end = ceil((i+1)·len/out)`.
pub fn adaptive_span(i: usize, out: usize, len: usize) -> (usize, usize) {
    (i * len / out, ((i + 1) * len).div_ceil(out))
}

/// Average-pool `x` `[N, C, H, W]` to `[N, C, output, output]` (PyTorch's `AdaptiveAvgPool2d(output)`).
pub fn adaptive_avg_pool2d(x: &Tensor, output: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if output == 0 || h == 0 || w == 0 {
        bail!("adaptive_avg_pool2d: output {output} and input {h}x{w} must all be at least 1")
    }
    if output == 1 {
        x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)
    } else if h % output == 0 && w % output == 0 {
        x.avg_pool2d_with_stride((h / output, w / output), (h / output, w / output))
    } else if is_cpu_f32_cpu_only(x) {
        x.contiguous()?.apply_op1(AdaptiveAvgPool2d { output })
    } else {
        adaptive_avg_pool2d_composed(x, output)
    }
}

/// The CPU op for sizes that do not divide the input.
struct AdaptiveAvgPool2d {
    output: usize,
}

/// Every window of one axis: `(start, end)` per output position.
fn spans(out: usize, len: usize) -> Vec<(usize, usize)> {
    (0..out).map(|i| adaptive_span(i, out, len)).collect()
}

impl CustomOp1 for AdaptiveAvgPool2d {
    fn name(&self) -> &'static str {
        "labpipe-adaptive-avg-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let o = self.output;
        let (rows, cols) = (spans(o, h), spans(o, w));
        let out = par_filled(n * c * o * o, o * o, |plane, out: &mut [f32]| {
            let x = &x[plane * h * w..][..h * w];
            for (out_row, &(y0, y1)) in out.chunks_exact_mut(o).zip(&rows) {
                for (dst, &(x0, x1)) in out_row.iter_mut().zip(&cols) {
                    let mut sum = 0f32;
                    for row in x[y0 * w..y1 * w].chunks_exact(w) {
                        for &v in &row[x0..x1] {
                            sum += v;
                        }
                    }
                    *dst = sum / (y1 - y0) as f32 / (x1 - x0) as f32;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, o, o))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = arg.dims4()?;
        let o = self.output;
        let (rows, cols) = (spans(o, h), spans(o, w));
        let dx = with_f32(grad_res, self.name(), |g| {
            Ok(par_filled(n * c * h * w, h * w, |plane, dx: &mut [f32]| {
                let g = &g[plane * o * o..][..o * o];
                for (g_row, &(y0, y1)) in g.chunks_exact(o).zip(&rows) {
                    for (&gi, &(x0, x1)) in g_row.iter().zip(&cols) {
                        let delta = gi / (y1 - y0) as f32 / (x1 - x0) as f32;
                        // Overlapping windows share inputs: their gradients add up.
                        for row in dx[y0 * w..y1 * w].chunks_exact_mut(w) {
                            for d in &mut row[x0..x1] {
                                *d += delta;
                            }
                        }
                    }
                }
            }))
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, c, h, w), arg.device())?))
    }
}

/// `[out, len]`: row `i` holds `1 / (end − start)` over output `i`'s window, zeros elsewhere.
fn averaging_matrix(out: usize, len: usize, like: &Tensor) -> Result<Tensor> {
    let mut m = vec![0f64; out * len];
    for (i, (start, end)) in spans(out, len).into_iter().enumerate() {
        m[i * len + start..i * len + end].fill(1.0 / (end - start) as f64);
    }
    Tensor::from_vec(m, (out, len), like.device())?.to_dtype(like.dtype())
}

/// The same pooling from Candle ops (for CUDA/Metal and non-f32 types): `A_h · x · A_wᵀ` per plane.
fn adaptive_avg_pool2d_composed(x: &Tensor, output: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let a_h = averaging_matrix(output, h, x)?;
    let a_w = averaging_matrix(output, w, x)?;
    // [N, C, H, W] · A_wᵀ → [N, C, H, O]; transposed, · A_hᵀ → [N, C, O, O] with rows and columns swapped.
    let cols = x.contiguous()?.broadcast_matmul(&a_w.t()?)?;
    let both = cols.transpose(2, 3)?.contiguous()?.broadcast_matmul(&a_h.t()?)?;
    both.transpose(2, 3)?.contiguous()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use candle_core::{DType, Device, Var, safetensors};

    use super::*;
    use crate::rng::Rng;

    #[test]
    fn spans_follow_pytorchs_formula_and_cover_the_axis() {
        assert_eq!(
            spans(7, 8),
            vec![(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (6, 8)]
        );
        assert_eq!(spans(3, 5), vec![(0, 2), (1, 4), (3, 5)]);
        // An output larger than the input repeats inputs.
        assert_eq!(spans(5, 3), vec![(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]);
        // A divisor gives the ordinary non-overlapping windows.
        assert_eq!(spans(2, 8), vec![(0, 4), (4, 8)]);
        for len in 1..12 {
            for out in 1..12 {
                let s = spans(out, len);
                assert_eq!((s[0].0, s[out - 1].1), (0, len), "{out} of {len}");
                assert!(s.iter().all(|&(a, b)| a < b), "{out} of {len}: {s:?}");
                assert!(s.windows(2).all(|p| p[1].0 <= p[0].1), "{out} of {len}: a gap");
            }
        }
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::stream(seed, "adaptive-pool", 0);
        (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    /// Output and input gradient for `x` `dims` and upstream weights `r` (loss = Σ pool(x)·r).
    fn forward_backward(x: &Tensor, output: usize, r: &Tensor) -> (Tensor, Tensor) {
        let var = Var::from_tensor(x).unwrap();
        let y = adaptive_avg_pool2d(var.as_tensor(), output).unwrap();
        let loss = (&y * r.to_dtype(y.dtype()).unwrap()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let dx = grads.get(var.as_tensor()).expect("input gradient").clone();
        (y, dx)
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.dims(), b.dims());
        flat(a)
            .iter()
            .zip(flat(b))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// The custom CPU op (f32) and the composed path (f64 on the CPU takes it) agree on forward and backward.
    #[test]
    fn cpu_op_and_composed_path_agree() {
        for (dims, output) in [
            ((2, 3, 8, 8), 7),
            ((1, 2, 5, 5), 3),
            ((2, 2, 3, 3), 5),
            ((1, 1, 10, 6), 4),
        ] {
            let (n, c, h, w) = dims;
            let x = Tensor::from_vec(random(n * c * h * w, 1), dims, &Device::Cpu).unwrap();
            let r = Tensor::from_vec(
                random(n * c * output * output, 2),
                (n, c, output, output),
                &Device::Cpu,
            )
            .unwrap();
            let (y32, dx32) = forward_backward(&x, output, &r);
            let (y64, dx64) = forward_backward(&x.to_dtype(DType::F64).unwrap(), output, &r);
            assert_eq!(y32.dims(), &[n, c, output, output]);
            assert!(max_abs_diff(&y32, &y64) < 1e-6, "{dims:?} → {output}: forward");
            assert!(max_abs_diff(&dx32, &dx64) < 1e-6, "{dims:?} → {output}: backward");
        }
    }

    /// Sizes that divide the input, and 1×1, keep the paths they had: same numbers as a plain average pool.
    #[test]
    fn dividing_sizes_match_an_ordinary_average_pool() {
        let x = Tensor::from_vec(random(2 * 3 * 8 * 8, 3), (2, 3, 8, 8), &Device::Cpu).unwrap();
        let y = adaptive_avg_pool2d(&x, 2).unwrap();
        assert_eq!(flat(&y), flat(&x.avg_pool2d(4).unwrap()));
        let g = adaptive_avg_pool2d(&x, 1).unwrap();
        assert!(max_abs_diff(&g, &x.mean_keepdim(2).unwrap().mean_keepdim(3).unwrap()) < 1e-7);
    }

    #[test]
    fn zero_output_is_refused() {
        let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(adaptive_avg_pool2d(&x, 0).is_err());
    }

    /// PyTorch's `F.adaptive_avg_pool2d` forward and input gradient on non-dividing sizes
    /// (tests/fixtures/adaptive_pool, made by scripts/fixtures/adaptive_pool_fixtures.py).
    #[test]
    fn matches_pytorch_forward_and_input_gradient() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adaptive_pool");
        let t: HashMap<String, Tensor> =
            safetensors::load(dir.join("adaptive_pool.safetensors"), &Device::Cpu).expect("fixture");
        let mut worst = [(DType::F32, 0f64, 0f64), (DType::F64, 0f64, 0f64)];
        for case in ["8x8_to_7", "5x5_to_3", "3x3_to_5", "10x6_to_4"] {
            let get = |k: &str| {
                t.get(&format!("{case}.{k}"))
                    .unwrap_or_else(|| panic!("{case}.{k}"))
            };
            let (x, r) = (get("x"), get("grad_output"));
            let output = r.dim(3).unwrap();
            for (dtype, worst_fwd, worst_bwd) in worst.iter_mut() {
                let (y, dx) = forward_backward(&x.to_dtype(*dtype).unwrap(), output, r);
                let (fwd, bwd) = (max_abs_diff(&y, get("y")), max_abs_diff(&dx, get("grad_x")));
                assert!(
                    fwd < 1e-6 && bwd < 1e-6,
                    "{case} {dtype:?}: forward {fwd:e}, backward {bwd:e}"
                );
                (*worst_fwd, *worst_bwd) = (worst_fwd.max(fwd), worst_bwd.max(bwd));
            }
        }
        eprintln!("largest |labpipe − torch| (forward, input gradient) per dtype: {worst:?}");
    }
}
