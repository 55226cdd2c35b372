//! The out directory's layout. Every path labpipe writes under `out/` is made here, from names turned into
//! single safe path components, so no pipeline or run name can lead outside it.

use std::path::{Path, PathBuf};

/// `name` as one path component: ASCII letters, digits and `-_.=,` kept, anything else `_`. Never empty,
/// never `.` or `..`, never a separator: the result cannot leave the directory it is joined to.
pub fn path_component(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        safe.replace('.', "_") + "_"
    } else {
        safe
    }
}

/// An out directory (`--out`, default `out/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutDir {
    root: PathBuf,
}

impl OutDir {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        OutDir {
            root: root.to_path_buf(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `runs/`: one folder of run records per pipeline.
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// `runs/<pipeline>/`.
    pub fn pipeline_runs(&self, pipeline: &str) -> PathBuf {
        self.runs().join(path_component(pipeline))
    }

    /// `runs/<pipeline>/<run>.json`: a run's record.
    pub fn run_record(&self, pipeline: &str, run: &str) -> PathBuf {
        self.pipeline_runs(pipeline)
            .join(format!("{}.json", path_component(run)))
    }

    /// `runs/<pipeline>/<run>/`: a run's files at stable paths (its history as CSV).
    pub fn run_files(&self, pipeline: &str, run: &str) -> PathBuf {
        self.pipeline_runs(pipeline).join(path_component(run))
    }

    /// `slurm/`: one folder per Slurm submission (its batch scripts, `submission.json`, the jobs' logs).
    pub fn slurm(&self) -> PathBuf {
        self.root.join("slurm")
    }

    /// `report/`: where the report job of `run --executor slurm --then-report` writes report.md.
    pub fn report(&self) -> PathBuf {
        self.root.join("report")
    }

    /// `tensorboard/<pipeline>/<run>/`: a run's TensorBoard event files (`tensorboard --logdir out/tensorboard`).
    pub fn tensorboard(&self, pipeline: &str, run: &str) -> PathBuf {
        self.root
            .join("tensorboard")
            .join(path_component(pipeline))
            .join(path_component(run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    #[test]
    fn no_name_leaves_the_out_directory() {
        let out = OutDir::new(Path::new("out"));
        for name in [
            "../../escaped",
            "/tmp/x",
            "a/b",
            "..",
            ".",
            "",
            "a\nb",
            "C:\\x",
            "lr[lr=0.01]",
        ] {
            for p in [
                out.run_record(name, name),
                out.run_files(name, name),
                out.tensorboard(name, name),
            ] {
                let rel = p.strip_prefix("out").unwrap();
                assert!(
                    rel.components().all(|c| matches!(c, Component::Normal(_))),
                    "{name:?} → {}",
                    p.display()
                );
                assert_eq!(rel.components().count(), 3, "{}", p.display());
            }
        }
        assert_eq!(
            path_component("lr[lr=0.01,scheduler=step]"),
            "lr_lr=0.01,scheduler=step_"
        );
        assert_eq!(path_component("baseline"), "baseline");
    }
}
