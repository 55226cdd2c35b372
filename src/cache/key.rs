//! Stage keys: a hash of everything that determines a stage's output, kept in readable form to explain
//! a cache miss.

use super::canonical::canonical_json;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Bump when the layout of any stage's artifacts changes: every key changes with it.
pub const FORMAT_VERSION: u32 = 1;

/// `(path, blake3)` of every source file this labpipe was built from (build.rs writes the table): what
/// [`super::code_identity::identity`] combines into each stage's `code` key field.
pub const SOURCE_HASHES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/source_hashes.rs"));

/// The Candle version Cargo.lock pins (build.rs reads it), shown when a key changes with it.
pub const CANDLE_VERSION: &str = env!("LABPIPE_CANDLE_VERSION");

/// The identity of one stage's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageKey {
    /// Stage name (`dataset`, `model`, `train`, `evaluate`, `plot`).
    pub stage: String,
    /// 16 hex characters of the blake3 hash of `input`'s canonical JSON.
    pub key: String,
    /// What was hashed: the stage's resolved spec, its inputs' keys, versions, the identity of the code that
    /// makes the stage, and the device kind.
    pub input: Value,
}

impl StageKey {
    /// The key of `stage` for resolved `spec` consuming `inputs`, made by the code whose identity is `code`
    /// (see [`super::code_identity`]).
    pub fn new(stage: &str, spec: Value, inputs: &[&StageKey], code: &str) -> Self {
        let input = json!({
            "stage": stage,
            "spec": spec,
            "inputs": inputs.iter().map(|k| json!({"stage": k.stage, "key": k.key})).collect::<Vec<_>>(),
            "format": FORMAT_VERSION,
            "labpipe": env!("CARGO_PKG_VERSION"),
            "candle": CANDLE_VERSION,
            "code": code,
        });
        StageKey {
            stage: stage.to_string(),
            key: Self::hash_of(&input),
            input,
        }
    }

    /// The key (16 hex characters) that a key input hashes to.
    pub fn hash_of(input: &Value) -> String {
        blake3::hash(canonical_json(input).as_bytes()).to_hex()[..16].to_string()
    }
}

/// How many differences [`describe_changes`] lists before summarising the rest.
const MAX_REASONS: usize = 4;

/// One step of a path into a key input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object field.
    Key(String),
    /// An array element.
    Index(usize),
}

impl Seg {
    /// `prefix.a.b[2].c`: a path as the pipeline file spells it.
    pub fn join(prefix: &str, path: &[Seg]) -> String {
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

    /// The first field name of a path, if it starts with one.
    pub fn first_key(path: &[Seg]) -> Option<&str> {
        match path.first() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

/// One difference between two key inputs: where in `spec`, the old value and the new one.
pub type SpecDiff = (Vec<Seg>, Value, Value);

/// The differences between the `spec` parts of two key inputs, in the newer one's field order.
pub fn spec_diffs(old: &Value, new: &Value) -> Vec<SpecDiff> {
    let mut diffs = Vec::new();
    diff(&mut Vec::new(), &old["spec"], &new["spec"], &mut diffs);
    diffs
}

/// Whether the code that makes the stage differs between two key inputs (an input from before keys had a
/// code identity counts as different).
pub fn code_changed(old: &Value, new: &Value) -> bool {
    old["code"] != new["code"]
}

/// Lines describing `diffs` (their paths named by `user_path`), then `code_change` (how the stage names a
/// change of its code, used when [`code_changed`]), then any version change between the key inputs:
/// `train.optimizer.lr changed from 0.001 to 0.01`, `labpipe's training code changed`,
/// `labpipe version changed from 0.1.0 to 0.2.0`.
pub fn describe_changes(
    diffs: &[SpecDiff],
    user_path: impl Fn(&[Seg]) -> String,
    code_change: &str,
    old: &Value,
    new: &Value,
) -> Vec<String> {
    let mut out: Vec<String> = diffs
        .iter()
        .map(|(path, a, b)| describe(&user_path(path), a, b))
        .collect();
    if code_changed(old, new) {
        out.push(code_change.to_string());
    }
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
        let a = StageKey::new("train", json!({"a": 1, "b": 2}), &[], "c0");
        let b = StageKey::new("train", json!({"b": 2, "a": 1}), &[], "c0");
        assert_eq!(a.key, b.key);
        assert_eq!(StageKey::hash_of(&a.input), a.key);
        let c = StageKey::new("train", json!({"a": 1, "b": 3}), &[], "c0");
        assert_ne!(a.key, c.key);
        let d = StageKey::new("train", json!({"a": 1, "b": 2}), &[&c], "c0");
        assert_ne!(a.key, d.key);
        let e = StageKey::new("train", json!({"a": 1, "b": 2}), &[], "c1");
        assert_ne!(a.key, e.key, "the code identity is part of the key");
    }

    #[test]
    fn a_code_change_is_said_in_the_stages_words() {
        let old = StageKey::new("train", json!({"a": 1}), &[], "c0").input;
        let new = StageKey::new("train", json!({"a": 1}), &[], "c1").input;
        let say = |old: &Value| {
            describe_changes(
                &spec_diffs(old, &new),
                |p| Seg::join("train", p),
                "training code changed",
                old,
                &new,
            )
        };
        assert_eq!(say(&old), ["training code changed"]);
        assert!(say(&new).is_empty());
        let mut before_code_identity = old.clone();
        before_code_identity.as_object_mut().unwrap().remove("code");
        assert_eq!(say(&before_code_identity), ["training code changed"]);
    }

    #[test]
    fn the_embedded_candle_version_is_the_locked_one() {
        let lock = include_str!("../../Cargo.lock");
        assert_eq!(
            super::super::code_identity::locked_version(lock, "candle-core").as_deref(),
            Some(CANDLE_VERSION)
        );
    }

    #[test]
    fn versions_and_many_changes_are_summarised() {
        let mut old = StageKey::new("train", json!({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}), &[], "c").input;
        let new = StageKey::new("train", json!({"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}), &[], "c").input;
        old["labpipe"] = json!("0.0.9");
        let lines = describe_changes(&spec_diffs(&old, &new), |p| Seg::join("train", p), "", &old, &new);
        assert_eq!(lines.len(), MAX_REASONS);
        assert_eq!(lines[0], "train.a changed from 1 to 2");
        assert_eq!(lines[MAX_REASONS - 1], "and 3 more changes");
    }

    #[test]
    fn lists_changed_inputs() {
        let d1 = StageKey::new("dataset", json!(1), &[], "c");
        let d2 = StageKey::new("dataset", json!(2), &[], "c");
        let m = StageKey::new("model", json!(1), &[], "c");
        let a = StageKey::new("train", json!({}), &[&d1, &m], "c");
        let b = StageKey::new("train", json!({}), &[&d2, &m], "c");
        assert_eq!(changed_inputs(&a.input, &b.input), vec!["dataset"]);
        assert!(changed_inputs(&a.input, &a.input).is_empty());
    }
}
