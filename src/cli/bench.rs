//! `labpipe bench`: training-step and evaluation throughput, peak memory, threads, and a pipeline's
//! data-wait share (see BENCHMARKS.md and scripts/bench.sh for the comparison with PyTorch).

use super::Exit;
use anyhow::Context;
use labpipe::bench::{self, BenchError, BenchOptions};
use std::time::Duration;

/// Options of `labpipe bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// simple_cnn, resnet18, or a pipeline file (its first run's model, batch size and optimizer; one epoch of
    /// its data path is also timed to measure the data-wait share).
    #[arg(
        long,
        default_value = "simple_cnn",
        value_name = "simple_cnn|resnet18|PIPELINE.yaml"
    )]
    model: String,
    /// Training batch size (default: SimpleCNN 128, ResNet-18 64, as the seed; a pipeline's batch_size).
    #[arg(long)]
    batch: Option<usize>,
    /// Timed steps per phase, after the warm-up steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed warm-up steps before each phase.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Evaluation batch size (default 256, or a pipeline's eval_batch_size).
    #[arg(long)]
    eval_batch: Option<usize>,
    /// Skip the data-wait epoch of a pipeline target.
    #[arg(long)]
    no_data_wait: bool,
    /// Data worker threads for the data-wait epoch (default: as `labpipe run`).
    #[arg(long)]
    workers: Option<usize>,
    /// Wait up to this many seconds for other processes to use < 10% of the CPUs before measuring.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    wait_quiet: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print the measurements as JSON.
    #[arg(long)]
    json: bool,
}

pub fn bench(args: BenchArgs) -> Result<i32, Exit> {
    let target = bench::target(&args.model).map_err(|e| Exit::BadInput(format!("error: {e}")))?;
    let opts = BenchOptions {
        batch: args.batch,
        eval_batch: args.eval_batch,
        steps: args.steps,
        warmup: args.warmup,
        device: super::device(&args.device)?,
        data_wait: !args.no_data_wait,
        workers: args.workers,
        wait_quiet: Duration::from_secs(args.wait_quiet),
    };
    let report = match bench::run(&target, &opts) {
        Ok(r) => r,
        Err(e @ BenchError::TooSmall { .. }) => return Err(Exit::BadInput(format!("error: {e}"))),
        Err(e) => return Err(Exit::Failed(e.into())),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serializing the benchmark")?
        );
    } else {
        print!("{}", bench::render_text(&report));
    }
    Ok(0)
}
