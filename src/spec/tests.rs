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

#[test]
fn names_that_would_be_paths_are_refused_where_they_are_written() {
    for (name, why) in [
        ("../../escaped", "path separator `/`"),
        ("/tmp/x", "path separator `/`"),
        ("a/b", "path separator `/`"),
        ("''", "is empty"),
        ("\"a\\nb\"", "a line break"),
        ("..", "names a directory"),
    ] {
        let e = err(&BASE.replace("name: t", &format!("name: {name}")));
        assert!(e.contains("the pipeline name") && e.contains(why), "{name}: {e}");
        assert!(e.contains("p.yaml:1:7"), "{name}: {e}");
        assert!(
            e.contains("a name may contain ASCII letters, digits"),
            "{name}: {e}"
        );
    }
    let e = err(&format!(
        "{BASE}experiments:\n  baseline: {{}}\n  \"a/b\": {{train.epochs: 3}}\n"
    ));
    assert!(
        e.contains("the experiment name `a/b` contains the path separator `/`"),
        "{e}"
    );
    assert!(e.contains("p.yaml:18:"), "{e}");
    let e = err(&format!("{BASE}experiments:\n  \"\": {{train.epochs: 3}}\n"));
    assert!(e.contains("the experiment name \"\" is empty"), "{e}");
}

#[test]
fn runs_whose_records_would_be_the_same_file_are_an_error_naming_both() {
    // Names differing only in case share a file on macOS and Windows.
    let e = err(&format!(
        "{BASE}experiments:\n  fast: {{train.epochs: 3}}\n  Fast: {{train.epochs: 4}}\n"
    ));
    assert!(e.contains("runs `fast` and `Fast` would be the same file"), "{e}");
    assert!(e.contains("runs/t/Fast.json") && e.contains("p.yaml:18:3"), "{e}");
    assert!(e.contains("experiment `fast` at p.yaml:17"), "{e}");
    // Matrix values labelled alike: two different runs with one name.
    let e = err(&format!(
        "{BASE}experiments:\n  sched:\n    matrix:\n      train.scheduler: [{{name: step, step_size: 1}}, {{name: step, step_size: 2}}]\n"
    ));
    assert!(
        e.contains("two different runs are both named `sched[scheduler=step]`"),
        "{e}"
    );
    assert!(e.contains("give the values distinct names"), "{e}");
    // Matrix values with distinct labels are distinct runs.
    load(&format!(
        "{BASE}experiments:\n  w:\n    matrix:\n      train.optimizer.name: [sgd, adam]\n      train.seed: [1]\n"
    ))
    .unwrap();
    // Distinct runs in one pipeline are fine; the same content under two names is one run.
    load(&format!(
        "{BASE}experiments:\n  a: {{train.epochs: 3}}\n  b: {{train.epochs: 3}}\n"
    ))
    .unwrap();
}

#[test]
fn two_files_of_one_call_with_the_same_name_are_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, BASE).unwrap();
    std::fs::write(&b, format!("# the same name\n{BASE}")).unwrap();
    let e = load_all(&[a.clone(), b.clone()], &[]).err().unwrap().to_string();
    assert!(e.contains("pipeline name `t` is also the name of"), "{e}");
    assert!(e.contains(&format!("{}:1", a.display())), "{e}");
    assert!(e.contains(&format!("{}:2", b.display())), "{e}");
    assert!(e.contains("runs/t/"), "{e}");
    // Names that only differ in case share the folder too.
    std::fs::write(&b, BASE.replace("name: t", "name: T")).unwrap();
    assert!(load_all(&[a.clone(), b.clone()], &[]).is_err());
    // The same file given twice is loaded once.
    assert_eq!(load_all(&[a.clone(), a.clone()], &[]).unwrap().len(), 1);
}

#[test]
fn command_line_overrides_make_a_run_of_their_own() {
    let text = format!(
        "{BASE}experiments:\n  baseline: {{}}\n  lr:\n    matrix:\n      train.optimizer.lr: [0.01]\n"
    );
    let p = load_str(
        Path::new("p.yaml"),
        &text,
        &["train.epochs=2".into(), "data.augment=[]".into()],
    )
    .unwrap();
    let names: Vec<&str> = p.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline[train.epochs=2,data.augment=none]",
            "lr[lr=0.01][train.epochs=2,data.augment=none]"
        ]
    );
    assert_eq!(p.runs[0].set, ["train.epochs=2", "data.augment=[]"]);
    assert_eq!(p.runs[0].memberships[0].name, "baseline");
    let plain = load(&text).unwrap();
    assert_eq!(plain.runs[0].name, "baseline");
    assert!(plain.runs[0].set.is_empty());
}

#[test]
fn an_unclosed_bracket_is_named_not_what_the_parser_reads_after_it() {
    let e = err(&BASE.replace(
        "data:\n  dataset: synthetic\n",
        "data: {dataset: synthetic\n  dataset: synthetic\n",
    ));
    assert!(
        e.contains("this `{` is never closed") && e.contains("p.yaml:2:7"),
        "{e}"
    );
    assert!(!e.contains("unknown variant"), "{e}");
    let e = err(&BASE.replace(
        "  optimizer: {name: adam, lr: 0.001}",
        "  optimizer: [name: adam, lr: 0.001",
    ));
    assert!(
        e.contains("this `[` is never closed") && e.contains("p.yaml:13:14"),
        "{e}"
    );
    let e = err(
        "name: t\ndata: {dataset: synthetic\nmodel:\n  arch: simple_cnn\ntrain:\n  epochs: 3\n  batch_size: 40\n  optimizer: {name: adam, lr: 0.1}\n",
    );
    assert!(
        e.contains("this `{` is never closed") && e.contains("not closed before line 3"),
        "{e}"
    );
}

#[test]
fn a_key_written_twice_is_said_plainly() {
    let e = err(&format!(
        "{BASE}experiments:\n  a: {{}}\n  b: {{train.epochs: 2}}\n  a: {{train.epochs: 4}}\n"
    ));
    assert!(
        e.contains("`a` is written twice") && e.contains("already written at line 17"),
        "{e}"
    );
    assert!(
        e.contains("p.yaml:19:3") && !e.contains("DuplicateKeyPolicy"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    let mut bytes = BASE
        .replace("arch: simple_cnn", "arch: simple_cnn # caf")
        .into_bytes();
    let at = bytes.iter().position(|&b| b == b'#').unwrap() + 5;
    bytes.insert(at, 0xE9);
    std::fs::write(&f, &bytes).unwrap();
    let e = super::load(&f, &[]).err().unwrap().to_string();
    assert!(
        e.contains("not UTF-8") && e.contains("byte 0xE9 at line 9, column 25"),
        "{e}"
    );
    assert!(e.contains(&format!("{}:9:25", f.display())), "{e}");
}

#[test]
fn a_huge_one_line_file_gives_a_short_error() {
    let text = format!(
        "name: t\ndata: {{dataset: synthetic, bogus: \"{}\"}}\n",
        "x".repeat(10 << 20)
    );
    let e = err(&text);
    assert!(e.len() < 2000, "{} bytes of error", e.len());
    assert!(e.contains("p.yaml:2:"), "{e}");
}

#[test]
fn the_report_section_is_typed_and_its_captions_name_runs() {
    let text = format!(
        "{BASE}experiments:\n  baseline: {{}}\n  fast: {{train.epochs: 3}}\nreport:\n  title: My lab\n  captions:\n    fast: Three epochs\n"
    );
    let p = load(&text).unwrap();
    let r = p.report.unwrap();
    assert_eq!(r.title.as_deref(), Some("My lab"));
    assert_eq!(r.captions["fast"], "Three epochs");
    let e = err(&text.replace("    fast: Three", "    fsat: Three"));
    assert!(
        e.contains("`report.captions` names `fsat`") && e.contains("did you mean `fast`?"),
        "{e}"
    );
    let e = err(&format!("{BASE}report:\n  titel: x\n"));
    assert!(e.contains("unknown field `titel`"), "{e}");
}

#[test]
fn the_divergence_rule_is_configurable_and_checked() {
    let p = load_str(
        Path::new("p.yaml"),
        BASE,
        &["train.divergence={factor: 4}".into()],
    )
    .unwrap();
    assert_eq!(
        p.runs[0].train.divergence,
        crate::train::config::Divergence::Bound { factor: 4.0 }
    );
    let e = err(&BASE.replace("  seed: 0", "  seed: 0\n  divergence: {factor: 0.5}"));
    assert!(
        e.contains("must be greater than 1") && e.contains("p.yaml:16:"),
        "{e}"
    );
    let off = load(&BASE.replace("  seed: 0", "  seed: 0\n  divergence: none")).unwrap();
    assert_eq!(
        off.runs[0].train.divergence,
        crate::train::config::Divergence::NonFiniteOnly
    );
    // The default leaves the run's identity as it was.
    let explicit = load(&BASE.replace("  seed: 0", "  seed: 0\n  divergence: {factor: 10}")).unwrap();
    assert_eq!(explicit.runs[0].id, load(BASE).unwrap().runs[0].id);
}

#[test]
fn duplicate_layer_names_are_refused_at_load_naming_both_lines() {
    let text = BASE.replace(
        "  arch: simple_cnn\n",
        "  layers:\n    - conv2d: {out_channels: 8, kernel: 3, padding: 1, name: conv}\n    - relu\n    - conv2d: {out_channels: 8, kernel: 3, padding: 1, name: conv}\n    - flatten\n    - linear: {out_features: 10}\n",
    );
    let e = err(&text);
    assert!(
        e.contains("layer name `conv` is used twice") && e.contains("also at line 10"),
        "{e}"
    );
    assert!(e.contains("p.yaml:12:"), "{e}");
}

const MNIST: &str = "name: t
data:
  dataset: mnist
  val_split: 5000
  normalize: {mean: [0.1307], std: [0.3081]}
model:
  arch: simple_cnn
train:
  epochs: 1
  batch_size: 64
  optimizer: {name: adam, lr: 0.001}
";

#[test]
fn the_model_input_comes_from_the_dataset() {
    let p = load(MNIST).unwrap();
    assert_eq!(p.runs[0].decl.input, vec![1, 28, 28]);
    let resnet = load(&MNIST.replace("arch: simple_cnn", "arch: resnet18")).unwrap();
    assert_eq!(resnet.runs[0].decl.input, vec![1, 28, 28]);
    let layers = MNIST.replace(
        "  arch: simple_cnn\n",
        "  layers:\n    - conv2d: {out_channels: 4, kernel: 5}\n    - flatten\n    - linear: {out_features: 10}\n",
    );
    let decl = &load(&layers).unwrap().runs[0].decl;
    assert_eq!(decl.input, vec![1, 28, 28]);
    let tensors = decl.tensors().unwrap();
    assert_eq!(tensors[0].shape, vec![4, 1, 5, 5], "in-channels from the data");
    assert_eq!(
        tensors[2].shape,
        vec![10, 4 * 24 * 24],
        "flatten size from the data"
    );
    assert_eq!(load(BASE).unwrap().runs[0].decl.input, vec![3, 32, 32]);
}

#[test]
fn fixed_normalization_needs_one_value_per_channel() {
    let e = err(&MNIST.replace("[0.1307]", "[0.1, 0.2, 0.3]"));
    assert!(
        e.contains("`data.normalize` gives 3 mean and 1 std values, but the images (1×28×28) have 1 channel"),
        "{e}"
    );
    assert!(e.contains("p.yaml:5:14"), "{e}");
    let three = BASE.replace(
        "normalize: first_image",
        "normalize: {mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}",
    );
    assert!(load(&three).is_ok());
    let e = err(&BASE.replace("normalize: first_image", "normalize: {mean: [0.5], std: [0.2]}"));
    assert!(e.contains("have 3 channels: give 3 of each"), "{e}");
}

#[test]
fn augmentations_are_checked_against_the_dataset_shape() {
    let e = err(&MNIST.replace(
        "  normalize:",
        "  augment:\n    - random_crop: {size: 32, padding: 4}\n  normalize:",
    ));
    assert!(e.contains("random_crop.size: expected 28"), "{e}");
    assert!(e.contains("p.yaml:6:7"), "{e}");
}

#[test]
fn simple_cnn_refuses_images_too_small_for_its_pools() {
    let tiny = BASE.replace(
        "  dataset: synthetic\n  train_size: 200\n  test_size: 50\n",
        "  dataset: image_folder\n  root: imgs\n  image_size: [6, 20]\n  channels: 1\n",
    );
    let e = err(&tiny);
    assert!(
        e.contains("needs at least 8×8 pixels, but the images are 1×6×20"),
        "{e}"
    );
    assert!(e.contains("p.yaml:10:9"), "{e}");
    let ok = tiny.replace("arch: simple_cnn", "arch: resnet18");
    assert_eq!(load(&ok).unwrap().runs[0].decl.input, vec![1, 6, 20]);
}

#[test]
fn an_unknown_input_shape_is_reported_at_the_data_section() {
    let e = err(&BASE.replace(
        "  dataset: synthetic\n  train_size: 200\n  test_size: 50\n",
        "  dataset: image_folder\n  root: imgs\n",
    ));
    assert!(
        e.contains("the model's input shape cannot be known from `data`"),
        "{e}"
    );
    assert!(e.contains("p.yaml:2:1") || e.contains("p.yaml:3:"), "{e}");
}

#[test]
fn the_model_class_count_must_be_the_datasets() {
    let e = err(&BASE.replace("arch: simple_cnn", "arch: simple_cnn\n  num_classes: 100"));
    assert!(
        e.contains("the model predicts 100 classes (`model.num_classes`) but the dataset `synthetic` has 10"),
        "{e}"
    );
    assert!(e.contains("p.yaml:10:16"), "{e}");
    assert!(e.contains("set `model.num_classes: 10`"), "{e}");

    let coarse = BASE.replace(
        "  dataset: synthetic\n  train_size: 200\n  test_size: 50\n",
        "  dataset: cifar100\n  labels: coarse\n",
    );
    let e = err(&coarse.replace("arch: simple_cnn", "arch: resnet18"));
    assert!(
        e.contains(
            "predicts 10 classes (`model.num_classes`, 10 when not written) but the dataset `cifar100` has 20"
        ),
        "{e}"
    );
    let fixed = coarse.replace("arch: simple_cnn", "arch: simple_cnn\n  num_classes: 20");
    assert_eq!(
        load(&fixed).unwrap().runs[0].decl.output_shape().unwrap(),
        vec![20]
    );

    let layers = BASE.replace(
        "  arch: simple_cnn\n",
        "  layers:\n    - flatten\n    - linear: {out_features: 64}\n    - relu\n    - linear: {out_features: 5}\n",
    );
    let e = err(&layers);
    assert!(
        e.contains(
            "predicts 5 classes (the last linear's `out_features`) but the dataset `synthetic` has 10"
        ),
        "{e}"
    );
    assert!(e.contains("p.yaml:13:30"), "{e}");
}

#[test]
fn an_image_folder_class_count_unknown_before_loading_does_not_fail_the_spec() {
    let folder = BASE.replace(
        "  dataset: synthetic\n  train_size: 200\n  test_size: 50\n",
        "  dataset: image_folder\n  root: imgs\n  image_size: 32\n",
    );
    let p = load(&folder.replace("arch: simple_cnn", "arch: simple_cnn\n  num_classes: 3")).unwrap();
    assert_eq!(p.runs[0].decl.output_shape().unwrap(), vec![3]);
}

#[test]
fn a_colour_for_greyscale_images_is_refused_where_it_is_written() {
    let e = err(&MNIST.replace(
        "  normalize:",
        "  augment:\n    - random_crop: {size: 28, padding: 2}\n    - random_rotation: {degrees: 10, fill: [255, 0, 0]}\n  normalize:",
    ));
    assert!(
        e.contains(
            "random_rotation.fill: three values [r, g, b] are for RGB images, but the images are greyscale"
        ),
        "{e}"
    );
    assert!(e.contains("p.yaml:7:7"), "{e}");
}
