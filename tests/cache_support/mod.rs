//! Shared by the `cache_*` end-to-end tests: run the real `labpipe` binary on tiny generated pipelines,
//! watch its cache directory, signal it, and compare what two out directories hold.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Conv + BatchNorm (running stats, `num_batches_tracked`) + dropout (its RNG): every piece of state a
/// resume must restore.
pub const MODEL: &str = "model:
  layers:
    - conv2d: {out_channels: 8, kernel: 3, padding: 1}
    - batch_norm2d
    - relu
    - max_pool2d: {kernel: 4}
    - flatten
    - dropout: {p: 0.3}
    - linear: {out_features: 10}
";

/// A synthetic pipeline of `epochs` epochs, 5 batches each; `extra_train` is appended to `train:`.
pub fn pipeline(name: &str, epochs: usize, extra_train: &str) -> String {
    sized_pipeline(name, epochs, 240, extra_train)
}

/// Images in [`long_pipeline`]: 50 batches an epoch, long enough (a few tenths of a second) to signal a
/// process reliably in the middle of an epoch.
pub const LONG_TRAIN_SIZE: usize = 2040;

/// [`pipeline`] with 50 batches an epoch.
pub fn long_pipeline(name: &str, epochs: usize) -> String {
    sized_pipeline(name, epochs, LONG_TRAIN_SIZE, "")
}

/// A synthetic pipeline with `train_size` images (40 of them for validation), batches of 40.
pub fn sized_pipeline(name: &str, epochs: usize, train_size: usize, extra_train: &str) -> String {
    format!(
        "name: {name}
data:
  dataset: synthetic
  train_size: {train_size}
  test_size: 60
  val_split: 40
  normalize: first_image
  augment:
    - random_crop: {{size: 32, padding: 4}}
    - random_horizontal_flip: {{p: 0.5}}
{MODEL}train:
  epochs: {epochs}
  batch_size: 40
  optimizer: {{name: adam, lr: 0.01}}
  scheduler: {{name: step, step_size: 1, gamma: 0.5}}
  seed: 1
{extra_train}"
    )
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

pub fn labpipe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labpipe"))
}

/// Run to completion in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    labpipe()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running labpipe")
}

/// Start in `dir` with stdout and stderr going to `log` (read it while the process runs).
pub fn spawn(dir: &Path, args: &[&str], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    labpipe()
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("starting labpipe")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Poll `ready` every 5 ms; panic with `what` after `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Send `signal` (libc::SIGKILL, libc::SIGINT) to a child.
pub fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped yet.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill({}, {signal}) failed", child.id());
}

/// Directories of `stage` in the cache: complete entries and `.partial-*` builds.
pub fn stage_dirs(out: &Path, stage: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("cache").join(stage))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every `.partial-*` directory under the cache, as `stage/.partial-key`.
pub fn partials(out: &Path) -> Vec<String> {
    ["dataset", "model", "train", "evaluate", "plot"]
        .iter()
        .flat_map(|s| {
            stage_dirs(out, s)
                .into_iter()
                .filter(|d| d.starts_with(".partial-"))
                .map(move |d| format!("{s}/{d}"))
        })
        .collect()
}

/// The one complete directory of `stage`.
pub fn complete_dir(out: &Path, stage: &str) -> PathBuf {
    let done: Vec<String> = stage_dirs(out, stage)
        .into_iter()
        .filter(|d| !d.starts_with(".partial-"))
        .collect();
    assert_eq!(
        done.len(),
        1,
        "expected one complete {stage} entry, found {done:?}"
    );
    out.join("cache").join(stage).join(&done[0])
}

/// The train stage's unfinished build, if there is one.
pub fn train_partial(out: &Path) -> Option<PathBuf> {
    stage_dirs(out, "train")
        .into_iter()
        .find(|d| d.starts_with(".partial-"))
        .map(|d| out.join("cache/train").join(d))
}

/// Epochs the unfinished train build has checkpointed (`resume.json`).
pub fn epochs_done(out: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(train_partial(out)?.join("resume.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["epochs_done"].as_u64().map(|n| n as usize)
}

/// The epoch a checkpoint's safetensors header says it holds (labpipe keeps its metadata as one sorted JSON
/// string under `__metadata__.labpipe`).
pub fn checkpoint_epoch(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta: serde_json::Value = serde_json::from_str(
        header["__metadata__"][labpipe::model::checkpoint::METADATA_KEY]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    meta["labpipe.epoch"].as_str().unwrap().parse().unwrap()
}

/// Wall-clock fields: the only ones allowed to differ between a resumed and an uninterrupted run.
pub const TIMING_FIELDS: [&str; 3] = ["seconds", "data_wait_seconds", "images_per_second"];

/// `history.json` with the timing fields removed, re-serialized: the bytes that must match.
pub fn deterministic_history(path: &Path) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for e in v["epochs"].as_array_mut().unwrap() {
        for f in TIMING_FIELDS {
            e.as_object_mut().unwrap().remove(f);
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

/// Assert that two out directories trained the same thing bit for bit: the same train key, identical
/// checkpoint bytes, identical history apart from wall-clock fields, identical test metrics.
pub fn assert_same_results(expected: &Path, actual: &Path) {
    let (a, b) = (complete_dir(expected, "train"), complete_dir(actual, "train"));
    assert_eq!(a.file_name(), b.file_name(), "different train keys");
    for f in ["model.safetensors", "last.safetensors"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(
            x == y,
            "{f} differs from the uninterrupted run's ({} vs {} bytes)",
            x.len(),
            y.len()
        );
    }
    assert_eq!(
        deterministic_history(&b.join("history.json")),
        deterministic_history(&a.join("history.json")),
        "history.json differs (timing fields excluded)"
    );
    let (ea, eb) = (
        complete_dir(expected, "evaluate"),
        complete_dir(actual, "evaluate"),
    );
    assert_eq!(
        std::fs::read(eb.join("metrics.json")).unwrap(),
        std::fs::read(ea.join("metrics.json")).unwrap(),
        "metrics.json differs"
    );
}

/// Names of the artifacts a manifest lists.
pub fn manifest_files(dir: &Path) -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}
