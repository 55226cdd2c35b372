//! The fused single-pass updates over contiguous f32 CPU storage: one read of parameter, gradient and
//! moments and one write, split across threads for large tensors. Each line mirrors one op of the
//! tensor-op path, so on CPU the two agree bit for bit.

use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp2, InplaceOpMulti, Layout, Result, bail};
use rayon::prelude::*;

use super::scalars::{AdamF32, AdamScalars, SgdF32, SgdScalars};

/// The contiguous f32 values of a CPU storage.
fn f32_values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what} must be f32 for the fused CPU update, got {:?}", s.dtype())
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{what} must be contiguous for the fused CPU update")
    };
    Ok(&v[start..end])
}

fn f32_values_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let dtype = s.dtype();
    let CpuStorage::F32(v) = s else {
        bail!("{what} must be f32 for the fused CPU update, got {dtype:?}")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{what} must be contiguous for the fused CPU update")
    };
    Ok(&mut v[start..end])
}

/// The fused Adam update of one parameter, run in place on its CPU storage.
pub(super) struct AdamHostUpdate<'a> {
    pub(super) s: AdamScalars,
    pub(super) exp_avg: RefCell<&'a mut [f32]>,
    pub(super) exp_avg_sq: RefCell<&'a mut [f32]>,
    pub(super) max_exp_avg_sq: Option<RefCell<&'a mut [f32]>>,
}

impl InplaceOp2 for AdamHostUpdate<'_> {
    fn name(&self) -> &'static str {
        "labpipe-adam-update"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let p = f32_values_mut(s1, l1, "parameter")?;
        let g = f32_values(s2, l2, "gradient")?;
        let mut m = self.exp_avg.borrow_mut();
        let mut v = self.exp_avg_sq.borrow_mut();
        let n = p.len();
        if g.len() != n || m.len() != n || v.len() != n {
            bail!("internal: Adam update over slices of different lengths");
        }
        let c = AdamF32::from(&self.s);
        let mut vmax_guard = self.max_exp_avg_sq.as_ref().map(RefCell::borrow_mut);
        let vmax: &mut [f32] = match vmax_guard.as_deref_mut() {
            Some(b) => b,
            None => &mut [],
        };
        let amsgrad = self.max_exp_avg_sq.is_some();
        if amsgrad && vmax.len() != n {
            bail!("internal: Adam update over slices of different lengths");
        }
        let kernel = adam_kernel_for(&c, amsgrad);
        for_chunks(p, g, [&mut m, &mut v, vmax], |p, g, [m, v, vmax]| {
            kernel(p, g, m, v, vmax, &c)
        });
        Ok(())
    }
}

type AdamKernel = fn(&mut [f32], &[f32], &mut [f32], &mut [f32], &mut [f32], &AdamF32);

/// The Adam pass specialised for these scalars' weight decay and for AMSGrad.
fn adam_kernel_for(c: &AdamF32, amsgrad: bool) -> AdamKernel {
    match (c.decay.is_some(), c.l2.is_some(), amsgrad) {
        (true, _, false) => adam_kernel::<true, false, false>,
        (false, true, false) => adam_kernel::<false, true, false>,
        (false, false, false) => adam_kernel::<false, false, false>,
        (true, _, true) => adam_kernel::<true, false, true>,
        (false, true, true) => adam_kernel::<false, true, true>,
        (false, false, true) => adam_kernel::<false, false, true>,
    }
}

/// `x * mul + add` exactly as candle's `affine` computes it, so both paths round alike.
#[inline(always)]
fn affine(x: f32, mul: f32, add: f32) -> f32 {
    x * mul + add
}

/// One fused Adam pass. Each line mirrors one op of torch's `_single_tensor_adam` and of
/// `adam::adam_tensor_update`; the const parameters remove the branches from the loop.
#[inline(never)]
fn adam_kernel<const DECOUPLED: bool, const L2: bool, const AMSGRAD: bool>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    vmax: &mut [f32],
    c: &AdamF32,
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    let vmax = if AMSGRAD { &mut vmax[..n] } else { vmax };
    let decay = c.decay.unwrap_or(1.0);
    let l2 = c.l2.unwrap_or(0.0);
    for i in 0..n {
        let mut pi = p[i];
        if DECOUPLED {
            pi = affine(pi, decay, 0.0); // param.mul_(1 - lr * weight_decay)
        }
        let mut gi = g[i];
        if L2 {
            gi += affine(pi, l2, 0.0); // grad = grad.add(param, alpha=weight_decay)
        }
        let mi = m[i] + affine(gi - m[i], c.w1, 0.0); // exp_avg.lerp_(grad, 1 - beta1)
        let vi = affine(v[i], c.beta2, 0.0) + affine(gi, c.w2, 0.0) * gi; // mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        let vx = if AMSGRAD {
            let vm = if vmax[i] < vi { vi } else { vmax[i] }; // torch.maximum(max_exp_avg_sq, exp_avg_sq)
            vmax[i] = vm;
            vm
        } else {
            vi
        };
        let denom = affine(vx.sqrt() / c.bc2_sqrt, 1.0, c.eps); // (sqrt / bias_correction2_sqrt).add_(eps)
        p[i] = pi + affine(mi, c.neg_step_size, 0.0) / denom; // param.addcdiv_(exp_avg, denom, -step_size)
        m[i] = mi;
        v[i] = vi;
    }
}

/// The fused SGD update of one parameter, run in place on its CPU storage.
pub(super) struct SgdHostUpdate<'a> {
    pub(super) s: SgdScalars,
    /// The momentum buffer does not exist yet: it becomes the gradient.
    pub(super) first: bool,
    pub(super) buf: Option<RefCell<&'a mut [f32]>>,
}

impl InplaceOp2 for SgdHostUpdate<'_> {
    fn name(&self) -> &'static str {
        "labpipe-sgd-update"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let p = f32_values_mut(s1, l1, "parameter")?;
        let g = f32_values(s2, l2, "gradient")?;
        let n = p.len();
        let c = sgd_f32(&self.s);
        let mut guard = self.buf.as_ref().map(RefCell::borrow_mut);
        let buf: &mut [f32] = match guard.as_deref_mut() {
            Some(b) => b,
            None => &mut [],
        };
        let momentum = self.s.momentum.is_some();
        if g.len() != n || (momentum && buf.len() != n) {
            bail!("internal: SGD update over slices of different lengths");
        }
        let kernel = sgd_kernel_for(&self.s, self.first);
        for_chunks(p, g, [buf, &mut [], &mut []], |p, g, [buf, _, _]| {
            kernel(p, g, buf, &c)
        });
        Ok(())
    }
}

type SgdKernel = fn(&mut [f32], &[f32], &mut [f32], &SgdF32);

/// The SGD scalars in f32, as the passes use them.
fn sgd_f32(s: &SgdScalars) -> SgdF32 {
    SgdF32 {
        weight_decay: s.weight_decay.unwrap_or(0.0) as f32,
        momentum: s.momentum.unwrap_or(0.0) as f32,
        keep: s.keep as f32,
        neg_lr: s.neg_lr as f32,
    }
}

/// The SGD pass specialised for these scalars; `first`: the momentum buffer does not exist yet.
fn sgd_kernel_for(s: &SgdScalars, first: bool) -> SgdKernel {
    let (wd, momentum) = (s.weight_decay.is_some(), s.momentum.is_some());
    match (wd, momentum, first, s.nesterov) {
        (false, false, _, _) => sgd_kernel::<false, false, false, false>,
        (true, false, _, _) => sgd_kernel::<true, false, false, false>,
        (false, true, false, false) => sgd_kernel::<false, true, false, false>,
        (false, true, false, true) => sgd_kernel::<false, true, false, true>,
        (false, true, true, false) => sgd_kernel::<false, true, true, false>,
        (false, true, true, true) => sgd_kernel::<false, true, true, true>,
        (true, true, false, false) => sgd_kernel::<true, true, false, false>,
        (true, true, false, true) => sgd_kernel::<true, true, false, true>,
        (true, true, true, false) => sgd_kernel::<true, true, true, false>,
        (true, true, true, true) => sgd_kernel::<true, true, true, true>,
    }
}

/// One fused SGD pass; each line mirrors one op of torch's `_single_tensor_sgd` and of
/// `sgd::sgd_tensor_update`. `FIRST`: the momentum buffer does not exist yet and becomes the gradient.
#[inline(never)]
fn sgd_kernel<const WD: bool, const MOMENTUM: bool, const FIRST: bool, const NESTEROV: bool>(
    p: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
    c: &SgdF32,
) {
    let n = p.len();
    let g = &g[..n];
    let buf = if MOMENTUM { &mut buf[..n] } else { buf };
    for i in 0..n {
        let mut gi = g[i];
        if WD {
            gi += affine(p[i], c.weight_decay, 0.0); // grad = grad.add(param, alpha=weight_decay)
        }
        if MOMENTUM {
            let b = if FIRST {
                gi // buf = torch.clone(grad).detach()
            } else {
                affine(buf[i], c.momentum, 0.0) + affine(gi, c.keep, 0.0) // buf.mul_(momentum).add_(grad, alpha=1-dampening)
            };
            buf[i] = b;
            gi = if NESTEROV {
                gi + affine(b, c.momentum, 0.0)
            } else {
                b
            }; // grad.add(buf, alpha=momentum)
        }
        p[i] += affine(gi, c.neg_lr, 0.0); // param.add_(grad, alpha=-lr)
    }
}

/// Elements per task of the parallel fused passes: large enough to amortise scheduling, small enough that
/// the bigger tensors (ResNet-18's 2.4 M-element convolutions) spread over every core.
const CHUNK: usize = 1 << 16;

/// Matching chunks of a parameter, its gradient and three state buffers.
type Chunk<'a> = (&'a mut [f32], &'a [f32], [&'a mut [f32]; 3]);

/// Split a parameter, its gradient and up to three state buffers (each either as long as the parameter or
/// empty) into matching chunks of at most `CHUNK` elements.
fn chunks<'a>(p: &'a mut [f32], g: &'a [f32], buffers: [&'a mut [f32]; 3]) -> Vec<Chunk<'a>> {
    let n = p.len();
    let [a, b, c] = buffers;
    fn split(s: &mut [f32], n: usize) -> Vec<&mut [f32]> {
        if s.is_empty() {
            (0..n.div_ceil(CHUNK)).map(|_| &mut [][..]).collect()
        } else {
            s.chunks_mut(CHUNK).collect()
        }
    }
    p.chunks_mut(CHUNK)
        .zip(g.chunks(CHUNK))
        .zip(split(a, n).into_iter().zip(split(b, n)).zip(split(c, n)))
        .map(|((p, g), ((a, b), c))| (p, g, [a, b, c]))
        .collect()
}

/// Run `f` over matching chunks of a parameter, its gradient and up to three state buffers (each either as
/// long as the parameter or empty), in parallel for large tensors. Every element is computed the same way
/// whatever the split, so results do not depend on the number of threads.
fn for_chunks<F>(p: &mut [f32], g: &[f32], buffers: [&mut [f32]; 3], f: F)
where
    F: Fn(&mut [f32], &[f32], [&mut [f32]; 3]) + Sync,
{
    if p.len() < 2 * CHUNK {
        f(p, g, buffers);
        return;
    }
    chunks(p, g, buffers)
        .into_par_iter()
        .for_each(|(p, g, b)| f(p, g, b));
}

/// One parameter's pass in a multi-tensor update, over one chunk of its values and state.
type Pass<'a> = Box<dyn Fn(&mut [f32], &[f32], [&mut [f32]; 3]) + Sync + 'a>;

/// Run every parameter's pass (`parts[i]` for target `i` and source `i`: its state buffers and pass) over
/// the chunks of all parameters in one parallel loop, so small tensors do not each cost a thread.
fn run_multi(
    targets: &mut [(&mut CpuStorage, &Layout)],
    sources: &[(&CpuStorage, &Layout)],
    parts: Vec<([&mut [f32]; 3], Pass<'_>)>,
) -> Result<()> {
    if targets.len() != parts.len() || sources.len() != parts.len() {
        bail!("internal: multi-tensor update over lists of different lengths");
    }
    let (buffers, passes): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let mut tasks = Vec::new();
    for (i, ((target, source), b)) in targets.iter_mut().zip(sources).zip(buffers).enumerate() {
        let p = f32_values_mut(target.0, target.1, "parameter")?;
        let g = f32_values(source.0, source.1, "gradient")?;
        let n = p.len();
        if g.len() != n || b.iter().any(|x| !x.is_empty() && x.len() != n) {
            bail!("internal: multi-tensor update over slices of different lengths");
        }
        tasks.extend(chunks(p, g, b).into_iter().map(|c| (i, c)));
    }
    tasks
        .into_par_iter()
        .for_each(|(i, (p, g, b))| passes[i](p, g, b));
    Ok(())
}

/// One parameter's share of a multi-tensor Adam update: its scalars (from its own step count) and state.
pub(super) struct AdamPart<'a> {
    pub(super) s: AdamScalars,
    pub(super) exp_avg: &'a mut [f32],
    pub(super) exp_avg_sq: &'a mut [f32],
    pub(super) max_exp_avg_sq: Option<&'a mut [f32]>,
}

/// The fused Adam update of many parameters as one operation; part `i` belongs to target `i`.
pub(super) struct AdamHostMulti<'a> {
    pub(super) parts: RefCell<Vec<AdamPart<'a>>>,
}

impl InplaceOpMulti for AdamHostMulti<'_> {
    fn name(&self) -> &'static str {
        "labpipe-adam-update-multi"
    }

    fn cpu_fwd(
        &self,
        targets: &mut [(&mut CpuStorage, &Layout)],
        sources: &[(&CpuStorage, &Layout)],
    ) -> Result<()> {
        let parts = std::mem::take(&mut *self.parts.borrow_mut());
        let parts = parts
            .into_iter()
            .map(|part| {
                let c = AdamF32::from(&part.s);
                let kernel = adam_kernel_for(&c, part.max_exp_avg_sq.is_some());
                let pass: Pass<'_> = Box::new(move |p, g, [m, v, vmax]| kernel(p, g, m, v, vmax, &c));
                let vmax = part.max_exp_avg_sq.unwrap_or(&mut []);
                ([part.exp_avg, part.exp_avg_sq, vmax], pass)
            })
            .collect();
        run_multi(targets, sources, parts)
    }
}

/// One parameter's share of a multi-tensor SGD update.
pub(super) struct SgdPart<'a> {
    /// The momentum buffer does not exist yet: it becomes the gradient.
    pub(super) first: bool,
    pub(super) buf: Option<&'a mut [f32]>,
}

/// The fused SGD update of many parameters as one operation; part `i` belongs to target `i`.
pub(super) struct SgdHostMulti<'a> {
    pub(super) s: SgdScalars,
    pub(super) parts: RefCell<Vec<SgdPart<'a>>>,
}

impl InplaceOpMulti for SgdHostMulti<'_> {
    fn name(&self) -> &'static str {
        "labpipe-sgd-update-multi"
    }

    fn cpu_fwd(
        &self,
        targets: &mut [(&mut CpuStorage, &Layout)],
        sources: &[(&CpuStorage, &Layout)],
    ) -> Result<()> {
        let parts = std::mem::take(&mut *self.parts.borrow_mut());
        let mut passes = Vec::with_capacity(parts.len());
        for part in parts {
            let c = sgd_f32(&self.s);
            if self.s.momentum.is_some() && part.buf.is_none() {
                bail!("internal: SGD momentum buffer was not initialised");
            }
            let kernel = sgd_kernel_for(&self.s, part.first);
            let pass: Pass<'_> = Box::new(move |p, g, [buf, _, _]| kernel(p, g, buf, &c));
            passes.push(([part.buf.unwrap_or(&mut []), &mut [], &mut []], pass));
        }
        run_multi(targets, sources, passes)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    use candle_core::CudaStorage;

    use super::super::test_support::{Reference, bits, run};
    use super::super::{OptimizerConfig, OptimizerKind, UpdateKernel, build_with};
    use super::*;

    #[test]
    fn fused_and_tensor_paths_agree_bit_for_bit() {
        let reference = Reference::load();
        for case in &reference.fixture.cases {
            let (fused_vars, mut fused) = run(&reference, case, UpdateKernel::Auto);
            let (tensor_vars, mut tensor) = run(&reference, case, UpdateKernel::TensorOps);
            for &lr in &case.lrs {
                reference.step(&fused_vars, fused.as_mut(), lr);
                reference.step(&tensor_vars, tensor.as_mut(), lr);
                assert_eq!(bits(&fused_vars), bits(&tensor_vars), "{}", case.case);
            }
            let fused_state = fused.state().unwrap();
            let tensor_state = tensor.state().unwrap();
            assert_eq!(fused_state.len(), tensor_state.len());
            for ((ka, a), (kb, b)) in fused_state.iter().zip(&tensor_state) {
                assert_eq!(ka, kb);
                let (a, b) = (a.to_dtype(DType::F64).unwrap(), b.to_dtype(DType::F64).unwrap());
                let (a, b): (Vec<f64>, Vec<f64>) = (
                    a.flatten_all().unwrap().to_vec1().unwrap(),
                    b.flatten_all().unwrap().to_vec1().unwrap(),
                );
                assert_eq!(a, b, "{} {ka}", case.case);
            }
        }
    }

    /// Tensors above the parallel threshold are split into chunks across threads; the result must still be
    /// the tensor-op result bit for bit, odd tail included.
    #[test]
    fn chunked_parallel_updates_agree_with_tensor_ops() {
        let n = 2 * CHUNK + 12_345; // not a multiple of CHUNK
        let mut rng = crate::rng::Rng::stream(7, "optim-chunks", 0);
        let mut random = |scale: f64| -> Tensor {
            let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
            Tensor::from_vec(v, n, &Device::Cpu).unwrap()
        };
        let (init, target) = (random(0.5), random(0.5));
        let mut adam = OptimizerConfig::new(OptimizerKind::Adam, 0.05);
        adam.amsgrad = Some(true);
        adam.weight_decay = Some(0.01);
        let mut sgd = OptimizerConfig::new(OptimizerKind::Sgd, 0.05);
        (sgd.momentum, sgd.nesterov, sgd.weight_decay) = (Some(0.9), Some(true), Some(0.01));
        for config in [adam, sgd, OptimizerConfig::new(OptimizerKind::AdamW, 0.05)] {
            let mut results = Vec::new();
            for kernel in [UpdateKernel::Auto, UpdateKernel::TensorOps] {
                let var = Var::from_tensor(&init).unwrap();
                let mut opt = build_with(&config, vec![("w".into(), var.clone())], kernel).unwrap();
                for _ in 0..3 {
                    let loss = (var.as_tensor() - &target)
                        .unwrap()
                        .sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap();
                    opt.step(&loss.backward().unwrap(), 0.05).unwrap();
                }
                results.push(bits(&[("w".into(), var)]));
            }
            assert_eq!(results[0], results[1], "{:?}", config.name);
            assert_ne!(
                results[0],
                bits(&[("w".into(), Var::from_tensor(&init).unwrap())])
            );
        }
    }

    /// The state of an optimizer as plain values, to compare two runs bit for bit.
    fn state_bits(opt: &dyn super::super::Optimizer) -> Vec<(String, Vec<u64>)> {
        opt.state()
            .unwrap()
            .into_iter()
            .map(|(k, t)| {
                let t = t.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
                (
                    k,
                    t.to_vec1::<f64>()
                        .unwrap()
                        .into_iter()
                        .map(f64::to_bits)
                        .collect(),
                )
            })
            .collect()
    }

    /// One multi-tensor operation gives the per-parameter fused pass's bits, for every Adam/AdamW/SGD
    /// variant, over parameters of very different sizes (one chunked across threads), including steps where
    /// a parameter has no gradient (its state untouched, its step count not advanced).
    #[test]
    fn multi_tensor_and_per_parameter_paths_agree_bit_for_bit() {
        let sizes = [3usize, 64, 1000, 2 * CHUNK + 777, 1];
        let mut rng = crate::rng::Rng::stream(11, "optim-multi", 0);
        let mut random = |n: usize| -> Tensor {
            let v: Vec<f32> = (0..n).map(|_| (rng.normal() * 0.5) as f32).collect();
            Tensor::from_vec(v, n, &Device::Cpu).unwrap()
        };
        let inits: Vec<Tensor> = sizes.iter().map(|&n| random(n)).collect();
        let targets: Vec<Tensor> = sizes.iter().map(|&n| random(n)).collect();
        let mut configs = Vec::new();
        for kind in [OptimizerKind::Adam, OptimizerKind::AdamW] {
            for (amsgrad, wd) in [(false, None), (true, Some(0.02)), (false, Some(0.02))] {
                let mut c = OptimizerConfig::new(kind, 0.05);
                (c.amsgrad, c.weight_decay) = (Some(amsgrad), wd);
                configs.push(c);
            }
        }
        for (momentum, nesterov, wd, dampening) in [
            (None, None, None, None),
            (None, None, Some(0.01), None),
            (Some(0.9), None, None, Some(0.1)),
            (Some(0.9), Some(true), Some(0.01), None),
        ] {
            let mut c = OptimizerConfig::new(OptimizerKind::Sgd, 0.05);
            (c.momentum, c.nesterov, c.weight_decay, c.dampening) = (momentum, nesterov, wd, dampening);
            configs.push(c);
        }
        for config in configs {
            let mut results = Vec::new();
            for kernel in [UpdateKernel::Auto, UpdateKernel::FusedPerParameter] {
                let vars: Vec<(String, Var)> = inits
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("p{i}"), Var::from_tensor(t).unwrap()))
                    .collect();
                let mut opt = build_with(&config, vars.clone(), kernel).unwrap();
                for step in 0..4 {
                    // Step 1 leaves out p1 and step 2 p3: parameters without a gradient.
                    let loss = vars
                        .iter()
                        .zip(&targets)
                        .enumerate()
                        .filter(|(i, _)| !(step == 1 && *i == 1 || step == 2 && *i == 3))
                        .map(|(_, ((_, v), t))| {
                            (v.as_tensor() - t).unwrap().sqr().unwrap().sum_all().unwrap()
                        })
                        .reduce(|a, b| (a + b).unwrap())
                        .unwrap();
                    opt.step(&loss.backward().unwrap(), 0.05).unwrap();
                }
                results.push((bits(&vars), state_bits(opt.as_ref())));
            }
            assert_eq!(results[0], results[1], "{config:?}");
        }
    }

    /// Adds its sources to its targets element-wise: a minimal multi-tensor operation for the API tests.
    struct AddMulti;

    impl InplaceOpMulti for AddMulti {
        fn name(&self) -> &'static str {
            "add-multi"
        }

        fn cpu_fwd(
            &self,
            targets: &mut [(&mut CpuStorage, &Layout)],
            sources: &[(&CpuStorage, &Layout)],
        ) -> Result<()> {
            for ((t, tl), (s, sl)) in targets.iter_mut().zip(sources) {
                let s = f32_values(s, sl, "source")?.to_vec();
                for (t, s) in f32_values_mut(t, tl, "target")?.iter_mut().zip(s) {
                    *t += s;
                }
            }
            Ok(())
        }
    }

    fn vec(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn inplace_op_multi_writes_every_target_and_sources_may_share_storage() {
        let (a, b, s) = (vec(&[1.0, 2.0]), vec(&[10.0]), vec(&[0.5, 0.25]));
        let s_first = s.narrow(0, 0, 1).unwrap();
        candle_core::inplace_op_multi(&[&a, &b], &[&s, &s_first], &AddMulti).unwrap();
        assert_eq!(a.to_vec1::<f32>().unwrap(), [1.5, 2.25]);
        assert_eq!(b.to_vec1::<f32>().unwrap(), [10.5]);
        candle_core::inplace_op_multi(&[], &[], &AddMulti).unwrap();
    }

    #[test]
    fn inplace_op_multi_rejects_aliased_targets_instead_of_deadlocking() {
        let (a, b) = (vec(&[1.0, 2.0]), vec(&[3.0, 4.0]));
        let err = |targets: &[&Tensor], sources: &[&Tensor]| {
            candle_core::inplace_op_multi(targets, sources, &AddMulti)
                .unwrap_err()
                .to_string()
        };
        let e = err(&[&a, &a], &[&b, &b]);
        assert!(
            e.contains("add-multi: target 0 and target 1 share one storage"),
            "{e}"
        );
        let view = a.narrow(0, 1, 1).unwrap();
        let e = err(&[&b, &view], &[&a, &b]);
        assert!(e.contains("share one storage") && e.contains("target"), "{e}");
        let e = err(&[&a], &[&a]);
        assert!(e.contains("target 0 and source 0 share one storage"), "{e}");
        let broadcast = vec(&[1.0]).broadcast_as(3).unwrap();
        let e = err(&[&broadcast], &[&b]);
        assert!(e.contains("target 0 has repeated elements"), "{e}");
        // Nothing was written by the rejected calls.
        assert_eq!(a.to_vec1::<f32>().unwrap(), [1.0, 2.0]);
        assert_eq!(b.to_vec1::<f32>().unwrap(), [3.0, 4.0]);
    }

    #[test]
    fn inplace_op_multi_without_a_cuda_implementation_says_so() {
        struct CpuOnly;
        impl InplaceOpMulti for CpuOnly {
            fn name(&self) -> &'static str {
                "cpu-only"
            }
            fn cpu_fwd(
                &self,
                _: &mut [(&mut CpuStorage, &Layout)],
                _: &[(&CpuStorage, &Layout)],
            ) -> Result<()> {
                Ok(())
            }
        }
        let mut targets: [(&mut CudaStorage, &Layout); 0] = [];
        let e = CpuOnly.cuda_fwd(&mut targets, &[]).unwrap_err().to_string();
        assert!(e.contains("cpu-only: no cuda implementation"), "{e}");
    }
}
