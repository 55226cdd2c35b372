//! `labpipe plan` / `run --dry-run`: prints what would run, and why (the logic is `pipeline::plan`).

use super::Exit;
use labpipe::pipeline::plan::{StagePlan, plan_run};
use labpipe::pipeline::stage::Fingerprints;
use labpipe::spec::Pipeline;
use std::path::Path;

/// `pipelines` hold only the selected runs (see `super::select`).
pub fn plan(pipelines: &[Pipeline], out: &Path, device: &candle_core::Device) -> Result<i32, Exit> {
    let device = labpipe::device::kind(device);
    let mut fps = Fingerprints::default();
    let (mut images_to_train, mut macs_to_train) = (0u128, 0u128);
    for p in pipelines {
        println!("{} ({})", p.name, p.path.display());
        for run in &p.runs {
            let plan = plan_run(run, out, device, &mut fps)
                .map_err(|e| Exit::BadInput(format!("error: run `{}`: {e}", run.name)))?;
            println!("  {}", run.name);
            for (stage, state) in &plan.stages {
                let state = match state {
                    StagePlan::Cached => "cached".to_string(),
                    StagePlan::WillRun(why) => format!("will run: {why}"),
                };
                println!("    {:<9}{state}", stage.name());
            }
            images_to_train += plan.images_to_train;
            macs_to_train += plan.macs_to_train;
        }
    }
    if images_to_train > 0 {
        let macs = macs_to_train as f64;
        let compute = if macs >= 1e11 {
            format!("{:.2} TMAC", macs / 1e12)
        } else {
            format!("{:.2} GMAC", macs / 1e9)
        };
        println!(
            "work to do: {images_to_train} training images (epochs × images), about {compute} of training compute"
        );
    } else {
        println!("everything is cached: nothing to train");
    }
    Ok(0)
}
