//! `labpipe eval`: a checkpoint's test loss and accuracy, as the seed prints them, plus per-class results.

use super::Exit;
use labpipe::model::checkpoint::size_mb;
use labpipe::pipeline::{Executor, Options};
use labpipe::spec::RunSpec;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub fn eval(
    run: &RunSpec,
    checkpoint: Option<&Path>,
    out: &Path,
    device: &candle_core::Device,
    json: bool,
) -> Result<i32, Exit> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let opts = Options {
        out: out.to_path_buf(),
        device: device.clone(),
        workers,
        quiet: true,
        interrupt: Arc::new(AtomicBool::new(false)),
    };
    let mut exec = Executor::new(&opts);
    let (path, m) = exec
        .evaluate_run(run, checkpoint)
        .map_err(|e| Exit::Failed(e.into()))?;
    let mb = size_mb(&path).map_err(|e| Exit::Failed(e.into()))?;
    if json {
        let v = serde_json::json!({"checkpoint": path, "size_mb": mb, "metrics": m});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    println!("Model loaded from {} ({mb:.5} MB)", path.display());
    println!("Test loss: {:.3}, Test accuracy: {:.3}", m.loss, m.accuracy);
    println!();
    println!("{:<14} {:>8}", "class", "accuracy");
    for (name, acc) in m.class_names.iter().zip(&m.per_class_accuracy) {
        println!("{name:<14} {acc:>8.3}");
    }
    println!();
    println!("confusion matrix (rows: true class, columns: predicted)");
    let width = m
        .confusion
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .max()
        .unwrap_or(1)
        .max(3);
    for (name, row) in m.class_names.iter().zip(&m.confusion) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>width$}")).collect();
        println!("{name:<14} {}", cells.join(" "));
    }
    Ok(0)
}
