//! labpipe's CUDA kernels against the CPU ops they mirror. They need a GPU: without one (CI, a `cuda` build
//! on a CPU machine) each test prints that it was skipped. scripts/cuda/gpu_check.sh runs them on a GPU.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Result, Tensor, Var};

use crate::model::ops;
use crate::rng::Rng;
use crate::train::optim::{self, OptimizerConfig, OptimizerKind};

/// Set by every test here: they test the kernels, which are opt-in for users.
pub(super) static FORCE_KERNELS: AtomicBool = AtomicBool::new(false);

fn gpu(test: &str) -> Option<Device> {
    FORCE_KERNELS.store(true, Ordering::Relaxed);
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("{test}: SKIPPED, no usable CUDA device ({e})");
            None
        }
    }
}

fn random(len: usize, seed: u64, offset: f64) -> Vec<f32> {
    let mut rng = Rng::stream(seed, "cuda-test", 0);
    (0..len).map(|_| (rng.normal() * 2.0 + offset) as f32).collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_device(&Device::Cpu))
        .and_then(|t| t.to_vec1())
        .expect("tensor values")
}

/// Largest |a − b| relative to the largest |b|.
fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// (output, dx, dweight, dbias, dresidual) of Σ bn(x)·r on `dev`, for BatchNorm variant `kind`:
/// 0 plain, 1 +ReLU, 2 +residual add+ReLU, 3 +ReLU+max-pool(3, 2, 1).
fn batch_norm_case(dev: &Device, dims: &[usize], kind: u8) -> Result<Vec<Vec<f32>>> {
    let c = dims[1];
    let len: usize = dims.iter().product();
    let x = Var::from_vec(random(len, 1, 3.0), dims, dev)?;
    let w = Var::from_vec(random(c, 2, 1.0), c, dev)?;
    let b = Var::from_vec(random(c, 3, 0.0), c, dev)?;
    let residual = Var::from_vec(random(len, 5, -0.5), dims, dev)?;
    let (y, mean, var) = match kind {
        0 => ops::batch_norm_train(&x, &w, &b, 1e-5)?,
        1 => ops::batch_norm_relu_train(&x, &w, &b, 1e-5)?,
        2 => ops::batch_norm_add_relu_train(&x, &w, &b, &residual, 1e-5)?,
        _ => ops::batch_norm_relu_max_pool_train(&x, &w, &b, 1e-5, 3, 2, 1)?,
    };
    let r = Tensor::from_vec(random(y.elem_count(), 4, 0.0), y.shape(), dev)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let grad = |v: &Var| grads.get(v.as_tensor()).map(values).unwrap_or_default();
    Ok(vec![
        values(&y),
        values(&mean),
        values(&var),
        grad(&x),
        grad(&w),
        grad(&b),
        grad(&residual),
    ])
}

#[test]
fn batch_norm_kernels_match_the_cpu_op() -> Result<()> {
    let Some(dev) = gpu("batch_norm_kernels_match_the_cpu_op") else {
        return Ok(());
    };
    let names = ["y", "mean", "var", "dx", "dweight", "dbias", "dresidual"];
    for dims in [
        &[8usize, 4, 5, 5][..],
        &[16, 6, 1, 1],
        &[3, 5, 7, 2],
        &[64, 32, 16, 16],
        &[10, 7],
    ] {
        for kind in 0..4u8 {
            if kind == 3 && (dims.len() != 4 || dims[2] < 2) {
                continue;
            }
            let want = batch_norm_case(&Device::Cpu, dims, kind)?;
            let got = batch_norm_case(&dev, dims, kind)?;
            for ((name, g), w) in names.iter().zip(&got).zip(&want) {
                let err = max_rel(g, w);
                assert!(
                    err < 1e-4,
                    "{dims:?} kind {kind} {name}: max relative error {err}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn max_pool_kernels_match_the_cpu_op_exactly() -> Result<()> {
    let Some(dev) = gpu("max_pool_kernels_match_the_cpu_op_exactly") else {
        return Ok(());
    };
    for (dims, k, s, p) in [
        ([2usize, 3, 9, 7], 3, 2, 1),
        ([4, 8, 16, 16], 2, 2, 0),
        ([1, 2, 5, 5], 3, 1, 1),
    ] {
        let len: usize = dims.iter().product();
        // Rounded values make ties, which must go to the first maximum as on the CPU.
        let xs: Vec<f32> = random(len, 7, 0.0).iter().map(|v| v.round()).collect();
        let run = |dev: &Device| -> Result<(Vec<f32>, Vec<f32>)> {
            let x = Var::from_vec(xs.clone(), &dims[..], dev)?;
            let y = ops::max_pool2d(&x, k, s, p)?;
            let r = Tensor::from_vec(random(y.elem_count(), 8, 0.0), y.shape(), dev)?;
            let grads = (&y * &r)?.sum_all()?.backward()?;
            Ok((
                values(&y),
                grads.get(x.as_tensor()).map(values).unwrap_or_default(),
            ))
        };
        let (want_y, want_dx) = run(&Device::Cpu)?;
        let (got_y, got_dx) = run(&dev)?;
        assert_eq!(got_y, want_y, "{dims:?} k{k} s{s} p{p}: output");
        assert_eq!(got_dx, want_dx, "{dims:?} k{k} s{s} p{p}: input gradient");
    }
    Ok(())
}

/// Three updates of two parameters by `config` on `dev`; the parameters afterwards.
fn optimizer_run(dev: &Device, config: &OptimizerConfig) -> Result<Vec<Vec<f32>>> {
    let vars = vec![
        (
            "a".to_string(),
            Var::from_vec(random(300, 11, 0.5), (30, 10), dev)?,
        ),
        ("b".to_string(), Var::from_vec(random(7, 12, -0.5), 7, dev)?),
    ];
    let mut opt = optim::build(config, vars.clone())?;
    for step in 0..3u64 {
        let loss = vars
            .iter()
            .try_fold(Tensor::zeros((), DType::F32, dev)?, |acc, (_, v)| {
                let r = Tensor::from_vec(random(v.elem_count(), 20 + step, 0.0), v.shape(), dev)?;
                acc + (v.as_tensor().sqr()? * r)?.sum_all()?
            })?;
        opt.step(&loss.backward()?, 0.01)?;
    }
    Ok(vars.iter().map(|(_, v)| values(v.as_tensor())).collect())
}

#[test]
fn optimizer_kernels_match_the_cpu_update() -> Result<()> {
    let Some(dev) = gpu("optimizer_kernels_match_the_cpu_update") else {
        return Ok(());
    };
    let mut configs = Vec::new();
    for (kind, wd, amsgrad) in [
        (OptimizerKind::Adam, 0.0, false),
        (OptimizerKind::Adam, 0.01, true),
        (OptimizerKind::AdamW, 0.05, false),
    ] {
        let mut c = OptimizerConfig::new(kind, 0.01);
        c.weight_decay = Some(wd);
        c.amsgrad = Some(amsgrad);
        configs.push(c);
    }
    for (momentum, nesterov, wd) in [(0.0, false, 0.0), (0.9, false, 5e-4), (0.9, true, 0.0)] {
        let mut c = OptimizerConfig::new(OptimizerKind::Sgd, 0.01);
        (c.momentum, c.nesterov, c.weight_decay) = (Some(momentum), Some(nesterov), Some(wd));
        configs.push(c);
    }
    for config in &configs {
        let want = optimizer_run(&Device::Cpu, config)?;
        let got = optimizer_run(&dev, config)?;
        for (g, w) in got.iter().zip(&want) {
            // Same f32 operations in the same order (no FMA): only the gradients' own rounding differs.
            let err = max_rel(g, w);
            assert!(err < 1e-5, "{config:?}: max relative error {err}");
            eprintln!("{:?}: max relative difference CPU/CUDA {err:e}", config.name);
        }
    }
    Ok(())
}

#[test]
fn optimizer_state_is_a_snapshot_on_the_gpu() -> Result<()> {
    let Some(dev) = gpu("optimizer_state_is_a_snapshot_on_the_gpu") else {
        return Ok(());
    };
    let v = Var::from_vec(random(50, 13, 0.0), 50, &dev)?;
    let mut opt = optim::build(
        &OptimizerConfig::new(OptimizerKind::Adam, 0.01),
        vec![("w".into(), v.clone())],
    )?;
    let step = |opt: &mut Box<dyn optim::Optimizer>| -> Result<()> {
        opt.step(&v.as_tensor().sqr()?.sum_all()?.backward()?, 0.01)
    };
    step(&mut opt)?;
    let snapshot = opt.state()?;
    let first: Vec<Vec<f32>> = snapshot.iter().map(|(_, t)| values(t)).collect();
    step(&mut opt)?;
    let later: Vec<Vec<f32>> = snapshot.iter().map(|(_, t)| values(t)).collect();
    assert_eq!(
        first, later,
        "a state taken earlier must not change with later steps"
    );
    let now: Vec<Vec<f32>> = opt.state()?.iter().map(|(_, t)| values(t)).collect();
    assert_ne!(first, now, "the moments moved");
    Ok(())
}

/// (loss, dlogits of 3·loss, correct count) of the fused cross-entropy and count on `dev`.
fn cross_entropy_case(dev: &Device, n: usize, k: usize, eps: f64) -> Result<(f32, Vec<f32>, f32)> {
    // Rounded values make ties, which must go to the first maximum as on the CPU.
    let xs: Vec<f32> = random(n * k, 21, 0.0)
        .iter()
        .map(|v| (v * 2.0).round() / 2.0)
        .collect();
    let ys: Vec<u32> = (0..n).map(|i| ((i * 7 + 3) % k) as u32).collect();
    let x = Var::from_vec(xs, (n, k), dev)?;
    let y = Tensor::from_vec(ys, n, dev)?;
    let loss = crate::train::loss::cross_entropy(x.as_tensor(), &y, eps)?;
    let grads = (&loss * 3.0)?.backward()?;
    let right = crate::train::loss::correct_count(x.as_tensor(), &y)?;
    Ok((
        loss.to_device(&Device::Cpu)?.to_scalar()?,
        grads.get(x.as_tensor()).map(values).unwrap_or_default(),
        right.to_device(&Device::Cpu)?.to_scalar()?,
    ))
}

#[test]
fn cross_entropy_and_correct_kernels_match_the_cpu_ops() -> Result<()> {
    let Some(dev) = gpu("cross_entropy_and_correct_kernels_match_the_cpu_ops") else {
        return Ok(());
    };
    for (n, k) in [(1usize, 2usize), (7, 10), (128, 10), (300, 1000)] {
        for eps in [0.0, 0.1] {
            let (want_loss, want_dx, want_right) = cross_entropy_case(&Device::Cpu, n, k, eps)?;
            let (got_loss, got_dx, got_right) = cross_entropy_case(&dev, n, k, eps)?;
            // Both sum f64 row losses, in different orders.
            assert!(
                (got_loss - want_loss).abs() <= 1e-6 * want_loss.abs().max(1.0),
                "{n}x{k} eps {eps}: loss {got_loss} vs {want_loss}"
            );
            let err = max_rel(&got_dx, &want_dx);
            assert!(err < 1e-6, "{n}x{k} eps {eps}: gradient max relative error {err}");
            assert_eq!(got_right, want_right, "{n}x{k}: correct count");
        }
    }
    Ok(())
}
