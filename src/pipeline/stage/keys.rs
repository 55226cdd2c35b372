//! Stage keys as a pure function of the resolved run, the device kind it is made on, and its input data's
//! fingerprint: `run`, `plan` and `status` all compute them here, with no executor.

use super::kind::Stage;
use super::{dataset, evaluate, model, plot, train};
use crate::cache::StageKey;
#[cfg(test)]
use crate::cache::code_identity;
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
    keys_for_code(run, fingerprint, device, Stage::code_identity)
}

/// [`keys_with_fingerprint`] with each stage's code identity given by `code` (this labpipe's own, or another
/// source tree's in tests).
pub fn keys_for_code(
    run: &RunSpec,
    fingerprint: &str,
    device: DeviceKind,
    code: impl Fn(Stage) -> String,
) -> StageKeys {
    let key = |stage: Stage, input, upstream: &[&StageKey]| {
        StageKey::new(stage.name(), input, upstream, &code(stage))
    };
    let dataset = key(Stage::Dataset, dataset::key_input(run, fingerprint), &[]);
    let model = key(Stage::Model, model::key_input(run), &[]);
    let train = key(Stage::Train, train::key_input(run, device), &[&dataset, &model]);
    let evaluate = key(
        Stage::Evaluate,
        evaluate::key_input(run, device),
        &[&dataset, &train],
    );
    let plot = key(Stage::Plot, plot::key_input(), &[&train, &evaluate]);
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
    const CODE_FIELDS: &[&str] = &["labpipe", "candle", "code"];

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

    /// A copy of the files this labpipe's code identities are made of.
    fn copy_of_the_source_tree() -> tempfile::TempDir {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = tempfile::tempdir().unwrap();
        for (rel, _) in code_identity::hash_tree(root).unwrap() {
            let dest = tmp.path().join(&rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(root.join(&rel), dest).unwrap();
        }
        tmp
    }

    fn keys_of_tree(run: &RunSpec, tree: &Path) -> StageKeys {
        let table = code_identity::hash_tree(tree).unwrap();
        let pairs = || table.iter().map(|(p, h)| (p.as_str(), h.as_str()));
        keys_for_code(run, "fp", DeviceKind::Cpu, |stage| {
            stage.code_identity_in(pairs())
        })
    }

    /// The stages whose keys differ.
    fn changed(a: &StageKeys, b: &StageKeys) -> Vec<Stage> {
        Stage::ALL
            .into_iter()
            .filter(|s| a.get(*s).key != b.get(*s).key)
            .collect()
    }

    #[test]
    fn a_change_to_a_stages_code_changes_its_key_and_no_other_code_does() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let p = crate::spec::load(&root.join("pipelines/quickstart.yaml"), &[]).unwrap();
        let run = &p.runs[0];
        let tree = copy_of_the_source_tree();
        let original = keys_of_tree(run, tree.path());
        assert_eq!(
            keys_with_fingerprint(run, "fp", DeviceKind::Cpu),
            original,
            "this labpipe's keys are the ones of its own source tree"
        );
        let append = |rel: &str| {
            let path = tree.path().join(rel);
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str("\n// edited\n");
            std::fs::write(&path, text).unwrap();
        };
        let mut last = original.clone();
        let mut step = |rel: &str, want: &[Stage]| {
            append(rel);
            let now = keys_of_tree(run, tree.path());
            assert_eq!(changed(&last, &now), want, "after editing {rel}");
            // Train's own code (not an upstream stage's) is said in plan's words.
            if rel.starts_with("src/train/") {
                let why = Stage::Train.explain_change(&last.train.input, &now.train.input);
                assert_eq!(why, ["labpipe's training code changed"]);
            }
            last = now;
        };
        // Report, CLI, spec and tensorboard code makes no stage's artifacts.
        step("src/report/render.rs", &[]);
        step("src/cli/mod.rs", &[]);
        step("src/tensorboard/mod.rs", &[]);
        // Training code: the train stage and those that consume it.
        step(
            "src/train/schedule.rs",
            &[Stage::Train, Stage::Evaluate, Stage::Plot],
        );
        step(
            "src/pipeline/stage/train.rs",
            &[Stage::Train, Stage::Evaluate, Stage::Plot],
        );
        // Drawing: the plots; and the model stage's diagram, whose key the train stage's hashes (so a change to
        // the drawing code retrains: the price of train consuming the model stage).
        step("src/pipeline/stage/plot.rs", &[Stage::Plot]);
        step(
            "src/figure/curves.rs",
            &[Stage::Model, Stage::Train, Stage::Evaluate, Stage::Plot],
        );
        step("src/pipeline/stage/evaluate.rs", &[Stage::Evaluate, Stage::Plot]);
        // Data code: the dataset stage and everything that consumes it, not the model's summary.
        step(
            "src/data/split.rs",
            &[Stage::Dataset, Stage::Train, Stage::Evaluate, Stage::Plot],
        );
        // The vendored Candle computes the gradients and the forward pass: training and evaluation.
        step(
            "vendor/candle-core/src/backprop.rs",
            &[Stage::Train, Stage::Evaluate, Stage::Plot],
        );
        step("Cargo.lock", &Stage::ALL);
    }

    #[test]
    fn the_eval_batch_size_is_keyed_only_where_it_changes_results() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let small = crate::spec::load(
            &root.join("pipelines/quickstart.yaml"),
            &["train.eval_batch_size=7".into()],
        )
        .unwrap();
        let default = crate::spec::load(&root.join("pipelines/quickstart.yaml"), &[]).unwrap();
        let keys = |p: &crate::spec::Pipeline, device| keys_with_fingerprint(&p.runs[0], "fp", device);
        assert_eq!(keys(&small, DeviceKind::Cpu), keys(&default, DeviceKind::Cpu));
        let (a, b) = (keys(&small, DeviceKind::Cuda), keys(&default, DeviceKind::Cuda));
        assert_eq!(changed(&a, &b), [Stage::Train, Stage::Evaluate, Stage::Plot]);
        assert_eq!(
            Stage::Evaluate.explain_change(&b.evaluate.input, &a.evaluate.input),
            ["train.eval_batch_size changed from 256 to 7"]
        );
    }
}
