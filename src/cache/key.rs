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

/// Differences between two key inputs as readable lines (`spec.optimizer.lr: 0.001 → 0.01`).
pub fn explain_change(old: &Value, new: &Value) -> Vec<String> {
    fn walk(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{prefix} changed from {} to {}", short(a), short(b))),
            _ => {}
        }
    }
    fn short(v: &Value) -> String {
        let s = canonical_json(v);
        if s.len() > 60 {
            format!("{}…", &s[..57])
        } else {
            s
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
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

    #[test]
    fn explains_what_changed() {
        let old = json!({"spec": {"optimizer": {"lr": 0.001}}, "inputs": []});
        let new = json!({"spec": {"optimizer": {"lr": 0.01}}, "inputs": []});
        assert_eq!(
            explain_change(&old, &new),
            vec!["spec.optimizer.lr changed from 0.001 to 0.01"]
        );
    }
}
