//! Reading event files back, with both CRCs of every record checked: for tests, and for labpipe to check
//! the files it wrote.

use super::TensorboardError;
use super::event::{Event, EventKind};
use super::hparams::{self, HParams, HParamsRecord};
use super::record::unframe;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The events of one file, in order.
pub fn read_events(path: &Path) -> Result<Vec<Event>, TensorboardError> {
    let bytes = std::fs::read(path).map_err(|source| TensorboardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let records = unframe(&bytes).map_err(|source| TensorboardError::Framing {
        path: path.to_path_buf(),
        source,
    })?;
    records
        .into_iter()
        .map(|(offset, data)| {
            Event::decode(data).map_err(|source| TensorboardError::Decode {
                path: path.to_path_buf(),
                offset,
                source,
            })
        })
        .collect()
}

/// The event files of a run directory (not its subdirectories), in the order TensorBoard reads them: by
/// name, which starts with the creation time.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, TensorboardError> {
    let io = |source| TensorboardError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        // TensorBoard's own test (`io_wrapper.IsTensorFlowEventsFile`): "tfevents" in the file name.
        if entry.file_name().to_string_lossy().contains("tfevents") && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The events of every file of a run directory, file after file.
pub fn read_run(dir: &Path) -> Result<Vec<Event>, TensorboardError> {
    let mut events = Vec::new();
    for file in event_files(dir)? {
        events.extend(read_events(&file)?);
    }
    Ok(events)
}

/// Every scalar series by tag, as (step, value) in the order written.
pub fn scalar_series(events: &[Event]) -> BTreeMap<String, Vec<(i64, f32)>> {
    let mut series: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    for e in events {
        if let EventKind::Summary(values) = &e.what {
            for v in values {
                if let Some(x) = v.simple_value {
                    series.entry(v.tag.clone()).or_default().push((e.step, x));
                }
            }
        }
    }
    series
}

/// The hyperparameters TensorBoard shows for a run: those of its first session start info (TensorBoard keeps
/// the first metadata it reads for a tag). None when there is none, or it does not parse.
pub fn run_hparams(events: &[Event]) -> Option<HParams> {
    events.iter().find_map(|e| match &e.what {
        EventKind::Summary(values) => values.iter().find_map(|v| {
            let p = v.plugin_data.as_ref()?;
            if p.plugin_name != hparams::PLUGIN_NAME || v.tag != hparams::SESSION_START_INFO_TAG {
                return None;
            }
            match hparams::decode_content(&p.content).ok()? {
                HParamsRecord::SessionStart { hparams, .. } => Some(hparams),
                _ => None,
            }
        }),
        _ => None,
    })
}
