//! Command definitions and dispatch.

mod bench;
mod clean;
mod completions;
mod eval;
mod examples;
mod init;
mod launch;
mod plan;
mod report;
mod results;
mod run;
mod select;
mod slurm_status;
mod status;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use labpipe::pipeline::record::RunRecord;
use labpipe::pipeline::stage::Stage;
use labpipe::pipeline::{Options, StageOutcome};
use labpipe::spec::{self, Pipeline, RunSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser)]
#[command(name = "labpipe", version, about = "Declarative, reproducible deep-learning lab pipelines", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which runs a command works on; every command that takes pipeline files selects through [`select::select`].
#[derive(clap::Args, Clone, Default)]
struct Select {
    /// Override a field for every run: `-S train.epochs=5`, `-S 'data.augment=[]'`.
    #[arg(short = 'S', long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Only runs whose name matches this glob (`*` and `?`), e.g. `--only 'lr*'`.
    #[arg(long, value_name = "GLOB")]
    only: Option<String>,
    /// Sweep a field over values, as a `matrix:` axis of every experiment: `--sweep train.optimizer.lr=0.1,0.01`
    /// (values are YAML); values with commas as a list, `--sweep 'train.scheduler=[{name: step, step_size: 10}, {name: constant}]'`.
    #[arg(long = "sweep", value_name = "PATH=V1,V2")]
    sweep: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Train and evaluate every run of the pipelines (stages already in the cache are not run again).
    #[command(after_help = examples::RUN)]
    Run {
        /// Pipeline files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
        /// Output directory (cache and run records).
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// auto, cpu, cuda or cuda:N; with --jobs also GPU lists: cuda:0,cuda:1 or cuda:all (a run per GPU).
        #[arg(long, default_value = "auto")]
        device: String,
        /// Data worker threads (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Print what would run and why, run nothing.
        #[arg(long)]
        dry_run: bool,
        /// No progress output (the results table is still printed: it is the command's result).
        #[arg(long, short)]
        quiet: bool,
        /// One JSON object per finished run on stdout (JSON lines) instead of the results table; progress and
        /// messages stay on stderr. With --dry-run, the JSON of `plan --json`.
        #[arg(long)]
        json: bool,
        /// Print no results (for the child processes of --jobs: their parent reports every run).
        #[arg(long, hide = true)]
        no_results: bool,
        #[command(flatten)]
        launch: launch::LaunchArgs,
    },
    /// Print what `run` would do for each run and stage, and why.
    #[command(after_help = examples::PLAN)]
    Plan {
        /// Pipeline files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// auto, cpu, cuda or cuda:N (part of the cache key).
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print one JSON array of runs (their stages, keys, and why each would run) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the model summary (FLOPs, params, torchsummary table) of a pipeline's run.
    #[command(after_help = examples::SUMMARY)]
    Summary {
        /// Pipeline file.
        pipeline: PathBuf,
        /// Which run (default: the first).
        #[arg(long)]
        run: Option<String>,
        #[command(flatten)]
        select: Select,
        /// Print JSON with every FLOP convention.
        #[arg(long)]
        json: bool,
    },
    /// One line per run: the state of each stage, epochs, best validation and test accuracy.
    #[command(after_help = examples::STATUS)]
    Status {
        /// Pipeline files (default: every pipeline with results in the out directory).
        pipelines: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Render the lab report from the results in the out directory.
    #[command(after_help = examples::REPORT)]
    Report {
        /// Pipelines to report on (default: every pipeline with results).
        pipelines: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
        /// Template (default: report_templates/lab2.md.j2 when present, else the built-in one).
        #[arg(long)]
        template: Option<PathBuf>,
        /// Output directory (the results: cache and run records).
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Write DIR/report.md and DIR/figures/ instead of printing Markdown.
        #[arg(long = "to", value_name = "DIR")]
        to: Option<PathBuf>,
        /// Exit 1 when FILE differs from what the results give.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
        /// md or html.
        #[arg(long, default_value = "md")]
        format: String,
    },
    /// Evaluate a run's chosen (or a given) checkpoint on the test set.
    #[command(after_help = examples::EVAL)]
    Eval {
        /// Pipeline file.
        pipeline: PathBuf,
        /// Which run (default: the first).
        #[arg(long)]
        run: Option<String>,
        /// A checkpoint to evaluate instead of the run's chosen one.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        select: Select,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Training and evaluation images/s, peak memory and a pipeline's data-wait share.
    #[command(after_help = examples::BENCH)]
    Bench(bench::BenchArgs),
    /// Remove cache entries no current run refers to.
    #[command(after_help = examples::CLEAN)]
    Clean {
        /// Pipelines whose runs are kept (default: every run record in the out directory).
        pipelines: Vec<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// List what would be removed, with sizes.
        #[arg(long)]
        dry_run: bool,
        /// Empty the whole cache.
        #[arg(long)]
        all: bool,
    },
    /// Print the JSON Schema of a pipeline file (for editors), or with --markdown the field reference.
    #[command(after_help = examples::SCHEMA)]
    Schema {
        /// Print docs/pipeline-reference.md: every section and field with its type, default and an example.
        #[arg(long)]
        markdown: bool,
    },
    /// Write a commented starter pipeline (and with --templates the report templates) to DIR.
    #[command(after_help = examples::INIT)]
    Init(init::InitArgs),
    /// Print a shell completion script.
    #[command(after_help = examples::COMPLETIONS)]
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Input errors exit with 2, run failures with 1.
#[derive(Debug)]
pub enum Exit {
    BadInput(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Exit {
    fn from(e: anyhow::Error) -> Self {
        Exit::Failed(e)
    }
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(Exit::BadInput(msg)) => {
            eprintln!("{msg}");
            2
        }
        Err(Exit::Failed(e)) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn load(path: &Path, set: &[String]) -> Result<Pipeline, Exit> {
    spec::load(path, set).map_err(|e| Exit::BadInput(e.to_string()))
}

/// `*` and `?` glob match.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &name.chars().collect::<Vec<_>>(),
    )
}

fn find_run<'a>(p: &'a Pipeline, name: &Option<String>) -> Result<&'a RunSpec, Exit> {
    match name {
        None => p
            .runs
            .first()
            .ok_or_else(|| Exit::BadInput("error: the pipeline has no runs".into())),
        Some(n) => p
            .runs
            .iter()
            .find(|r| &r.name == n || r.aliases.contains(n) || r.memberships.iter().any(|m| &m.name == n))
            .ok_or_else(|| {
                let names: Vec<&str> = p.runs.iter().map(|r| r.name.as_str()).collect();
                Exit::BadInput(format!(
                    "error: `{}` has no run `{n}`\n  = runs: {}",
                    p.path.display(),
                    names.join(", ")
                ))
            }),
    }
}

fn device(request: &str) -> Result<candle_core::Device, Exit> {
    let sel = choose_device(request)?;
    if let Some(notice) = &sel.notice {
        eprintln!("{notice}");
    }
    Ok(sel.device)
}

/// The device for a command that computes nothing on it (`plan`): no notice about where training would run.
fn device_silently(request: &str) -> Result<candle_core::Device, Exit> {
    Ok(choose_device(request)?.device)
}

fn choose_device(request: &str) -> Result<labpipe::device::Selection, Exit> {
    let parsed: labpipe::device::DeviceRequest = request
        .parse()
        .map_err(|e| Exit::BadInput(format!("error: {e}")))?;
    labpipe::device::choose(parsed).map_err(|e| Exit::BadInput(format!("error: {e}")))
}

fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // A second Ctrl-C kills at once; the first lets the current batch finish and the checkpoint stand.
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current batch, then stopping (Ctrl-C again to abort now)");
    });
    flag
}

fn dispatch(cli: Cli) -> Result<i32, Exit> {
    match cli.command {
        Command::Run {
            pipelines,
            select,
            out,
            device: dev,
            workers,
            dry_run,
            quiet,
            json,
            no_results,
            launch: launch_args,
        } => {
            let loaded = select::select(&pipelines, &select)?;
            if dry_run {
                return plan::plan(&loaded, &out, &device_silently(&dev)?, json);
            }
            let results = match (no_results, json) {
                (true, _) => results::Results::Off,
                (false, true) => results::Results::Json,
                (false, false) => results::Results::Table,
            };
            let chosen = launch::selection(&loaded, &select.only, &launch_args.runs)?;
            let request = launch::RunRequest {
                loaded: &loaded,
                chosen: &chosen,
                overrides: &select.set,
                sweeps: &select.sweep,
                out: &out,
                device: &dev,
                workers,
                quiet,
                results,
            };
            if let Some(code) = launch::launch(&request, &launch_args)? {
                return Ok(code);
            }
            let opts = Options {
                out,
                device: device(&dev)?,
                workers: workers
                    .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)),
                quiet,
                interrupt: interrupt_flag(),
            };
            run::run_here(&loaded, &chosen, &opts, results)
        }
        Command::Plan {
            pipelines,
            select,
            out,
            device: dev,
            json,
        } => {
            let loaded = select::select(&pipelines, &select)?;
            plan::plan(&loaded, &out, &device_silently(&dev)?, json)
        }
        Command::Summary {
            pipeline,
            run,
            select,
            json,
        } => {
            let p = select::select(std::slice::from_ref(&pipeline), &select)?.remove(0);
            let r = find_run(&p, &run)?;
            let s =
                labpipe::summary::summarize(&r.decl).map_err(|e| Exit::BadInput(format!("error: {e}")))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).context("serializing the summary")?
                );
            } else {
                print!("{}", labpipe::summary::render_seed_text(&s));
            }
            Ok(0)
        }
        Command::Status {
            pipelines,
            select,
            out,
            json,
        } => {
            select::set_needs_files(&pipelines, &select)?;
            let loaded = select::select(&pipelines, &select)?;
            status::status(&loaded, &select, &out, json)
        }
        Command::Report {
            pipelines,
            select,
            template,
            out,
            to,
            check,
            format,
        } => {
            select::set_needs_files(&pipelines, &select)?;
            let loaded = select::select(&pipelines, &select)?;
            report::report(
                &loaded,
                &select,
                template.as_deref(),
                &out,
                to.as_deref(),
                check.as_deref(),
                &format,
            )
        }
        Command::Eval {
            pipeline,
            run,
            checkpoint,
            select,
            out,
            device: dev,
            json,
        } => {
            let p = select::select(std::slice::from_ref(&pipeline), &select)?.remove(0);
            let r = find_run(&p, &run)?;
            eval::eval(r, checkpoint.as_deref(), &out, &device(&dev)?, json)
        }
        Command::Bench(args) => bench::bench(args),
        Command::Clean {
            pipelines,
            out,
            dry_run,
            all,
        } => {
            let loaded = pipelines
                .iter()
                .map(|p| load(p, &[]))
                .collect::<Result<Vec<_>, _>>()?;
            clean::clean(&loaded, &out, dry_run, all)
        }
        Command::Schema { markdown } => {
            if markdown {
                print!(
                    "{}",
                    spec::schema::markdown::reference(&spec::schema::pipeline_schema())
                );
            } else {
                print!("{}", spec::schema::pipeline_schema_text());
            }
            Ok(0)
        }
        Command::Init(args) => init::init(&args),
        Command::Completions { shell } => Ok(completions::completions(shell)),
    }
}

/// What `run` says about a finished run whose training came from the cache; None when training ran.
fn up_to_date_line(stages: &[(Stage, StageOutcome)]) -> Option<String> {
    let ran: Vec<&str> = stages
        .iter()
        .filter(|(_, o)| matches!(o, StageOutcome::Ran(_)))
        .map(|(s, _)| s.name())
        .collect();
    if ran.contains(&Stage::Train.name()) {
        return None;
    }
    Some(if ran.is_empty() {
        "up to date, nothing ran (every stage was in the cache)".to_string()
    } else {
        format!("training was in the cache; ran {}", ran.join(", "))
    })
}

/// Records of the given pipelines' current runs (all records when no pipeline is given).
pub fn records_for(pipelines: &[Pipeline], out: &Path) -> Vec<RunRecord> {
    select::selected_records(pipelines, &Select::default(), out)
}

pub fn anyhow_msg(msg: String) -> anyhow::Error {
    anyhow!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("lr*", "lr[lr=0.01,scheduler=step]"));
        assert!(glob_match("b?seline", "baseline"));
        assert!(!glob_match("lr", "lr2"));
    }

    #[test]
    fn the_up_to_date_line_says_what_ran() {
        use StageOutcome::{Cached, Ran};
        let stages = |train, evaluate| {
            vec![
                (Stage::Dataset, Cached),
                (Stage::Model, Cached),
                (Stage::Train, train),
                (Stage::Evaluate, evaluate),
                (Stage::Plot, Cached),
            ]
        };
        assert_eq!(
            up_to_date_line(&stages(Cached, Cached)).unwrap(),
            "up to date, nothing ran (every stage was in the cache)"
        );
        let line = up_to_date_line(&stages(Cached, Ran(0.1))).unwrap();
        assert_eq!(line, "training was in the cache; ran evaluate");
        assert_eq!(up_to_date_line(&stages(Ran(1.0), Ran(0.1))), None);
    }
}
