//! A labpipe training step is a PyTorch training step, on whole models: from the same initial state_dict and
//! batch, three steps of `Net::forward(Train)` → `cross_entropy` → `backward` → `Optimizer::step` give the
//! losses, weights, BatchNorm running statistics and `num_batches_tracked` that PyTorch's
//! `model.train(); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()` gives, for SimpleCNN
//! (dropout 0) and width-4 ResNet-18 with both stems, under Adam, Adam + weight decay, SGD Nesterov and SGD
//! Nesterov + weight decay.
//!
//! Compared: the loss before every step (relative), every bias, BatchNorm weight/bias, running statistic
//! and `num_batches_tracked` after every step, and every conv/linear weight after the last step (where the
//! fixture stores them). One exception, forced by the mathematics: a conv bias feeding a BatchNorm has an
//! exact gradient of zero, so under Adam its value is rounding noise times lr in PyTorch and labpipe alike;
//! for those the test checks that labpipe's gradient is rounding noise and compares the BatchNorm's running
//! mean with the bias difference taken out.
//!
//! Fixtures: tests/fixtures/train_parity/ (made by scripts/fixtures/train_parity_fixtures.py; the README
//! there says what is stored, and why the cases are ones that float32 rounding cannot tip over).

use crate::util::fixtures;
use candle_core::{DType, Device, Tensor, Var};
use labpipe::model::builtins::{Stem, resnet18, simple_cnn};
use labpipe::model::decl::{ModelDecl, Node, Op};
use labpipe::model::net::{Mode, Net};
use labpipe::train::loss::cross_entropy;
use labpipe::train::optim::{self, OptimizerConfig, OptimizerKind};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Largest relative difference allowed between labpipe's and PyTorch's loss before each step.
const LOSS_REL_TOL: f64 = 1e-5;
/// Largest absolute difference allowed on a weight (parameters are O(0.01..1); absolute, not relative, so a
/// weight near zero is held to the same bound as the rest).
const WEIGHT_ABS_TOL: f64 = 1e-4;
/// Largest absolute difference allowed on a BatchNorm running mean or variance.
const STATS_ABS_TOL: f64 = 1e-4;

/// The optimizer cases every model is trained with (keys of the manifest's `optimizers`).
const OPTIMIZERS: [&str; 4] = ["adam", "adam_wd", "sgd_nesterov", "sgd_nesterov_wd"];

/// The fixture set: tests/fixtures/train_parity/.
const FIXTURES: &str = "train_parity";

fn fixture(file: &str) -> HashMap<String, Tensor> {
    fixtures::tensors(FIXTURES, file)
}

fn f32_values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// The batch: `x` stored as float16 (its values are exactly those float16 numbers), labels as u32.
fn batch() -> (Tensor, Tensor) {
    let mut b = fixture("batch.safetensors");
    let x = b
        .remove("x")
        .expect("batch holds `x`")
        .to_dtype(DType::F32)
        .unwrap();
    let y = b
        .remove("y")
        .expect("batch holds `y`")
        .to_dtype(DType::U32)
        .unwrap();
    (x, y)
}

/// The initial state_dict, float tensors widened from float16 to the float32 they were trained in.
fn initial_state(model: &str) -> HashMap<String, Tensor> {
    fixture(&format!("{model}.safetensors"))
        .into_iter()
        .map(|(k, t)| {
            let t = if t.dtype() == DType::F16 {
                t.to_dtype(DType::F32).unwrap()
            } else {
                t
            };
            (k, t)
        })
        .collect()
}

/// The largest elementwise |ours - theirs| (f64 arithmetic so the difference itself is not rounded).
fn max_abs_diff(ours: &Tensor, theirs: &[f32]) -> f64 {
    let a = f32_values(ours);
    assert_eq!(a.len(), theirs.len(), "element counts differ");
    a.iter()
        .zip(theirs)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
}

fn is_stat(key: &str) -> bool {
    key.ends_with(".running_mean") || key.ends_with(".running_var")
}

/// PyTorch's BatchNorm momentum, which made the fixtures.
const TORCH_BN_MOMENTUM: f64 = 0.1;
/// A bias whose exact gradient is zero gets float32 rounding noise from autograd (PyTorch's is ~1e-7, see the
/// manifest); real gradients here are 1e-3 and up.
const CANCELLED_GRAD_MAX: f64 = 1e-5;

/// Conv biases that feed a BatchNorm directly, with that BatchNorm's name: in training mode BatchNorm
/// subtracts the batch mean, so the bias cancels and its exact gradient is zero.
fn bn_cancelled_biases(decl: &ModelDecl) -> Vec<(String, String)> {
    fn scan(nodes: &[Node], prefix: &str, out: &mut Vec<(String, String)>) {
        let path = |n: &Node| {
            if prefix.is_empty() {
                n.name.clone()
            } else {
                format!("{prefix}.{}", n.name)
            }
        };
        for (i, n) in nodes.iter().enumerate() {
            if let (Op::Conv2d { bias: true, .. }, Some(next)) = (&n.op, nodes.get(i + 1))
                && next.op == Op::BatchNorm2d
            {
                out.push((format!("{}.bias", path(n)), path(next)));
            }
            match &n.op {
                Op::Sequential(children) => scan(children, &path(n), out),
                Op::Residual { body, .. } => scan(body, &path(n), out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    scan(&decl.layers, "", &mut out);
    out
}

/// The worst differences of one (model, optimizer) case, with the entry each came from.
#[derive(Default)]
struct Worst {
    loss_rel: (f64, String),
    weight_abs: (f64, String),
    stats_abs: (f64, String),
    /// Largest |gradient| labpipe gave a BatchNorm-cancelled bias.
    cancelled_grad: f64,
    weights_compared: usize,
    stats_compared: usize,
    /// Per-step BatchNorm-cancelled bias values left out of the comparison (Adam cases).
    cancelled_skipped: usize,
}

fn raise(slot: &mut (f64, String), d: f64, what: impl FnOnce() -> String) {
    if d > slot.0 || slot.1.is_empty() {
        *slot = (d.max(slot.0), what());
    }
}

/// One step's small entries from the packed fixture tensors `stepK` (floats) and
/// `stepK.num_batches_tracked` (counters), by name, in the manifest's layout.
fn unpack_step(
    expected: &HashMap<String, Tensor>,
    step: usize,
    layout: &serde_json::Value,
) -> (HashMap<String, Vec<f32>>, HashMap<String, i64>) {
    let floats = f32_values(&expected[&format!("step{step}")]);
    let mut at = 0;
    let mut out = HashMap::new();
    for entry in layout["per_step"].as_array().expect("manifest per_step") {
        let name = entry[0].as_str().expect("per_step name").to_string();
        let n = entry[1].as_u64().expect("per_step size") as usize;
        out.insert(name, floats[at..at + n].to_vec());
        at += n;
    }
    assert_eq!(
        at,
        floats.len(),
        "step{step}: packed size differs from the manifest layout"
    );
    let counts = expected[&format!("step{step}.num_batches_tracked")]
        .to_vec1::<i64>()
        .unwrap();
    let names = layout["per_step_num_batches_tracked"]
        .as_array()
        .expect("manifest per_step_num_batches_tracked");
    assert_eq!(names.len(), counts.len(), "step{step}: counter count");
    let counters = names
        .iter()
        .map(|n| n.as_str().expect("counter name").to_string())
        .zip(counts)
        .collect();
    (out, counters)
}

/// Run one case and return its worst differences; `problems` collects every tolerance violation.
fn run_case(model: &str, decl: &ModelDecl, opt_name: &str, problems: &mut Vec<String>) -> Worst {
    let manifest = fixtures::manifest(FIXTURES);
    let case = format!("{model}.{opt_name}");
    let config: OptimizerConfig = serde_json::from_value(manifest["optimizers"][opt_name].clone())
        .unwrap_or_else(|e| panic!("manifest optimizer `{opt_name}`: {e}"));
    let steps = manifest["steps"].as_u64().expect("manifest `steps`") as usize;
    let layout = &manifest["models"][model];
    // Each model trains on the first `images` of the batch (the script's README says why they differ).
    let images = manifest["images"][model].as_u64().expect("manifest `images`") as usize;
    let (x, y) = batch();
    let (x, y) = (x.narrow(0, 0, images).unwrap(), y.narrow(0, 0, images).unwrap());
    let initial = initial_state(model);
    let expected = fixture(&format!("{case}.safetensors"));
    let torch_losses = f32_values(&expected["loss"]);
    assert_eq!(torch_losses.len(), steps, "{case}: one loss per step");

    // Under Adam a cancelled bias's update is lr times the sign of rounding noise, in PyTorch as in labpipe:
    // its value cannot be compared. Its running mean can, once the bias difference is taken out: the mean
    // that BatchNorm records includes the bias, and nothing else in the network depends on it.
    let cancelled = bn_cancelled_biases(decl);
    let adam = matches!(config.name, OptimizerKind::Adam | OptimizerKind::AdamW);
    let mut bias_offset: HashMap<String, Vec<f64>> = HashMap::new();
    let mut torch_bias: HashMap<String, Vec<f32>> = cancelled
        .iter()
        .map(|(b, _)| (b.clone(), f32_values(&initial[b])))
        .collect();

    // A seed unlike anything PyTorch used: every number must come from the loaded state.
    let net = Net::new(decl, &Device::Cpu, 777).expect("built-in model builds");
    net.load_state_dict(&initial)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut opt = optim::build(&config, net.params()).expect("valid optimizer config");
    let vars: HashMap<String, Var> = net.params().into_iter().collect();
    let mut worst = Worst::default();
    for (step, torch_loss) in (1..=steps).zip(torch_losses) {
        // The running mean this step records is offset by (our bias - PyTorch's bias) before the step.
        let before = net.state_dict().unwrap();
        for (b, bn) in &cancelled {
            let ours = f32_values(&before[b]);
            let offset = bias_offset
                .entry(format!("{bn}.running_mean"))
                .or_insert(vec![0.0; ours.len()]);
            for ((o, a), t) in offset.iter_mut().zip(&ours).zip(&torch_bias[b]) {
                *o = (1.0 - TORCH_BN_MOMENTUM) * *o + TORCH_BN_MOMENTUM * (*a as f64 - *t as f64);
            }
        }

        let logits = net.forward(&x, Mode::Train).unwrap();
        let loss = cross_entropy(&logits, &y, 0.0).unwrap();
        let ours_loss = loss.to_scalar::<f32>().unwrap() as f64;
        let rel = (ours_loss - torch_loss as f64).abs() / (torch_loss as f64).abs();
        raise(&mut worst.loss_rel, rel, || format!("step {step}"));
        if rel > LOSS_REL_TOL {
            problems.push(format!(
                "{case}: loss before step {step} is {ours_loss}, PyTorch's {torch_loss} (rel {rel:.2e})"
            ));
        }
        let grads = loss.backward().unwrap();
        for (b, _) in &cancelled {
            let g = grads
                .get(&vars[b])
                .expect("a cancelled bias still gets a gradient");
            let g = f32_values(g).iter().fold(0f64, |m, v| m.max(v.abs() as f64));
            worst.cancelled_grad = worst.cancelled_grad.max(g);
            if g > CANCELLED_GRAD_MAX {
                problems.push(format!(
                    "{case}: {b} feeds a BatchNorm, so its gradient must be rounding noise, but |grad| = {g:.3e} \
                     at step {step}"
                ));
            }
        }
        opt.step(&grads, config.lr).unwrap();

        // The small entries (biases, BatchNorm parameters and buffers) are compared after every step.
        let state = net.state_dict().unwrap();
        let (floats, counters) = unpack_step(&expected, step, layout);
        for (key, count) in &counters {
            let ours = state[key].to_scalar::<i64>().unwrap();
            if ours != *count {
                problems.push(format!(
                    "{case}: {key} after step {step} is {ours}, PyTorch's {count}"
                ));
            }
        }
        for (key, theirs) in &floats {
            let ours = &state[key];
            if let Some(t) = torch_bias.get_mut(key) {
                *t = theirs.clone();
                if adam {
                    worst.cancelled_skipped += 1;
                    continue;
                }
            }
            let d = match bias_offset.get(key) {
                Some(offset) => {
                    let shifted: Vec<f32> = f32_values(ours)
                        .iter()
                        .zip(offset)
                        .map(|(v, o)| (*v as f64 - o) as f32)
                        .collect();
                    max_abs_diff(&Tensor::new(shifted, &Device::Cpu).unwrap(), theirs)
                }
                None => max_abs_diff(ours, theirs),
            };
            let (slot, tol, count) = if is_stat(key) {
                (&mut worst.stats_abs, STATS_ABS_TOL, &mut worst.stats_compared)
            } else {
                (&mut worst.weight_abs, WEIGHT_ABS_TOL, &mut worst.weights_compared)
            };
            *count += 1;
            raise(slot, d, || format!("{key} @ step {step}"));
            if d > tol {
                problems.push(format!("{case}: {key} after step {step} differs by {d:.3e}"));
            }
        }
    }

    // Conv and linear weights after the last step, where the case stores them: initial + q * scale.
    let state = net.state_dict().unwrap();
    for (key, ours) in &state {
        let Some(q) = expected.get(&format!("final.{key}.q")) else {
            continue;
        };
        let scale = expected[&format!("final.{key}.scale")]
            .to_scalar::<f32>()
            .unwrap();
        let start = f32_values(&initial[key]);
        let torch_final: Vec<f32> = start
            .iter()
            .zip(f32_values(q))
            .map(|(s, q)| s + q * scale)
            .collect();
        let d = max_abs_diff(ours, &torch_final);
        worst.weights_compared += 1;
        raise(&mut worst.weight_abs, d, || format!("{key} @ step {steps}"));
        if d > WEIGHT_ABS_TOL {
            problems.push(format!("{case}: {key} after step {steps} differs by {d:.3e}"));
        }
    }
    worst
}

/// Train every optimizer case of `model` and fail with every difference over tolerance.
fn check_model(model: &str, decl: ModelDecl) {
    let manifest = fixtures::manifest(FIXTURES);
    // The script and this test agree on which biases BatchNorm cancels.
    let cancelled: HashMap<String, String> = bn_cancelled_biases(&decl).into_iter().collect();
    let listed: HashMap<String, String> =
        serde_json::from_value(manifest["models"][model]["bn_cancelled_biases"].clone()).unwrap();
    assert_eq!(cancelled, listed, "{model}: BatchNorm-cancelled biases");
    let mut problems = Vec::new();
    let mut table = String::new();
    for opt_name in OPTIMIZERS {
        let case = format!("{model}.{opt_name}");
        let w = run_case(model, &decl, opt_name, &mut problems);
        // Every stored entry was compared: a renamed tensor must not silently drop out of the comparison.
        let expected = fixture(&format!("{case}.safetensors"));
        let steps = manifest["steps"].as_u64().unwrap() as usize;
        let per_step = manifest["models"][model]["per_step"].as_array().unwrap().len();
        let finals = expected.keys().filter(|k| k.ends_with(".q")).count();
        assert_eq!(
            w.weights_compared + w.stats_compared + w.cancelled_skipped,
            per_step * steps + finals,
            "{case}: entries compared"
        );
        assert_eq!(
            manifest["cases"][&case]["final_weights_stored"].as_bool(),
            Some(finals > 0),
            "{case}: manifest and fixture disagree on the final weights"
        );
        writeln!(
            table,
            "{case:<36} loss rel {:.2e} ({}), weight abs {:.2e} ({}), running stats abs {:.2e} ({}){}",
            w.loss_rel.0,
            w.loss_rel.1,
            w.weight_abs.0,
            w.weight_abs.1,
            w.stats_abs.0,
            w.stats_abs.1,
            if cancelled.is_empty() {
                String::new()
            } else {
                format!(", cancelled-bias |grad| max {:.2e}", w.cancelled_grad)
            }
        )
        .unwrap();
    }
    eprint!("{table}");
    assert!(
        problems.is_empty(),
        "{model}: labpipe's training differs from PyTorch's:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn simple_cnn_trains_like_pytorch() {
    check_model("simple_cnn", simple_cnn(10, 0.0));
}

#[test]
fn resnet18_imagenet_stem_trains_like_pytorch() {
    check_model("resnet18_imagenet_w4", resnet18(10, Stem::Imagenet, 4));
}

#[test]
fn resnet18_cifar_stem_trains_like_pytorch() {
    check_model("resnet18_cifar_w4", resnet18(10, Stem::Cifar, 4));
}
