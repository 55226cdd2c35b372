//! `labpipe run` beyond one run at a time in this process: `--run NAME` (exact selection), `--jobs N` (child
//! processes here) and `--executor slurm` (a job array), printed for the user.

use super::Exit;
use super::results::{self, ResultRow, Results};
use labpipe::device::{DeviceRequest, DeviceSet, possible_kinds};
use labpipe::launch::array::Outcome;
use labpipe::launch::follow::runs_in_queue;
use labpipe::launch::local::THREADS_VAR;
use labpipe::launch::{ArrayRequest, LaunchError, LocalJobs, QueueState, RunInQueue, RunTask};
use labpipe::launch::{prepare_data, runs_needing_work};
use labpipe::slurm::{Element, SlurmOptions, SlurmTools, SubmitError, TaskState, WaitOptions};
use labpipe::spec::{Pipeline, RunSpec};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where `labpipe run` computes its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Here: one run after another, or `--jobs N` at once.
    Local,
    /// As one Slurm job array, one element per run that needs work.
    Slurm,
}

/// The `run` flags of this file.
#[derive(clap::Args, Clone)]
pub struct LaunchArgs {
    /// Only the run with exactly this name (repeatable); unlike --only, `*` and `?` are not wildcards.
    #[arg(long = "run", value_name = "NAME")]
    pub runs: Vec<String>,
    /// Compute N runs at once, each in its own labpipe process, CPU threads split between them (default:
    /// one; with a GPU list in --device, one run per GPU).
    #[arg(long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// local (this machine) or slurm (submit one job array; needs a file system the nodes share).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: ExecutorKind,
    /// With --executor slurm: wait until the array has ended; exit 1 if any run failed.
    #[arg(long)]
    pub wait: bool,
    /// With --executor slurm: submit a report job (into OUT/report/) that starts once the array has ended.
    #[arg(long)]
    pub then_report: bool,
    #[command(flatten)]
    pub slurm: SlurmOptions,
}

/// `--sweep ITEM` for each sweep: the children select the same runs as this process.
fn sweep_args(sweeps: &[String]) -> impl Iterator<Item = String> + '_ {
    sweeps.iter().flat_map(|s| ["--sweep".to_string(), s.clone()])
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (how many runs to compute at once)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// The runs each pipeline computes: all that selection (`-S`, `--only`) left in `loaded`, and with `--run`,
/// only those named exactly (a run's name or one of its aliases). A `--run` name no pipeline has is an error.
pub fn selection<'a>(
    loaded: &'a [Pipeline],
    only: &Option<String>,
    exact: &[String],
) -> Result<Vec<Vec<&'a RunSpec>>, Exit> {
    if exact.is_empty() {
        return Ok(loaded.iter().map(|p| p.runs.iter().collect()).collect());
    }
    let named = |r: &RunSpec, n: &String| &r.name == n || r.aliases.contains(n);
    for n in exact {
        if !loaded.iter().any(|p| p.runs.iter().any(|r| named(r, n))) {
            let names: Vec<&str> = loaded
                .iter()
                .flat_map(|p| p.runs.iter().map(|r| r.name.as_str()))
                .collect();
            return Err(Exit::BadInput(format!(
                "error: no pipeline has a run named exactly `{n}` (--run)\n  = runs: {}",
                names.join(", ")
            )));
        }
    }
    let chosen: Vec<Vec<&RunSpec>> = loaded
        .iter()
        .map(|p| {
            p.runs
                .iter()
                .filter(|r| exact.iter().any(|n| named(r, n)))
                .collect()
        })
        .collect();
    if chosen.iter().all(Vec::is_empty) {
        return Err(Exit::BadInput(format!(
            "error: no run named by --run matches `--only {}`",
            only.as_deref().unwrap_or("")
        )));
    }
    Ok(chosen)
}

/// What `run` was asked, for the launchers.
pub struct RunRequest<'a> {
    pub loaded: &'a [Pipeline],
    pub chosen: &'a [Vec<&'a RunSpec>],
    pub overrides: &'a [String],
    /// `--sweep` items: every child loads the same runs, so each passes them on.
    pub sweeps: &'a [String],
    pub out: &'a Path,
    pub device: &'a str,
    pub workers: Option<usize>,
    pub quiet: bool,
    /// How the finished runs are reported on stdout.
    pub results: Results,
}

/// Runs the request with `--jobs` or on Slurm and returns the exit code; `None` when neither was asked
/// for (the caller runs the runs itself, one after another).
pub fn launch(req: &RunRequest, args: &LaunchArgs) -> Result<Option<i32>, Exit> {
    let set: DeviceSet = req
        .device
        .parse()
        .map_err(|e| Exit::BadInput(format!("error: {e}")))?;
    let slurm_flags = args.slurm != SlurmOptions::default();
    match args.executor {
        ExecutorKind::Local => {
            let refuse = |flag: &str| {
                Err(Exit::BadInput(format!(
                    "error: {flag} applies only with `--executor slurm`"
                )))
            };
            if args.wait {
                return refuse("--wait");
            }
            if args.then_report {
                return refuse("--then-report");
            }
            if slurm_flags {
                return refuse(
                    "the Slurm options (--partition, --gres, --time, --cpus-per-task, --mem, --account, --sbatch-arg)",
                );
            }
            if args.jobs.is_none() && matches!(set, DeviceSet::One(_)) {
                return Ok(None);
            }
            local(req, args, &set).map(Some)
        }
        ExecutorKind::Slurm => {
            if args.jobs.is_some() {
                return Err(Exit::BadInput(
                    "error: --jobs is for `--executor local`; on Slurm every run is its own array element"
                        .into(),
                ));
            }
            let DeviceSet::One(request) = set else {
                return Err(Exit::BadInput(
                    "error: a device list is for `--jobs` on this machine; on Slurm each element takes \
                     `--device cuda` and its GPU from --gres (e.g. --gres gpu:1)"
                        .into(),
                ));
            };
            slurm(req, args, request).map(Some)
        }
    }
}

fn tasks_of(req: &RunRequest) -> Vec<RunTask> {
    req.loaded
        .iter()
        .zip(req.chosen)
        .flat_map(|(p, runs)| {
            runs.iter().map(|r| RunTask {
                pipeline: p.path.clone(),
                run: r.name.clone(),
            })
        })
        .collect()
}

fn local(req: &RunRequest, args: &LaunchArgs, set: &DeviceSet) -> Result<i32, Exit> {
    let devices = set.resolve().map_err(|e| Exit::BadInput(format!("error: {e}")))?;
    let tasks = tasks_of(req);
    prepare_data(req.chosen.iter().flatten().copied(), !req.quiet)
        .map_err(|e| Exit::Failed(anyhow::anyhow!(e)))?;
    let jobs = args.jobs.unwrap_or_else(|| set.default_jobs(&devices));
    let at_once = jobs.min(tasks.len()).max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    // Each child gets its share of the cores, unless the user sized rayon's pool already.
    let per_child = (cores / at_once).max(1);
    let threads = std::env::var_os(THREADS_VAR).is_none().then_some(per_child);
    let mut run_args = vec![
        "--workers".to_string(),
        req.workers.unwrap_or(per_child).to_string(),
    ];
    if req.quiet {
        run_args.push("--quiet".into());
    }
    run_args.extend(sweep_args(req.sweeps));
    // This process reports every run once they end; the children's own report would be relayed line by line.
    run_args.push("--no-results".into());
    let long_labels = req.chosen.iter().filter(|r| !r.is_empty()).count() > 1;
    let labpipe = std::env::current_exe()
        .map_err(|e| Exit::Failed(anyhow::anyhow!("cannot find the labpipe executable: {e}")))?;
    let jobs = LocalJobs {
        labpipe,
        out: req.out.to_path_buf(),
        overrides: req.overrides.to_vec(),
        run_args,
        tasks,
        devices,
        jobs,
        threads,
        long_labels,
    };
    if !req.quiet {
        let threads = match threads {
            Some(n) => format!("{n} CPU thread(s) each"),
            None => format!("{THREADS_VAR} as set"),
        };
        eprintln!(
            "labpipe: {} run(s), {at_once} at a time on {}, {threads}; each line starts with its run",
            jobs.tasks.len(),
            jobs.devices.join(", ")
        );
    }
    let interrupts = Arc::new(AtomicUsize::new(0));
    let counter = interrupts.clone();
    let _ = ctrlc::set_handler(move || {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!(
                "\ninterrupt: each run finishes its current batch and keeps its checkpoint (Ctrl-C again to stop them at once)"
            );
        }
    });
    let quiet = req.quiet;
    let row_of = |task: &RunTask, seconds: f64| {
        let pipeline = req.loaded.iter().find(|p| p.path == task.pipeline);
        pipeline.map(|p| ResultRow::of_record(req.out, &p.name, &task.run, seconds))
    };
    let ends = jobs.run(&interrupts, |end| {
        if req.results == Results::Json
            && !end.end.is_interrupted()
            && let Some(row) = row_of(&end.task, end.seconds)
        {
            results::print_json_line(&row);
        }
        if !quiet {
            eprintln!(
                "[{}] {} after {:.1}s{}",
                jobs.label(&end.task),
                end.end,
                end.seconds,
                end.device
                    .as_ref()
                    .map(|d| format!(" on {d}"))
                    .unwrap_or_default()
            );
        }
    });
    if req.results == Results::Table {
        let rows: Vec<ResultRow> = ends
            .iter()
            .filter(|e| !e.end.is_interrupted())
            .filter_map(|e| row_of(&e.task, e.seconds))
            .collect();
        if !rows.is_empty() {
            results::print_table(&rows, req.quiet);
        }
    }
    let interrupted = ends.iter().any(|e| e.end.is_interrupted());
    let failed: Vec<String> = ends
        .iter()
        .filter(|e| !e.end.is_success())
        .map(|e| format!("{}: {}", jobs.label(&e.task), e.end))
        .collect();
    Ok(super::run::exit_code(interrupted, &failed))
}

/// The `slurm:` section of the pipelines (they must agree), then the flags over it.
fn slurm_options(loaded: &[Pipeline], flags: &SlurmOptions) -> Result<SlurmOptions, Exit> {
    let mut sections = loaded.iter().filter_map(|p| p.slurm.as_ref().map(|s| (p, s)));
    let file = match sections.next() {
        Some((first, options)) => {
            if let Some((other, _)) = sections.find(|(_, s)| *s != options) {
                return Err(Exit::BadInput(format!(
                    "error: `{}` and `{}` ask Slurm for different things in their `slurm:` sections; \
                     submit them separately, or set the options with flags",
                    first.path.display(),
                    other.path.display()
                )));
            }
            options.clone()
        }
        None => SlurmOptions::default(),
    };
    Ok(file.overridden_by(flags))
}

fn failed(e: impl Into<anyhow::Error>) -> Exit {
    Exit::Failed(e.into())
}

fn slurm(req: &RunRequest, args: &LaunchArgs, device: DeviceRequest) -> Result<i32, Exit> {
    if req.results == Results::Json {
        return Err(Exit::BadInput(
            "error: `run --json` reports runs as they finish in this process; with `--executor slurm` they \
             finish in the queue: follow them with `labpipe status --json`"
                .into(),
        ));
    }
    let options = slurm_options(req.loaded, &args.slurm)?;
    options
        .validate()
        .map_err(|e| Exit::BadInput(format!("error: {e}")))?;
    prepare_data(req.chosen.iter().flatten().copied(), !req.quiet).map_err(failed)?;
    let selected: Vec<(&Pipeline, Vec<&RunSpec>)> = req
        .loaded
        .iter()
        .zip(req.chosen)
        .map(|(p, runs)| (p, runs.clone()))
        .collect();
    let tasks = runs_needing_work(&selected, req.out, &possible_kinds(device)).map_err(failed)?;
    if tasks.is_empty() {
        println!("nothing to submit: every selected run is done (`labpipe status` shows them)");
        return Ok(0);
    }
    let labpipe = std::env::current_exe()
        .map_err(|e| failed(anyhow::anyhow!("cannot find the labpipe executable: {e}")))?;
    let mut run_args = vec!["--device".to_string(), req.device.to_string()];
    if let Some(w) = req.workers {
        run_args.extend(["--workers".to_string(), w.to_string()]);
    }
    if req.quiet {
        run_args.push("--quiet".into());
    }
    run_args.extend(sweep_args(req.sweeps));
    let out = std::path::absolute(req.out).map_err(failed)?;
    let request = ArrayRequest {
        labpipe,
        out: out.clone(),
        overrides: req.overrides.to_vec(),
        run_args,
        tasks,
        options,
        job_name: format!(
            "labpipe-{}",
            req.loaded.first().map(|p| p.name.as_str()).unwrap_or("runs")
        ),
        report: args.then_report.then(|| {
            req.loaded
                .iter()
                .map(|p| std::path::absolute(&p.path).unwrap_or_else(|_| p.path.clone()))
                .collect()
        }),
    };
    let tools = SlurmTools::from_path();
    let submitted = match request.submit(&tools) {
        Ok(Outcome::Submitted(s)) => s,
        Ok(Outcome::AllQueued(queued)) => {
            println!("nothing to submit: every run that needs work is queued or running already");
            for (task, job) in &queued {
                println!("  {} (job {job})", task.run);
            }
            return Ok(0);
        }
        Err(LaunchError::Script(e)) => return Err(Exit::BadInput(format!("error: {e}"))),
        Err(LaunchError::Submit(SubmitError::Script(e))) => {
            return Err(Exit::BadInput(format!("error: {e}")));
        }
        Err(e) => return Err(failed(e)),
    };
    let array = &submitted.array;
    println!(
        "submitted job array {}: {} run(s), script {}",
        array.id,
        submitted.tasks.len(),
        array.script.display()
    );
    for (i, task) in submitted.tasks.iter().enumerate() {
        println!(
            "  {}_{i}  {}  (log {})",
            array.id,
            task.run,
            array.log_path(Some(i as u32)).display()
        );
    }
    for (task, job) in &submitted.already_queued {
        println!(
            "  {}: left out, still in the queue as part of job {job}",
            task.run
        );
    }
    if let (Some(report), Some(dir)) = (&submitted.report, &submitted.report_out) {
        println!(
            "submitted report job {} (after the array, whatever its outcome): {}",
            report.id,
            dir.join("report.md").display()
        );
    }
    if !args.wait {
        println!("`labpipe status --out {}` follows the runs", req.out.display());
        return Ok(0);
    }
    wait(&tools, &submitted, req.quiet)
}

/// `--wait`: polls until the array (and the report job) has left the queue, then says how each run ended.
fn wait(tools: &SlurmTools, submitted: &labpipe::launch::Submitted, quiet: bool) -> Result<i32, Exit> {
    let options = WaitOptions {
        poll: Duration::from_secs(2),
        ..WaitOptions::default()
    };
    let array = &submitted.array;
    let mut last = String::new();
    let started = std::time::Instant::now();
    let elements = tools
        .wait(array, &options, |els| {
            let line = counts(els);
            if line != last && !quiet {
                eprintln!(
                    "[{:>5.0}s] job {}: {line}",
                    started.elapsed().as_secs_f64(),
                    array.id
                );
                last = line;
            }
        })
        .map_err(failed)?;
    let runs = runs_in_queue(&submitted.tasks, array.id, &elements);
    let mut code = 0;
    println!(
        "job array {} ended after {:.0}s:",
        array.id,
        started.elapsed().as_secs_f64()
    );
    for r in &runs {
        print_run(r);
        if r.state != QueueState::Done {
            code = 1;
        }
    }
    if let Some(report) = &submitted.report {
        let done = tools.wait(report, &options, |_| {}).map_err(failed)?;
        let state = done.first().map(|e| e.state.clone());
        match state {
            Some(TaskState::Completed) => println!(
                "report job {}: done, {}",
                report.id,
                submitted
                    .report_out
                    .as_deref()
                    .map(|d| d.join("report.md").display().to_string())
                    .unwrap_or_default()
            ),
            other => {
                code = 1;
                println!(
                    "report job {}: {} (log {})",
                    report.id,
                    other.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                    report.log_path(None).display()
                );
            }
        }
    }
    Ok(code)
}

fn print_run(r: &RunInQueue) {
    match r.state {
        QueueState::Failed(_) => println!(
            "  {}  {}: {}; log {}",
            r.element(),
            r.task.run,
            r.state,
            r.log.display()
        ),
        _ => println!("  {}  {}: {}", r.element(), r.task.run, r.state),
    }
}

/// `2 running, 1 queued, 3 done, 0 failed`.
fn counts(elements: &[Element]) -> String {
    let mut n = [0usize; 4];
    for e in elements {
        let i = match QueueState::of(&e.state) {
            QueueState::Queued(_) => 0,
            QueueState::Running => 1,
            QueueState::Done => 2,
            QueueState::Failed(_) => 3,
        };
        n[i] += 1;
    }
    format!(
        "{} queued, {} running, {} done, {} failed",
        n[0], n[1], n[2], n[3]
    )
}
