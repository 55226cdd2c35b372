//! Evaluation-mode batch normalization (running statistics), fused with what follows it: nothing, ReLU,
//! a residual add and ReLU, or ReLU and max-pooling.
//!
//! Composed from Candle ops, evaluation BN is a broadcast multiply and a broadcast add, then ReLU, the
//! residual add or the pool as further passes: each activation is written and read back two to four
//! times, and Candle runs those passes on its (single, see main.rs) elementwise thread. Here the
//! running statistics fold into one scale and shift per channel, and every `(n, c)` plane is normalized
//! and finished in one parallel pass over the input.
//!
//! Evaluation never differentiates, but a tensor that tracks gradients (BN's weight is a `Var`) may
//! come in; the op's backward is then the composition's gradient, derived by autograd on it.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, Var, bail};

use super::cpu_data::{contiguous_f32, is_cpu_f32_cpu_only, par_filled, with_scratch};
use super::max_pool::{max_pool2d, pool_plane};
use crate::model::decl::Window;

/// What follows the normalization in [`batch_norm_eval`].
#[derive(Debug, Clone, Copy)]
pub enum EvalEpilogue<'a> {
    /// The normalized tensor itself.
    None,
    /// `relu(bn(x))`.
    Relu,
    /// `relu(bn(x) + residual)`, `residual` shaped as `x`: the end of a ResNet BasicBlock.
    AddRelu(&'a Tensor),
    /// `max_pool2d(relu(bn(x)))` with this window: a SimpleCNN block's tail.
    ReluMaxPool(Window),
}

/// Normalize `x` `[N, C, ...]` with running statistics, `(x − running_mean)·weight/√(running_var + eps)
/// + bias` (all four `[C]`), then apply `epilogue` (max-pooling needs `x` `[N, C, H, W]`).
///
/// f32 CPU tensors take the fused one-pass op; other devices and types the composition of Candle ops.
pub fn batch_norm_eval(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    epilogue: EvalEpilogue,
) -> Result<Tensor> {
    check_shapes(x, [weight, bias, running_mean, running_var], epilogue)?;
    // The same expressions as the composition, so the fused op sees bit-identical per-channel factors.
    let scale = (weight / (running_var + eps)?.sqrt()?)?;
    let shift = (bias - (running_mean * &scale)?)?;
    let residual = match epilogue {
        EvalEpilogue::AddRelu(r) => Some(r),
        _ => None,
    };
    let fused = is_cpu_f32_cpu_only(x)
        && is_cpu_f32_cpu_only(&scale)
        && residual.is_none_or(is_cpu_f32_cpu_only)
        && !composed_forced();
    if !fused {
        return composed(x, &scale, &shift, epilogue);
    }
    // A custom op takes at most three tensors: scale and shift travel stacked as [2, C].
    let affine = Tensor::stack(&[&scale, &shift], 0)?;
    let x = x.contiguous()?;
    match epilogue {
        EvalEpilogue::None => x.apply_op2(&affine, BnEval(Kind::None)),
        EvalEpilogue::Relu => x.apply_op2(&affine, BnEval(Kind::Relu)),
        EvalEpilogue::AddRelu(r) => x.apply_op3(&affine, &r.contiguous()?, BnEval(Kind::AddRelu)),
        EvalEpilogue::ReluMaxPool(w) => x.apply_op2(&affine, BnEval(Kind::ReluMaxPool(w))),
    }
}

/// Check `x` is `[N, C, ...]` (`[N, C, H, W]` with a window that fits, for pooling), the per-channel
/// tensors are `[C]` and a residual has `x`'s shape.
fn check_shapes(x: &Tensor, per_channel: [&Tensor; 4], epilogue: EvalEpilogue) -> Result<()> {
    let dims = x.dims();
    if dims.len() < 2 {
        bail!("batch_norm_eval: input has shape {dims:?}, expected [N, C, ...]")
    }
    let c = dims[1];
    for (name, t) in ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .zip(per_channel)
    {
        if t.dims() != [c] {
            bail!(
                "batch_norm_eval: {name} has shape {:?}, expected [{c}] (one per channel of input {dims:?})",
                t.dims()
            )
        }
    }
    match epilogue {
        EvalEpilogue::AddRelu(r) if r.dims() != dims => bail!(
            "batch_norm_eval: residual {:?} must have the input's shape {dims:?}",
            r.dims()
        ),
        EvalEpilogue::ReluMaxPool(w) => {
            let (_, _, h, wd) = x.dims4()?;
            w.validate(h, wd)
        }
        _ => Ok(()),
    }
}

/// `x·scale + shift` per channel, then the epilogue, from Candle ops (other devices and types, the
/// fused op's backward, and the tests' reference).
fn composed(x: &Tensor, scale: &Tensor, shift: &Tensor, epilogue: EvalEpilogue) -> Result<Tensor> {
    let mut per_channel = vec![1; x.rank()];
    per_channel[1] = scale.dim(0)?;
    let y = x
        .broadcast_mul(&scale.reshape(per_channel.as_slice())?)?
        .broadcast_add(&shift.reshape(per_channel.as_slice())?)?;
    match epilogue {
        EvalEpilogue::None => Ok(y),
        EvalEpilogue::Relu => y.relu(),
        EvalEpilogue::AddRelu(r) => (y + r)?.relu(),
        EvalEpilogue::ReluMaxPool(w) => max_pool2d(&y.relu()?, w.kernel, w.stride, w.padding),
    }
}

#[cfg(test)]
thread_local! {
    /// Set by tests to run the composition where the fused op would run (whole-model comparisons).
    pub(crate) static FORCE_COMPOSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn composed_forced() -> bool {
    #[cfg(test)]
    {
        FORCE_COMPOSED.with(|f| f.get())
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// The epilogue inside the op (the residual, if any, is the op's third tensor).
#[derive(Debug, Clone, Copy)]
enum Kind {
    None,
    Relu,
    AddRelu,
    ReluMaxPool(Window),
}

/// The CPU op over (x, [scale; shift] `[2, C]`) or (x, [scale; shift], residual).
struct BnEval(Kind);

thread_local! {
    /// Per-thread argmax buffer for pooling: evaluation needs only the pooled values.
    static ARGMAX: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl BnEval {
    fn forward(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        affine_s: &CpuStorage,
        affine_l: &Layout,
        residual: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "batch_norm_eval input")?;
        let affine = contiguous_f32(affine_s, affine_l, "batch_norm_eval scale and shift")?;
        let dims = xl.dims();
        let c = dims[1];
        let (scale, shift) = affine.split_at(c);
        let l: usize = dims[2..].iter().product();
        if let Kind::ReluMaxPool(window) = self.0 {
            let (n, _, h, w) = xl.shape().dims4()?;
            let (oh, ow) = (window.out_len(h), window.out_len(w));
            let ohw = oh * ow;
            let out = par_filled(n * c * ohw, ohw, |plane, out| {
                let (sc, sh) = (scale[plane % c], shift[plane % c]);
                with_scratch(l, |y| {
                    for (y, &x) in y.iter_mut().zip(&x[plane * l..][..l]) {
                        *y = (x * sc + sh).max(0.0);
                    }
                    ARGMAX.with(|a| {
                        let mut argmax = a.borrow_mut();
                        argmax.resize(ohw, 0);
                        pool_plane(y, h, w, window, out, &mut argmax);
                    });
                });
            });
            return Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))));
        }
        let y = par_filled(x.len(), l, |plane, y| {
            let (sc, sh) = (scale[plane % c], shift[plane % c]);
            let x = &x[plane * l..][..l];
            match (self.0, residual) {
                (Kind::AddRelu, Some(r)) => {
                    let r = &r[plane * l..][..l];
                    for ((y, &x), &r) in y.iter_mut().zip(x).zip(r) {
                        *y = (x * sc + sh + r).max(0.0);
                    }
                }
                (Kind::Relu, _) => y
                    .iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = (x * sc + sh).max(0.0)),
                _ => y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * sc + sh),
            }
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    /// The gradients of (x, [scale; shift], residual) for the output gradient `grad`: autograd over the
    /// composition on detached copies.
    fn composed_grads(
        &self,
        x: &Tensor,
        affine: &Tensor,
        residual: Option<&Tensor>,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let xv = Var::from_tensor(&x.detach())?;
        let av = Var::from_tensor(&affine.detach())?;
        let rv = residual.map(|r| Var::from_tensor(&r.detach())).transpose()?;
        let (scale, shift) = (av.get(0)?, av.get(1)?);
        let epilogue = match (self.0, &rv) {
            (Kind::None, _) => EvalEpilogue::None,
            (Kind::Relu, _) => EvalEpilogue::Relu,
            (Kind::AddRelu, Some(r)) => EvalEpilogue::AddRelu(r.as_tensor()),
            (Kind::AddRelu, None) => bail!("batch_norm_eval: backward of add-relu without its residual"),
            (Kind::ReluMaxPool(w), _) => EvalEpilogue::ReluMaxPool(w),
        };
        let y = composed(xv.as_tensor(), &scale, &shift, epilogue)?;
        let grads = (y * grad.detach())?.sum_all()?.backward()?;
        let take = |t: &Tensor| match grads.get(t) {
            Some(g) => Ok(g.clone()),
            None => t.zeros_like(),
        };
        Ok((
            take(xv.as_tensor())?,
            take(av.as_tensor())?,
            rv.as_ref().map(|r| take(r.as_tensor())).transpose()?,
        ))
    }
}

impl CustomOp2 for BnEval {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::None => "labpipe-batch-norm-eval",
            Kind::Relu => "labpipe-batch-norm-eval-relu",
            Kind::AddRelu => "labpipe-batch-norm-eval-add-relu",
            Kind::ReluMaxPool(_) => "labpipe-batch-norm-eval-relu-max-pool",
        }
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a: &CpuStorage,
        al: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if let Kind::AddRelu = self.0 {
            bail!("batch_norm_eval: add-relu needs the residual as a third tensor")
        }
        self.forward(xs, xl, a, al, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        affine: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, da, _) = self.composed_grads(x, affine, None, grad)?;
        Ok((Some(dx), Some(da)))
    }
}

impl CustomOp3 for BnEval {
    fn name(&self) -> &'static str {
        CustomOp2::name(self)
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a: &CpuStorage,
        al: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let r = contiguous_f32(rs, rl, "batch_norm_eval residual")?;
        self.forward(xs, xl, a, al, Some(r))
    }

    fn bwd(
        &self,
        x: &Tensor,
        affine: &Tensor,
        residual: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, da, dr) = self.composed_grads(x, affine, Some(residual), grad)?;
        Ok((Some(dx), Some(da), dr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builtins::{Stem, resnet18, simple_cnn};
    use crate::model::net::{Mode, Net};
    use crate::rng::Rng;
    use candle_core::{DType, Device};

    fn random(len: usize, seed: u64, label: &str, lo: f64, hi: f64) -> Vec<f32> {
        let mut rng = Rng::stream(seed, label, 0);
        (0..len).map(|_| rng.uniform(lo, hi) as f32).collect()
    }

    /// Whether `got` equals `want` to float32 reordering (1e-6 of the largest magnitude).
    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * scale, "{what}[{i}]: {g} vs {w}");
        }
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().and_then(|t| t.to_vec1()).expect("f32 tensor")
    }

    /// Output and the gradients of Σ out·g for (x, weight, bias, residual), fused or composed.
    fn run(dims: &[usize], epilogue: &str, window: Window, force_composed: bool) -> Result<Vec<Vec<f32>>> {
        let dev = Device::Cpu;
        let c = dims[1];
        let len: usize = dims.iter().product();
        let x = Var::from_vec(random(len, 1, "x", -2.0, 3.0), dims, &dev)?;
        let w = Var::from_vec(random(c, 2, "w", -1.5, 1.5), c, &dev)?;
        let b = Var::from_vec(random(c, 3, "b", -1.0, 1.0), c, &dev)?;
        let r = Var::from_vec(random(len, 4, "r", -1.0, 1.0), dims, &dev)?;
        let rm = Tensor::from_vec(random(c, 5, "rm", -1.0, 1.0), c, &dev)?;
        let rv = Tensor::from_vec(random(c, 6, "rv", 0.2, 2.0), c, &dev)?;
        let epi = match epilogue {
            "none" => EvalEpilogue::None,
            "relu" => EvalEpilogue::Relu,
            "add_relu" => EvalEpilogue::AddRelu(r.as_tensor()),
            _ => EvalEpilogue::ReluMaxPool(window),
        };
        FORCE_COMPOSED.with(|f| f.set(force_composed));
        let y = batch_norm_eval(x.as_tensor(), w.as_tensor(), b.as_tensor(), &rm, &rv, 1e-5, epi);
        FORCE_COMPOSED.with(|f| f.set(false));
        let y = y?;
        let g = Tensor::from_vec(random(y.elem_count(), 7, "g", -1.0, 1.0), y.shape(), &dev)?;
        let grads = (&y * &g)?.sum_all()?.backward()?;
        let grad = |v: &Var| grads.get(v.as_tensor()).map(flat).unwrap_or_default();
        Ok(vec![flat(&y), grad(&x), grad(&w), grad(&b), grad(&r)])
    }

    #[test]
    fn fused_equals_the_composition_for_every_epilogue_and_odd_shape() -> Result<()> {
        let windows = [
            Window {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            Window {
                kernel: 3,
                stride: 2,
                padding: 1,
            },
            Window {
                kernel: 3,
                stride: 1,
                padding: 1,
            },
        ];
        for dims in [
            [1, 3, 7, 5],
            [2, 3, 1, 1],
            [3, 5, 4, 4],
            [2, 4, 9, 7],
            [1, 1, 2, 2],
        ] {
            for epilogue in ["none", "relu", "add_relu", "pool"] {
                for window in windows {
                    if epilogue == "pool" && window.validate(dims[2], dims[3]).is_err() {
                        continue;
                    }
                    let fused = run(&dims, epilogue, window, false)?;
                    let composed = run(&dims, epilogue, window, true)?;
                    for (name, (got, want)) in ["y", "dx", "dweight", "dbias", "dresidual"]
                        .iter()
                        .zip(fused.iter().zip(&composed))
                    {
                        assert_close(got, want, &format!("{dims:?} {epilogue} {window:?} {name}"));
                    }
                    if epilogue != "none" {
                        assert!(
                            fused[0].iter().all(|v| *v >= 0.0),
                            "{dims:?} {epilogue}: ReLU applied"
                        );
                    }
                    if epilogue != "pool" {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn fused_output_is_the_formula() -> Result<()> {
        let dev = Device::Cpu;
        // Channel 0: scale 2/√(4) = 1, shift 0.5 − 1·1 = −0.5; channel 1: scale 3/√1 = 3, shift −2 + 3·2 = 4.
        let x = Tensor::from_vec(vec![0f32, 1.0, 2.0, -1.0, 0.0, -3.0], (1, 2, 3), &dev)?;
        let w = Tensor::new(&[2f32, 3.0], &dev)?;
        let b = Tensor::new(&[0.5f32, -2.0], &dev)?;
        let rm = Tensor::new(&[1f32, -2.0], &dev)?;
        let rv = Tensor::new(&[4f32, 1.0], &dev)?;
        let y = batch_norm_eval(&x, &w, &b, &rm, &rv, 0.0, EvalEpilogue::None)?;
        assert_eq!(flat(&y), [-0.5, 0.5, 1.5, 1.0, 4.0, -5.0]);
        let y = batch_norm_eval(&x, &w, &b, &rm, &rv, 0.0, EvalEpilogue::Relu)?;
        assert_eq!(flat(&y), [0.0, 0.5, 1.5, 1.0, 4.0, 0.0]);
        Ok(())
    }

    #[test]
    fn strided_input_and_bad_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(random(2 * 3 * 4 * 5, 8, "x", -1.0, 1.0), (2, 3, 5, 4), &dev)?
            .transpose(2, 3)?;
        let (w, b) = (
            Tensor::ones(3, DType::F32, &dev)?,
            Tensor::zeros(3, DType::F32, &dev)?,
        );
        let rm = Tensor::new(&[0.1f32, -0.2, 0.3], &dev)?;
        let rv = Tensor::new(&[0.5f32, 1.5, 2.0], &dev)?;
        let got = batch_norm_eval(&x, &w, &b, &rm, &rv, 1e-5, EvalEpilogue::Relu)?;
        let want = composed(
            &x,
            &(&w / (&rv + 1e-5)?.sqrt()?)?,
            &(&b - (&rm * (&w / (&rv + 1e-5)?.sqrt()?)?)?)?,
            EvalEpilogue::Relu,
        )?;
        assert_close(&flat(&got), &flat(&want), "strided");
        let short = Tensor::zeros(2, DType::F32, &dev)?;
        let err = batch_norm_eval(&x, &w, &b, &short, &rv, 1e-5, EvalEpilogue::None).unwrap_err();
        assert!(
            err.to_string()
                .contains("running_mean has shape [2], expected [3]"),
            "{err}"
        );
        let r = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev)?;
        let err = batch_norm_eval(&x, &w, &b, &rm, &rv, 1e-5, EvalEpilogue::AddRelu(&r)).unwrap_err();
        assert!(err.to_string().contains("residual"), "{err}");
        Ok(())
    }

    /// A net whose BN weights, biases and running statistics are far from their initial 1, 0, 0, 1.
    fn perturbed(net: &Net, x: &Tensor) -> Result<()> {
        for (i, (name, v)) in net.params().iter().enumerate() {
            if name.contains("bn") {
                let n = v.elem_count();
                v.set(&Tensor::from_vec(random(n, 9, name, 0.5, 1.5), n, &Device::Cpu)?)?;
            } else if i % 3 == 0 {
                v.set(&(v.as_tensor() * 1.5)?)?;
            }
        }
        net.forward(x, Mode::Train)?;
        net.forward(&(x * 0.5)?, Mode::Train)?;
        Ok(())
    }

    fn eval_logits_fused_and_composed(net: &Net, x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
        perturbed(net, x)?;
        let fused = flat(&net.forward(x, Mode::Eval)?);
        FORCE_COMPOSED.with(|f| f.set(true));
        let composed = net.forward(x, Mode::Eval);
        FORCE_COMPOSED.with(|f| f.set(false));
        Ok((fused, flat(&composed?)))
    }

    fn assert_logits_match(fused: &[f32], composed: &[f32], model: &str) {
        assert_eq!(fused.len(), composed.len());
        let scale = composed.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (f, c)) in fused.iter().zip(composed).enumerate() {
            assert!(
                (f - c).abs() <= 1e-5 * scale,
                "{model} logit {i}: fused {f} vs composed {c}"
            );
        }
        assert!(
            composed.iter().any(|v| v.abs() > 1e-3),
            "{model}: logits are not all ~0"
        );
    }

    #[test]
    fn whole_model_eval_logits_are_unchanged() -> Result<()> {
        let x = Tensor::from_vec(
            random(3 * 3 * 32 * 32, 10, "img", -1.0, 1.0),
            (3, 3, 32, 32),
            &Device::Cpu,
        )?;
        let net = Net::new(&simple_cnn(10, 0.5), &Device::Cpu, 3)?;
        let (fused, composed) = eval_logits_fused_and_composed(&net, &x)?;
        assert_logits_match(&fused, &composed, "simple_cnn");
        for stem in [Stem::Cifar, Stem::Imagenet] {
            let net = Net::new(&resnet18(10, stem, 8), &Device::Cpu, 4)?;
            let (fused, composed) = eval_logits_fused_and_composed(&net, &x)?;
            assert_logits_match(&fused, &composed, &format!("resnet18 {stem:?}"));
        }
        Ok(())
    }
}
