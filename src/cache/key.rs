//! Stage keys: a hash of everything that determines a stage's output, kept in readable form to explain
//! a cache miss.

use crate::spec::canonical_json;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The identity of one stage's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageKey {
    /// Stage name (`dataset`, `model`, `train`, `evaluate`, `plot`).
    pub stage: String,
    /// 16 hex characters of the blake3 hash of `input`'s canonical JSON.
    pub key: String,
    /// What was hashed: the stage's resolved spec, its inputs' keys, versions and device kind.
    pub input: Value,
}

impl StageKey {
    /// The key of `stage` for resolved `spec` consuming `inputs`.
    pub fn new(stage: &str, spec: Value, inputs: &[&StageKey]) -> Self {
        let input = json!({
            "stage": stage,
            "spec": spec,
            "inputs": inputs.iter().map(|k| json!({"stage": k.stage, "key": k.key})).collect::<Vec<_>>(),
            "format": super::FORMAT_VERSION,
            "labpipe": env!("CARGO_PKG_VERSION"),
            "candle": "0.11",
        });
        let key = blake3::hash(canonical_json(&input).as_bytes()).to_hex()[..16].to_string();
        StageKey {
            stage: stage.to_string(),
            key,
            input,
        }
    }
}

/// How many differences [`explain_change`] lists before summarising the rest.
const MAX_REASONS: usize = 4;

/// One step of a path into a key input.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Differences between two key inputs of the same stage, as lines in the words of the pipeline file:
/// `train.optimizer.lr changed from 0.001 to 0.01`, `data.augment[1].random_horizontal_flip.p changed from 0.5
/// to 0.3`, `labpipe version changed from 0.1.0 to 0.2.0`. Changed upstream keys are not listed: the caller
/// says which upstream stage runs.
pub fn explain_change(old: &Value, new: &Value) -> Vec<String> {
    let stage = new["stage"].as_str().unwrap_or_default();
    let mut diffs = Vec::new();
    diff(&mut Vec::new(), &old["spec"], &new["spec"], &mut diffs);
    // The dataset's fingerprint follows its size and kind; name it only when nothing written changed.
    let top = |d: &(Vec<Seg>, Value, Value)| match d.0.first() {
        Some(Seg::Key(k)) => k.clone(),
        _ => String::new(),
    };
    if stage == "dataset"
        && diffs
            .iter()
            .any(|d| ["dataset", "train_size", "test_size"].contains(&top(d).as_str()))
    {
        diffs.retain(|d| top(d) != "source");
    }
    let mut out: Vec<String> = diffs
        .iter()
        .map(|(path, a, b)| describe(&user_path(stage, path), a, b))
        .collect();
    for (field, what) in [
        ("labpipe", "labpipe version"),
        ("candle", "candle version"),
        ("format", "cache format"),
    ] {
        if old[field] != new[field] {
            out.push(describe(what, &old[field], &new[field]));
        }
    }
    if out.len() > MAX_REASONS {
        let more = out.len() - (MAX_REASONS - 1);
        out.truncate(MAX_REASONS - 1);
        out.push(format!("and {more} more changes"));
    }
    out
}

/// The upstream stages whose keys differ between two key inputs (e.g. `["dataset"]`).
pub fn changed_inputs(old: &Value, new: &Value) -> Vec<String> {
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["stage"].as_str().unwrap_or_default().to_string(),
                    i["key"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let before = pairs(old);
    pairs(new)
        .into_iter()
        .filter(|(stage, key)| !before.iter().any(|(s, k)| s == stage && k == key))
        .map(|(stage, _)| stage)
        .collect()
}

fn diff(path: &mut Vec<Seg>, a: &Value, b: &Value, out: &mut Vec<(Vec<Seg>, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            // Declaration order of the newer input (serde's field order), then keys only the older one has.
            let mut keys: Vec<&String> = y.keys().collect();
            keys.extend(x.keys().filter(|k| !y.contains_key(*k)));
            for k in keys {
                path.push(Seg::Key(k.clone()));
                diff(
                    path,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                path.push(Seg::Index(i));
                diff(path, p, q, out);
                path.pop();
            }
        }
        _ if a != b => out.push((path.clone(), a.clone(), b.clone())),
        _ => {}
    }
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

fn join(prefix: &str, path: &[Seg]) -> String {
    let mut s = prefix.to_string();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Where a field of a stage's key input comes from in the pipeline file (or the command line).
fn user_path(stage: &str, path: &[Seg]) -> String {
    let first = match path.first() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    match (stage, first) {
        (_, "device") => "device (--device)".into(),
        ("dataset", "seed") => "train.seed (it also draws the validation split)".into(),
        ("dataset", "source") => "the input data (its files or size)".into(),
        ("dataset", _) | ("train", "augment") => join("data", path),
        ("train", _) => join("train", path),
        ("model", _) => {
            // The IR wraps each layer as {name, op: {Kind: {...}}}; drop `op` and spell the kind as in YAML.
            let segs: Vec<Seg> = path
                .iter()
                .filter(|s| !matches!(s, Seg::Key(k) if k == "op"))
                .map(|s| match s {
                    Seg::Key(k) if k.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {
                        Seg::Key(snake(k))
                    }
                    other => other.clone(),
                })
                .collect();
            join("model", &segs)
        }
        (stage, _) => join(stage, path),
    }
}

fn describe(path: &str, a: &Value, b: &Value) -> String {
    match (a, b) {
        (Value::Null, b) => format!("{path} set to {} (was not set)", short(b)),
        (a, Value::Null) => format!("{path} removed (was {})", short(a)),
        (a, b) => format!("{path} changed from {} to {}", short(a), short(b)),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => serde_json::to_string(v)
            .unwrap_or_default()
            .replace(',', ", ")
            .replace(':', ": "),
        other => canonical_json(other),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_content_not_order() {
        let a = StageKey::new("train", json!({"a": 1, "b": 2}), &[]);
        let b = StageKey::new("train", json!({"b": 2, "a": 1}), &[]);
        assert_eq!(a.key, b.key);
        let c = StageKey::new("train", json!({"a": 1, "b": 3}), &[]);
        assert_ne!(a.key, c.key);
        let d = StageKey::new("train", json!({"a": 1, "b": 2}), &[&c]);
        assert_ne!(a.key, d.key);
    }

    fn input(stage: &str, spec: Value) -> Value {
        StageKey::new(stage, spec, &[]).input
    }

    #[test]
    fn explains_what_changed_in_the_words_of_the_pipeline_file() {
        let old = input(
            "train",
            json!({"optimizer": {"name": "adam", "lr": 0.001}, "augment": []}),
        );
        let new = input(
            "train",
            json!({"optimizer": {"name": "adam", "lr": 0.01}, "augment": []}),
        );
        assert_eq!(
            explain_change(&old, &new),
            vec!["train.optimizer.lr changed from 0.001 to 0.01"]
        );

        let flip = |p: f64| json!({"augment": [{"random_crop": {"size": 32}}, {"random_horizontal_flip": {"p": p}}]});
        assert_eq!(
            explain_change(&input("train", flip(0.5)), &input("train", flip(0.3))),
            vec!["data.augment[1].random_horizontal_flip.p changed from 0.5 to 0.3"]
        );
        assert_eq!(
            explain_change(
                &input("train", json!({"early_stopping": null})),
                &input("train", json!({"early_stopping": {"patience": 2}}))
            ),
            vec!["train.early_stopping set to {\"patience\": 2} (was not set)"]
        );
        assert_eq!(
            explain_change(
                &input("dataset", json!({"normalize": "first_image", "seed": 0})),
                &input("dataset", json!({"normalize": "none", "seed": 1}))
            ),
            vec![
                "data.normalize changed from first_image to none",
                "train.seed (it also draws the validation split) changed from 0 to 1"
            ]
        );
        assert_eq!(
            explain_change(
                &input(
                    "dataset",
                    json!({"source": "synthetic-v1:240:60", "train_size": 240})
                ),
                &input(
                    "dataset",
                    json!({"source": "synthetic-v1:300:60", "train_size": 300})
                )
            ),
            vec!["data.train_size changed from 240 to 300"]
        );
        assert_eq!(
            explain_change(
                &input("dataset", json!({"source": "cifar10-blake3:aa"})),
                &input("dataset", json!({"source": "cifar10-blake3:bb"}))
            ),
            vec!["the input data (its files or size) changed from cifar10-blake3:aa to cifar10-blake3:bb"]
        );
        let layer = |n: u64| json!({"layers": [{"name": "0", "op": {"Conv2d": {"out_channels": n}}}]});
        assert_eq!(
            explain_change(&input("model", layer(8)), &input("model", layer(16))),
            vec!["model.layers[0].conv2d.out_channels changed from 8 to 16"]
        );
    }

    #[test]
    fn versions_and_many_changes_are_summarised() {
        let mut old = input("train", json!({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}));
        let new = input("train", json!({"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}));
        old["labpipe"] = json!("0.0.9");
        let lines = explain_change(&old, &new);
        assert_eq!(lines.len(), MAX_REASONS);
        assert_eq!(lines[0], "train.a changed from 1 to 2");
        assert_eq!(lines[MAX_REASONS - 1], "and 3 more changes");
    }

    #[test]
    fn lists_changed_inputs() {
        let d1 = StageKey::new("dataset", json!(1), &[]);
        let d2 = StageKey::new("dataset", json!(2), &[]);
        let m = StageKey::new("model", json!(1), &[]);
        let a = StageKey::new("train", json!({}), &[&d1, &m]);
        let b = StageKey::new("train", json!({}), &[&d2, &m]);
        assert_eq!(changed_inputs(&a.input, &b.input), vec!["dataset"]);
        assert!(changed_inputs(&a.input, &a.input).is_empty());
    }
}
