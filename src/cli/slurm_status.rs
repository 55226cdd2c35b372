//! `labpipe status`'s Slurm column: where each run of the latest submission from the out directory stands
//! in the queue (queued, running, done, failed with its log), added to the rows `status` has built.

use labpipe::launch::QueueState;
use labpipe::launch::follow::latest;
use labpipe::slurm::{QueueError, SlurmTools};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Adds a `slurm` entry to each row (`{"pipeline", "run", …}`) whose run the latest submission holds; returns
/// a note for the user when there is a submission whose runs Slurm cannot tell about (the job is long gone:
/// the rows' own states, from the run records, are what is known).
pub fn annotate(rows: &mut [Value], out: &Path) -> Option<String> {
    let submission = match latest(out, &SlurmTools::from_path()) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => return Some(format!("slurm: {e}")),
    };
    let runs = match &submission.runs {
        Ok(runs) => runs,
        Err(QueueError::UnknownJob { job, .. }) => {
            return Some(format!(
                "slurm: job {job} (submitted from {}) has left Slurm's memory; the states above come from the run records",
                submission.dir.display()
            ));
        }
        Err(e) => return Some(format!("slurm: {e}")),
    };
    // Records name pipeline files; rows name pipelines.
    let mut names: HashMap<PathBuf, Option<String>> = HashMap::new();
    for run in runs {
        let name = names
            .entry(run.task.pipeline.clone())
            .or_insert_with(|| labpipe::spec::load(&run.task.pipeline, &[]).ok().map(|p| p.name));
        let Some(name) = name.as_deref() else { continue };
        for row in rows.iter_mut() {
            if row["pipeline"].as_str() == Some(name) && row["run"].as_str() == Some(run.task.run.as_str()) {
                let failed = matches!(run.state, QueueState::Failed(_));
                row["slurm"] = json!({
                    "job": run.job.0,
                    "element": run.element(),
                    "state": run.state.word(),
                    "detail": run.state.to_string(),
                    "log": failed.then(|| run.log.display().to_string()),
                });
            }
        }
    }
    None
}

/// The column's text for a row: ` | slurm 123_4: running`, with the log of a failed element.
pub fn column(row: &Value) -> String {
    let s = &row["slurm"];
    if s.is_null() {
        return String::new();
    }
    let mut text = format!(
        " | slurm {}: {}",
        s["element"].as_str().unwrap_or(""),
        s["detail"].as_str().unwrap_or("")
    );
    if let Some(log) = s["log"].as_str() {
        text += &format!(", log {log}");
    }
    text
}
