//! TensorBoard event files: each training run writes its per-epoch scalars and hyperparameters so that
//! `tensorboard --logdir <dir>` shows live curves, compares runs and lists them in the HPARAMS tab.
//!
//! The format is TensorFlow's: TFRecord framing (`record`) around serialized `Event` protocol buffers
//! (`event`, `hparams`), written and read without TensorFlow or generated code.

pub mod crc32c;
pub mod event;
pub mod hparams;
pub mod proto;
pub mod reader;
pub mod record;
pub mod writer;

pub use event::{Event, EventKind, PluginData, SessionStatus, SummaryValue};
pub use hparams::{HParamValue, HParams, HParamsRecord, RunStatus, hparams_from_config};
pub use reader::{event_files, read_events, read_run, run_hparams, scalar_series};
pub use writer::EventWriter;

use std::path::PathBuf;

/// Why an event file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TensorboardError {
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a sequence of intact records.
    #[error("{path}: {source}")]
    Framing {
        /// The event file.
        path: PathBuf,
        /// What is wrong with the framing.
        source: record::FramingError,
    },
    /// A record whose CRCs hold does not parse as an `Event`.
    #[error("{path}: record at byte {offset} is not an Event: {source}")]
    Decode {
        /// The event file.
        path: PathBuf,
        /// Where the record starts.
        offset: usize,
        /// The protobuf error.
        source: proto::ProtoError,
    },
}
