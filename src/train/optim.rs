//! Optimizers with PyTorch's update rules, owned by labpipe so their state can be saved for resume.

use candle_core::{Result, Tensor, Var, backprop::GradStore};
use serde::{Deserialize, Serialize};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// torch.optim.Adam.
    Adam,
}

/// `train.optimizer` in a pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Which optimizer.
    pub name: OptimizerKind,
    /// Base learning rate.
    pub lr: f64,
}

impl OptimizerConfig {
    /// Check values; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("`lr` must be a positive number, got {}", self.lr));
        }
        Ok(())
    }
}

/// A parameter update rule over a fixed list of named trainable tensors.
pub trait Optimizer {
    /// Apply one update with learning rate `lr` from the gradients in `grads`.
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;
    /// The optimizer's state as named tensors (for checkpoints).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restore state saved by `state`.
    fn load_state(&mut self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()>;
}

/// Adam (Kingma & Ba) exactly as torch.optim.Adam with default betas and eps.
pub struct Adam {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: usize,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    /// Adam over `params` with betas (0.9, 0.999) and eps 1e-8.
    pub fn new(params: Vec<(String, Var)>) -> Result<Self> {
        let m = params
            .iter()
            .map(|(_, p)| p.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = params
            .iter()
            .map(|(_, p)| p.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam {
            params,
            m,
            v,
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            // PyTorch: denom = sqrt(v) / sqrt(bc2) + eps; p -= lr / bc1 * m / denom
            let denom = ((v.sqrt()? / bc2.sqrt())? + self.eps)?;
            let update = ((&m / denom)? * (lr / bc1))?;
            p.set(&p.as_tensor().sub(&update)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{name}.exp_avg"), self.m[i].clone()));
            out.push((format!("{name}.exp_avg_sq"), self.v[i].clone()));
        }
        if let Ok(step) = Tensor::new(self.t as i64, &candle_core::Device::Cpu) {
            out.push(("step".into(), step));
        }
        out
    }

    fn load_state(&mut self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            tensors
                .get(k)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state lacks `{k}`")))
        };
        for (i, (name, p)) in self.params.iter().enumerate() {
            self.m[i] = get(&format!("{name}.exp_avg"))?.to_device(p.device())?;
            self.v[i] = get(&format!("{name}.exp_avg_sq"))?.to_device(p.device())?;
        }
        self.t = get("step")?.to_scalar::<i64>()? as usize;
        Ok(())
    }
}

/// Build the configured optimizer over `params`.
pub fn build(config: &OptimizerConfig, params: Vec<(String, Var)>) -> Result<Box<dyn Optimizer>> {
    match config.name {
        OptimizerKind::Adam => Ok(Box::new(Adam::new(params)?)),
    }
}
