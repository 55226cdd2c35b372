//! `Stage`: the five stages of a run as a type, and `StageError`, a stage's failure with its leaf error.

use super::artifact::StageFailure;
use super::{dataset, evaluate, model, plot, train};
use crate::cache::key::{Seg, describe_changes, spec_diffs};
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

    /// Differences between two key inputs of this stage, in the words of the pipeline file
    /// (`train.optimizer.lr changed from 0.001 to 0.01`). Changed upstream keys are not listed.
    pub fn explain_change(self, old: &Value, new: &Value) -> Vec<String> {
        let mut diffs = spec_diffs(old, new);
        if self == Stage::Dataset {
            dataset::drop_implied_source_change(&mut diffs);
        }
        let user_path = |path: &[Seg]| match self {
            Stage::Dataset => dataset::user_path(path),
            Stage::Model => model::user_path(path),
            Stage::Train => train::user_path(path),
            Stage::Evaluate | Stage::Plot => device_or(self.name(), path),
        };
        describe_changes(&diffs, user_path, old, new)
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
        StageKey::new(stage.name(), spec, &[]).input
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
