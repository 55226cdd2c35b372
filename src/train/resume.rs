//! The resume state of an unfinished training: after every epoch the weights, buffers and optimizer state go
//! to `resume-<epochs>.safetensors`, and `resume.json` records them with the file's size and blake3 as written,
//! beside the state of the epoch before. A resume uses the newest state whose file still has that size and
//! hash; a damaged one is passed over (and said so) for the one before it, or training starts from scratch.

use super::history::TrainHistory;
use crate::rng::Rng;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const RESUME_JSON: &str = "resume.json";

/// The tensors of the resume state after `epochs` epochs. Each epoch writes a new file and `resume.json`
/// then names it, so a crash between the two writes leaves the previous, matching pair.
pub(super) fn state_name(epochs: usize) -> String {
    format!("resume-{epochs}.safetensors")
}

fn is_state(name: &str) -> bool {
    name.starts_with("resume") && name.ends_with(".safetensors")
}

/// Whether `name` is part of the resume state (`resume.json`, `resume-<epochs>.safetensors`).
pub fn is_resume_file(name: &str) -> bool {
    name == RESUME_JSON || is_state(name)
}

/// `resume.json`: everything besides tensors that the loop carries from one epoch to the next. Floats survive
/// the JSON round trip exactly (serde_json's `float_roundtrip`), so a resumed run compares like the original.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ResumeInfo {
    pub epochs_done: usize,
    /// The file holding this state's weights, buffers and optimizer state.
    #[serde(default)]
    pub state_file: String,
    /// The state file's size as written.
    #[serde(default)]
    pub state_bytes: u64,
    /// The state file's blake3 as written (read back from disk): a damaged state is never resumed.
    #[serde(default)]
    pub state_blake3: String,
    /// Set when early stopping ended training: a resume must not train on.
    #[serde(default)]
    pub stopped_early_at: Option<usize>,
    pub history: TrainHistory,
    pub best_epoch: Option<usize>,
    pub best_metric: Option<f64>,
    pub stop_best: Option<f64>,
    pub stop_since: usize,
    pub dropout_rng: Rng,
    /// The loss the divergence bound multiplies (see `Divergence` in the train config), once known.
    #[serde(default)]
    pub initial_loss: Option<f64>,
    /// The epoch before's state, whose file is kept until this one is written and hashed: what a resume falls
    /// back to when this one is damaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<ResumeInfo>>,
}

/// Where the next training of an unfinished build starts, and what damaged resume state it passes over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResumePoint {
    /// Epochs of the state it resumes from; None when training starts from scratch.
    pub epochs_done: Option<usize>,
    /// The damaged state it passes over, in words; None when nothing is damaged.
    pub damage: Option<String>,
}

/// Resume from the newest state in `work_dir` that is intact and that `load` accepts (it gets the state's
/// verified bytes; an error says why they cannot be used), falling back to the state before it. Returns the
/// state used (None: start from scratch) and, in words, the damaged state passed over. `plan` decides
/// through this too (with a `load` that accepts every intact state), so it says what `run` will do.
pub(super) fn resume_from(
    work_dir: &Path,
    mut load: impl FnMut(&ResumeInfo, &[u8]) -> Result<(), String>,
) -> (Option<ResumeInfo>, Option<String>) {
    let text = match std::fs::read_to_string(work_dir.join(RESUME_JSON)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, None),
        Err(e) => return (None, Some(format!("resume.json cannot be read ({e})"))),
    };
    let saved: ResumeInfo = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => return (None, Some(format!("resume.json is damaged ({e})"))),
    };
    let mut candidates = vec![saved];
    if let Some(previous) = candidates[0].previous.take() {
        candidates.push(*previous);
    }
    let mut damage = Vec::new();
    let mut chosen = None;
    for info in candidates {
        match read_verified(work_dir, &info).and_then(|bytes| load(&info, &bytes)) {
            Ok(()) => {
                chosen = Some(info);
                break;
            }
            Err(why) => damage.push(format!(
                "the resume state saved after epoch {} is damaged ({why})",
                info.epochs_done
            )),
        }
    }
    (chosen, (!damage.is_empty()).then(|| damage.join("; ")))
}

/// The bytes of `info`'s state file if they are what was written; otherwise what is wrong.
fn read_verified(work_dir: &Path, info: &ResumeInfo) -> Result<Vec<u8>, String> {
    if !is_state(&info.state_file) {
        return Err(format!("resume.json names no state file: {:?}", info.state_file));
    }
    if info.state_blake3.is_empty() {
        return Err(format!(
            "{} has no checksum in resume.json (an older labpipe wrote it)",
            info.state_file
        ));
    }
    let bytes =
        std::fs::read(work_dir.join(&info.state_file)).map_err(|e| format!("{}: {e}", info.state_file))?;
    if bytes.len() as u64 != info.state_bytes {
        return Err(format!(
            "{} is {} bytes, {} were written",
            info.state_file,
            bytes.len(),
            info.state_bytes
        ));
    }
    if blake3::hash(&bytes).to_hex().as_str() != info.state_blake3 {
        return Err(format!(
            "{} differs from what was written (its blake3 differs)",
            info.state_file
        ));
    }
    Ok(bytes)
}

/// Where the next training of the unfinished build in `work_dir` starts: what `plan` reports and the trainer
/// does.
pub fn resume_point(work_dir: &Path) -> ResumePoint {
    let (chosen, damage) = resume_from(work_dir, |_, _| Ok(()));
    ResumePoint {
        epochs_done: chosen.map(|i| i.epochs_done),
        damage,
    }
}

/// The tensors of a state file's bytes on `device`, split into the network's and the optimizer's (names
/// without their `optimizer/` prefix).
pub(super) fn tensors(
    bytes: &[u8],
    device: &Device,
) -> candle_core::Result<(HashMap<String, Tensor>, HashMap<String, Tensor>)> {
    let all = candle_core::safetensors::load_buffer(bytes, device)?;
    let (model, optim): (HashMap<_, _>, HashMap<_, _>) =
        all.into_iter().partition(|(k, _)| !k.starts_with("optimizer/"));
    let optim = optim
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("optimizer/").to_string(), v))
        .collect();
    Ok((model, optim))
}

/// Record `info`, whose state file [`super::trainer`] has just written, as the newest resume state, with
/// `previous` (the last state recorded) kept as the one to fall back to; then delete older state files.
pub(super) fn record(
    work_dir: &Path,
    info: &ResumeInfo,
    previous: Option<&ResumeInfo>,
) -> std::io::Result<()> {
    let path = work_dir.join(RESUME_JSON);
    let tmp = path.with_extension("json.tmp");
    let mut saved = info.clone();
    saved.previous = previous.map(|p| {
        let mut p = p.clone();
        p.previous = None;
        Box::new(p)
    });
    std::fs::write(&tmp, serde_json::to_vec_pretty(&saved).unwrap_or_default())?;
    std::fs::rename(&tmp, &path)?;
    let keep = [
        Some(info.state_file.as_str()),
        previous.map(|p| p.state_file.as_str()),
    ];
    for e in std::fs::read_dir(work_dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if is_state(&name) && !keep.contains(&Some(name.as_str())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// The size and blake3 of `path` read back from disk.
pub(super) fn size_and_hash(path: &Path) -> std::io::Result<(u64, String)> {
    let bytes = std::fs::read(path)?;
    Ok((bytes.len() as u64, blake3::hash(&bytes).to_hex().to_string()))
}

/// `resume.json` in `work_dir`.
pub(super) fn info_path(work_dir: &Path) -> PathBuf {
    work_dir.join(RESUME_JSON)
}

/// Remove the resume state once the stage's artifacts are final.
pub fn clear(work_dir: &Path) {
    let _ = std::fs::remove_file(work_dir.join(RESUME_JSON));
    for e in std::fs::read_dir(work_dir).into_iter().flatten().flatten() {
        if is_state(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
