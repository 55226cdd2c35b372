//! What the tests of several processes share: a pipeline of five small runs, its results computed once by
//! one process (the reference), the stage builds a log reports, and bit-for-bit comparison of out dirs.

use super::binary::{labpipe, stderr};
use super::cache::stage_dirs;
use super::pipeline::sized_pipeline;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const STAGES: [&str; 5] = ["dataset", "model", "train", "evaluate", "plot"];

/// Five runs (two datasets, one model, five trainings) of a second or so each: long enough that processes
/// started together meet, short enough for a 2-core CI.
pub fn runs_pipeline() -> String {
    sized_pipeline(
        "scale",
        3,
        super::pipeline::LONG_TRAIN_SIZE,
        "experiments:
  baseline: {}
  no_normalization: {data.normalize: none}
  no_augmentation: {data.augment: []}
  lr:
    matrix:
      train.optimizer.lr: [0.003, 0.001]
",
    )
}

/// The out directory of one `labpipe run` of [`runs_pipeline`], computed once per test binary.
pub fn reference() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scale-reference-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.yaml"), runs_pipeline()).unwrap();
        let o = labpipe(&dir, &["run", "p.yaml", "--out", "out"]);
        assert!(o.status.success(), "{}", stderr(&o));
        dir.join("out")
    })
}

/// The (stage, key prefix) of every `ran in` line of a log: each stage this log's process built.
pub fn stage_builds(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" ran in ")?;
            let stage = before.split_whitespace().last()?.to_string();
            let key = after.rsplit_once('(')?.1.trim_end_matches(')').to_string();
            Some((stage, key))
        })
        .collect()
}

/// Every complete cache entry of `out` was built by exactly one of the processes whose `logs` are given.
pub fn assert_each_stage_built_once(out: &Path, logs: &[String]) {
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for log in logs {
        for build in stage_builds(log) {
            *counts.entry(build).or_default() += 1;
        }
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "built more than once: {twice:?}");
    let built: BTreeSet<(String, String)> = counts.into_keys().collect();
    let cached: BTreeSet<(String, String)> = STAGES
        .iter()
        .flat_map(|s| {
            stage_dirs(out, s)
                .into_iter()
                .map(move |d| (s.to_string(), d.chars().take(8).collect()))
        })
        .collect();
    assert_eq!(built, cached, "stages built (left) against cache entries (right)");
}

/// `actual` holds the same cache entries as `expected`, with the same checkpoint and metrics bytes.
pub fn assert_same_outs(expected: &Path, actual: &Path) {
    for stage in STAGES {
        assert_eq!(
            stage_dirs(actual, stage),
            stage_dirs(expected, stage),
            "{stage} keys"
        );
    }
    let same = |stage: &str, file: &str| {
        for key in stage_dirs(expected, stage) {
            let read =
                |out: &Path| std::fs::read(out.join("cache").join(stage).join(&key).join(file)).unwrap();
            assert!(read(expected) == read(actual), "{stage}/{key}/{file} differs");
        }
    };
    same("train", "model.safetensors");
    same("train", "last.safetensors");
    same("evaluate", "metrics.json");
}
