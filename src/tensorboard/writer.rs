//! Writing one event file: records are collected in memory and appended whole at each flush, so TensorBoard
//! reading the file live never sees more than the records a flush wrote.

use super::TensorboardError;
use super::event::{Event, EventKind, FILE_VERSION, PluginData, SessionStatus, SummaryValue};
use super::hparams::{self, HParams, RunStatus};
use super::record::frame;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The last part of event file names: distinguishes files this process opens within one second, as the
/// `_global_uid` of TensorBoard's `EventFileWriter`.
static FILE_NUMBER: AtomicU64 = AtomicU64::new(0);

/// An open event file of one run.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(unix)]
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]) {
        name if rc == 0 && !name.is_empty() => name.replace(['/', '\\'], "_"),
        _ => "localhost".into(),
    }
}

#[cfg(not(unix))]
fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".into())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TensorboardError + '_ {
    move |source| TensorboardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl EventWriter {
    /// Opens a new event file in `dir` (created if missing), beside any files already there: TensorBoard
    /// reads all of a directory's files as one run, so a resumed run continues its curves.
    pub fn create(dir: &Path) -> Result<Self, TensorboardError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let (host, pid) = (hostname(), std::process::id());
        loop {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let n = FILE_NUMBER.fetch_add(1, Ordering::Relaxed);
            // TensorBoard's writers' name (tensorboard/summary/writer/event_file_writer.py), whose order is the
            // order TensorBoard reads a run's files in; the number is padded (TensorBoard's is not) so that a
            // process's files of one second sort in creation order past the ninth.
            let path = dir.join(format!("events.out.tfevents.{secs:010}.{host}.{pid}.{n:06}"));
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    let mut w = EventWriter {
                        path,
                        file,
                        pending: Vec::new(),
                    };
                    w.add_event(&Event {
                        wall_time: now_secs(),
                        step: 0,
                        what: EventKind::FileVersion(FILE_VERSION.into()),
                    });
                    w.flush()?;
                    return Ok(w);
                }
                // Another process with our pid and number (a container sharing the directory): next number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
    }

    /// Like [`EventWriter::create`], after deleting the event files already in `dir` (and nothing else): a
    /// run that trains from scratch replaces its log instead of mixing two trainings' curves and
    /// hyperparameters (TensorBoard shows a run's first hyperparameters).
    pub fn replace(dir: &Path) -> Result<Self, TensorboardError> {
        if dir.is_dir() {
            for file in super::reader::event_files(dir)? {
                std::fs::remove_file(&file).map_err(io_error(&file))?;
            }
        }
        Self::create(dir)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one event; it reaches the file at the next [`EventWriter::flush`].
    pub fn add_event(&mut self, event: &Event) {
        frame(&event.encode(), &mut self.pending);
    }

    /// Queues a point of the scalar series `tag` (stored as `f32`, TensorBoard's `simple_value`).
    pub fn add_scalar(&mut self, tag: &str, step: i64, value: f64) {
        self.add_event(&Event {
            wall_time: now_secs(),
            step,
            what: EventKind::Summary(vec![SummaryValue::scalar(tag, value as f32)]),
        });
    }

    fn add_hparams_record(&mut self, tag: &str, content: Vec<u8>) {
        self.add_event(&Event {
            wall_time: now_secs(),
            step: 0,
            what: EventKind::Summary(vec![SummaryValue {
                tag: tag.into(),
                simple_value: None,
                plugin_data: Some(PluginData {
                    plugin_name: hparams::PLUGIN_NAME.into(),
                    content,
                }),
            }]),
        });
    }

    /// Queues the run's hyperparameters for the HPARAMS tab (a session start info, at step 0).
    pub fn add_hparams(&mut self, hparams: &HParams) {
        let content = hparams::session_start_content(hparams, now_secs());
        self.add_hparams_record(hparams::SESSION_START_INFO_TAG, content);
    }

    /// Queues how the run ended (a session end info: the HPARAMS tab's status column).
    pub fn add_session_end(&mut self, status: RunStatus) {
        let content = hparams::session_end_content(status, now_secs());
        self.add_hparams_record(hparams::SESSION_END_INFO_TAG, content);
    }

    /// Queues a `SessionLog.START` at `step`: this process carries on from there, so TensorBoard drops any
    /// point at or after `step` that an earlier process wrote but did not checkpoint.
    pub fn add_restart(&mut self, step: i64) {
        self.add_event(&Event {
            wall_time: now_secs(),
            step,
            what: EventKind::SessionLog(SessionStatus::Start),
        });
    }

    /// Appends the queued records to the file in one write.
    pub fn flush(&mut self) -> Result<(), TensorboardError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending).map_err(io_error(&self.path))?;
        self.pending.clear();
        Ok(())
    }
}

impl Drop for EventWriter {
    /// Writes what is queued; an error here has no one to go to, and the next run's resume rewrites the data.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::TensorboardError;
    use crate::tensorboard::hparams::{HParamValue, HParamsRecord, decode_content};
    use crate::tensorboard::reader::{event_files, read_events, read_run, run_hparams, scalar_series};

    #[test]
    fn a_new_file_is_named_like_tensorboards_and_starts_with_the_file_version() {
        let dir = tempfile::tempdir().unwrap();
        let w = EventWriter::create(&dir.path().join("run")).unwrap();
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(&parts[..3], ["events", "out", "tfevents"], "{name}");
        assert_eq!(parts[3].len(), 10, "{name}");
        assert!(parts[3].parse::<u64>().unwrap() > 1_600_000_000, "{name}");
        assert_eq!(parts[parts.len() - 2], std::process::id().to_string(), "{name}");
        // The header is on disk before anything else is added.
        let events = read_events(w.path()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].what, EventKind::FileVersion("brain.Event:2".into()));
        assert!(events[0].wall_time > 1_600_000_000.0);
    }

    #[test]
    fn scalars_and_hparams_reach_the_file_at_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        let hp = HParams::from([
            ("optimizer.lr".into(), HParamValue::Number(0.01)),
            ("optimizer".into(), HParamValue::Text("adam".into())),
        ]);
        w.add_hparams(&hp);
        w.add_scalar("train/loss", 1, 2.5);
        w.add_scalar("train/loss", 2, 0.0);
        assert_eq!(
            read_events(w.path()).unwrap().len(),
            1,
            "nothing but the header before a flush"
        );
        w.flush().unwrap();
        w.add_session_end(RunStatus::Success);
        drop(w);
        let events = read_run(dir.path()).unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(scalar_series(&events)["train/loss"], [(1, 2.5), (2, 0.0)]);
        assert_eq!(run_hparams(&events), Some(hp));
        let EventKind::Summary(values) = &events[4].what else {
            panic!("{:?}", events[4])
        };
        let content = &values[0].plugin_data.as_ref().unwrap().content;
        assert!(matches!(
            decode_content(content).unwrap(),
            HParamsRecord::SessionEnd {
                status: RunStatus::Success,
                ..
            }
        ));
    }

    #[test]
    fn a_second_writer_adds_a_file_and_replace_removes_only_event_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = EventWriter::create(dir.path()).unwrap();
        first.add_scalar("lr", 1, 0.1);
        drop(first);
        let mut second = EventWriter::create(dir.path()).unwrap();
        second.add_restart(2);
        second.add_scalar("lr", 2, 0.05);
        drop(second);
        assert_eq!(event_files(dir.path()).unwrap().len(), 2);
        let events = read_run(dir.path()).unwrap();
        assert_eq!(scalar_series(&events)["lr"], [(1, 0.1), (2, 0.05)]);
        assert!(
            events
                .iter()
                .any(|e| e.step == 2 && e.what == EventKind::SessionLog(SessionStatus::Start))
        );

        std::fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        let fresh = EventWriter::replace(dir.path()).unwrap();
        assert_eq!(event_files(dir.path()).unwrap(), [fresh.path().to_path_buf()]);
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_the_file_and_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.add_scalar("val/accuracy", 1, 0.5);
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        let records = crate::tensorboard::record::unframe(&bytes).unwrap();
        let (offset, data) = records[1];
        // Flip one byte inside the scalar record's data: its data CRC must catch it.
        let mut damaged = bytes.clone();
        damaged[offset + 12 + data.len() / 2] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        let err = read_events(&path).unwrap_err();
        assert!(matches!(err, TensorboardError::Framing { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("record at byte {offset}: the data's CRC")),
            "{msg}"
        );
    }
}
