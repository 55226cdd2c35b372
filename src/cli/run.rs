//! `labpipe run` in this process: the runs one after another, then what became of them.

use super::results::{self, ResultRow, Results};
use super::{Exit, up_to_date_line};
use labpipe::pipeline::record::RunStatus;
use labpipe::pipeline::{Executor, Options};
use labpipe::spec::{Pipeline, RunSpec};

/// Run `chosen` (per pipeline of `loaded`) here and report them as `results` asks; the exit code.
pub fn run_here(
    loaded: &[Pipeline],
    chosen: &[Vec<&RunSpec>],
    opts: &Options,
    results: Results,
) -> Result<i32, Exit> {
    let mut exec = Executor::new(opts);
    let mut failed = Vec::new();
    let mut interrupted = false;
    let mut rows: Vec<ResultRow> = Vec::new();
    for (p, runs) in loaded.iter().zip(chosen) {
        let outcomes = exec.run_pipeline_each(p, runs, |o| {
            if results == Results::Json && o.status != RunStatus::Interrupted {
                results::print_json_line(&ResultRow::of_outcome(&opts.out, &p.name, o));
            }
        });
        for o in outcomes {
            match &o.status {
                RunStatus::Done if !opts.quiet => {
                    if let Some(line) = up_to_date_line(&o.stages) {
                        eprintln!("{}: {line}", o.name);
                    }
                }
                RunStatus::Done => {}
                RunStatus::Diverged { message } => failed.push(format!("{} / {}: {message}", p.name, o.name)),
                RunStatus::Failed { stage, message } => failed.push(format!(
                    "{} / {}: {stage} stage failed: {message}",
                    p.name, o.name
                )),
                RunStatus::Interrupted => interrupted = true,
            }
            if results == Results::Table {
                rows.push(ResultRow::of_outcome(&opts.out, &p.name, &o));
            }
        }
        if interrupted {
            break;
        }
    }
    if !rows.is_empty() {
        results::print_table(&rows, opts.quiet);
    }
    Ok(exit_code(interrupted, &failed))
}

/// The exit code of a `run` call, saying on stderr why it is not 0: 130 when interrupted (what was built is
/// kept), 1 when some runs did not complete (each listed).
pub fn exit_code(interrupted: bool, failed: &[String]) -> i32 {
    if interrupted {
        eprintln!(
            "interrupted: completed stages are kept; `labpipe run` again continues from the last epoch"
        );
        return 130;
    }
    if !failed.is_empty() {
        eprintln!("\n{} run(s) did not complete:", failed.len());
        for f in failed {
            eprintln!("  - {f}");
        }
        return 1;
    }
    0
}
