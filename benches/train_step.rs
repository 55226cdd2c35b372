//! Training-step throughput of SimpleCNN (batch 128) and ResNet-18 (batch 64) on the CPU, with Candle's
//! own layers against labpipe's custom ops (`labpipe::model::ops`).
//!
//! Run: `CANDLE_NUM_THREADS=1 MIMALLOC_PURGE_DELAY=-1 cargo bench --bench train_step -- [--model simple|resnet|all]
//!       [--ops none|all|conv,bn,pool] [--steps N] [--adam] [--micro [--only PREFIX]]`
//! A step is forward + cross-entropy + backward (+ an AdamW update with `--adam`); 3 warm-up steps,
//! then the median of `--steps` steps, and the CPU time per step (user + system, all threads).
//! Inputs are N(0,1), labels fixed over 10 classes. `--micro` times single layers instead.
//! `CANDLE_NUM_THREADS=1` keeps Candle's spinning elementwise thread pool from competing with rayon.

use std::time::Instant;

use candle_core::{D, DType, Device, Module, ModuleT, Result, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use labpipe::model::ops;

// The default allocator returns freed pages to the kernel and re-faults them every step (notes: 2x).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Which layers use labpipe's ops instead of Candle's.
#[derive(Clone, Copy, Debug)]
struct Impl {
    conv: bool,
    bn: bool,
    pool: bool,
}

impl Impl {
    fn parse(s: &str) -> Self {
        match s {
            "none" | "candle" => Impl {
                conv: false,
                bn: false,
                pool: false,
            },
            "all" | "ops" => Impl {
                conv: true,
                bn: true,
                pool: true,
            },
            list => Impl {
                conv: list.split(',').any(|p| p == "conv"),
                bn: list.split(',').any(|p| p == "bn"),
                pool: list.split(',').any(|p| p == "pool"),
            },
        }
    }

    fn label(&self) -> String {
        let parts: Vec<&str> = [(self.conv, "conv"), (self.bn, "bn"), (self.pool, "pool")]
            .iter()
            .filter(|p| p.0)
            .map(|p| p.1)
            .collect();
        if parts.is_empty() {
            "candle".into()
        } else {
            format!("ops[{}]", parts.join(","))
        }
    }
}

/// Kaiming-normal weights as a trainable variable.
fn kaiming(shape: &[usize], fan_in: usize, vars: &mut Vec<Var>) -> Result<Var> {
    let t = (Tensor::randn(0f32, 1f32, shape, &Device::Cpu)? * (2.0 / fan_in as f64).sqrt())?;
    let v = Var::from_tensor(&t)?;
    vars.push(v.clone());
    Ok(v)
}

struct Conv {
    w: Var,
    b: Option<Var>,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        vars: &mut Vec<Var>,
    ) -> Result<Self> {
        let w = kaiming(&[cout, cin, k, k], cin * k * k, vars)?;
        let b = if bias {
            let v = Var::zeros(cout, DType::F32, &Device::Cpu)?;
            vars.push(v.clone());
            Some(v)
        } else {
            None
        };
        Ok(Self {
            w,
            b,
            stride,
            padding,
        })
    }

    fn forward(&self, x: &Tensor, imp: Impl, input_grad: bool) -> Result<Tensor> {
        if imp.conv {
            return ops::conv2d(
                x,
                &self.w,
                self.b.as_ref().map(|b| b.as_tensor()),
                self.stride,
                self.padding,
                input_grad,
            );
        }
        let y = x.conv2d(&self.w, self.padding, self.stride, 1, 1)?;
        match &self.b {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

struct Bn {
    gamma: Var,
    beta: Var,
    candle: candle_nn::BatchNorm,
    running_mean: Var,
    running_var: Var,
}

impl Bn {
    fn new(c: usize, vars: &mut Vec<Var>) -> Result<Self> {
        let gamma = Var::ones(c, DType::F32, &Device::Cpu)?;
        let beta = Var::zeros(c, DType::F32, &Device::Cpu)?;
        vars.push(gamma.clone());
        vars.push(beta.clone());
        let zeros = Tensor::zeros(c, DType::F32, &Device::Cpu)?;
        let ones = Tensor::ones(c, DType::F32, &Device::Cpu)?;
        let candle = candle_nn::BatchNorm::new(
            c,
            zeros.clone(),
            ones.clone(),
            gamma.as_tensor().clone(),
            beta.as_tensor().clone(),
            1e-5,
        )?;
        Ok(Self {
            gamma,
            beta,
            candle,
            running_mean: Var::from_tensor(&zeros)?,
            running_var: Var::from_tensor(&ones)?,
        })
    }

    fn forward(&self, x: &Tensor, relu: bool, imp: Impl) -> Result<Tensor> {
        if !imp.bn {
            let y = self.candle.forward_t(x, true)?;
            return if relu { y.relu() } else { Ok(y) };
        }
        let f = if relu {
            ops::batch_norm_relu_train
        } else {
            ops::batch_norm_train
        };
        let (y, mean, var) = f(x, &self.gamma, &self.beta, 1e-5)?;
        self.update_running(x, mean, var)?;
        Ok(y)
    }

    /// max_pool(relu(bn(x))), fused.
    fn forward_relu_pool(&self, x: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
        let (y, mean, var) = ops::batch_norm_relu_max_pool_train(x, &self.gamma, &self.beta, 1e-5, k, s, p)?;
        self.update_running(x, mean, var)?;
        Ok(y)
    }

    /// relu(bn(x) + residual), fused.
    fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (y, mean, var) = ops::batch_norm_add_relu_train(x, &self.gamma, &self.beta, residual, 1e-5)?;
        self.update_running(x, mean, var)?;
        Ok(y)
    }

    /// PyTorch's running statistics: momentum 0.1, unbiased variance.
    fn update_running(&self, x: &Tensor, mean: Tensor, var: Tensor) -> Result<()> {
        let n = (x.elem_count() / x.dim(1)?) as f64;
        self.running_mean
            .set(&((self.running_mean.as_tensor() * 0.9)? + (mean * 0.1)?)?)?;
        self.running_var
            .set(&((self.running_var.as_tensor() * 0.9)? + (var * (0.1 * n / (n - 1.0)))?)?)?;
        Ok(())
    }
}

/// Max-pool as Candle allows it: its own op without padding, else (the ResNet stem) replicate-padding and
/// an elementwise maximum over the k² strided views (equivalent to −∞ padding when padding < kernel).
fn pool(x: &Tensor, k: usize, s: usize, p: usize, imp: Impl) -> Result<Tensor> {
    if imp.pool {
        return ops::max_pool2d(x, k, s, p);
    }
    if p == 0 && k == s {
        return x.max_pool2d(k);
    }
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let xp = x.pad_with_same(2, p, p)?.pad_with_same(3, p, p)?;
    let idx = |n: usize, off: usize| {
        Tensor::from_vec(
            (0..n).map(|o| (o * s + off) as u32).collect::<Vec<_>>(),
            n,
            x.device(),
        )
    };
    let mut out: Option<Tensor> = None;
    for ky in 0..k {
        let rows = xp.index_select(&idx(oh, ky)?, 2)?;
        for kx in 0..k {
            let v = rows.index_select(&idx(ow, kx)?, 3)?;
            out = Some(match out {
                None => v,
                Some(m) => m.maximum(&v)?,
            });
        }
    }
    Ok(out.expect("kernel >= 1"))
}

struct SimpleCnn {
    convs: Vec<(Conv, Bn)>,
    fc: candle_nn::Linear,
}

impl SimpleCnn {
    fn new(vars: &mut Vec<Var>) -> Result<Self> {
        let mut convs = Vec::new();
        let mut cin = 3;
        for cout in [32, 64, 128] {
            convs.push((Conv::new(cin, cout, 3, 1, 1, true, vars)?, Bn::new(cout, vars)?));
            cin = cout;
        }
        let w = kaiming(&[10, 2048], 2048, vars)?;
        let b = Var::zeros(10, DType::F32, &Device::Cpu)?;
        vars.push(b.clone());
        Ok(Self {
            convs,
            fc: candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())),
        })
    }

    fn forward(&self, x: &Tensor, imp: Impl) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            x = conv.forward(&x, imp, i > 0)?;
            x = if imp.bn && imp.pool {
                bn.forward_relu_pool(&x, 2, 2, 0)?
            } else {
                pool(&bn.forward(&x, true, imp)?, 2, 2, 0, imp)?
            };
        }
        let x = candle_nn::ops::dropout(&x, 0.5)?;
        self.fc.forward(&x.flatten_from(1)?)
    }
}

struct Block {
    conv1: Conv,
    bn1: Bn,
    conv2: Conv,
    bn2: Bn,
    down: Option<(Conv, Bn)>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, vars: &mut Vec<Var>) -> Result<Self> {
        Ok(Self {
            conv1: Conv::new(cin, cout, 3, stride, 1, false, vars)?,
            bn1: Bn::new(cout, vars)?,
            conv2: Conv::new(cout, cout, 3, 1, 1, false, vars)?,
            bn2: Bn::new(cout, vars)?,
            down: if stride != 1 || cin != cout {
                Some((
                    Conv::new(cin, cout, 1, stride, 0, false, vars)?,
                    Bn::new(cout, vars)?,
                ))
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor, imp: Impl) -> Result<Tensor> {
        let out = self.bn1.forward(&self.conv1.forward(x, imp, true)?, true, imp)?;
        let identity = match &self.down {
            Some((conv, bn)) => bn.forward(&conv.forward(x, imp, true)?, false, imp)?,
            None => x.clone(),
        };
        let out = self.conv2.forward(&out, imp, true)?;
        if imp.bn {
            return self.bn2.forward_add_relu(&out, &identity);
        }
        (self.bn2.forward(&out, false, imp)? + identity)?.relu()
    }
}

struct ResNet18 {
    conv1: Conv,
    bn1: Bn,
    blocks: Vec<Block>,
    fc: candle_nn::Linear,
}

impl ResNet18 {
    fn new(vars: &mut Vec<Var>) -> Result<Self> {
        let conv1 = Conv::new(3, 64, 7, 2, 3, false, vars)?;
        let bn1 = Bn::new(64, vars)?;
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (i, cout) in [64, 128, 256, 512].into_iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            blocks.push(Block::new(cin, cout, stride, vars)?);
            blocks.push(Block::new(cout, cout, 1, vars)?);
            cin = cout;
        }
        let w = kaiming(&[10, 512], 512, vars)?;
        let b = Var::zeros(10, DType::F32, &Device::Cpu)?;
        vars.push(b.clone());
        Ok(Self {
            conv1,
            bn1,
            blocks,
            fc: candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())),
        })
    }

    fn forward(&self, x: &Tensor, imp: Impl) -> Result<Tensor> {
        let x = self.bn1.forward(&self.conv1.forward(x, imp, false)?, true, imp)?;
        let mut x = pool(&x, 3, 2, 1, imp)?;
        for block in &self.blocks {
            x = block.forward(&x, imp)?;
        }
        self.fc.forward(&x.mean(D::Minus1)?.mean(D::Minus1)?)
    }
}

/// CPU seconds (user + system) this process has used so far, from /proc (0 where unavailable).
/// On a shared machine wall time swings with other load; CPU time per step swings far less.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// A network's forward pass, whichever network it is.
type Forward = dyn Fn(&Tensor) -> Result<Tensor>;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench(name: &str, batch: usize, imp: Impl, steps: usize, adam: bool) -> Result<()> {
    let mut vars = Vec::new();
    let forward: Box<Forward> = if name == "simple" {
        let m = SimpleCnn::new(&mut vars)?;
        Box::new(move |x| m.forward(x, imp))
    } else {
        let m = ResNet18::new(&mut vars)?;
        Box::new(move |x| m.forward(x, imp))
    };
    let mut opt = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let x = Tensor::randn(0f32, 1f32, (batch, 3, 32, 32), &Device::Cpu)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| (i * 7 + 3) % 10).collect();
    let y = Tensor::from_vec(labels, batch, &Device::Cpu)?;
    let (mut fwd, mut bwd, mut step, mut total) = (vec![], vec![], vec![], vec![]);
    let mut last_loss = 0f32;
    let mut cpu_start = 0.0;
    for i in 0..steps + 3 {
        if i == 3 {
            cpu_start = cpu_seconds();
        }
        let t0 = Instant::now();
        let loss = candle_nn::loss::cross_entropy(&forward(&x)?, &y)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        if adam {
            opt.step(&grads)?;
        }
        drop(grads);
        last_loss = loss.to_scalar::<f32>()?;
        drop(loss);
        let t3 = Instant::now();
        if i >= 3 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            step.push((t3 - t2).as_secs_f64());
            total.push((t3 - t0).as_secs_f64());
        }
    }
    let cpu_per_step = (cpu_seconds() - cpu_start) / steps as f64;
    let t = median(&mut total);
    println!(
        "{name:<7} b{batch:<4} {:<20} {:>7.1} img/s  step {:>6.1} ms  cpu {:>6.1} ms  (fwd {:>6.1}  bwd {:>6.1}  {} {:>5.1} ms)  loss {last_loss:.3}",
        imp.label(),
        batch as f64 / t,
        t * 1e3,
        cpu_per_step * 1e3,
        median(&mut fwd) * 1e3,
        median(&mut bwd) * 1e3,
        if adam { "adam" } else { "rest" },
        median(&mut step) * 1e3,
    );
    Ok(())
}

/// Median seconds of `f` over `reps` runs after one warm-up.
fn time_it(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(&mut t))
}

/// Forward and forward+backward milliseconds of one layer, Candle's against labpipe's.
fn micro(only: Option<String>) -> Result<()> {
    let dev = Device::Cpu;
    let wanted = |what: &str| only.as_deref().is_none_or(|o| what.starts_with(o));
    let surrogate = |y: &Tensor, r: &Tensor| -> Result<()> {
        let _g = (y * r)?.sum_all()?.backward()?;
        Ok(())
    };
    let report = |what: &str, imp: Impl, x: &Var, f: &dyn Fn(&Tensor) -> Result<Tensor>| -> Result<()> {
        if !wanted(what) {
            return Ok(());
        }
        let y = f(x.as_tensor())?;
        let r = Tensor::randn(0f32, 1f32, y.shape(), &dev)?;
        let fwd = time_it(7, || f(x.as_tensor()).map(drop))?;
        let both = time_it(7, || surrogate(&f(x.as_tensor())?, &r))?;
        let base = time_it(7, || surrogate(&y.detach(), &r))?;
        println!(
            "{what:<34} {:<10} fwd {:>7.2} ms  fwd+bwd {:>7.2} ms",
            imp.label(),
            fwd * 1e3,
            (both - base) * 1e3
        );
        Ok(())
    };
    let input = |dims: (usize, usize, usize, usize)| -> Result<Var> {
        Var::from_tensor(&Tensor::randn(0f32, 1f32, dims, &dev)?)
    };
    for imp in [Impl::parse("none"), Impl::parse("all")] {
        let mut vars = Vec::new();
        for (n, cin, hw, cout, k, s, p) in [
            (128, 3, 32, 32, 3, 1, 1),
            (128, 32, 16, 64, 3, 1, 1),
            (128, 64, 8, 128, 3, 1, 1),
            (64, 3, 32, 64, 7, 2, 3),
            (64, 64, 8, 64, 3, 1, 1),
            (64, 64, 8, 128, 3, 2, 1),
            (64, 64, 8, 128, 1, 2, 0),
            (64, 128, 4, 128, 3, 1, 1),
            (64, 256, 2, 256, 3, 1, 1),
            (64, 512, 1, 512, 3, 1, 1),
        ] {
            let conv = Conv::new(cin, cout, k, s, p, cin == 3 && k == 3, &mut vars)?;
            let x = input((n, cin, hw, hw))?;
            report(
                &format!("conv {n}x{cin}x{hw}² → {cout} k{k}s{s}p{p}"),
                imp,
                &x,
                &|x| conv.forward(x, imp, true),
            )?;
        }
        for (n, c, hw) in [(128, 32, 32), (128, 64, 16), (64, 64, 16), (64, 512, 1)] {
            let bn = Bn::new(c, &mut vars)?;
            let x = input((n, c, hw, hw))?;
            report(&format!("bn+relu {n}x{c}x{hw}²"), imp, &x, &|x| {
                bn.forward(x, true, imp)
            })?;
        }
        for (n, c, hw, k, s, p) in [
            (128, 32, 32, 2, 2, 0),
            (128, 64, 16, 2, 2, 0),
            (64, 64, 16, 3, 2, 1),
        ] {
            let x = input((n, c, hw, hw))?;
            report(&format!("pool {n}x{c}x{hw}² k{k}s{s}p{p}"), imp, &x, &|x| {
                pool(x, k, s, p, imp)
            })?;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let model = value("--model").unwrap_or_else(|| "all".into());
    let steps: usize = value("--steps").and_then(|s| s.parse().ok()).unwrap_or(10);
    let adam = args.iter().any(|a| a == "--adam");
    let imps: Vec<Impl> = match value("--ops") {
        Some(s) => vec![Impl::parse(&s)],
        None => vec![Impl::parse("none"), Impl::parse("all")],
    };
    println!("rayon threads: {}", rayon::current_num_threads());
    if args.iter().any(|a| a == "--micro") {
        return micro(value("--only"));
    }
    for name in ["simple", "resnet"] {
        if model != "all" && model != name {
            continue;
        }
        let batch = if name == "simple" { 128 } else { 64 };
        for &imp in &imps {
            bench(name, batch, imp, steps, adam)?;
        }
    }
    Ok(())
}
