//! `labpipe schema`: the JSON Schema (draft 2020-12) of a pipeline file, derived from the types that parse it
//! (`PipelineFile` and the config types below it), and the Markdown field reference made from that schema.
//!
//! The derive gives every section, field, doc line, default and allowed word; `hand_written.rs` covers the
//! types whose parsers are hand-written visitors; `experiments` (dotted-path overrides, `matrix` grids, the
//! same paths `-S` takes) is filled in here from the sections' own schemas, so an editor completes and checks
//! `train.optimizer.lr` inside an experiment as it does `lr` under `train.optimizer`.

mod hand_written;
pub mod markdown;

use super::file::PipelineFile;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// The sections that experiments and `-S` may override, by dotted path.
pub const OVERRIDABLE_SECTIONS: &[&str] = &["data", "model", "train"];

/// What `names::check` accepts as a pipeline or experiment name, as a pattern.
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$";

/// A dotted path through a list element (`model.layers.3.conv2d.out_channels`): overridable, not enumerated.
const LIST_ELEMENT_PATH: &str = r"^(data|model|train)\.(.+\.)?[0-9]+(\..+)?$";

/// The pipeline file's JSON Schema (draft 2020-12).
pub fn pipeline_schema() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut root = generator.into_root_schema_for::<PipelineFile>().to_value();
    if let Some(obj) = root.as_object_mut() {
        obj.insert("title".into(), json!("labpipe pipeline file"));
    }
    if let Some(name) = root
        .pointer_mut("/properties/name")
        .and_then(Value::as_object_mut)
    {
        name.insert("pattern".into(), json!(NAME_PATTERN));
    }
    let paths = override_paths(&root);
    let experiments = experiments_schema(&root, &paths);
    if let Some(slot) = root.pointer_mut("/properties/experiments") {
        *slot = experiments;
    }
    root
}

/// The schema as the text `labpipe schema` prints.
pub fn pipeline_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&pipeline_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// `root`'s definition that `schema` refers to, or `schema` itself.
pub fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .map(|target| resolve(root, target))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The alternatives a schema allows (`anyOf`/`oneOf` branches), each resolved; itself when it has none.
pub fn branches<'a>(root: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let schema = resolve(root, schema);
    let mut out = Vec::new();
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            for branch in list {
                out.extend(branches(root, branch));
            }
        }
    }
    if out.is_empty() {
        out.push(schema);
    }
    out
}

/// The properties of an object schema (over all its alternatives), in declaration order.
pub fn properties<'a>(root: &'a Value, schema: &'a Value) -> Vec<(&'a str, &'a Value)> {
    let mut out: Vec<(&str, &Value)> = Vec::new();
    for branch in branches(root, schema) {
        if let Some(props) = branch.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                if !out.iter().any(|(n, _)| n == name) {
                    out.push((name.as_str(), sub));
                }
            }
        }
    }
    out
}

/// Every dotted path an override may name outside lists (`data`, `train.optimizer.lr`, …), with its schema.
pub fn override_paths(root: &Value) -> Vec<(String, Value)> {
    fn walk(root: &Value, path: String, schema: &Value, out: &mut Vec<(String, Value)>) {
        if out.iter().any(|(p, _)| *p == path) {
            return;
        }
        out.push((path.clone(), schema.clone()));
        for (name, sub) in properties(root, schema) {
            walk(root, format!("{path}.{name}"), sub, out);
        }
    }
    let mut out = Vec::new();
    for section in OVERRIDABLE_SECTIONS {
        if let Some(schema) = root.pointer(&format!("/properties/{section}")) {
            walk(root, section.to_string(), schema, &mut out);
        }
    }
    out
}

fn experiments_schema(root: &Value, paths: &[(String, Value)]) -> Value {
    let description = root
        .pointer("/properties/experiments/description")
        .cloned()
        .unwrap_or(Value::Null);
    let path_names = json!({
        "anyOf": [
            {"enum": paths.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()},
            {"pattern": LIST_ELEMENT_PATH}
        ]
    });
    let mut fixed = Map::new();
    let mut axes = Map::new();
    for (path, schema) in paths {
        let mut one = schema.clone();
        if let Some(obj) = one.as_object_mut() {
            obj.remove("default");
        }
        axes.insert(
            path.clone(),
            json!({"type": "array", "minItems": 1, "items": one.clone(), "description": format!("The values of `{path}`, one run each (crossed with the other axes).")}),
        );
        fixed.insert(path.clone(), one);
    }
    fixed.insert(
        "matrix".into(),
        json!({
            "description": "A grid: each dotted path maps to a list of values; every combination is a run named `<experiment>[<field>=<value>,…]`.",
            "type": "object",
            "properties": axes,
            "patternProperties": {LIST_ELEMENT_PATH: {"type": "array", "minItems": 1}},
            "additionalProperties": false
        }),
    );
    json!({
        "description": description,
        "type": ["object", "null"],
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": {
            "description": "One experiment: dotted paths into `data`, `model` and `train` with the values that replace the base pipeline's (as `-S path=value` does), and optionally a `matrix` grid. `{}` is the base pipeline itself.",
            "type": ["object", "null"],
            "properties": fixed,
            "patternProperties": {LIST_ELEMENT_PATH: true},
            "additionalProperties": false,
            "propertyNames": {"anyOf": [{"const": "matrix"}, path_names]}
        }
    })
}

#[cfg(test)]
mod tests;
