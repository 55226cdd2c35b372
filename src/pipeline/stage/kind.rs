//! `Stage`: the five stages of a run as a type, and `StageError`, a stage's failure with its leaf error.

use super::artifact::StageFailure;
use super::{dataset, evaluate, model, plot, train};
use crate::cache::code_identity;
use crate::cache::key::{SOURCE_HASHES, Seg, describe_changes, spec_diffs};
use crate::train::trainer::TrainError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// One stage of a run, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Load the data, draw the validation split, compute normalization statistics.
    Dataset,
    /// Summary, FLOPs and diagram of the network.
    Model,
    /// Training, with a resumable checkpoint at every epoch.
    Train,
    /// Test metrics of the selected checkpoint.
    Evaluate,
    /// The run's figures.
    Plot,
}

impl Stage {
    /// Every stage in execution order.
    pub const ALL: [Stage; 5] = [
        Stage::Dataset,
        Stage::Model,
        Stage::Train,
        Stage::Evaluate,
        Stage::Plot,
    ];

    /// The stage's name: its cache folder and how messages call it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Dataset => dataset::NAME,
            Stage::Model => model::NAME,
            Stage::Train => train::NAME,
            Stage::Evaluate => evaluate::NAME,
            Stage::Plot => plot::NAME,
        }
    }

    /// The stage with this name.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The stages whose artifacts this one consumes.
    pub fn upstream(self) -> &'static [Stage] {
        match self {
            Stage::Dataset | Stage::Model => &[],
            Stage::Train => &[Stage::Dataset, Stage::Model],
            Stage::Evaluate => &[Stage::Dataset, Stage::Train],
            Stage::Plot => &[Stage::Train, Stage::Evaluate],
        }
    }

    /// The artifact files a complete build of this stage holds.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Stage::Dataset => dataset::FILES,
            Stage::Model => model::FILES,
            Stage::Train => train::FILES,
            Stage::Evaluate => evaluate::FILES,
            Stage::Plot => plot::FILES,
        }
    }

    /// Whether an unfinished (`partial`) or complete build of this stage may hold a file named `name`, besides
    /// its manifest and temporary files: what `labpipe clean` recognises as labpipe's.
    pub fn holds_file(self, name: &str, partial: bool) -> bool {
        self.files().contains(&name) || (partial && self == Stage::Train && train::is_work_file(name))
    }

    /// The source files (paths from the crate root; a trailing `/` takes a whole directory) whose code decides
    /// what this stage writes: their hashes make the `code` field of its key. What a stage reads from
    /// upstream stages is in its key through their keys.
    pub fn sources(self) -> Vec<&'static str> {
        let own = match self {
            Stage::Dataset => dataset::SOURCES,
            Stage::Model => model::SOURCES,
            Stage::Train => train::SOURCES,
            Stage::Evaluate => evaluate::SOURCES,
            Stage::Plot => plot::SOURCES,
        };
        // Every stage: the dependencies' versions, and how artifacts are written.
        let mut all = vec!["Cargo.lock", "src/pipeline/stage/artifact.rs"];
        all.extend_from_slice(own);
        all
    }

    /// The identity of the code that makes this stage in the source tree `table` (`(path, blake3)` pairs).
    pub fn code_identity_in<'a>(self, table: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        code_identity::identity(table, &self.sources())
    }

    /// The identity of the code of this labpipe that makes this stage: the `code` field of its key.
    pub fn code_identity(self) -> String {
        self.code_identity_in(SOURCE_HASHES.iter().copied())
    }

    /// How a change of this stage's code reads in `plan`.
    fn code_change(self) -> &'static str {
        match self {
            Stage::Dataset => "labpipe's data-loading code changed",
            Stage::Model => "labpipe's model-summary code changed",
            Stage::Train => "labpipe's training code changed",
            Stage::Evaluate => "labpipe's evaluation code changed",
            Stage::Plot => "labpipe's plotting code changed",
        }
    }

    /// Differences between two key inputs of this stage, in the words of the pipeline file
    /// (`train.optimizer.lr changed from 0.001 to 0.01`, `labpipe's training code changed`). Changed upstream
    /// keys are not listed.
    pub fn explain_change(self, old: &Value, new: &Value) -> Vec<String> {
        let mut diffs = spec_diffs(old, new);
        if self == Stage::Dataset {
            dataset::drop_implied_source_change(&mut diffs);
        }
        let user_path = |path: &[Seg]| match self {
            Stage::Dataset => dataset::user_path(path),
            Stage::Model => model::user_path(path),
            Stage::Train => train::user_path(path),
            Stage::Evaluate if Seg::first_key(path) == Some("eval_batch_size") => Seg::join("train", path),
            Stage::Evaluate | Stage::Plot => device_or(self.name(), path),
        };
        describe_changes(&diffs, user_path, self.code_change(), old, new)
    }
}

/// The `device` key field, named as the command line sets it; anything else under `prefix`.
fn device_or(prefix: &str, path: &[Seg]) -> String {
    match path.first() {
        Some(Seg::Key(k)) if k == "device" => "device (--device)".into(),
        _ => Seg::join(prefix, path),
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stage that failed, with the leaf error.
#[derive(Debug, thiserror::Error)]
#[error("{stage} stage: {source}")]
pub struct StageError {
    /// Which stage.
    pub stage: Stage,
    /// What went wrong (boxed: stage errors travel through every `Result` of the executor).
    #[source]
    pub source: Box<StageFailure>,
}

impl StageError {
    /// `source` happened in `stage`.
    pub fn new(stage: Stage, source: StageFailure) -> Self {
        StageError {
            stage,
            source: Box::new(source),
        }
    }

    /// True when Ctrl-C stopped training (the work directory is kept to resume).
    pub fn is_interrupt(&self) -> bool {
        matches!(*self.source, StageFailure::Train(TrainError::Interrupted { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::StageKey;
    use serde_json::json;

    fn input(stage: Stage, spec: Value) -> Value {
        StageKey::new(stage.name(), spec, &[], "code").input
    }

    #[test]
    fn a_change_of_the_code_is_explained() {
        let old = StageKey::new(Stage::Train.name(), json!({"epochs": 2}), &[], "aaaa").input;
        let new = StageKey::new(Stage::Train.name(), json!({"epochs": 3}), &[], "bbbb").input;
        assert_eq!(
            Stage::Train.explain_change(&old, &new),
            [
                "train.epochs changed from 2 to 3",
                "labpipe's training code changed"
            ]
        );
    }

    #[test]
    fn every_source_a_stage_names_exists() {
        for stage in Stage::ALL {
            for source in stage.sources() {
                assert!(
                    SOURCE_HASHES
                        .iter()
                        .any(|(p, _)| code_identity::covers(&[source], p)),
                    "{stage}: {source} matches no source file"
                );
            }
        }
    }

    #[test]
    fn the_embedded_source_hashes_are_the_trees() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let tree = code_identity::hash_tree(root).unwrap();
        let embedded: Vec<(String, String)> = SOURCE_HASHES
            .iter()
            .map(|(p, h)| (p.to_string(), h.to_string()))
            .collect();
        assert_eq!(
            embedded, tree,
            "build.rs hashed another tree than the one compiled"
        );
    }

    #[test]
    fn names_round_trip_and_serialize_as_names() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_name(s.name()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.name()));
        }
        assert_eq!(Stage::from_name("report"), None);
    }

    #[test]
    fn upstream_stages_come_earlier() {
        for s in Stage::ALL {
            assert!(s.upstream().iter().all(|u| *u < s), "{s}");
        }
    }

    #[test]
    fn explains_what_changed_in_the_words_of_the_pipeline_file() {
        let lr = |lr: f64| json!({"optimizer": {"name": "adam", "lr": lr}, "augment": []});
        assert_eq!(
            Stage::Train.explain_change(&input(Stage::Train, lr(0.001)), &input(Stage::Train, lr(0.01))),
            vec!["train.optimizer.lr changed from 0.001 to 0.01"]
        );
        let flip = |p: f64| json!({"augment": [{"random_crop": {"size": 32}}, {"random_horizontal_flip": {"p": p}}]});
        assert_eq!(
            Stage::Train.explain_change(&input(Stage::Train, flip(0.5)), &input(Stage::Train, flip(0.3))),
            vec!["data.augment[1].random_horizontal_flip.p changed from 0.5 to 0.3"]
        );
        assert_eq!(
            Stage::Train.explain_change(
                &input(Stage::Train, json!({"early_stopping": null})),
                &input(Stage::Train, json!({"early_stopping": {"patience": 2}}))
            ),
            vec!["train.early_stopping set to {\"patience\": 2} (was not set)"]
        );
        assert_eq!(
            Stage::Train.explain_change(
                &input(Stage::Train, json!({"device": "cpu"})),
                &input(Stage::Train, json!({"device": "cuda"}))
            ),
            vec!["device (--device) changed from cpu to cuda"]
        );
        assert_eq!(
            Stage::Dataset.explain_change(
                &input(Stage::Dataset, json!({"normalize": "first_image", "seed": 0})),
                &input(Stage::Dataset, json!({"normalize": "none", "seed": 1}))
            ),
            vec![
                "data.normalize changed from first_image to none",
                "train.seed (it also draws the validation split) changed from 0 to 1"
            ]
        );
        assert_eq!(
            Stage::Dataset.explain_change(
                &input(
                    Stage::Dataset,
                    json!({"source": "synthetic-v1:240:60", "train_size": 240})
                ),
                &input(
                    Stage::Dataset,
                    json!({"source": "synthetic-v1:300:60", "train_size": 300})
                )
            ),
            vec!["data.train_size changed from 240 to 300"]
        );
        assert_eq!(
            Stage::Dataset.explain_change(
                &input(Stage::Dataset, json!({"source": "cifar10-blake3:aa"})),
                &input(Stage::Dataset, json!({"source": "cifar10-blake3:bb"}))
            ),
            vec!["the input data (its files or size) changed from cifar10-blake3:aa to cifar10-blake3:bb"]
        );
        let layer = |n: u64| json!({"layers": [{"name": "0", "op": {"Conv2d": {"out_channels": n}}}]});
        assert_eq!(
            Stage::Model.explain_change(&input(Stage::Model, layer(8)), &input(Stage::Model, layer(16))),
            vec!["model.layers[0].conv2d.out_channels changed from 8 to 16"]
        );
        assert_eq!(
            Stage::Evaluate.explain_change(
                &input(Stage::Evaluate, json!({"device": "cpu"})),
                &input(Stage::Evaluate, json!({"device": "cuda+kernels"}))
            ),
            vec!["device (--device) changed from cpu to cuda+kernels"]
        );
    }
}
