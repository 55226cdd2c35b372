use super::*;

const BASE: &str = "name: t
data:
  dataset: synthetic
  train_size: 200
  test_size: 50
  val_split: 20
  normalize: first_image
model:
  arch: simple_cnn
train:
  epochs: 2
  batch_size: 32
  optimizer: {name: adam, lr: 0.001}
  scheduler: {name: step, step_size: 10, gamma: 0.5}
  seed: 0
";

fn load(text: &str) -> Result<Pipeline, SpecError> {
    load_str(Path::new("p.yaml"), text, &[])
}

fn err(text: &str) -> String {
    load(text).expect_err("expected an error").to_string()
}

#[test]
fn base_pipeline_resolves_to_one_run() {
    let p = load(BASE).unwrap();
    assert_eq!(p.runs.len(), 1);
    assert_eq!(p.runs[0].name, "baseline");
    assert_eq!(p.runs[0].decl.class_name, "SimpleCNN");
    assert_eq!(p.runs[0].id.len(), 12);
}

#[test]
fn comments_and_key_order_do_not_change_the_id() {
    let a = load(BASE).unwrap().runs[0].id.clone();
    let reordered = BASE.replace(
        "  epochs: 2\n  batch_size: 32\n",
        "  batch_size: 32 # comment\n  epochs: 2\n",
    );
    assert_eq!(load(&reordered).unwrap().runs[0].id, a);
    let changed = BASE.replace("lr: 0.001", "lr: 0.01");
    assert_ne!(load(&changed).unwrap().runs[0].id, a);
}

#[test]
fn unknown_field_points_at_it_with_suggestion() {
    let e = err(&BASE.replace("  seed: 0", "  sede: 0"));
    assert!(e.contains("unknown field `sede`"), "{e}");
    assert!(e.contains("p.yaml:15:3"), "{e}");
    assert!(e.contains("did you mean `seed`?"), "{e}");
}

#[test]
fn wrong_type_names_line_and_column() {
    let e = err(&BASE.replace("epochs: 2", "epochs: two"));
    assert!(e.contains("p.yaml:11:11"), "{e}");
}

#[test]
fn zero_epochs_is_reported_at_the_field() {
    let e = err(&BASE.replace("epochs: 2", "epochs: 0"));
    assert!(e.contains("`train.epochs` must be at least 1"), "{e}");
    assert!(e.contains("p.yaml:11:11"), "{e}");
}

#[test]
fn unknown_arch_suggests_closest() {
    let e = err(&BASE.replace("arch: simple_cnn", "arch: resnet-18"));
    assert!(e.contains("p.yaml:9:9"), "{e}");
    assert!(e.contains("did you mean `resnet18`?"), "{e}");
}

#[test]
fn syntax_error_is_located() {
    let e = err(&BASE.replace(
        "  optimizer: {name: adam, lr: 0.001}",
        "  optimizer: {name: adam, lr: 0.001",
    ));
    assert!(e.contains("p.yaml:"), "{e}");
}

#[test]
fn experiments_expand_and_deduplicate() {
    let text = format!(
        "{BASE}experiments:\n  baseline: {{}}\n  no_normalization: {{data.normalize: none}}\n  lr:\n    matrix:\n      train.optimizer.lr: [0.01, 0.001]\n      train.scheduler: [{{name: step, step_size: 10, gamma: 0.5}}, {{name: constant}}]\n"
    );
    let p = load(&text).unwrap();
    let names: Vec<&str> = p.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "no_normalization",
            "lr[lr=0.01,scheduler=step]",
            "lr[lr=0.01,scheduler=constant]",
            "lr[lr=0.001,scheduler=constant]"
        ]
    );
    assert_eq!(p.runs[0].aliases, ["lr[lr=0.001,scheduler=step]"]);
    assert_eq!(
        p.matrices,
        vec![(
            "lr".to_string(),
            vec!["train.optimizer.lr".to_string(), "train.scheduler".to_string()]
        )]
    );
}

#[test]
fn run_ids_are_stable_under_reordering_experiments() {
    let a = format!("{BASE}experiments:\n  x: {{train.epochs: 3}}\n  y: {{train.epochs: 4}}\n");
    let b = format!("{BASE}experiments:\n  y: {{train.epochs: 4}}\n  x: {{train.epochs: 3}}\n");
    let pa = load(&a).unwrap();
    let pb = load(&b).unwrap();
    let find = |p: &Pipeline, n: &str| p.runs.iter().find(|r| r.name == n).unwrap().id.clone();
    assert_eq!(find(&pa, "x"), find(&pb, "x"));
    assert_eq!(find(&pa, "y"), find(&pb, "y"));
}

#[test]
fn bad_experiment_override_names_closest_path() {
    let e = err(&format!("{BASE}experiments:\n  x: {{train.optimiser.lr: 0.1}}\n"));
    assert!(e.contains("`train.optimiser.lr` is not a field"), "{e}");
    assert!(e.contains("did you mean `train.optimizer.lr`?"), "{e}");
    assert!(e.contains("p.yaml:17:3"), "{e}");
}

#[test]
fn cli_overrides_apply_to_every_run() {
    let p = load_str(
        Path::new("p.yaml"),
        BASE,
        &["train.epochs=5".into(), "data.augment=[]".into()],
    )
    .unwrap();
    assert_eq!(p.runs[0].train.epochs, 5);
    let e = load_str(Path::new("p.yaml"), BASE, &["train.epoch=5".into()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("did you mean `train.epochs`?"), "{e}");
    let e = load_str(Path::new("p.yaml"), BASE, &["train.epochs=abc".into()])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn layers_model_shape_error_points_at_layer() {
    let text = BASE.replace(
        "  arch: simple_cnn\n",
        "  layers:\n    - conv2d: {out_channels: 8, kernel: 3}\n    - linear: {out_features: 10}\n",
    );
    let e = err(&text);
    assert!(e.contains("p.yaml:11:"), "{e}");
    assert!(e.contains("add `flatten` before it"), "{e}");
}

#[test]
fn layers_model_equivalent_to_simple_cnn_has_same_params() {
    let layers = "  layers:\n".to_string()
        + &"    - conv2d: {out_channels: C, kernel: 3, padding: 1}\n    - batch_norm2d\n    - relu\n    - max_pool2d: {kernel: 2}\n"
            .repeat(3)
        + "    - dropout: {p: 0.5}\n    - flatten\n    - linear: {out_features: 10}\n";
    let mut chans = ["32", "64", "128"].into_iter();
    let mut layers_text = String::new();
    for line in layers.lines() {
        layers_text.push_str(&line.replace(
            'C',
            if line.contains("out_channels: C") {
                chans.next().unwrap()
            } else {
                "C"
            },
        ));
        layers_text.push('\n');
    }
    let p = load(&BASE.replace("  arch: simple_cnn\n", &layers_text)).unwrap();
    assert_eq!(p.runs[0].decl.param_count().unwrap(), 114_186);
}

#[test]
fn missing_file_says_so() {
    let e = super::load(Path::new("/nonexistent/x.yaml"), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot read pipeline file `/nonexistent/x.yaml`"),
        "{e}"
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let e = err(&BASE
        .replace("epochs: 2", "epochs: 0")
        .replace("batch_size: 32", "batch_size: 0"));
    assert!(
        e.contains("train.epochs") && e.contains("train.batch_size") && e.contains("2 errors"),
        "{e}"
    );
}

#[test]
fn unset_optional_fields_can_be_overridden_and_typos_inside_sections_are_caught() {
    let p = load_str(
        Path::new("p.yaml"),
        BASE,
        &["train.optimizer.weight_decay=0.01".into()],
    )
    .unwrap();
    assert_eq!(p.runs[0].train.optimizer.weight_decay, Some(0.01));
    let e = load_str(
        Path::new("p.yaml"),
        BASE,
        &["train.scheduler.step_sizee=3".into()],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("unknown field `step_sizee`") && e.contains("did you mean `train.scheduler.step_size`?"),
        "{e}"
    );
}

#[test]
fn slurm_section_is_read_and_stays_out_of_run_identity() {
    let base = load(BASE).unwrap();
    assert_eq!(base.slurm, None);
    let with = load(&format!(
        "{BASE}slurm:\n  partition: gpu\n  gres: gpu:1\n  time: 2:00:00\n  extra: [--qos=high]\n"
    ))
    .unwrap();
    let slurm = with.slurm.as_ref().unwrap();
    assert_eq!(
        slurm.sbatch_args(),
        ["--partition=gpu", "--gres=gpu:1", "--time=2:00:00", "--qos=high"]
    );
    // Where a run is computed is not what it is: same content ID, same resolved run.
    assert_eq!(with.runs, base.runs);
    let e = err(&format!("{BASE}slurm:\n  partiton: gpu\n"));
    assert!(e.contains("unknown field `partiton`"), "{e}");
    let e = err(&format!("{BASE}slurm:\n  time: 2h\n"));
    assert!(e.contains("bad slurm time limit `2h`"), "{e}");
}
