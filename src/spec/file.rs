//! The pipeline file as the user writes it (`PipelineFile`), before experiments are expanded.

use super::layers::LayerSpec;
use crate::data::config::DataSpec;
use crate::model::builtins::Stem;
use crate::slurm::SlurmOptions;
use crate::train::config::TrainSpec;
use serde::{Deserialize, Serialize};

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Pipeline name: where its runs live under `out/runs/` and its title in the report.
    pub name: String,
    /// One line on what the pipeline is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Where images come from and how they are prepared.
    pub data: DataSpec,
    /// Which network.
    pub model: ModelSpec,
    /// How it is trained.
    pub train: TrainSpec,
    /// Named variants of the above (dotted-path overrides) and `matrix` grids.
    #[serde(default)]
    pub experiments: Option<serde_json::Map<String, serde_json::Value>>,
    /// Report settings (titles, figure captions).
    #[serde(default)]
    pub report: Option<ReportSpec>,
    /// What to ask Slurm for under `run --executor slurm`. Where runs are computed is not what they are:
    /// never serialized, so it stays out of the resolved runs, their content IDs and their stage keys.
    #[serde(default, skip_serializing)]
    pub slurm: Option<SlurmOptions>,
}

/// `report:`: how the pipeline appears in the lab report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// The heading of the pipeline's section (default: the template's own).
    #[serde(default)]
    pub title: Option<String>,
    /// Captions of runs' training-curve figures, by run or experiment name.
    #[serde(default)]
    pub captions: std::collections::BTreeMap<String, String>,
}

/// Built-in architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The seed's Task 1 network.
    SimpleCnn,
    /// torchvision's ResNet-18.
    Resnet18,
}

/// `model:`: a built-in `arch` or your own `layers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A built-in network.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Your own network, layer by layer.
    #[serde(default)]
    pub layers: Option<Vec<LayerSpec>>,
    /// Class name shown in summaries for a `layers` model (default `Net`).
    #[serde(default)]
    pub class_name: Option<String>,
    /// Output classes of a built-in (default 10).
    #[serde(default)]
    pub num_classes: Option<usize>,
    /// simple_cnn: dropout probability (default 0.5).
    #[serde(default)]
    pub dropout: Option<f64>,
    /// resnet18: `imagenet` (default, the seed's) or `cifar`.
    #[serde(default)]
    pub stem: Option<Stem>,
    /// resnet18: channels of layer1 (default 64).
    #[serde(default)]
    pub width: Option<usize>,
}
