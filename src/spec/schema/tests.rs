use super::*;
use std::path::Path;

const BASE: &str = "name: t\ndata: {dataset: synthetic, train_size: 64, test_size: 16, val_split: 8}\n\
                    model: {arch: simple_cnn}\ntrain: {epochs: 1, batch_size: 8, optimizer: {name: adam, lr: 0.001}}\n";

#[test]
fn the_name_pattern_accepts_what_the_name_check_accepts() {
    let pattern = NAME_PATTERN;
    // The pattern is anchored letters/digits/`_` then up to 99 of those or `.`/`-`: mirror it by hand here.
    let matches = |name: &str| {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        first_ok
            && name.chars().count() <= 100
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    assert!(pattern.starts_with('^') && pattern.ends_with('$'));
    let long = "a".repeat(101);
    for name in [
        "task2",
        "lr_0.01",
        "a-b",
        "",
        ".",
        "..",
        "-x",
        ".hidden",
        "a/b",
        "a b",
        "é",
        long.as_str(),
    ] {
        assert_eq!(matches(name), crate::spec::names::check(name).is_ok(), "{name:?}");
    }
}

#[test]
fn every_override_path_of_the_schema_names_a_field_the_parser_knows() {
    let paths = override_paths(&pipeline_schema());
    for expected in [
        "data",
        "data.normalize.mean",
        "train.optimizer.lr",
        "train.scheduler.t_max",
        "model.layers",
    ] {
        assert!(paths.iter().any(|(p, _)| p == expected), "{expected} missing");
    }
    // A path inside one form of a field (`data.normalize.mean` of `{mean, std}`) exists when the base pipeline
    // writes that form: this base writes the map forms.
    let base = BASE
        .replace(
            "val_split: 8}",
            "val_split: 8, normalize: {mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}}",
        )
        .replace("lr: 0.001}}", "lr: 0.001}, divergence: {factor: 5}}");
    for (path, _) in &paths {
        let set = [format!("{path}=zz_not_a_value")];
        if let Err(e) = crate::spec::load_str(Path::new("p.yaml"), &base, &set) {
            let text = e.to_string();
            assert!(!text.contains("is not a field of the pipeline"), "{path}: {text}");
        }
    }
    let err = crate::spec::load_str(Path::new("p.yaml"), BASE, &["train.optimizer.lrr=1".into()])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        !paths.iter().any(|(p, _)| p == "train.optimizer.lrr") && err.contains("lrr"),
        "{err}"
    );
}

#[test]
fn the_schema_is_draft_2020_12_with_the_sections_of_a_pipeline() {
    let schema = pipeline_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let sections: Vec<&str> = properties(&schema, &schema).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        sections,
        [
            "name",
            "description",
            "data",
            "model",
            "train",
            "experiments",
            "report",
            "slurm"
        ]
    );
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn the_reference_has_a_table_row_for_every_field_of_every_section() {
    let schema = pipeline_schema();
    let text = markdown::reference(&schema);
    for (path, _) in override_paths(&schema) {
        let field = path.rsplit('.').next().unwrap_or(&path);
        assert!(text.contains(&format!("| `{field}` |")), "no row for {path}");
    }
    assert!(
        text.contains("## `experiments`: overrides"),
        "the override rules are missing"
    );
}
