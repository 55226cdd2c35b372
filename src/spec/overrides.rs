//! Dotted-path overrides, `train.optimizer.lr=0.01` or `data.augment=[]`, as DVC and Hydra users write them.

use super::diagnostic::closest;
use serde_json::Value;

/// Why an override could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideError {
    /// What is wrong.
    pub message: String,
    /// The closest valid path, when there is one.
    pub suggestion: Option<String>,
}

/// Parse `key=value` strings; the value is YAML (`5`, `none`, `[]`, `{name: step, step_size: 10}`).
pub fn parse_all(items: &[String]) -> Result<Vec<(String, Value)>, String> {
    items.iter().map(|s| parse_one(s)).collect()
}

fn parse_one(item: &str) -> Result<(String, Value), String> {
    let Some((key, raw)) = item.split_once('=') else {
        return Err(format!(
            "override `{item}` has no `=`: expected `path.to.field=value`"
        ));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!(
            "override `{item}`: `{key}` is not a dotted path like `train.epochs`"
        ));
    }
    let value: Value = if raw.trim().is_empty() {
        Value::String(String::new())
    } else {
        serde_saphyr::from_str(raw).map_err(|e| {
            format!(
                "override `{item}`: the value `{raw}` is not valid YAML: {}",
                e.to_string().lines().next().unwrap_or("")
            )
        })?
    };
    Ok((key.to_string(), value))
}

/// Every dotted path that exists in `v` (for suggestions).
pub fn paths(v: &Value) -> Vec<String> {
    fn go(v: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                go(child, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    go(v, "", &mut out);
    out
}

/// Set `path` in `root` to `value`; the path must already exist (every field is present, null when unset).
pub fn apply(root: &mut Value, path: &str, value: Value) -> Result<(), OverrideError> {
    let all = paths(root);
    let not_found = |all: &[String]| OverrideError {
        message: format!("`{path}` is not a field of the pipeline"),
        suggestion: closest(path, all.iter().map(String::as_str)).map(str::to_string),
    };
    let mut cur = &mut *root;
    let segments: Vec<&str> = path.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        cur = match cur {
            Value::Object(m) => {
                if !m.contains_key(*seg) {
                    // An optional field left unset is absent from the section: setting it is allowed, and the
                    // typed check afterwards rejects names the section does not have (with a suggestion).
                    if last && i > 0 {
                        m.insert((*seg).to_string(), value);
                        return Ok(());
                    }
                    return Err(not_found(&all));
                }
                let slot = m.get_mut(*seg).ok_or_else(|| not_found(&all))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                // Setting a field inside a section that is unset (null) creates the section.
                if slot.is_null() {
                    *slot = Value::Object(serde_json::Map::new());
                }
                slot
            }
            Value::Array(a) => {
                let idx: usize = seg.parse().map_err(|_| not_found(&all))?;
                let len = a.len();
                let slot = a.get_mut(idx).ok_or_else(|| OverrideError {
                    message: format!("`{path}`: index {idx} is past the end of a list of {len}"),
                    suggestion: None,
                })?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => {
                if last {
                    return Err(not_found(&all));
                }
                // An unset section that was just created as a map: allow new keys inside it.
                return Err(not_found(&all));
            }
        };
        if let Value::Object(m) = cur
            && m.is_empty()
            && !last
        {
            // A freshly created section: write the rest of the path as nested maps.
            let rest = &segments[i + 1..];
            let mut v = value;
            for s in rest.iter().rev() {
                let mut mm = serde_json::Map::new();
                mm.insert((*s).to_string(), v);
                v = Value::Object(mm);
            }
            *cur = v;
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_scalars_lists_and_maps() {
        let v = parse_all(&[
            "train.epochs=5".into(),
            "data.augment=[]".into(),
            "train.scheduler={name: step, step_size: 10}".into(),
            "data.normalize=none".into(),
        ])
        .unwrap();
        assert_eq!(v[0], ("train.epochs".into(), json!(5)));
        assert_eq!(v[1].1, json!([]));
        assert_eq!(v[2].1, json!({"name": "step", "step_size": 10}));
        assert_eq!(v[3].1, json!("none"));
    }

    #[test]
    fn rejects_malformed_items() {
        assert!(
            parse_all(&["train.epochs".into()])
                .unwrap_err()
                .contains("no `=`")
        );
        assert!(
            parse_all(&["train..epochs=1".into()])
                .unwrap_err()
                .contains("dotted path")
        );
        assert!(
            parse_all(&["a.b=[1, 2".into()])
                .unwrap_err()
                .contains("not valid YAML")
        );
    }

    #[test]
    fn apply_sets_existing_and_suggests_closest() {
        let mut v = json!({"train": {"epochs": 3, "optimizer": {"lr": 0.1}, "early_stopping": null}});
        apply(&mut v, "train.optimizer.lr", json!(0.01)).unwrap();
        assert_eq!(v["train"]["optimizer"]["lr"], json!(0.01));
        let e = apply(&mut v, "train.optimiser.lr", json!(1)).unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("train.optimizer.lr"));
        apply(&mut v, "train.early_stopping.patience", json!(2)).unwrap();
        apply(&mut v, "train.optimizer.betas", json!([0.8, 0.9])).unwrap();
        assert_eq!(v["train"]["optimizer"]["betas"], json!([0.8, 0.9]));
        assert!(apply(&mut v, "trian", json!(1)).is_err());
        assert_eq!(v["train"]["early_stopping"], json!({"patience": 2}));
    }
}
