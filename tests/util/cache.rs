//! Reading an out directory's cache: stage entries, unfinished builds, checkpoints, and whether two out
//! directories trained the same thing bit for bit.

use super::files::read_json;
use std::path::{Path, PathBuf};

/// Directories of `stage` in the cache: complete entries and `.partial-*` builds, sorted.
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

/// Epochs the unfinished train build has checkpointed (`resume.json`); `None` while there is none yet, so
/// it can be polled while labpipe writes it.
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
const TIMING_FIELDS: [&str; 3] = ["seconds", "data_wait_seconds", "images_per_second"];

/// `history.json` with the timing fields removed, re-serialized: the bytes that must match.
fn deterministic_history(path: &Path) -> String {
    let mut v = read_json(path);
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
    read_json(&dir.join("manifest.json"))["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}
