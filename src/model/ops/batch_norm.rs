//! Training-mode batch normalization, optionally fused with ReLU or with a residual add and ReLU, with a
//! hand-written backward.
//!
//! Candle-nn's training BatchNorm is about ten tensor ops whose autograd adds twenty more passes;
//! here the forward is two reading passes and one writing pass, the backward one of each. The batch
//! statistics come back detached so the caller can update running statistics as PyTorch does.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::bn_parts::{Epilogue, ncl};
use super::cpu_data::{CpuF32, contiguous_f32, is_cpu_f32, par_filled, par_filled2};
use super::lanes;

/// Normalize `x` `[N, C, ...]` per channel over the batch, then scale by `weight` and shift by `bias`
/// (both `[C]`). Returns (y, batch mean `[C]`, biased batch variance `[C]`); the statistics are detached.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    batch_norm(x, weight, bias, None, eps, Epilogue::None)
}

/// [`batch_norm_train`] followed by ReLU in the same passes (the BN → ReLU pairs of both networks).
pub fn batch_norm_relu_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    batch_norm(x, weight, bias, None, eps, Epilogue::Relu)
}

/// `relu(batch_norm(x) + residual)` in the same passes: the end of a ResNet BasicBlock (`residual` has
/// `x`'s shape and gets its gradient too).
pub fn batch_norm_add_relu_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    if residual.dims() != x.dims() {
        bail!(
            "batch_norm_add_relu: residual {:?} must have the input's shape {:?}",
            residual.dims(),
            x.dims()
        )
    }
    batch_norm(x, weight, bias, Some(residual), eps, Epilogue::AddRelu)
}

fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    eps: f64,
    epilogue: Epilogue,
) -> Result<(Tensor, Tensor, Tensor)> {
    check_shapes(x, weight, bias)?;
    let on_cpu = is_cpu_f32(x) && is_cpu_f32(weight) && is_cpu_f32(bias) && residual.is_none_or(is_cpu_f32);
    if !on_cpu {
        #[cfg(feature = "cuda")]
        if crate::cuda::is_cuda_f32(x)
            && crate::cuda::is_cuda_f32(weight)
            && crate::cuda::is_cuda_f32(bias)
            && residual.is_none_or(crate::cuda::is_cuda_f32)
            && crate::cuda::kernels_enabled()
        {
            return super::batch_norm_cuda::batch_norm_cuda(x, weight, bias, residual, eps, epilogue);
        }
        return batch_norm_composed(x, weight, bias, residual, eps, epilogue);
    }
    let stats = Arc::new(OnceLock::new());
    let op = BatchNorm {
        eps,
        epilogue,
        stats: stats.clone(),
    };
    let x = x.contiguous()?;
    let y = match residual {
        // A custom op takes at most three tensors: weight and bias travel stacked as [2, C].
        Some(r) => x.apply_op3(&Tensor::stack(&[weight, bias], 0)?, &r.contiguous()?, op)?,
        None => x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?,
    };
    let Some(stats) = stats.get() else {
        bail!("batch_norm: the forward pass recorded no statistics")
    };
    let (mean, var) = stats.tensors(x.device())?;
    Ok((y, mean, var))
}

/// Check `x` is `[N, C, ...]` with more than one value per channel and `weight`, `bias` are `[C]`.
pub(crate) fn check_shapes(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<()> {
    let dims = x.dims();
    if dims.len() < 2 {
        bail!("batch_norm: input has shape {dims:?}, expected [N, C, ...]")
    }
    let c = dims[1];
    if weight.dims() != [c] || bias.dims() != [c] {
        bail!(
            "batch_norm: weight {:?} and bias {:?} must both be [{c}] (one per channel of input {dims:?})",
            weight.dims(),
            bias.dims()
        )
    }
    if x.elem_count() / c.max(1) < 2 {
        bail!("batch_norm: training needs more than one value per channel, got input {dims:?}")
    }
    Ok(())
}

/// The same computation from Candle ops (CUDA/Metal, non-f32 types, and the tests' reference).
fn batch_norm_composed(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    eps: f64,
    epilogue: Epilogue,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, c) = (x.dim(0)?, x.dim(1)?);
    let x3 = x.reshape((n, c, ()))?;
    let mean = x3.mean_keepdim(2)?.mean_keepdim(0)?;
    let centered = x3.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(2)?.mean_keepdim(0)?;
    let y = centered
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&weight.reshape((1, c, 1))?)?
        .broadcast_add(&bias.reshape((1, c, 1))?)?
        .reshape(x.shape())?;
    let y = match (epilogue, residual) {
        (Epilogue::None, _) => y,
        (Epilogue::Relu, _) => y.relu()?,
        (Epilogue::AddRelu, Some(r)) => (y + r)?.relu()?,
        (Epilogue::AddRelu, None) => bail!("batch_norm_add_relu: no residual given"),
    };
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

/// Per-channel statistics the forward pass computed: mean, 1/sqrt(var + eps), biased variance.
pub(crate) struct Stats {
    pub(crate) mean: Vec<f32>,
    pub(crate) inv_std: Vec<f32>,
    pub(crate) var: Vec<f32>,
}

impl Stats {
    /// The batch statistics of `x` `[N, C, L]` and the per-channel affine map (scale, shift) that
    /// normalizes, scales by `w` and shifts by `b`: y = x·scale + shift.
    pub(crate) fn of(
        x: &[f32],
        ncl: (usize, usize, usize),
        w: &[f32],
        b: &[f32],
        eps: f64,
    ) -> (Self, Vec<f32>, Vec<f32>) {
        let moments = channel_stats(x, ncl);
        let mean: Vec<f32> = moments.iter().map(|m| m.0 as f32).collect();
        let var: Vec<f32> = moments.iter().map(|m| m.1 as f32).collect();
        let inv_std: Vec<f32> = moments
            .iter()
            .map(|m| (1.0 / (m.1 + eps).sqrt()) as f32)
            .collect();
        // scale = w/σ, shift = b − mean·scale.
        let scale: Vec<f32> = w.iter().zip(&inv_std).map(|(w, s)| w * s).collect();
        let shift: Vec<f32> = b
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        (Self { mean, inv_std, var }, scale, shift)
    }

    /// The detached statistics as tensors: (mean, biased variance).
    pub(crate) fn tensors(&self, device: &candle_core::Device) -> Result<(Tensor, Tensor)> {
        let c = self.mean.len();
        Ok((
            Tensor::from_slice(&self.mean, c, device)?,
            Tensor::from_slice(&self.var, c, device)?,
        ))
    }
}

/// The CPU op; `stats` is set by the forward pass and read by the backward pass and the caller.
/// Its three tensors are (x, weight, bias), or (x, [weight; bias] stacked, residual) for `AddRelu`.
struct BatchNorm {
    eps: f64,
    epilogue: Epilogue,
    stats: Arc<OnceLock<Stats>>,
}

/// Per-channel mean and biased variance of `x` `[N, C, L]`, each plane summed in f64.
fn channel_stats(x: &[f32], (n, c, l): (usize, usize, usize)) -> Vec<(f64, f64)> {
    let count = (n * l) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |i| &x[(i * c + ch) * l..][..l]);
            let sum: f64 = planes().map(|p| lanes::sum(p) as f64).sum();
            let mean = sum / count;
            let m = mean as f32;
            let sq: f64 = planes()
                .map(|p| lanes::sum_map(p, |v| (v - m) * (v - m)) as f64)
                .sum();
            (mean, sq / count)
        })
        .collect()
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        match self.epilogue {
            Epilogue::None => "labpipe-batch-norm",
            Epilogue::Relu => "labpipe-batch-norm-relu",
            Epilogue::AddRelu => "labpipe-batch-norm-add-relu",
        }
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "batch_norm input")?;
        let (n, c, l) = ncl(xl.dims());
        let (w, b, residual) = if self.epilogue == Epilogue::AddRelu {
            let wb = contiguous_f32(s2, l2, "batch_norm weight and bias")?;
            let (w, b) = wb.split_at(c);
            (w, b, Some(contiguous_f32(s3, l3, "batch_norm residual")?))
        } else {
            let w = contiguous_f32(s2, l2, "batch_norm weight")?;
            (w, contiguous_f32(s3, l3, "batch_norm bias")?, None)
        };
        let (stats, scale, shift) = Stats::of(x, (n, c, l), w, b, self.eps);
        let y = par_filled(x.len(), l, |plane, y| {
            let (sc, sh) = (scale[plane % c], shift[plane % c]);
            let x = &x[plane * l..][..l];
            match (self.epilogue, residual) {
                (Epilogue::AddRelu, Some(r)) => {
                    let r = &r[plane * l..][..l];
                    for ((y, x), r) in y.iter_mut().zip(x).zip(r) {
                        *y = (x * sc + sh + r).max(0.0);
                    }
                }
                (Epilogue::Relu, _) => y.iter_mut().zip(x).for_each(|(y, x)| *y = (x * sc + sh).max(0.0)),
                _ => y.iter_mut().zip(x).for_each(|(y, x)| *y = x * sc + sh),
            }
        });
        if self.stats.set(stats).is_err() {
            bail!("batch_norm: an op instance ran its forward pass twice")
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _third: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats.get() else {
            bail!("batch_norm: backward called before the forward pass")
        };
        let grad = grad.contiguous()?;
        let (xd, wd, gd, yd) = (
            CpuF32::lock(x, "batch_norm input")?,
            CpuF32::lock(w, "batch_norm weight")?,
            CpuF32::lock(&grad, "batch_norm grad")?,
            CpuF32::lock(res, "batch_norm output")?,
        );
        let (xs, ws, gs, ys) = (xd.as_slice(), wd.as_slice(), gd.as_slice(), yd.as_slice());
        let (n, c, l) = ncl(x.dims());
        let relu = self.epilogue != Epilogue::None;
        // ReLU passes the gradient where its output was positive.
        let dy = |g: f32, y: f32| if relu && y <= 0.0 { 0.0 } else { g };
        // Pass 1: Σ dy and Σ dy·x̂ per channel.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (m, s) = (stats.mean[ch], stats.inv_std[ch]);
                let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
                for i in 0..n {
                    let at = (i * c + ch) * l;
                    let (x, g, y) = (&xs[at..][..l], &gs[at..][..l], &ys[at..][..l]);
                    let (a, b) = lanes::sum2_zip3(x, g, y, |x, g, y| {
                        let d = dy(g, y);
                        (d, d * (x - m))
                    });
                    sum_dy += a as f64;
                    sum_dy_xhat += b as f64 * s as f64;
                }
                (sum_dy, sum_dy_xhat)
            })
            .collect();
        // Pass 2: dx = w·σ⁻¹·(dy − mean(dy) − x̂·mean(dy·x̂)) (and the residual's gradient, dy itself).
        let count = (n * l) as f64;
        let coefficients = |plane: usize| {
            let ch = plane % c;
            let (m, s) = (stats.mean[ch], stats.inv_std[ch]);
            let mean_dy = (sums[ch].0 / count) as f32;
            let mean_dy_xhat = (sums[ch].1 / count) as f32;
            (m, s, ws[ch] * s, mean_dy, mean_dy_xhat)
        };
        let input_grad = |plane: usize, dx: &mut [f32]| {
            let (m, s, k, mean_dy, mean_dy_xhat) = coefficients(plane);
            let at = plane * l;
            let (x, g, y) = (&xs[at..][..l], &gs[at..][..l], &ys[at..][..l]);
            for (((dx, &x), &g), &y) in dx.iter_mut().zip(x).zip(g).zip(y) {
                *dx = k * (dy(g, y) - mean_dy - (x - m) * s * mean_dy_xhat);
            }
        };
        let device = x.device();
        let (dx, d_residual) = if self.epilogue == Epilogue::AddRelu {
            let (dx, dr) = par_filled2(xs.len(), l, xs.len(), l, |plane, dx, dr: &mut [f32]| {
                input_grad(plane, dx);
                let at = plane * l;
                for ((dr, &g), &y) in dr.iter_mut().zip(&gs[at..][..l]).zip(&ys[at..][..l]) {
                    *dr = dy(g, y);
                }
            });
            (dx, Some(Tensor::from_vec(dr, x.shape(), device)?))
        } else {
            (par_filled(xs.len(), l, input_grad), None)
        };
        let dw: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
        let db: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        let dx = Some(Tensor::from_vec(dx, x.shape(), device)?);
        if self.epilogue == Epilogue::AddRelu {
            // The second tensor was [weight; bias] stacked.
            let dwb = Tensor::from_vec([dw, db].concat(), (2, c), device)?;
            Ok((dx, Some(dwb), d_residual))
        } else {
            Ok((
                dx,
                Some(Tensor::from_vec(dw, c, device)?),
                Some(Tensor::from_vec(db, c, device)?),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{DType, Device, Var};

    fn random(len: usize, seed: u64, label: &str, offset: f64) -> Vec<f32> {
        let mut rng = Rng::stream(seed, label, 0);
        (0..len).map(|_| (rng.normal() * 2.0 + offset) as f32).collect()
    }

    type Bn = fn(&Tensor, &Tensor, &Tensor, f64) -> Result<(Tensor, Tensor, Tensor)>;

    /// y, mean, var, dx, dweight, dbias of Σ bn(x)·r.
    fn outputs(
        dims: &[usize],
        bn: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<(Tensor, Tensor, Tensor)>,
    ) -> Result<[Vec<f32>; 6]> {
        let dev = Device::Cpu;
        let c = dims[1];
        let len: usize = dims.iter().product();
        // An offset mean checks the statistics are centred, not just raw moments.
        let x = Var::from_vec(random(len, 1, "x", 3.0), dims, &dev)?;
        let w = Var::from_vec(random(c, 2, "w", 1.0), c, &dev)?;
        let b = Var::from_vec(random(c, 3, "b", 0.0), c, &dev)?;
        let (y, mean, var) = bn(x.as_tensor(), w.as_tensor(), b.as_tensor())?;
        let r = Tensor::from_vec(random(len, 4, "r", 0.0), dims, &dev)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1() };
        let grad = |v: &Var| -> Result<Vec<f32>> { flat(grads.get(v.as_tensor()).expect("gradient")) };
        Ok([
            flat(&y)?,
            flat(&mean)?,
            flat(&var)?,
            grad(&x)?,
            grad(&w)?,
            grad(&b)?,
        ])
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{what}[{i}]: {g} vs {w} (scale {scale})"
            );
        }
    }

    #[test]
    fn matches_the_composed_candle_ops_in_values_and_gradients() -> Result<()> {
        let cases: [(&[usize], bool); 6] = [
            (&[8, 4, 5, 5], false),
            (&[8, 4, 5, 5], true),
            (&[16, 6, 1, 1], true),
            (&[3, 5, 7, 2], false),
            (&[64, 3, 4, 4], true),
            (&[10, 7], false),
        ];
        for (dims, relu) in cases {
            let (ours, reference): (Bn, Bn) = if relu {
                (batch_norm_relu_train, |x, w, b, e| {
                    batch_norm_composed(x, w, b, None, e, Epilogue::Relu)
                })
            } else {
                (batch_norm_train, |x, w, b, e| {
                    batch_norm_composed(x, w, b, None, e, Epilogue::None)
                })
            };
            let got = outputs(dims, |x, w, b| ours(x, w, b, 1e-5))?;
            let want = outputs(dims, |x, w, b| reference(x, w, b, 1e-5))?;
            for (name, (g, w)) in ["y", "mean", "var", "dx", "dweight", "dbias"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_close(g, w, &format!("{dims:?} relu={relu} {name}"));
            }
            if relu {
                assert!(
                    got[0].contains(&0.0) && got[0].iter().all(|v| *v >= 0.0),
                    "ReLU clamps"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn residual_variant_matches_the_composed_ops_including_the_residual_gradient() -> Result<()> {
        for dims in [[8usize, 4, 3, 3], [16, 6, 1, 1], [5, 3, 4, 2]] {
            let len: usize = dims.iter().product();
            let residual = Var::from_vec(random(len, 5, "residual", -0.5), &dims[..], &Device::Cpu)?;
            let run = |fused: bool| -> Result<([Vec<f32>; 6], Vec<f32>)> {
                let mut d_residual = Vec::new();
                let out = outputs(&dims, |x, w, b| {
                    if fused {
                        batch_norm_add_relu_train(x, w, b, residual.as_tensor(), 1e-5)
                    } else {
                        batch_norm_composed(x, w, b, Some(residual.as_tensor()), 1e-5, Epilogue::AddRelu)
                    }
                })?;
                // Recompute the residual gradient through a fresh graph of the same loss.
                let dev = Device::Cpu;
                let c = dims[1];
                let x = Tensor::from_vec(random(len, 1, "x", 3.0), &dims[..], &dev)?;
                let w = Tensor::from_vec(random(c, 2, "w", 1.0), c, &dev)?;
                let b = Tensor::from_vec(random(c, 3, "b", 0.0), c, &dev)?;
                let y = if fused {
                    batch_norm_add_relu_train(&x, &w, &b, residual.as_tensor(), 1e-5)?.0
                } else {
                    batch_norm_composed(&x, &w, &b, Some(residual.as_tensor()), 1e-5, Epilogue::AddRelu)?.0
                };
                let r = Tensor::from_vec(random(len, 4, "r", 0.0), &dims[..], &dev)?;
                let grads = (&y * &r)?.sum_all()?.backward()?;
                if let Some(g) = grads.get(residual.as_tensor()) {
                    d_residual = g.flatten_all()?.to_vec1()?;
                }
                Ok((out, d_residual))
            };
            let (got, got_dr) = run(true)?;
            let (want, want_dr) = run(false)?;
            for (name, (g, w)) in ["y", "mean", "var", "dx", "dweight", "dbias"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_close(g, w, &format!("{dims:?} add+relu {name}"));
            }
            assert_close(&got_dr, &want_dr, &format!("{dims:?} d_residual"));
            assert!(
                got_dr.contains(&0.0) && got_dr.iter().any(|v| *v != 0.0),
                "ReLU masks the residual gradient"
            );
        }
        Ok(())
    }

    #[test]
    fn statistics_are_the_biased_batch_moments_and_detached() -> Result<()> {
        let dev = Device::Cpu;
        // Channel 0 holds 1..=4 over (N=2, L=2): mean 2.5, biased variance 1.25.
        let x = Tensor::from_vec(vec![1f32, 2., 10., 10., 3., 4., 10., 10.], (2, 2, 2), &dev)?;
        let (w, b) = (
            Tensor::ones(2, DType::F32, &dev)?,
            Tensor::zeros(2, DType::F32, &dev)?,
        );
        let (y, mean, var) = batch_norm_train(&x, &w, &b, 0.0)?;
        assert_eq!(mean.to_vec1::<f32>()?, vec![2.5, 10.0]);
        assert_eq!(var.to_vec1::<f32>()?, vec![1.25, 0.0]);
        assert!(!mean.track_op() && !var.track_op());
        let y: Vec<f32> = y.flatten_all()?.to_vec1()?;
        let want = -1.5 / 1.25f32.sqrt();
        assert!((y[0] - want).abs() < 1e-6, "{} vs {want}", y[0]);
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let dims = [4usize, 3, 3, 2];
        let len: usize = dims.iter().product();
        let [_, _, _, dx, dw, _] = outputs(&dims, |x, w, b| batch_norm_relu_train(x, w, b, 1e-5))?;
        let (xs, ws) = (random(len, 1, "x", 3.0), random(3, 2, "w", 1.0));
        let r = random(len, 4, "r", 0.0);
        let loss = |x: &[f32], w: &[f32]| -> Result<f64> {
            let dev = Device::Cpu;
            let x = Tensor::from_vec(x.to_vec(), &dims, &dev)?;
            let w = Tensor::from_vec(w.to_vec(), 3, &dev)?;
            let b = Tensor::from_vec(random(3, 3, "b", 0.0), 3, &dev)?;
            let y: Vec<f32> = batch_norm_relu_train(&x, &w, &b, 1e-5)?
                .0
                .flatten_all()?
                .to_vec1()?;
            Ok(y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum())
        };
        let h = 1e-3f32;
        for i in 0..len {
            let (mut up, mut down) = (xs.clone(), xs.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up, &ws)? - loss(&down, &ws)?) / (2.0 * h as f64);
            assert!(
                (fd - dx[i] as f64).abs() < 1e-2 * (1.0 + fd.abs()),
                "dx[{i}]: fd {fd} vs {}",
                dx[i]
            );
        }
        for i in 0..3 {
            let (mut up, mut down) = (ws.clone(), ws.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&xs, &up)? - loss(&xs, &down)?) / (2.0 * h as f64);
            assert!(
                (fd - dw[i] as f64).abs() < 1e-2 * (1.0 + fd.abs()),
                "dw[{i}]: fd {fd} vs {}",
                dw[i]
            );
        }
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((4, 3, 2, 2), DType::F32, &dev)?;
        let w = Tensor::ones(2, DType::F32, &dev)?;
        assert!(batch_norm_train(&x, &w, &w, 1e-5).is_err(), "channel mismatch");
        let one = Tensor::zeros((1, 3), DType::F32, &dev)?;
        let w = Tensor::ones(3, DType::F32, &dev)?;
        assert!(
            batch_norm_train(&one, &w, &w, 1e-5).is_err(),
            "one value per channel"
        );
        Ok(())
    }
}
