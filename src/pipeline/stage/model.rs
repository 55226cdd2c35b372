//! The model stage: the torchsummary table, thop FLOPs and the diagram of the network. Writes
//! `summary.json`, `summary.txt` (as the seed prints it), `diagram.svg`/`diagram.png` and `model.json` (the IR).

use super::artifact::{ArtifactError, StageFailure, existing, read_json, write_json};
use crate::cache::StageDir;
use crate::cache::key::Seg;
use crate::spec::RunSpec;
use crate::summary::{self, ModelSummary};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The stage's name.
pub const NAME: &str = "model";
const SUMMARY_JSON: &str = "summary.json";
const SUMMARY_TEXT: &str = "summary.txt";
const DIAGRAM_SVG: &str = "diagram.svg";
const DIAGRAM_PNG: &str = "diagram.png";
const MODEL_JSON: &str = "model.json";
/// The files a complete build holds.
pub const FILES: &[&str] = &[SUMMARY_JSON, SUMMARY_TEXT, DIAGRAM_SVG, DIAGRAM_PNG, MODEL_JSON];
/// The code that decides what the stage writes (see `Stage::sources`): the IR, the summary rules and the
/// diagram's drawing.
pub const SOURCES: &[&str] = &[
    "src/model/",
    "src/summary/",
    "src/figure/",
    "src/pipeline/stage/model.rs",
];

/// A complete model stage, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelArtifacts {
    /// Summary and FLOP counts.
    pub summary: ModelSummary,
    /// The diagram as PNG.
    pub diagram_png: PathBuf,
}

impl ModelArtifacts {
    /// Read the artifacts of a complete model stage.
    pub fn read(dir: &StageDir) -> Result<Self, ArtifactError> {
        Ok(ModelArtifacts {
            summary: read_json(&dir.path, SUMMARY_JSON)?,
            diagram_png: existing(&dir.path, DIAGRAM_PNG)?,
        })
    }
}

/// Remove the `line` of every layer node (objects with an `op`), at any depth.
fn drop_source_lines(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("op") {
                m.remove("line");
            }
            m.values_mut().for_each(drop_source_lines);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_source_lines),
        _ => {}
    }
}

/// What the model stage's key hashes: the model IR.
pub(crate) fn key_input(run: &RunSpec) -> Value {
    let mut decl = serde_json::to_value(&run.decl).unwrap_or_default();
    // Layers carry their YAML line for error messages; a comment or blank line above must not retrain.
    drop_source_lines(&mut decl);
    decl
}

/// `BatchNorm2d` → `batch_norm2d`: the model IR's layer kinds as the pipeline file spells them.
fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// Where a model key field comes from in the pipeline file.
pub(crate) fn user_path(path: &[Seg]) -> String {
    // The IR wraps each layer as {name, op: {Kind: {...}}}; drop `op` and spell the kind as in YAML.
    let segs: Vec<Seg> = path
        .iter()
        .filter(|s| !matches!(s, Seg::Key(k) if k == "op"))
        .map(|s| match s {
            Seg::Key(k) if k.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => Seg::Key(snake(k)),
            other => other.clone(),
        })
        .collect();
    Seg::join("model", &segs)
}

/// Build the stage into `dir`.
pub(crate) fn build(run: &RunSpec, dir: &Path) -> Result<(), StageFailure> {
    let s = summary::summarize(&run.decl)?;
    write_json(dir, SUMMARY_JSON, &s)?;
    let text_path = dir.join(SUMMARY_TEXT);
    std::fs::write(&text_path, summary::render_seed_text(&s)).map_err(|source| StageFailure::Io {
        path: text_path,
        source,
    })?;
    summary::diagram::draw_diagram(&run.decl, &s, &dir.join(DIAGRAM_SVG), &dir.join(DIAGRAM_PNG))?;
    write_json(dir, MODEL_JSON, &run.decl)
}
