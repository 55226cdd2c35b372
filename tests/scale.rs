//! More than one run at a time: several `labpipe run` processes on one out directory divide the runs and
//! build each stage once; `--jobs N` runs them as child processes; `--run` selects exactly; and
//! `--executor slurm` with stand-in sbatch/scontrol programs (the real cluster is in `slurm_cluster`).

use crate::util::binary::{command, labpipe, spawn, stderr, stdout};
use crate::util::files::write;
use crate::util::scale::{
    assert_each_stage_built_once, assert_same_outs, reference, runs_pipeline, stage_builds,
};
use std::path::Path;

#[test]
fn three_processes_divide_the_runs_and_build_each_stage_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &runs_pipeline());
    let out = dir.join("out");
    let logs: Vec<_> = (0..3).map(|i| dir.join(format!("{i}.log"))).collect();
    let mut children: Vec<_> = logs
        .iter()
        .map(|log| spawn(dir, &["run", "p.yaml", "--out", "out"], log))
        .collect();
    for (child, log) in children.iter_mut().zip(&logs) {
        let status = child.wait().unwrap();
        let text = std::fs::read_to_string(log).unwrap();
        assert!(status.success(), "{}:\n{text}", log.display());
    }
    let texts: Vec<String> = logs.iter().map(|l| std::fs::read_to_string(l).unwrap()).collect();
    assert_each_stage_built_once(&out, &texts);
    // The work was divided: more than one process trained.
    let trainers = texts
        .iter()
        .filter(|t| stage_builds(t).iter().any(|(stage, _)| stage == "train"))
        .count();
    assert!(
        trainers >= 2,
        "one process trained every run:\n{}",
        texts.join("\n----\n")
    );
    assert_same_outs(reference(), &out);
}

#[test]
fn jobs_2_runs_children_and_matches_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &runs_pipeline());
    let o = labpipe(dir, &["run", "p.yaml", "--out", "out", "--jobs", "2"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("5 run(s), 2 at a time on cpu"), "{err}");
    // Every line of a child starts with its run, and each child says how it ended.
    assert!(err.contains("[baseline] baseline: train    ran in"), "{err}");
    assert!(
        err.contains("[lr[lr=0.003]] lr[lr=0.003]: evaluate ran in"),
        "{err}"
    );
    assert!(err.contains("[no_augmentation] done after"), "{err}");
    assert_each_stage_built_once(&dir.join("out"), std::slice::from_ref(&err));
    assert_same_outs(reference(), &dir.join("out"));
    // Everything is cached now: a second `--jobs 2` trains nothing.
    let o = labpipe(dir, &["run", "p.yaml", "--out", "out", "--jobs", "2"]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains("ran in"), "{}", stderr(&o));
}

#[test]
fn bad_jobs_devices_and_flag_mixes_are_input_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &runs_pipeline());
    let refused = |args: &[&str], expected: &str| {
        let mut all = vec!["run", "p.yaml", "--out", "out"];
        all.extend_from_slice(args);
        let o = labpipe(dir, &all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    };
    refused(&["--jobs", "0"], "must be at least 1");
    refused(&["--jobs", "two"], "`two` is not a whole number");
    refused(
        &["--jobs", "2", "--device", "cuda:0,cuda:0"],
        "cuda:0 is listed twice",
    );
    refused(&["--jobs", "2", "--device", "cpu,cuda:0"], "`cpu` is not one");
    if !labpipe::device::cuda_compiled() {
        refused(
            &["--jobs", "2", "--device", "cuda:0,cuda:1"],
            "`cuda:0` requested, but this labpipe was built without CUDA support",
        );
        refused(
            &["--device", "cuda:all"],
            "`cuda:all` requested, but this labpipe was built without CUDA",
        );
    }
    // A GPU no machine has is missing whether or not CUDA is compiled in.
    refused(&["--jobs", "2", "--device", "cuda:0,cuda:4096"], "cuda:");
    refused(&["--wait"], "--wait applies only with `--executor slurm`");
    refused(
        &["--then-report"],
        "--then-report applies only with `--executor slurm`",
    );
    refused(&["--partition", "gpu"], "the Slurm options");
    refused(
        &["--executor", "slurm", "--jobs", "2"],
        "--jobs is for `--executor local`",
    );
    refused(
        &["--executor", "slurm", "--device", "cuda:0,cuda:1"],
        "a device list is for `--jobs`",
    );
    refused(
        &["--executor", "slurm", "--sbatch-arg=--array=1-2"],
        "labpipe sets --array itself",
    );
    refused(&["--run", "lr*"], "no pipeline has a run named exactly `lr*`");
    assert!(!dir.join("out").exists(), "an input error computed something");
}

#[test]
fn run_selects_exact_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One epoch is enough here; written in the file, since `-S` would make runs of their own names.
    let one_epoch = runs_pipeline().replace("epochs: 3", "epochs: 1");
    assert_ne!(one_epoch, runs_pipeline());
    write(dir, "p.yaml", &one_epoch);
    let o = labpipe(
        dir,
        &[
            "run",
            "p.yaml",
            "--out",
            "out",
            "--run",
            "lr[lr=0.003]",
            "--run",
            "baseline",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut records = crate::util::files::files_under(&dir.join("out/runs/scale"));
    records.retain(|f| f.ends_with(".json"));
    assert_eq!(records, ["baseline.json", "lr_lr=0.003_.json"], "{}", stderr(&o));
}

/// A directory holding stand-in `sbatch` and `scontrol` programs, to put first on PATH.
fn fake_slurm(dir: &Path, sbatch: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in [
        ("sbatch", sbatch),
        // No job is known: nothing earlier is still queued.
        (
            "scontrol",
            "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
        ),
    ] {
        let p = bin.join(name);
        // Written by a `cp` child, never through a descriptor of this process, which other test threads'
        // forks could inherit (executing the program would then fail with "text file busy").
        let draft = bin.join(format!(".{name}.draft"));
        std::fs::write(&draft, format!("#!/bin/bash\n{body}\n")).unwrap();
        assert!(
            std::process::Command::new("cp")
                .arg(&draft)
                .arg(&p)
                .status()
                .unwrap()
                .success()
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn with_path(dir: &Path, bin: &Path, args: &[&str]) -> std::process::Output {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    command(dir, args).env("PATH", path).output().unwrap()
}

#[test]
fn slurm_submits_only_the_runs_that_need_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &runs_pipeline());
    let got = dir.join("got.sbatch");
    let bin = fake_slurm(dir, &format!("cp \"$2\" '{}'; echo 4242", got.display()));
    // One run done here first: the array holds the other four.
    let o = labpipe(
        dir,
        &["run", "p.yaml", "--out", "out", "--run", "baseline", "--quiet"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let args = [
        "run",
        "p.yaml",
        "--out",
        "out",
        "--executor",
        "slurm",
        "--partition",
        "cpu",
        "--time",
        "30",
        "--device",
        "cpu",
    ];
    let o = with_path(dir, &bin, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("submitted job array 4242: 4 run(s), script "),
        "{text}"
    );
    assert!(text.contains("  4242_0  no_normalization  (log "), "{text}");
    let script = std::fs::read_to_string(&got).unwrap();
    let submission = std::fs::read_dir(dir.join("out/slurm"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(submission.join("array.sbatch")).unwrap(),
        script,
        "the script is kept under out/slurm/"
    );
    assert!(script.contains("#SBATCH --array=0-3\n"), "{script}");
    assert!(
        script.contains("#SBATCH --partition=cpu\n#SBATCH --time=30\n"),
        "{script}"
    );
    assert!(
        !script.contains("RUN[4]") && !script.contains("'baseline'"),
        "{script}"
    );
    assert!(script.contains("RUN[0]='no_normalization'"), "{script}");
    assert!(
        script.contains("--run \"${RUN[$i]}\" '--device' 'cpu'"),
        "{script}"
    );
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_labpipe")).unwrap();
    assert!(
        script.contains(&format!("exec '{}' run", exe.display())),
        "{script}"
    );
}

#[test]
fn slurm_section_flags_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "p.yaml",
        &format!(
            "{}slurm:\n  partition: gpu\n  mem: 4G\n  extra: [--qos=low]\n",
            runs_pipeline()
        ),
    );
    let got = dir.join("got.sbatch");
    let bin = fake_slurm(dir, &format!("cp \"$2\" '{}'; echo 7", got.display()));
    let o = with_path(
        dir,
        &bin,
        &[
            "run",
            "p.yaml",
            "--out",
            "out",
            "--executor",
            "slurm",
            "--partition",
            "cpu",
            "--sbatch-arg=--qos=high",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let script = std::fs::read_to_string(&got).unwrap();
    assert!(
        script.contains("#SBATCH --partition=cpu\n#SBATCH --mem=4G\n#SBATCH --qos=low\n#SBATCH --qos=high\n"),
        "{script}"
    );
    assert!(script.contains("#SBATCH --array=0-4\n"), "{script}");

    // sbatch saying no: its own words come back, and the exit status is 1.
    let refusal = "sbatch: error: invalid partition specified: gpu\nsbatch: error: Batch job submission failed: Invalid partition name specified";
    let bin = fake_slurm(dir, &format!("echo '{refusal}' >&2; exit 1"));
    let o = with_path(
        dir,
        &bin,
        &["run", "p.yaml", "--out", "out", "--executor", "slurm"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("sbatch refused"), "{}", stderr(&o));
    assert!(stderr(&o).contains(refusal), "{}", stderr(&o));

    // No sbatch at all.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = command(dir, &["run", "p.yaml", "--out", "out", "--executor", "slurm"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`sbatch` was not found: install Slurm's client tools"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ctrl_c_stops_every_child_and_each_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let two_runs = format!(
        "{}experiments:\n  baseline: {{}}\n  slow: {{train.optimizer.lr: 0.003}}\n",
        crate::util::pipeline::long_pipeline("two", 6)
    );
    write(dir, "p.yaml", &two_runs);
    let out = dir.join("out");
    let log = dir.join("jobs.log");
    let mut parent = spawn(dir, &["run", "p.yaml", "--out", "out", "--jobs", "2"], &log);
    // Both children have checkpointed an epoch: both trainings are under way.
    let checkpointed = || {
        crate::util::cache::stage_dirs(&out, "train")
            .iter()
            .filter(|d| out.join("cache/train").join(d).join("resume.json").is_file())
            .count()
    };
    crate::util::binary::wait_for(120, "both children to checkpoint an epoch", || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        checkpointed() == 2
    });
    crate::util::binary::signal(&parent, libc::SIGINT);
    let status = parent.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("[baseline] interrupted after"), "{text}");
    assert!(text.contains("[slow] interrupted after"), "{text}");
    assert_eq!(checkpointed(), 2, "{text}");

    let o = labpipe(dir, &["run", "p.yaml", "--out", "out", "--jobs", "2"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("[baseline]   baseline: resuming after epoch"),
        "{err}"
    );
    assert!(err.contains("[slow]   slow: resuming after epoch"), "{err}");
    // Bit for bit what one uninterrupted process gives.
    let whole = tempfile::tempdir().unwrap();
    write(whole.path(), "p.yaml", &two_runs);
    let o = labpipe(whole.path(), &["run", "p.yaml", "--out", "out", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_outs(&whole.path().join("out"), &out);
}
