//! scripts/bench.sh gives labpipe and PyTorch the same number of compute threads. Run with stand-ins for
//! `cargo`, the release binary and PyTorch that record what they were given, so no build or torch is needed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Stands in for `target/release/labpipe bench --json`: reports the rayon threads it was given, as labpipe
/// does (rayon reads RAYON_NUM_THREADS), and logs them.
const LABPIPE: &str = r#"#!/usr/bin/env bash
threads=${STUB_RAYON:-${RAYON_NUM_THREADS:-unset}}
echo "labpipe RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-unset}" >> "$STUB_LOG"
[[ $threads == unset ]] && threads=$(nproc)
r='{"median_img_per_s": 10.0, "min_img_per_s": 9.0, "max_img_per_s": 11.0, "foreign_cpu_share": 0.0}'
cat <<JSON
{"train": $r, "eval": $r, "machine": {"load_before": [0.1, 0.1, 0.1], "load_after": [0.2, 0.2, 0.2],
 "cpu": "stub", "cores": 2}, "peak_rss_train_bytes": 1048576,
 "threads": {"rayon": $threads, "available_parallelism": 2, "candle_elementwise": 1},
 "data_wait": {"share": 0.01, "epoch_seconds": 1.0, "batches": 4, "batch": 128, "workers": 2,
 "augment": ["random_crop"], "img_per_s": 500.0}}
JSON
"#;

/// Stands in for a Python with torch: `scripts/bench_torch.py` writes its JSON with the `--threads` it got;
/// everything else (the summary) is real Python.
const PYTHON: &str = r#"#!/usr/bin/env bash
if [[ $1 == -c ]]; then exit 0; fi
if [[ $1 == scripts/bench_torch.py ]]; then
  shift
  while [[ $# -gt 0 ]]; do
    case $1 in
      --threads) threads=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --only) only=$2; shift 2 ;;
      *) shift ;;
    esac
  done
  echo "torch --threads $threads" >> "$STUB_LOG"
  r='{"median_img_per_s": 20.0, "min_img_per_s": 19.0, "max_img_per_s": 21.0, "foreign_cpu_share": 0.0, "ru_maxrss_bytes": 2097152}'
  keys=""
  for k in ${only//,/ }; do keys="$keys\"$k\": $r, "; done
  echo "{$keys\"env\": {\"threads\": $threads, \"torch\": \"stub\", \"load_before\": [0.1], \"load_after\": [0.1]}}" > "$out"
  exit 0
fi
exec python3 "$@"
"#;

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs scripts/bench.sh with the stand-ins and `env`; returns its output and the stand-ins' log.
fn bench(env: &[(&str, &str)]) -> (Output, String) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("bin")).unwrap();
    std::fs::create_dir_all(t.join("target/release")).unwrap();
    executable(&t.join("bin/cargo"), "#!/usr/bin/env bash\nexit 0\n");
    executable(&t.join("target/release/labpipe"), LABPIPE);
    executable(&t.join("python"), PYTHON);
    let log = t.join("stub.log");
    let path = format!(
        "{}:{}",
        t.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh"))
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", t.join("target"))
        .env("BENCH_OUT", t.join("out"))
        .env("PYTHON", t.join("python"))
        .env("BENCH_STEPS", "1")
        .env("BENCH_WAIT_QUIET", "0")
        .env("STUB_LOG", &log)
        .env_remove("RAYON_NUM_THREADS")
        .env_remove("BENCH_THREADS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn bench_pins_labpipe_and_pytorch_to_the_same_thread_count() {
    for (threads, want) in [(None, "2"), (Some("3"), "3")] {
        let env: Vec<(&str, &str)> = threads.iter().map(|t| ("BENCH_THREADS", *t)).collect();
        let (out, log) = bench(&env);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        // SimpleCNN, ResNet-18 and the quickstart for labpipe; SimpleCNN and ResNet-18 for PyTorch.
        assert_eq!(
            log.matches(&format!("labpipe RAYON_NUM_THREADS={want}\n"))
                .count(),
            3,
            "{log}"
        );
        assert_eq!(
            log.matches(&format!("torch --threads {want}\n")).count(),
            2,
            "{log}"
        );
        assert!(
            stdout.contains(&format!("Threads: labpipe rayon {want}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("PyTorch {want} (torch stub)")),
            "{stdout}"
        );
    }
    // A side that ran with other threads than asked is refused rather than tabulated.
    let (out, _) = bench(&[("BENCH_THREADS", "2"), ("STUB_RAYON", "5")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("different thread counts"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("| SimpleCNN"));
}
