//! What the optimizer tests share: the torch reference run of tests/fixtures/optim and a tiny model.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var, backprop::GradStore, safetensors};
use serde::Deserialize;

use super::{Optimizer, OptimizerConfig, UpdateKernel, build_with};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim")
}

#[derive(Deserialize)]
pub(super) struct Fixture {
    pub(super) params: Vec<String>,
    pub(super) cases: Vec<Case>,
}

#[derive(Deserialize)]
pub(super) struct Case {
    pub(super) case: String,
    pub(super) config: OptimizerConfig,
    pub(super) lrs: Vec<f64>,
}

/// The torch reference run of tests/fixtures/optim (made by scripts/fixtures/optim_fixtures.py).
pub(super) struct Reference {
    pub(super) fixture: Fixture,
    pub(super) tensors: HashMap<String, Tensor>,
}

impl Reference {
    pub(super) fn load() -> Reference {
        let dir = fixture_dir();
        let json = std::fs::read_to_string(dir.join("optimizers.json")).expect("optimizers.json");
        let fixture = serde_json::from_str(&json).expect("optimizers.json parses");
        let tensors =
            safetensors::load(dir.join("optimizers.safetensors"), &Device::Cpu).expect("safetensors");
        Reference { fixture, tensors }
    }

    pub(super) fn get(&self, key: &str) -> &Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("fixture has no `{key}`"))
    }

    pub(super) fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        self.fixture
            .params
            .iter()
            .map(|name| {
                let var = Var::from_tensor(&self.get(&format!("{prefix}.{name}")).copy().unwrap()).unwrap();
                (name.clone(), var)
            })
            .collect()
    }

    /// L = sum_k sum((scale_k * p_k - target_k)^2), as in the fixture script.
    pub(super) fn loss(&self, vars: &[(String, Var)]) -> Tensor {
        let mut total: Option<Tensor> = None;
        for (name, var) in vars {
            let a = self.get(&format!("scale.{name}"));
            let t = self.get(&format!("target.{name}"));
            let term = ((var.as_tensor() * a).unwrap() - t)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            total = Some(match total {
                None => term,
                Some(s) => (s + term).unwrap(),
            });
        }
        total.expect("at least one parameter")
    }

    /// One training step: loss, backward, update; returns the loss before the update.
    pub(super) fn step(&self, vars: &[(String, Var)], opt: &mut dyn Optimizer, lr: f64) -> f64 {
        let loss = self.loss(vars);
        let grads = loss.backward().unwrap();
        opt.step(&grads, lr).unwrap();
        loss.to_scalar::<f32>().unwrap() as f64
    }
}

pub(super) fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Largest |a - b| / max(1, |b|) over the elements.
pub(super) fn max_rel_err(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.dims(), expected.dims());
    values(actual)
        .iter()
        .zip(values(expected))
        .map(|(&a, b)| (a as f64 - b as f64).abs() / (b as f64).abs().max(1.0))
        .fold(0.0, f64::max)
}

pub(super) fn run(
    reference: &Reference,
    case: &Case,
    kernel: UpdateKernel,
) -> (Vec<(String, Var)>, Box<dyn Optimizer>) {
    let vars = reference.vars("init");
    let opt = build_with(&case.config, vars.clone(), kernel).unwrap();
    (vars, opt)
}

pub(super) fn bits(vars: &[(String, Var)]) -> Vec<Vec<u32>> {
    vars.iter()
        .map(|(_, v)| values(v.as_tensor()).iter().map(|x| x.to_bits()).collect())
        .collect()
}

pub(super) fn tiny_vars() -> Vec<(String, Var)> {
    vec![
        (
            "a.weight".to_string(),
            Var::new(&[[1.0f32, -2.0], [0.5, 3.0]], &Device::Cpu).unwrap(),
        ),
        (
            "a.bias".to_string(),
            Var::new(&[0.25f32, -0.75], &Device::Cpu).unwrap(),
        ),
    ]
}

pub(super) fn tiny_grads(vars: &[(String, Var)]) -> GradStore {
    let loss = vars
        .iter()
        .map(|(_, v)| v.as_tensor().sqr().unwrap().sum_all().unwrap());
    loss.reduce(|a, b| (a + b).unwrap()).unwrap().backward().unwrap()
}
