//! Dotted-path overrides, `train.optimizer.lr=0.01` or `data.augment=[]`, as DVC and Hydra users write them,
//! and sweeps, `train.optimizer.lr=0.1,0.01` or `'train.scheduler=[{name: step}, {name: constant}]'`.

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
    let (key, raw) = split_path(item, "override", "path.to.field=value")?;
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

/// `path=rest` with `path` a dotted path; `what` and `form` name the flag in messages.
fn split_path<'a>(item: &'a str, what: &str, form: &str) -> Result<(&'a str, &'a str), String> {
    let Some((key, raw)) = item.split_once('=') else {
        return Err(format!("{what} `{item}` has no `=`: expected `{form}`"));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!(
            "{what} `{item}`: `{key}` is not a dotted path like `train.epochs`"
        ));
    }
    Ok((key, raw))
}

/// One `--sweep` axis: a dotted path and the values it takes, in the order written.
pub type SweepAxis = (String, Vec<Value>);

/// Parse `--sweep` items: `path=v1,v2,...` (each value YAML) or `path=[v1, v2]` (one YAML list, for values
/// that hold commas); a path swept twice is an error.
pub fn parse_sweeps(items: &[String]) -> Result<Vec<SweepAxis>, String> {
    let mut axes: Vec<SweepAxis> = Vec::new();
    for item in items {
        let axis = parse_sweep(item)?;
        if axes.iter().any(|(k, _)| *k == axis.0) {
            return Err(format!(
                "sweep `{item}`: `{}` is swept twice; give all its values in one `--sweep`",
                axis.0
            ));
        }
        axes.push(axis);
    }
    Ok(axes)
}

fn parse_sweep(item: &str) -> Result<SweepAxis, String> {
    let (key, raw) = split_path(item, "sweep", "path.to.field=value1,value2")?;
    let raw = raw.trim();
    let bad_yaml = |part: &str, e: serde_saphyr::Error| {
        format!(
            "sweep `{item}`: `{part}` is not valid YAML: {}; a value holding commas needs the list form, \
             `--sweep '{key}=[value1, value2]'`",
            e.to_string().lines().next().unwrap_or("")
        )
    };
    let values: Vec<Value> = if raw.starts_with('[') {
        match serde_saphyr::from_str::<Value>(raw).map_err(|e| bad_yaml(raw, e))? {
            Value::Array(a) => a,
            other => {
                return Err(format!(
                    "sweep `{item}`: expected a list of values, got `{other}`"
                ));
            }
        }
    } else if raw.is_empty() {
        Vec::new()
    } else {
        raw.split(',')
            .map(|part| {
                let part = part.trim();
                if part.is_empty() {
                    return Err(format!(
                        "sweep `{item}`: an empty value between commas; write each value once, `{key}=V1,V2`"
                    ));
                }
                serde_saphyr::from_str::<Value>(part).map_err(|e| bad_yaml(part, e))
            })
            .collect::<Result<_, _>>()?
    };
    if values.is_empty() {
        return Err(format!(
            "sweep `{item}`: no values to sweep; expected e.g. `{key}=V1,V2`"
        ));
    }
    Ok((key.to_string(), values))
}

/// Whether two dotted paths touch the same field (equal, or one inside the other).
pub fn overlap(a: &str, b: &str) -> bool {
    let inside = |long: &str, short: &str| long.strip_prefix(short).is_some_and(|rest| rest.starts_with('.'));
    a == b || inside(a, b) || inside(b, a)
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
    fn sweeps_split_on_commas_or_take_a_yaml_list() {
        let v = parse_sweeps(&[
            "train.optimizer.lr=0.1, 0.01,0.001".into(),
            "train.scheduler=[{name: step, step_size: 1}, {name: constant}]".into(),
            "data.augment=[[], [random_horizontal_flip]]".into(),
            "data.normalize=none".into(),
        ])
        .unwrap();
        assert_eq!(
            v[0],
            (
                "train.optimizer.lr".into(),
                vec![json!(0.1), json!(0.01), json!(0.001)]
            )
        );
        assert_eq!(
            v[1].1,
            vec![
                json!({"name": "step", "step_size": 1}),
                json!({"name": "constant"})
            ]
        );
        assert_eq!(v[2].1, vec![json!([]), json!(["random_horizontal_flip"])]);
        assert_eq!(v[3].1, vec![json!("none")]);
    }

    #[test]
    fn sweeps_reject_empty_lists_repeats_and_broken_values() {
        let err =
            |s: &[&str]| parse_sweeps(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap_err();
        assert!(err(&["train.epochs="]).contains("no values to sweep"));
        assert!(err(&["train.epochs=[]"]).contains("no values to sweep"));
        assert!(err(&["train.epochs=1,,2"]).contains("empty value between commas"));
        assert!(err(&["train.epochs"]).contains("no `=`"));
        assert!(err(&["train..epochs=1"]).contains("dotted path"));
        assert!(err(&["train.epochs=[1, 2"]).contains("not valid YAML"));
        assert!(err(&["train.scheduler={name: step, step_size: 1}"]).contains("needs the list form"));
        assert!(err(&["train.epochs=[1"]).contains("not valid YAML"));
        assert!(err(&["train.epochs=1,2", "train.epochs=3"]).contains("swept twice"));
    }

    #[test]
    fn paths_overlap_when_one_holds_the_other() {
        assert!(overlap("train.optimizer", "train.optimizer.lr"));
        assert!(overlap("train.optimizer.lr", "train.optimizer.lr"));
        assert!(!overlap("train.optimizer.lr", "train.optimizer.lr_min"));
        assert!(!overlap("train.epochs", "train.batch_size"));
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
