//! The evaluation batch size is in no key on the CPU because it changes nothing: validation and test loss
//! (which select checkpoints and stop early) are bit for bit the same for any batch size.

use crate::util::binary::{labpipe, stderr};
use crate::util::cache::complete_dir;
use crate::util::files::{read_json, write};
use crate::util::pipeline::pipeline;

#[test]
fn validation_and_test_loss_are_bit_identical_for_eval_batch_sizes_7_64_and_256() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Early stopping on val_loss and best_val_loss selection: both read the validation loss.
    // The batch size is written in the file: `-S` would make runs of other names, whose checkpoints' metadata
    // (the run name) differs.
    let mut seen = Vec::new();
    for batch in [7, 64, 256] {
        write(
            dir,
            "p.yaml",
            &pipeline(
                "eval",
                3,
                &format!(
                    "  select: best_val_loss\n  early_stopping: {{metric: val_loss, patience: 5}}\n  eval_batch_size: {batch}\n"
                ),
            ),
        );
        let out = format!("out{batch}");
        let o = labpipe(dir, &["run", "p.yaml", "-q", "--out", &out]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = dir.join(&out);
        let train = complete_dir(&out, "train");
        let history = read_json(&train.join("history.json"));
        let val: Vec<u64> = history["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["val_loss"].as_f64().unwrap().to_bits())
            .collect();
        assert_eq!(val.len(), 3);
        let metrics = read_json(&complete_dir(&out, "evaluate").join("metrics.json"));
        let test = metrics["loss"].as_f64().unwrap().to_bits();
        let weights = std::fs::read(train.join("model.safetensors")).unwrap();
        seen.push((batch, train.file_name().unwrap().to_owned(), val, test, weights));
    }
    let (_, key, val, test, weights) = &seen[0];
    for (batch, k, v, t, w) in &seen[1..] {
        assert_eq!(k, key, "eval batch size {batch}: another train key");
        assert_eq!(v, val, "eval batch size {batch}: validation loss bits differ");
        assert_eq!(t, test, "eval batch size {batch}: test loss bits differ");
        assert!(
            w == weights,
            "eval batch size {batch}: another checkpoint was selected"
        );
    }
}
