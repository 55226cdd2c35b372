//! `labpipe status` judges a run by the keys of the device it was made on: a run trained with `--device cuda`
//! is not stale when looked at from a machine without a GPU.

use crate::util::binary::{labpipe, stdout};
use crate::util::files::write;
use labpipe::cache::Store;
use labpipe::device::DeviceKind;
use labpipe::pipeline::record::RunRecord;
use labpipe::pipeline::stage::{Fingerprints, Stage, stage_keys};
use std::path::Path;

const PIPELINE: &str = "name: dev
data: {dataset: synthetic, train_size: 60, test_size: 20, val_split: 20}
model:
  layers:
    - flatten
    - linear: {out_features: 10}
train: {epochs: 1, batch_size: 20, optimizer: {name: sgd, lr: 0.01}}
";

/// Rewrite the CPU run in `out` as a CUDA run would have left it: the train, evaluate and plot stages under
/// their CUDA keys, and the record saying `cuda` with those keys.
fn as_if_trained_on_cuda(out: &Path) {
    let mut rec = RunRecord::load(out, "dev", "baseline").expect("record");
    let cuda = stage_keys(&rec.spec, DeviceKind::Cuda, &mut Fingerprints::default()).unwrap();
    let store = Store::new(out);
    for stage in [Stage::Train, Stage::Evaluate, Stage::Plot] {
        let (from, to) = (rec.keys.get(stage), cuda.get(stage));
        assert_ne!(from.key, to.key, "{stage}: the device is part of the key");
        let done = store.lookup(from, stage.files()).expect("complete on the CPU");
        let build = store.begin(to, store.lock(to).unwrap()).unwrap();
        for a in &done.manifest.artifacts {
            std::fs::copy(done.file(&a.name), build.dir().join(&a.name)).unwrap();
        }
        build.commit(0.0, stage.files()).unwrap();
        std::fs::remove_dir_all(&done.path).unwrap();
    }
    rec.device = DeviceKind::Cuda;
    rec.keys = cuda;
    rec.save(out).unwrap();
}

#[test]
fn a_run_made_on_cuda_is_not_stale_on_a_cpu_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", PIPELINE);
    let o = labpipe(
        dir,
        &["run", "p.yaml", "--out", "o", "--quiet", "--device", "cpu"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    as_if_trained_on_cuda(&dir.join("o"));

    let text = stdout(&labpipe(dir, &["status", "p.yaml", "--out", "o"]));
    assert!(text.contains("dev/baseline: done"), "{text}");
    assert!(!text.contains("stale") && !text.contains("missing"), "{text}");

    // The same run made on the CPU would be stale (trained with other keys) — status does compare keys.
    let mut rec = RunRecord::load(&dir.join("o"), "dev", "baseline").unwrap();
    rec.device = DeviceKind::Cpu;
    rec.save(&dir.join("o")).unwrap();
    let text = stdout(&labpipe(dir, &["status", "p.yaml", "--out", "o"]));
    assert!(text.contains("train stale"), "{text}");
}
