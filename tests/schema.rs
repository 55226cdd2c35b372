//! `labpipe schema`: the JSON Schema it prints accepts every shipped pipeline and the reference's examples,
//! rejects broken files as the parser does, names exactly the fields the parser takes, and
//! docs/pipeline-reference.md is what `labpipe schema --markdown` prints.

use crate::util::binary::{labpipe, stderr, stdout};
use labpipe::spec::schema::markdown::{EXAMPLES, REGENERATE};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The schema exactly as the binary prints it.
fn printed_schema() -> Value {
    let out = labpipe(&repo(), &["schema"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("`labpipe schema` prints JSON")
}

fn validator() -> jsonschema::Validator {
    let schema = printed_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::validator_for(&schema).expect("a valid draft 2020-12 schema")
}

/// YAML as labpipe reads it, as JSON.
fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("valid YAML")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Whether labpipe's own parser accepts a pipeline text.
fn parser_accepts(text: &str) -> Result<(), String> {
    labpipe::spec::load_str(Path::new("p.yaml"), text, &[])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

const BASE: &str = "name: t\ndata: {dataset: synthetic}\n\
                    model: {arch: simple_cnn}\ntrain: {epochs: 1, batch_size: 8, optimizer: {name: adam, lr: 0.001}}\n";

/// `over` written into `base`, maps merged key by key.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[test]
fn every_shipped_pipeline_validates_against_the_schema() {
    let v = validator();
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            errors(&v, &yaml(&text)),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} pipelines found");
}

#[test]
fn the_readme_pipeline_validates() {
    let v = validator();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let pipelines: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.starts_with("name:"))
        .collect();
    assert!(!pipelines.is_empty(), "no pipeline in README.md");
    for text in pipelines {
        assert_eq!(errors(&v, &yaml(text)), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn every_example_of_the_reference_validates_and_parses() {
    let v = validator();
    for (section, example) in EXAMPLES {
        let mut whole = yaml(BASE);
        let example = yaml(example);
        // A model example is a whole model (`arch` and `layers` exclude each other).
        if let Some(model) = example.get("model") {
            whole["model"] = model.clone();
        }
        merge(&mut whole, &example);
        assert_eq!(errors(&v, &whole), Vec::<String>::new(), "example of `{section}`");
        // The parser reads the merged file too (slurm options are checked only when submitting).
        let text = serde_json::to_string(&whole).unwrap();
        parser_accepts(&text).unwrap_or_else(|e| panic!("example of `{section}`: {e}"));
    }
}

#[test]
fn broken_pipelines_are_rejected_by_the_schema_as_by_the_parser() {
    let v = validator();
    let cases: &[(&str, &str, &str)] = &[
        ("unknown field", "train: {epoch: 3}", "/train"),
        ("wrong type", "train: {batch_size: lots}", "/train/batch_size"),
        (
            "bad enum value",
            "train: {optimizer: {name: adamax}}",
            "/train/optimizer/name",
        ),
        ("bad model arch", "model: {arch: vgg16}", "/model/arch"),
        (
            "fraction out of range",
            "data: {val_split: 1.5}",
            "/data/val_split",
        ),
        (
            "bad layer",
            "model: {layers: [{conv2d: {out_channels: 8}}]}",
            "/model/layers/0",
        ),
        (
            "unknown experiment path",
            "experiments: {fast: {train.epoch: 1}}",
            "/experiments/fast",
        ),
        (
            "matrix axis not a list",
            "experiments: {lr: {matrix: {train.optimizer.lr: 0.1}}}",
            "/experiments/lr/matrix/train.optimizer.lr",
        ),
        (
            "wrong type through an experiment",
            "experiments: {big: {train.batch_size: lots}}",
            "/experiments/big/train.batch_size",
        ),
    ];
    for (what, change, at) in cases {
        let mut whole = yaml(BASE);
        merge(&mut whole, &yaml(change));
        let found = errors(&v, &whole);
        assert!(
            found.iter().any(|e| e.starts_with(at)),
            "{what}: expected an error at {at}, got {found:?}"
        );
        let text = serde_json::to_string(&whole).unwrap();
        assert!(
            parser_accepts(&text).is_err(),
            "{what}: the parser accepted {text}"
        );
    }
}

/// Every object in a value, with its JSON pointer.
fn objects(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            out.push(at.clone());
            for (k, child) in m {
                objects(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                objects(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A pipeline with every section and every kind of nested map written out.
const EVERYTHING: &str = "name: all
description: every section
data:
  dataset: synthetic
  train_size: 64
  test_size: 16
  val_split: 8
  normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
  augment:
    - random_crop: {size: 32, padding: 4}
    - random_horizontal_flip: {p: 0.5}
    - random_rotation: {degrees: 5}
    - random_erasing: {p: 0.5}
model:
  layers:
    - conv2d: {out_channels: 4, kernel: 3, padding: 1}
    - relu: {name: act}
    - residual:
        body: [{conv2d: {out_channels: 4, kernel: 3, padding: 1}}]
    - max_pool2d: {kernel: 4}
    - flatten
    - linear: {out_features: 10}
train:
  epochs: 1
  batch_size: 8
  optimizer: {name: sgd, lr: 0.1}
  scheduler: {name: step, step_size: 1}
  early_stopping: {metric: val_loss, patience: 2}
  divergence: {factor: 5}
report: {title: All, captions: {baseline: a caption}}
slurm: {partition: gpu}
";

/// The fields the parser names when it meets an unknown one at `pointer`, or None when it does not list them.
fn parser_fields(pointer: &str) -> Option<Vec<String>> {
    let mut whole = yaml(EVERYTHING);
    let target = whole.pointer_mut(pointer)?.as_object_mut()?;
    target.insert("zz_not_a_field".into(), json!(1));
    let text = serde_json::to_string(&whole).unwrap();
    let err = parser_accepts(&text).expect_err(pointer);
    let list = err
        .split("expected one of ")
        .nth(1)
        .or_else(|| err.split("expected ").nth(1))?;
    let line = list.lines().next()?;
    Some(
        line.split(", ")
            .map(|f| f.trim().trim_matches('`').to_string())
            .collect(),
    )
}

/// The fields the schema lists for the map at `pointer` (the union over its alternatives).
fn schema_fields(schema: &Value, pointer: &str) -> Vec<String> {
    use labpipe::spec::schema::{branches, properties};
    let mut at = schema.clone();
    for seg in pointer.split('/').skip(1) {
        let next = branches(schema, &at).into_iter().find_map(|b| {
            b.pointer(&format!("/properties/{seg}"))
                .or_else(|| seg.parse::<usize>().ok().and(b.get("items")))
                .cloned()
        });
        at = next.unwrap_or_else(|| panic!("the schema has nothing at {pointer} ({seg})"));
    }
    properties(schema, &at)
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn the_schema_and_the_parser_agree_on_field_names() {
    let schema = printed_schema();
    let mut pointers = Vec::new();
    objects(&yaml(EVERYTHING), String::new(), &mut pointers);
    let mut compared = 0;
    for pointer in pointers {
        // Maps of the user's own keys (captions) and one-key layer/augmentation entries name no fields.
        let last = pointer.rsplit('/').next().unwrap_or("");
        if pointer.is_empty() || last == "captions" || last.parse::<usize>().is_ok() {
            continue;
        }
        let Some(mut parsed) = parser_fields(&pointer) else {
            panic!("the parser did not list the fields of {pointer}");
        };
        let mut listed = schema_fields(&schema, &pointer);
        parsed.sort();
        listed.sort();
        // serde lists aliases too (`T_max` for `t_max`); the schema names the canonical spelling.
        parsed.retain(|f| listed.contains(f) || !listed.contains(&f.to_lowercase()));
        assert_eq!(listed, parsed, "fields of {pointer}");
        compared += 1;
    }
    assert!(compared >= 15, "compared only {compared} maps");
}

#[test]
fn every_field_has_a_description() {
    let schema = printed_schema();
    let mut missing = Vec::new();
    fn walk(v: &Value, at: &str, missing: &mut Vec<String>) {
        // A one-key entry (`- conv2d: {...}`) is described as a whole; its one key is the variant's word.
        let one_key = v
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.len() == 1)
            && v.get("description").is_some();
        if let Some(props) = v
            .get("properties")
            .and_then(Value::as_object)
            .filter(|_| !one_key)
        {
            for (name, sub) in props {
                if sub.get("description").is_none() && !at.contains("/experiments") {
                    missing.push(format!("{at}/{name}"));
                }
            }
        }
        if let Value::Object(m) = v {
            for (k, child) in m {
                walk(child, &format!("{at}/{k}"), missing);
            }
        } else if let Value::Array(a) = v {
            for (i, child) in a.iter().enumerate() {
                walk(child, &format!("{at}/{i}"), missing);
            }
        }
    }
    walk(&schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a doc comment (add a `///` line to the field): {missing:?}"
    );
}

#[test]
fn the_field_reference_is_current() {
    let out = labpipe(&repo(), &["schema", "--markdown"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let committed = std::fs::read_to_string(repo().join("docs/pipeline-reference.md")).unwrap_or_default();
    assert!(
        committed == printed,
        "docs/pipeline-reference.md is stale: regenerate it with `cargo run -- {}`",
        REGENERATE.trim_start_matches("labpipe ")
    );
    for section in [
        "`data`",
        "`model`",
        "`train`",
        "`train.optimizer`",
        "`train.scheduler`",
        "`experiments`",
    ] {
        assert!(printed.contains(&format!("## {section}")), "{section} missing");
    }
    for field in [
        "`early_stopping`",
        "`label_smoothing`",
        "`momentum`",
        "`nesterov`",
        "`residual`",
    ] {
        assert!(printed.contains(field), "{field} missing from the reference");
    }
}

#[test]
fn the_readme_shows_the_editor_line_and_how_to_write_the_schema() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("# yaml-language-server: $schema="),
        "README lacks the editor line"
    );
    assert!(readme.contains("labpipe schema > labpipe.schema.json"));
}

/// The types read by hand-written visitors: for each value, the schema accepts it exactly when labpipe loads it.
#[test]
fn hand_written_schemas_accept_what_the_parser_accepts() {
    let v = validator();
    let cases: &[(&str, &[&str])] = &[
        // Not `1.0`: JSON Schema counts 1.0 as an integer, where the parser reads a fraction out of range.
        (
            "data: {val_split: X}",
            &["0", "500", "0.1", "0.99", "0.0", "1.5", "-3", "ten", "[1]"],
        ),
        (
            "data: {normalize: X}",
            &[
                "none",
                "first_image",
                "train_mean_std",
                "~",
                "per_pixel",
                "{mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}",
                "{mean: [0.5, 0.5, 0.5], std: [0.2, 0, 0.2]}",
                "{mean: [0.5, 0.5], std: [0.2, 0.2]}",
                "{mean: [0.5, 0.5, 0.5]}",
                "{mean: [0.5, 0.5, 0.5], std: [1, 1, 1], extra: 1}",
            ],
        ),
        (
            "data: {augment: [{random_crop: {size: 32, padding: X}}]}",
            &["4", "[2, 6]", "[1, 2, 3, 4]", "[1]", "[1, 2, 3]", "-1", "[]"],
        ),
        (
            "data: {augment: [{random_crop: {size: 32, padding: 4, fill: X}}]}",
            &["0", "255", "256", "[1, 2, 3]", "[7]", "[1, 2]", "-1", "grey"],
        ),
        (
            "data: {augment: [{random_rotation: {degrees: X}}]}",
            &["15", "0", "-5", "[-5, 20]", "[1, 2, 3]", "wide"],
        ),
        (
            "data: {augment: [{random_erasing: {value: X}}]}",
            &["0", "0.5", "random", "[0.1, 0.2, 0.3]", "[1]", "[1, 2]", "noise"],
        ),
        (
            "train: {divergence: X}",
            &[
                "{factor: 5}",
                "{factor: 1}",
                "{}",
                "none",
                "off",
                "false",
                "true",
                "~",
                "never",
                "{fator: 5}",
            ],
        ),
        (
            "model: {arch: ~, layers: [X, flatten, {linear: {out_features: 10}}]}",
            &[
                "flatten",
                "{flatten: ~}",
                "{dropout: {p: 0.2}}",
                "conv2d",
                "{conv2d: {out_channels: 4, kernel: 3}}",
                "{conv2d: {out_channels: 4}}",
                "{flatten: ~, relu: ~}",
                "{softmax: ~}",
                "softmax",
            ],
        ),
        (
            "slurm: {time: X, mem: 4G}",
            &[
                "90",
                "2:00:00",
                "1-12",
                "1-12:30:00",
                "UNLIMITED",
                "Infinite",
                "2h",
                "1:2:3:4",
                "-5",
            ],
        ),
        (
            "slurm: {mem: X}",
            &["16000", "16G", "16GB", "512m", "16 G", "G", "lots"],
        ),
    ];
    for (template, values) in cases {
        for value in *values {
            let mut whole = yaml(BASE);
            merge(&mut whole, &yaml(&template.replace('X', value)));
            if template.starts_with("model:") {
                whole["model"].as_object_mut().unwrap().remove("arch");
            }
            let schema_says = errors(&v, &whole).is_empty();
            let text = serde_json::to_string(&whole).unwrap();
            let parser_says = parser_accepts(&text);
            assert_eq!(
                schema_says,
                parser_says.is_ok(),
                "{template} with X = {value}: schema {}, parser {parser_says:?}",
                if schema_says { "accepts" } else { "rejects" }
            );
        }
    }
}
