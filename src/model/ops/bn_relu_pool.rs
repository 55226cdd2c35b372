//! BatchNorm (training) → ReLU → max-pool as one op: SimpleCNN's block tail.
//!
//! Separately, the BN+ReLU output (4× the pooled size) is written, read back by the pool, and its
//! gradient is materialized, accumulated by Candle and read again by the BN backward. Fused, the
//! normalized plane lives only in a per-thread buffer, and since pooling passes gradient to one
//! element per window, the BN backward sums run over the pooled outputs only.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::batch_norm::{Stats, batch_norm_relu_train, check_shapes};
use super::bn_parts::ncl;
use super::cpu_data::{CpuF32, contiguous_f32, is_cpu_f32_cpu_only, par_filled, par_filled2, with_scratch};
use super::max_pool::{max_pool2d, pool_plane};
use crate::model::decl::Window;

/// `max_pool2d(relu(batch_norm(x)))` for `x` `[N, C, H, W]` in training mode: returns (pooled output,
/// batch mean `[C]`, biased batch variance `[C]`), the statistics detached, exactly as
/// [`batch_norm_relu_train`] followed by [`max_pool2d`].
pub fn batch_norm_relu_max_pool_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    check_shapes(x, weight, bias)?;
    let (_, _, h, w) = x.dims4()?;
    let window = Window {
        kernel,
        stride,
        padding,
    };
    window.validate(h, w)?;
    if !(is_cpu_f32_cpu_only(x) && is_cpu_f32_cpu_only(weight) && is_cpu_f32_cpu_only(bias)) {
        let (y, mean, var) = batch_norm_relu_train(x, weight, bias, eps)?;
        return Ok((max_pool2d(&y, kernel, stride, padding)?, mean, var));
    }
    let state = Arc::new(OnceLock::new());
    let op = BnReluPool {
        eps,
        window,
        state: state.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let Some(state) = state.get() else {
        bail!("batch_norm_relu_max_pool: the forward pass recorded no statistics")
    };
    let (mean, var) = state.stats.tensors(x.device())?;
    Ok((y, mean, var))
}

/// What the forward pass leaves for the backward pass and the caller.
struct ForwardState {
    stats: Stats,
    /// Per pooled output, the index within its `H×W` plane of the element it took.
    argmax: Vec<u32>,
}

struct BnReluPool {
    eps: f64,
    window: Window,
    state: Arc<OnceLock<ForwardState>>,
}

impl CustomOp3 for BnReluPool {
    fn name(&self) -> &'static str {
        "labpipe-batch-norm-relu-max-pool"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "batch_norm_relu_max_pool input")?;
        let w = contiguous_f32(ws, wl, "batch_norm_relu_max_pool weight")?;
        let b = contiguous_f32(bs, bl, "batch_norm_relu_max_pool bias")?;
        let (n, c, h, wd) = xl.shape().dims4()?;
        let (oh, ow) = (self.window.out_len(h), self.window.out_len(wd));
        let (hw, ohw) = (h * wd, oh * ow);
        let (stats, scale, shift) = Stats::of(x, (n, c, hw), w, b, self.eps);
        let (out, argmax) = par_filled2(n * c * ohw, ohw, n * c * ohw, ohw, |plane, out, argmax| {
            let (sc, sh) = (scale[plane % c], shift[plane % c]);
            with_scratch(hw, |y| {
                for (y, &x) in y.iter_mut().zip(&x[plane * hw..][..hw]) {
                    *y = (x * sc + sh).max(0.0);
                }
                pool_plane(y, h, wd, self.window, out, argmax);
            });
        });
        if self.state.set(ForwardState { stats, argmax }).is_err() {
            bail!("batch_norm_relu_max_pool: an op instance ran its forward pass twice")
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(state) = self.state.get() else {
            bail!("batch_norm_relu_max_pool: backward called before the forward pass")
        };
        let (stats, argmax) = (&state.stats, state.argmax.as_slice());
        let grad = grad.contiguous()?;
        let (xd, wd, gd, yd) = (
            CpuF32::lock(x, "batch_norm_relu_max_pool input")?,
            CpuF32::lock(w, "batch_norm_relu_max_pool weight")?,
            CpuF32::lock(&grad, "batch_norm_relu_max_pool grad")?,
            CpuF32::lock(res, "batch_norm_relu_max_pool output")?,
        );
        let (xs, ws, gs, ys) = (xd.as_slice(), wd.as_slice(), gd.as_slice(), yd.as_slice());
        let (n, c, hw) = ncl(x.dims());
        let ohw = ys.len() / (n * c).max(1);
        // The gradient reaching the BN output: each pooled output's, at its argmax, where the ReLU
        // passed (the pooled value is the ReLU output there).
        let routed = |g: f32, y: f32| if y > 0.0 { g } else { 0.0 };
        // Pass 1 over pooled outputs only: Σ dy and Σ dy·x̂ per channel.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (m, s) = (stats.mean[ch], stats.inv_std[ch]);
                let (mut sum_dy, mut sum_dy_xc) = (0f64, 0f64);
                for i in 0..n {
                    let plane = i * c + ch;
                    let xp = &xs[plane * hw..][..hw];
                    let at = plane * ohw;
                    let (mut a, mut b) = (0f32, 0f32);
                    for ((&g, &y), &k) in gs[at..][..ohw]
                        .iter()
                        .zip(&ys[at..][..ohw])
                        .zip(&argmax[at..][..ohw])
                    {
                        let d = routed(g, y);
                        a += d;
                        b += d * (xp[k as usize] - m);
                    }
                    sum_dy += a as f64;
                    sum_dy_xc += b as f64;
                }
                (sum_dy, sum_dy_xc * s as f64)
            })
            .collect();
        // Pass 2 per plane: scatter dy, then dx = w·σ⁻¹·(dy − mean(dy) − x̂·mean(dy·x̂)).
        let count = (n * hw) as f64;
        let dx = par_filled(xs.len(), hw, |plane, dx: &mut [f32]| {
            let ch = plane % c;
            let (m, s) = (stats.mean[ch], stats.inv_std[ch]);
            let k = ws[ch] * s;
            let mean_dy = (sums[ch].0 / count) as f32;
            let mean_dy_xhat = (sums[ch].1 / count) as f32;
            let at = plane * ohw;
            // `dx` starts zeroed: gather dy into it first (overlapping windows add up).
            for ((&g, &y), &a) in gs[at..][..ohw]
                .iter()
                .zip(&ys[at..][..ohw])
                .zip(&argmax[at..][..ohw])
            {
                dx[a as usize] += routed(g, y);
            }
            for (d, &x) in dx.iter_mut().zip(&xs[plane * hw..][..hw]) {
                *d = k * (*d - mean_dy - (x - m) * s * mean_dy_xhat);
            }
        });
        let device = x.device();
        let dw: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
        let db: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dw, c, device)?),
            Some(Tensor::from_vec(db, c, device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn random(len: usize, seed: u64, label: &str, offset: f64) -> Vec<f32> {
        let mut rng = Rng::stream(seed, label, 0);
        (0..len).map(|_| (rng.normal() + offset) as f32).collect()
    }

    /// (y, mean, var, dx, dweight, dbias) of Σ f(x)·r.
    fn outputs(
        dims: (usize, usize, usize, usize),
        f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<(Tensor, Tensor, Tensor)>,
    ) -> Result<[Vec<f32>; 6]> {
        let dev = Device::Cpu;
        let (n, c, h, w) = dims;
        let x = Var::from_vec(random(n * c * h * w, 1, "x", 0.5), dims, &dev)?;
        let wt = Var::from_vec(random(c, 2, "w", 1.0), c, &dev)?;
        let b = Var::from_vec(random(c, 3, "b", 0.0), c, &dev)?;
        let (y, mean, var) = f(x.as_tensor(), wt.as_tensor(), b.as_tensor())?;
        let r = Tensor::from_vec(random(y.elem_count(), 4, "r", 0.0), y.shape(), &dev)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1() };
        let grad = |v: &Var| -> Result<Vec<f32>> { flat(grads.get(v.as_tensor()).expect("gradient")) };
        Ok([
            flat(&y)?,
            flat(&mean)?,
            flat(&var)?,
            grad(&x)?,
            grad(&wt)?,
            grad(&b)?,
        ])
    }

    #[test]
    fn equals_batch_norm_relu_then_max_pool() -> Result<()> {
        for (dims, k, s, p) in [
            ((4, 3, 8, 8), 2, 2, 0),
            ((3, 2, 9, 7), 3, 2, 1),
            ((2, 3, 6, 6), 3, 1, 1),
        ] {
            let fused = outputs(dims, |x, w, b| {
                batch_norm_relu_max_pool_train(x, w, b, 1e-5, k, s, p)
            })?;
            let separate = outputs(dims, |x, w, b| {
                let (y, mean, var) = batch_norm_relu_train(x, w, b, 1e-5)?;
                Ok((max_pool2d(&y, k, s, p)?, mean, var))
            })?;
            for (name, (got, want)) in ["y", "mean", "var", "dx", "dweight", "dbias"]
                .iter()
                .zip(fused.iter().zip(&separate))
            {
                let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale,
                        "{dims:?} k{k}s{s}p{p} {name}[{i}]: {g} vs {w}"
                    );
                }
            }
            assert!(
                fused[0].contains(&0.0),
                "{dims:?}: some windows are all clamped by the ReLU"
            );
        }
        Ok(())
    }
}
