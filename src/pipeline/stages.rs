//! The stage graph of one run and each stage's key: dataset → model → train → evaluate → plot.

use crate::cache::StageKey;
use crate::spec::RunSpec;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Stage names in execution order.
pub const STAGES: [&str; 5] = ["dataset", "model", "train", "evaluate", "plot"];

/// The keys of every stage of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageKeys {
    /// Load, split and normalization statistics.
    pub dataset: StageKey,
    /// Summary, FLOPs and diagram.
    pub model: StageKey,
    /// Training.
    pub train: StageKey,
    /// Test metrics.
    pub evaluate: StageKey,
    /// Figures.
    pub plot: StageKey,
}

/// Remove the `line` of every layer node (objects with an `op`), at any depth.
fn drop_source_lines(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if m.contains_key("op") {
                m.remove("line");
            }
            m.values_mut().for_each(drop_source_lines);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_source_lines),
        _ => {}
    }
}

impl StageKeys {
    /// Compute every key of `run`; `fingerprint` identifies the input data, `device` is the device kind.
    pub fn new(run: &RunSpec, fingerprint: &str, device: &str) -> Self {
        let d = &run.data;
        let dataset = StageKey::new(
            "dataset",
            json!({
                "dataset": d.dataset,
                "source": fingerprint,
                "train_size": d.train_size,
                "test_size": d.test_size,
                "val_split": d.val_split,
                "normalize": d.normalize,
                "seed": run.train.seed,
            }),
            &[],
        );
        let mut decl = serde_json::to_value(&run.decl).unwrap_or_default();
        // Layers carry their YAML line for error messages; a comment or blank line above must not retrain.
        drop_source_lines(&mut decl);
        let model = StageKey::new("model", decl, &[]);
        let mut train_spec = serde_json::to_value(&run.train).unwrap_or_default();
        if let Some(m) = train_spec.as_object_mut() {
            // Evaluation batch size changes nothing but speed.
            m.remove("eval_batch_size");
            m.insert(
                "augment".into(),
                serde_json::to_value(&d.augment).unwrap_or_default(),
            );
            m.insert("device".into(), json!(device));
        }
        let train = StageKey::new("train", train_spec, &[&dataset, &model]);
        let evaluate = StageKey::new(
            "evaluate",
            json!({"split": "test", "device": device}),
            &[&dataset, &train],
        );
        let plot = StageKey::new(
            "plot",
            json!({"figures": ["curves", "confusion"]}),
            &[&train, &evaluate],
        );
        StageKeys {
            dataset,
            model,
            train,
            evaluate,
            plot,
        }
    }

    /// The keys in execution order.
    pub fn all(&self) -> [&StageKey; 5] {
        [
            &self.dataset,
            &self.model,
            &self.train,
            &self.evaluate,
            &self.plot,
        ]
    }
}
