//! Stage keys as a pure function of the resolved run, the device kind it is made on, and its input data's
//! fingerprint: `run`, `plan` and `status` all compute them here, with no executor.

use super::kind::Stage;
use super::{dataset, evaluate, model, plot, train};
use crate::cache::StageKey;
use crate::data::config::DataSpec;
use crate::data::error::DataError;
use crate::data::source;
use crate::device::DeviceKind;
use crate::spec::RunSpec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

impl StageKeys {
    /// The key of `stage`.
    pub fn get(&self, stage: Stage) -> &StageKey {
        match stage {
            Stage::Dataset => &self.dataset,
            Stage::Model => &self.model,
            Stage::Train => &self.train,
            Stage::Evaluate => &self.evaluate,
            Stage::Plot => &self.plot,
        }
    }

    /// Every stage with its key, in execution order.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, &StageKey)> {
        Stage::ALL.into_iter().map(|s| (s, self.get(s)))
    }
}

/// The keys of every stage of `run` made on `device`, given its input data's fingerprint. A pure function:
/// `plan`, `status` and `run` all compute keys this way.
pub fn keys_with_fingerprint(run: &RunSpec, fingerprint: &str, device: DeviceKind) -> StageKeys {
    let dataset = StageKey::new(dataset::NAME, dataset::key_input(run, fingerprint), &[]);
    let model = StageKey::new(model::NAME, model::key_input(run), &[]);
    let train = StageKey::new(train::NAME, train::key_input(run, device), &[&dataset, &model]);
    let evaluate = StageKey::new(evaluate::NAME, evaluate::key_input(device), &[&dataset, &train]);
    let plot = StageKey::new(plot::NAME, plot::key_input(), &[&train, &evaluate]);
    StageKeys {
        dataset,
        model,
        train,
        evaluate,
        plot,
    }
}

/// Fingerprints of input data, computed once per source (hashing CIFAR-10's files takes a while).
#[derive(Debug, Default)]
pub struct Fingerprints {
    known: HashMap<String, String>,
}

impl Fingerprints {
    /// The fingerprint of the data `spec` describes.
    pub fn of(&mut self, spec: &DataSpec) -> Result<String, DataError> {
        let id = source::source_id(spec);
        if let Some(f) = self.known.get(&id) {
            return Ok(f.clone());
        }
        let f = source::fingerprint(spec)?;
        self.known.insert(id, f.clone());
        Ok(f)
    }
}

/// The keys of every stage of `run` made on `device` (the device recorded for a finished run).
pub fn stage_keys(run: &RunSpec, device: DeviceKind, fps: &mut Fingerprints) -> Result<StageKeys, DataError> {
    Ok(keys_with_fingerprint(run, &fps.of(&run.data)?, device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::Path;

    /// The key fields that identify the code rather than the run; they change with every labpipe version.
    const CODE_FIELDS: &[&str] = &["labpipe", "candle"];

    fn without_code_identity(mut v: Value) -> Value {
        match &mut v {
            Value::Object(m) => {
                for f in CODE_FIELDS {
                    m.remove(*f);
                }
                // An upstream reference `{stage, key}`: its key hashes the upstream's code identity too.
                if m.len() == 2 && m.contains_key("stage") {
                    m.remove("key");
                }
                for (_, x) in m.iter_mut() {
                    *x = without_code_identity(x.take());
                }
            }
            Value::Array(a) => {
                for x in a.iter_mut() {
                    *x = without_code_identity(x.take());
                }
            }
            _ => {}
        }
        v
    }

    #[test]
    fn key_inputs_of_the_shipped_pipelines_are_pinned() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let pinned: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("tests/fixtures/stage_keys/key_inputs.json")).unwrap(),
        )
        .unwrap();
        let mut fps = Fingerprints::default();
        let mut checked = 0;
        for file in ["pipelines/quickstart.yaml", "pipelines/ci.yaml"] {
            let p = crate::spec::load(&root.join(file), &[]).unwrap();
            let runs = pinned[file].as_object().expect(file);
            assert_eq!(runs.len(), p.runs.len(), "{file}: runs");
            for run in &p.runs {
                let keys = stage_keys(run, DeviceKind::Cpu, &mut fps).unwrap();
                for stage in Stage::ALL {
                    let want = &runs[&run.name][stage.name()];
                    let got = serde_json::to_value(keys.get(stage)).unwrap();
                    assert_eq!(
                        without_code_identity(got["input"].clone()),
                        without_code_identity(want["input"].clone()),
                        "{file} / {} / {stage}: key input changed",
                        run.name
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "{checked}");
    }
}
