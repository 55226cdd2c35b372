//! The Candle network built from a `ModelDecl`: parameters named as PyTorch's state_dict, BatchNorm with
//! PyTorch's running statistics, PyTorch's default initialisation, seeded dropout.

use super::decl::{ModelDecl, Node, Op, TensorRole, Window, state_dict_path};
use super::ops;
use crate::rng::Rng;
use candle_core::{DType, Device, Result, Tensor, Var};
use std::collections::HashMap;
use std::sync::Mutex;

/// BatchNorm momentum and epsilon, as PyTorch's defaults.
pub const BN_MOMENTUM: f64 = 0.1;
/// BatchNorm epsilon.
pub const BN_EPS: f64 = 1e-5;

/// Whether a forward pass trains (batch statistics, dropout) or evaluates (running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: BatchNorm uses and updates batch statistics; dropout drops.
    Train,
    /// Evaluation: BatchNorm uses running statistics; dropout passes through.
    Eval,
}

/// What follows a BatchNorm inside the same fused op.
#[derive(Clone, Copy)]
enum Epilogue<'a> {
    None,
    Relu,
    /// `relu(bn(x) + residual)`: the end of a residual block.
    AddRelu(&'a Tensor),
    /// `max_pool(relu(bn(x)))`: a SimpleCNN block's tail.
    ReluMaxPool(Window),
}

/// A network with its weights and buffers.
pub struct Net {
    decl: ModelDecl,
    device: Device,
    params: Vec<(String, Var)>,
    index: HashMap<String, usize>,
    /// Each BatchNorm's running statistics by its state_dict path: `[2, C]`, row 0 the running mean, row 1
    /// the running variance (one tensor, so one operation updates both).
    buffers: Mutex<HashMap<String, Tensor>>,
    batches_tracked: Mutex<HashMap<String, i64>>,
    dropout_rng: Mutex<Rng>,
}

impl Net {
    /// A freshly initialised network (PyTorch's default init, drawn from `seed`).
    pub fn new(decl: &ModelDecl, device: &Device, seed: u64) -> Result<Net> {
        let tensors = decl
            .tensors()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut rng = Rng::stream(seed, "init", 0);
        let mut params = Vec::new();
        let mut buffers = HashMap::new();
        let mut tracked = HashMap::new();
        let is_bn = |name: &str| {
            let owner = name.rsplit_once('.').map(|x| x.0).unwrap_or("");
            tensors.iter().any(|t| {
                t.role == TensorRole::RunningMean && t.name.rsplit_once('.').map(|x| x.0) == Some(owner)
            })
        };
        for t in &tensors {
            let numel: usize = t.shape.iter().product();
            match t.role {
                TensorRole::Weight | TensorRole::Bias => {
                    let data: Vec<f32> = if is_bn(&t.name) {
                        vec![if t.role == TensorRole::Weight { 1.0 } else { 0.0 }; numel]
                    } else {
                        // kaiming_uniform_(a=√5) for weights and U(±1/√fan_in) for biases both give this bound.
                        let bound = 1.0 / (t.fan_in as f64).sqrt();
                        (0..numel).map(|_| rng.uniform(-bound, bound) as f32).collect()
                    };
                    let v = Var::from_tensor(&Tensor::from_vec(data, t.shape.as_slice(), device)?)?;
                    params.push((t.name.clone(), v));
                }
                // PyTorch starts from mean 0 and variance 1.
                TensorRole::RunningMean => {
                    let running = [vec![0f32; numel], vec![1f32; numel]].concat();
                    buffers.insert(
                        owner_path(&t.name).to_string(),
                        Tensor::from_vec(running, (2, numel), device)?,
                    );
                }
                TensorRole::RunningVar => {}
                TensorRole::NumBatchesTracked => {
                    tracked.insert(t.name.clone(), 0i64);
                }
            }
        }
        let index = params
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Ok(Net {
            decl: decl.clone(),
            device: device.clone(),
            params,
            index,
            buffers: Mutex::new(buffers),
            batches_tracked: Mutex::new(tracked),
            dropout_rng: Mutex::new(Rng::stream(seed, "dropout", 0)),
        })
    }

    /// The declaration it was built from.
    pub fn decl(&self) -> &ModelDecl {
        &self.decl
    }

    /// The device it lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Trainable parameters in state_dict order (never the BatchNorm buffers).
    pub fn params(&self) -> Vec<(String, Var)> {
        self.params.clone()
    }

    /// Reseed dropout (used when resuming at an epoch boundary).
    pub fn set_dropout_rng(&self, rng: Rng) {
        if let Ok(mut r) = self.dropout_rng.lock() {
            *r = rng;
        }
    }

    /// The dropout generator's state.
    pub fn dropout_rng(&self) -> Rng {
        self.dropout_rng
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn param(&self, name: &str) -> Result<&Tensor> {
        self.index
            .get(name)
            .map(|&i| self.params[i].1.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg(format!("no parameter `{name}`")))
    }

    /// Class scores `[N, classes]` for images `[N, 3, 32, 32]`.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut first = true;
        // Through `seq`, so top-level BatchNorm → ReLU (→ MaxPool) runs fused too (SimpleCNN, the stem).
        self.seq(&self.decl.layers, "", x.clone(), mode, &mut first)
    }

    fn seq(
        &self,
        nodes: &[Node],
        prefix: &str,
        mut x: Tensor,
        mode: Mode,
        first: &mut bool,
    ) -> Result<Tensor> {
        let mut i = 0;
        while i < nodes.len() {
            // BatchNorm → ReLU → MaxPool (and BatchNorm → ReLU) run as one fused op.
            if let (Op::BatchNorm2d, Some(Op::Relu), Some(Op::MaxPool2d(w))) = (
                &nodes[i].op,
                nodes.get(i + 1).map(|n| &n.op),
                nodes.get(i + 2).map(|n| &n.op),
            ) {
                x = self.batch_norm(
                    &x,
                    &state_dict_path(prefix, &nodes[i].name),
                    mode,
                    Epilogue::ReluMaxPool(*w),
                )?;
                i += 3;
                continue;
            }
            if let (Op::BatchNorm2d, Some(Op::Relu)) = (&nodes[i].op, nodes.get(i + 1).map(|n| &n.op)) {
                x = self.batch_norm(&x, &state_dict_path(prefix, &nodes[i].name), mode, Epilogue::Relu)?;
                i += 2;
                continue;
            }
            x = self.node(&nodes[i], prefix, x, mode, first)?;
            i += 1;
        }
        Ok(x)
    }

    fn node(&self, node: &Node, prefix: &str, x: Tensor, mode: Mode, first: &mut bool) -> Result<Tensor> {
        let path = state_dict_path(prefix, &node.name);
        let p = |s: &str| format!("{path}.{s}");
        Ok(match &node.op {
            Op::Conv2d {
                stride,
                padding,
                bias,
                ..
            } => {
                let w = self.param(&p("weight"))?;
                let b = if *bias {
                    Some(self.param(&p("bias"))?)
                } else {
                    None
                };
                // The first layer's input is data: its gradient is never needed.
                let needs_input_grad = !std::mem::replace(first, false);
                ops::conv2d(&x, w, b, *stride, *padding, needs_input_grad)?
            }
            Op::BatchNorm2d => self.batch_norm(&x, &path, mode, Epilogue::None)?,
            Op::Relu => x.relu()?,
            Op::LeakyRelu { negative_slope } => x.maximum(&(&x * *negative_slope)?)?,
            Op::Gelu => x.gelu_erf()?,
            Op::MaxPool2d(w) => ops::max_pool2d(&x, w.kernel, w.stride, w.padding)?,
            Op::AvgPool2d(w) => {
                // count_include_pad=True: zero padding is averaged in, exactly like padding with zeros first.
                let x = if w.padding > 0 {
                    x.pad_with_zeros(2, w.padding, w.padding)?
                        .pad_with_zeros(3, w.padding, w.padding)?
                } else {
                    x
                };
                if w.kernel == w.stride {
                    x.avg_pool2d_with_stride(w.kernel, w.stride)?
                } else {
                    avg_pool_overlapping(&x, w.kernel, w.stride)?
                }
            }
            Op::AdaptiveAvgPool2d { output } => ops::adaptive_avg_pool2d(&x, *output)?,
            Op::Dropout { p: prob } => match mode {
                Mode::Eval => x,
                Mode::Train if *prob == 0.0 => x,
                Mode::Train => {
                    let n = x.elem_count();
                    let keep = 1.0 - prob;
                    let mask: Vec<f32> = {
                        let mut rng = self
                            .dropout_rng
                            .lock()
                            .map_err(|_| candle_core::Error::Msg("dropout rng poisoned".into()))?;
                        (0..n)
                            .map(|_| {
                                if rng.next_f64() < keep {
                                    (1.0 / keep) as f32
                                } else {
                                    0.0
                                }
                            })
                            .collect()
                    };
                    {
                        let m = Tensor::from_vec(mask, x.shape(), &self.device)?;
                        (x * m)?
                    }
                }
            },
            Op::Flatten | Op::View => x.flatten_from(1)?,
            Op::Linear { bias, .. } => {
                let w = self.param(&p("weight"))?;
                let y = x.matmul(&w.t()?)?;
                if *bias {
                    y.broadcast_add(self.param(&p("bias"))?)?
                } else {
                    y
                }
            }
            Op::Sequential(children) => self.seq(children, &path, x, mode, first)?,
            Op::Residual {
                body,
                shortcut,
                activation,
                ..
            } => {
                // A body ending in BatchNorm under a ReLU activation: BN, the addition and the ReLU run fused.
                if let (Some((last, rest)), Some(Op::Relu)) =
                    (body.split_last(), activation.as_ref().map(|a| &a.op))
                    && last.op == Op::BatchNorm2d
                {
                    let pre = self.seq(rest, &path, x.clone(), mode, first)?;
                    let side = match shortcut {
                        Some(s) => self.node(s, &path, x, mode, first)?,
                        None => x,
                    };
                    return self.batch_norm(
                        &pre,
                        &state_dict_path(&path, &last.name),
                        mode,
                        Epilogue::AddRelu(&side),
                    );
                }
                let main = self.seq(body, &path, x.clone(), mode, first)?;
                let side = match shortcut {
                    Some(s) => self.node(s, &path, x, mode, first)?,
                    None => x,
                };
                let sum = (main + side)?;
                match activation {
                    Some(a) => self.node(a, &path, sum, mode, first)?,
                    None => sum,
                }
            }
        })
    }

    fn lock_buffers(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Tensor>>> {
        self.buffers
            .lock()
            .map_err(|_| candle_core::Error::Msg("buffers poisoned".into()))
    }

    fn batch_norm(&self, x: &Tensor, path: &str, mode: Mode, epilogue: Epilogue) -> Result<Tensor> {
        let weight = self.param(&format!("{path}.weight"))?;
        let bias = self.param(&format!("{path}.bias"))?;
        match mode {
            Mode::Train => {
                let (y, mean, var) = match epilogue {
                    Epilogue::None => ops::batch_norm_train(x, weight, bias, BN_EPS)?,
                    Epilogue::Relu => ops::batch_norm_relu_train(x, weight, bias, BN_EPS)?,
                    Epilogue::AddRelu(r) => ops::batch_norm_add_relu_train(x, weight, bias, r, BN_EPS)?,
                    Epilogue::ReluMaxPool(w) => ops::batch_norm_relu_max_pool_train(
                        x, weight, bias, BN_EPS, w.kernel, w.stride, w.padding,
                    )?,
                };
                let (n, _, h, w) = x.dims4()?;
                let update = ops::RunningUpdate {
                    momentum: BN_MOMENTUM,
                    count: (n * h * w) as f64,
                };
                let mut buffers = self.lock_buffers()?;
                let running = ops::update_running_stats(running_stats(&buffers, path)?, &mean, &var, update)?;
                buffers.insert(path.to_string(), running);
                if let Ok(mut t) = self.batches_tracked.lock() {
                    *t.entry(format!("{path}.num_batches_tracked")).or_insert(0) += 1;
                }
                Ok(y)
            }
            Mode::Eval => {
                let running = running_stats(&*self.lock_buffers()?, path)?.clone();
                let (rm, rv) = (running.get(0)?, running.get(1)?);
                let epilogue = match epilogue {
                    Epilogue::None => ops::EvalEpilogue::None,
                    Epilogue::Relu => ops::EvalEpilogue::Relu,
                    Epilogue::AddRelu(r) => ops::EvalEpilogue::AddRelu(r),
                    Epilogue::ReluMaxPool(w) => ops::EvalEpilogue::ReluMaxPool(w),
                };
                ops::batch_norm_eval(x, weight, bias, &rm, &rv, BN_EPS, epilogue)
            }
        }
    }

    /// Every state_dict entry: parameters, running statistics and `num_batches_tracked` (int64), by name.
    pub fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        let mut out: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
            .collect();
        let buffers = self
            .buffers
            .lock()
            .map_err(|_| candle_core::Error::Msg("buffers poisoned".into()))?;
        for (path, running) in buffers.iter() {
            out.insert(format!("{path}.running_mean"), running.get(0)?);
            out.insert(format!("{path}.running_var"), running.get(1)?);
        }
        let tracked = self
            .batches_tracked
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        for (k, v) in tracked.iter() {
            out.insert(k.clone(), Tensor::new(*v, &Device::Cpu)?);
        }
        Ok(out)
    }

    /// Replace every state_dict entry from `tensors`, which must hold exactly this model's names and shapes.
    pub fn load_state_dict(&self, tensors: &HashMap<String, Tensor>) -> std::result::Result<(), String> {
        let decls = self.decl.tensors().map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        for t in &decls {
            match tensors.get(&t.name) {
                None => problems.push(format!("missing `{}`", t.name)),
                Some(v) if v.dims() != t.shape.as_slice() => problems.push(format!(
                    "`{}` has shape {:?}, expected {:?}",
                    t.name,
                    v.dims(),
                    t.shape
                )),
                Some(_) => {}
            }
        }
        let known: std::collections::HashSet<&str> = decls.iter().map(|t| t.name.as_str()).collect();
        for k in tensors.keys() {
            if !known.contains(k.as_str()) {
                problems.push(format!("unexpected `{k}`"));
            }
        }
        if !problems.is_empty() {
            problems.sort();
            return Err(format!(
                "checkpoint does not fit the model: {}",
                problems.join(", ")
            ));
        }
        let fail = |e: candle_core::Error| e.to_string();
        let on_device = |v: &Tensor| v.to_dtype(DType::F32)?.to_device(&self.device);
        for t in &decls {
            let v = &tensors[&t.name];
            match t.role {
                TensorRole::Weight | TensorRole::Bias => {
                    let var = &self.params[self.index[&t.name]].1;
                    var.set(
                        &v.to_dtype(DType::F32)
                            .map_err(fail)?
                            .to_device(&self.device)
                            .map_err(fail)?,
                    )
                    .map_err(fail)?;
                }
                TensorRole::RunningMean => {
                    let path = owner_path(&t.name);
                    let var = &tensors[&format!("{path}.running_var")];
                    let running =
                        Tensor::stack(&[on_device(v).map_err(fail)?, on_device(var).map_err(fail)?], 0)
                            .map_err(fail)?;
                    let mut b = self.buffers.lock().map_err(|_| "buffers poisoned".to_string())?;
                    b.insert(path.to_string(), running);
                }
                // Loaded with its running mean, into the same tensor.
                TensorRole::RunningVar => {}
                TensorRole::NumBatchesTracked => {
                    let n = v
                        .to_dtype(DType::I64)
                        .map_err(fail)?
                        .to_scalar::<i64>()
                        .map_err(fail)?;
                    let mut b = self.batches_tracked.lock().map_err(|_| "poisoned".to_string())?;
                    b.insert(t.name.clone(), n);
                }
            }
        }
        Ok(())
    }
}

/// The running statistics `[2, C]` of the BatchNorm at `path`.
fn running_stats<'a>(buffers: &'a HashMap<String, Tensor>, path: &str) -> Result<&'a Tensor> {
    buffers
        .get(path)
        .ok_or_else(|| candle_core::Error::Msg(format!("no running statistics for `{path}`")))
}

/// The module path of a state_dict entry: `layer1.0.bn1` of `layer1.0.bn1.running_mean`.
fn owner_path(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(owner, _)| owner)
}

/// Average pooling with kernel ≠ stride, whose backward Candle refuses: the mean of the k² strided views
/// picked with `index_select`, all differentiable.
fn avg_pool_overlapping(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (oh, ow) = ((h - kernel) / stride + 1, (w - kernel) / stride + 1);
    let rows = |start: usize, n: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..n).map(|i| (start + i * stride) as u32).collect();
        Tensor::from_vec(idx, n, x.device())
    };
    let mut sum: Option<Tensor> = None;
    for dy in 0..kernel {
        let xr = x.index_select(&rows(dy, oh)?, 2)?;
        for dx in 0..kernel {
            let v = xr.index_select(&rows(dx, ow)?, 3)?;
            sum = Some(match sum {
                Some(s) => (s + v)?,
                None => v,
            });
        }
    }
    let sum = sum.ok_or_else(|| candle_core::Error::Msg("avg_pool: empty kernel".into()))?;
    sum / (kernel * kernel) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builtins::{Stem, resnet18, simple_cnn};

    fn input(n: usize) -> Tensor {
        let data: Vec<f32> = (0..n * 3072)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
            .collect();
        Tensor::from_vec(data, (n, 3, 32, 32), &Device::Cpu).unwrap()
    }

    #[test]
    fn simple_cnn_forward_shapes_and_eval_is_deterministic() {
        let net = Net::new(&simple_cnn(10, 0.5), &Device::Cpu, 0).unwrap();
        let x = input(4);
        let y = net.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y.dims(), &[4, 10]);
        let y2 = net.forward(&x, Mode::Eval).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), y2.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn training_updates_running_stats_and_counter() {
        let net = Net::new(&simple_cnn(10, 0.5), &Device::Cpu, 0).unwrap();
        net.forward(&input(4), Mode::Train).unwrap();
        let sd = net.state_dict().unwrap();
        let rm = sd["bn1.running_mean"].to_vec1::<f32>().unwrap();
        assert!(rm.iter().any(|v| *v != 0.0));
        assert_eq!(sd["bn1.num_batches_tracked"].to_scalar::<i64>().unwrap(), 1);
        assert_eq!(sd.len(), 8 + 3 * 5);
    }

    #[test]
    fn state_dict_round_trip_and_strict_load() {
        let decl = resnet18(10, Stem::Cifar, 4);
        let a = Net::new(&decl, &Device::Cpu, 1).unwrap();
        a.forward(&input(2), Mode::Train).unwrap();
        let b = Net::new(&decl, &Device::Cpu, 2).unwrap();
        b.load_state_dict(&a.state_dict().unwrap()).unwrap();
        let x = input(2);
        assert_eq!(
            a.forward(&x, Mode::Eval).unwrap().to_vec2::<f32>().unwrap(),
            b.forward(&x, Mode::Eval).unwrap().to_vec2::<f32>().unwrap()
        );
        let mut sd = a.state_dict().unwrap();
        sd.remove("fc.bias");
        sd.insert("extra".into(), Tensor::new(1f32, &Device::Cpu).unwrap());
        let e = b.load_state_dict(&sd).unwrap_err();
        assert!(
            e.contains("missing `fc.bias`") && e.contains("unexpected `extra`"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_avg_pool_matches_a_naive_mean_and_trains() {
        let x = input(1)
            .narrow(1, 0, 1)
            .unwrap()
            .narrow(2, 0, 5)
            .unwrap()
            .narrow(3, 0, 5)
            .unwrap()
            .contiguous()
            .unwrap();
        let y = avg_pool_overlapping(&x, 3, 2).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 2]);
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let naive: f32 = (0..3)
            .flat_map(|r| (0..3).map(move |c| (r, c)))
            .map(|(r, c)| xv[(2 + r) * 5 + 2 + c])
            .sum::<f32>()
            / 9.0;
        let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap()[3];
        assert!((got - naive).abs() < 1e-6, "{got} vs {naive}");
        let v = candle_core::Var::from_tensor(&x).unwrap();
        let g = avg_pool_overlapping(v.as_tensor(), 3, 2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // The centre pixel lies in all four windows.
        assert!(
            (g.get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[12]
                - 4.0 / 9.0)
                .abs()
                < 1e-6
        );
    }

    #[test]
    fn every_parameter_gets_a_gradient() {
        let net = Net::new(&resnet18(10, Stem::Imagenet, 4), &Device::Cpu, 0).unwrap();
        let y = net.forward(&input(2), Mode::Train).unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in net.params() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            assert!(
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    .is_finite()
            );
        }
    }
}
