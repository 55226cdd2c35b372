//! What labpipe says about what it is doing: a run that is training now, which stages a run ran, and no
//! device notice from a command that computes nothing.

use crate::util::binary::{labpipe, signal, spawn, stderr, stdout, wait_for};
use crate::util::cache::{complete_dir, train_partial};
use crate::util::files::write;
use crate::util::pipeline::{long_pipeline, pipeline};

#[test]
fn status_says_training_while_a_run_trains_and_interrupted_once_it_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &long_pipeline("busy", 50));
    let out = dir.join("out");
    let mut run = spawn(dir, &["run", "p.yaml"], &dir.join("run.log"));
    wait_for(120, "training to start", || train_partial(&out).is_some());
    let s = stdout(&labpipe(dir, &["status", "p.yaml"]));
    let json = stdout(&labpipe(dir, &["status", "p.yaml", "--json"]));
    signal(&run, libc::SIGKILL);
    run.wait().unwrap();
    assert!(s.contains("busy/baseline: training |"), "{s}");
    assert!(json.contains("\"status\": \"training\""), "{json}");
    let s = stdout(&labpipe(dir, &["status", "p.yaml"]));
    assert!(s.contains("busy/baseline: interrupted |"), "{s}");
}

#[test]
fn run_says_which_stages_ran_when_training_was_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("again", 1, ""));
    let o = labpipe(dir, &["run", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("up to date"), "{}", stderr(&o));
    std::fs::remove_dir_all(complete_dir(&dir.join("out"), "evaluate")).unwrap();
    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("baseline: training was in the cache; ran evaluate\n"),
        "{err}"
    );
    assert!(
        !err.contains("nothing trained") && !err.contains("up to date"),
        "{err}"
    );
    let o = labpipe(dir, &["run", "p.yaml"]);
    assert!(
        stderr(&o).contains("baseline: up to date, nothing ran (every stage was in the cache)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plan_prints_no_device_notice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("quiet", 1, ""));
    for args in [
        &["plan", "p.yaml", "--device", "cpu"][..],
        &["plan", "p.yaml"],
        &["run", "--dry-run", "p.yaml"],
    ] {
        let o = labpipe(dir, args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
        assert!(stdout(&o).contains("will run"), "{}", stdout(&o));
    }
}

/// Pipeline files with the mistakes whose messages used to mislead: each error names the real problem and
/// its place, and stays short.
#[test]
fn bad_files_get_plain_located_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = pipeline("m", 1, "");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "unclosed.yaml",
            good.replace("dataset: synthetic\n", "dataset: {synthetic\n")
                .into_bytes(),
            vec!["this `{` is never closed", "unclosed.yaml:3:12"],
        ),
        (
            "dup.yaml",
            format!("{good}experiments:\n  a: {{}}\n  b: {{train.epochs: 2}}\n  a: {{train.epochs: 3}}\n")
                .into_bytes(),
            vec!["`a` is written twice", "already written at line"],
        ),
        (
            "latin1.yaml",
            good.replace("name: m", "name: m # caf\u{e9}")
                .replace('\u{e9}', "\u{1}")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 1 { 0xE9 } else { b })
                .collect(),
            vec!["not UTF-8", "latin1.yaml:1:"],
        ),
        (
            "empty_name.yaml",
            good.replace("name: m", "name: ''").into_bytes(),
            vec!["the pipeline name \"\" is empty", "empty_name.yaml:1:7"],
        ),
        (
            "newline_name.yaml",
            good.replace("name: m", "name: \"a\\nb\"").into_bytes(),
            vec!["a line break", "newline_name.yaml:1:7"],
        ),
        (
            "huge.yaml",
            good.replace(
                "name: m",
                &format!("name: m\nbogus: \"{}\"", "x".repeat(10 << 20)),
            )
            .into_bytes(),
            vec!["huge.yaml:2:"],
        ),
        (
            "layers.yaml",
            good.replace("    - relu\n", "    - relu: {name: '0'}\n")
                .into_bytes(),
            vec!["layer name `0` is used twice", "layers.yaml:"],
        ),
    ];
    for (file, bytes, needles) in cases {
        std::fs::write(dir.join(file), &bytes).unwrap();
        let o = labpipe(dir, &["plan", file]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert!(err.len() < 3000, "{file}: {} bytes of error output", err.len());
        for n in needles {
            assert!(err.contains(n), "{file}: expected `{n}` in:\n{err}");
        }
    }
}

/// An undefined name in a template is named in the error.
#[test]
fn a_templates_undefined_value_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("m", 1, ""));
    write(
        dir,
        "bad.md.j2",
        "ok\n{{ pipelines.m.runs[0].no_such_field.x }}\n",
    );
    let o = labpipe(dir, &["report", "p.yaml", "--template", "bad.md.j2"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.md.j2` line 2") && err.contains("no_such_field` is undefined"),
        "{err}"
    );
}

/// Zero-byte CIFAR-10 files are called empty, naming the file.
#[test]
fn zero_byte_data_files_are_called_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("cifar/cifar-10-batches-bin");
    std::fs::create_dir_all(&data).unwrap();
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(data.join(f), b"").unwrap();
    }
    let names: String = (0..10).map(|i| format!("c{i}\n")).collect();
    std::fs::write(data.join("batches.meta.txt"), names).unwrap();
    write(
        dir,
        "p.yaml",
        "name: z\ndata: {dataset: cifar10, root: cifar, val_split: 100}\nmodel:\n  layers:\n    - flatten\n    - linear: {out_features: 10}\ntrain: {epochs: 1, batch_size: 10, optimizer: {name: sgd, lr: 0.01}}\n",
    );
    let o = labpipe(dir, &["run", "-q", "p.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("data_batch_1.bin is empty (0 bytes)"), "{err}");
    assert!(!err.contains("validation images out of 0"), "{err}");
}
