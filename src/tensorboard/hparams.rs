//! The HPARAMS tab's records: the hparams plugin's `HParamsPluginData` with a `SessionStartInfo` (the run's
//! hyperparameters) or a `SessionEndInfo` (how it ended).
//!
//! Like `torch.utils.tensorboard`'s `hparams()`, each is a summary value with no data whose metadata names
//! the `hparams` plugin. Unlike it, no `Experiment` is written: without one, TensorBoard builds the experiment
//! from every run's session start info and takes the metrics from the runs' scalar tags
//! (`backend_context._compute_experiment_from_runs`), which is what comparing runs needs; an `Experiment`
//! written by one run would hide the hyperparameters and metrics of the others. Message and field numbers
//! are those of tensorboard/plugins/hparams/plugin_data.proto and google/protobuf/struct.proto.

use super::proto::{ProtoError, ProtoReader, ProtoWriter};
use std::collections::BTreeMap;

/// The plugin name in `SummaryMetadata.PluginData`.
pub const PLUGIN_NAME: &str = "hparams";
/// The tag of a session start info (`metadata.SESSION_START_INFO_TAG` in the plugin).
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
/// The tag of a session end info.
pub const SESSION_END_INFO_TAG: &str = "_hparams_/session_end_info";
/// `HParamsPluginData.version` (`metadata.PLUGIN_DATA_VERSION`).
const PLUGIN_DATA_VERSION: u64 = 0;

mod field {
    pub const DATA_VERSION: u32 = 1;
    pub const DATA_EXPERIMENT: u32 = 2;
    pub const DATA_SESSION_START_INFO: u32 = 3;
    pub const DATA_SESSION_END_INFO: u32 = 4;
    pub const START_HPARAMS: u32 = 1;
    pub const START_START_TIME_SECS: u32 = 5;
    pub const END_STATUS: u32 = 1;
    pub const END_END_TIME_SECS: u32 = 2;
    pub const MAP_KEY: u32 = 1;
    pub const MAP_VALUE: u32 = 2;
    pub const VALUE_NUMBER: u32 = 2;
    pub const VALUE_STRING: u32 = 3;
    pub const VALUE_BOOL: u32 = 4;
}

/// One hyperparameter's value (the kinds of `google.protobuf.Value` the plugin shows).
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    /// `number_value`.
    Number(f64),
    /// `string_value`.
    Text(String),
    /// `bool_value`.
    Bool(bool),
}

/// A run's hyperparameters by name.
pub type HParams = BTreeMap<String, HParamValue>;

/// How a run ended (`tensorboard.hparams.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// 0, or a value this version does not know.
    Unknown,
    /// 1: training finished (or stopped early).
    Success,
    /// 2: training failed (diverged).
    Failure,
    /// 3.
    Running,
}

impl RunStatus {
    fn number(self) -> u64 {
        match self {
            RunStatus::Unknown => 0,
            RunStatus::Success => 1,
            RunStatus::Failure => 2,
            RunStatus::Running => 3,
        }
    }

    fn from_number(n: u64) -> Self {
        match n {
            1 => RunStatus::Success,
            2 => RunStatus::Failure,
            3 => RunStatus::Running,
            _ => RunStatus::Unknown,
        }
    }
}

/// A decoded `HParamsPluginData`.
#[derive(Debug, Clone, PartialEq)]
pub enum HParamsRecord {
    /// `session_start_info`.
    SessionStart {
        /// The hyperparameters.
        hparams: HParams,
        /// When the session started (0: not recorded).
        start_time_secs: f64,
    },
    /// `session_end_info`.
    SessionEnd {
        /// How the session ended.
        status: RunStatus,
        /// When it ended.
        end_time_secs: f64,
    },
    /// An `experiment` (written by other tools; its contents are not decoded).
    Experiment,
    /// None of the three.
    Empty,
}

fn encode_value(v: &HParamValue) -> Vec<u8> {
    let mut w = ProtoWriter::new();
    match v {
        HParamValue::Number(n) => w.double(field::VALUE_NUMBER, *n),
        HParamValue::Text(s) => w.string(field::VALUE_STRING, s),
        HParamValue::Bool(b) => w.varint(field::VALUE_BOOL, *b as u64),
    };
    w.finish()
}

fn wrap(data_field: u32, inner: &[u8]) -> Vec<u8> {
    let mut w = ProtoWriter::new();
    // proto3 leaves a field at its default value out; matching that keeps the bytes identical to Python's.
    if PLUGIN_DATA_VERSION != 0 {
        w.varint(field::DATA_VERSION, PLUGIN_DATA_VERSION);
    }
    w.bytes(data_field, inner).finish()
}

/// The plugin content of a session start info.
pub fn session_start_content(hparams: &HParams, start_time_secs: f64) -> Vec<u8> {
    let mut start = ProtoWriter::new();
    for (name, value) in hparams {
        let entry = ProtoWriter::new()
            .string(field::MAP_KEY, name)
            .bytes(field::MAP_VALUE, &encode_value(value))
            .finish();
        start.bytes(field::START_HPARAMS, &entry);
    }
    start.double(field::START_START_TIME_SECS, start_time_secs);
    wrap(field::DATA_SESSION_START_INFO, &start.finish())
}

/// The plugin content of a session end info.
pub fn session_end_content(status: RunStatus, end_time_secs: f64) -> Vec<u8> {
    let end = ProtoWriter::new()
        .varint(field::END_STATUS, status.number())
        .double(field::END_END_TIME_SECS, end_time_secs)
        .finish();
    wrap(field::DATA_SESSION_END_INFO, &end)
}

fn decode_value(data: &[u8]) -> Result<Option<HParamValue>, ProtoError> {
    let mut value = None;
    let mut r = ProtoReader::new(data);
    while let Some((f, v)) = r.next_field()? {
        value = match f {
            field::VALUE_NUMBER => Some(HParamValue::Number(v.as_double(f)?)),
            field::VALUE_STRING => Some(HParamValue::Text(v.as_str(f)?.to_string())),
            field::VALUE_BOOL => Some(HParamValue::Bool(v.as_varint(f)? != 0)),
            // null, struct and list values: the plugin shows none of them as a column.
            _ => None,
        };
    }
    Ok(value)
}

fn decode_start(data: &[u8]) -> Result<HParamsRecord, ProtoError> {
    let mut hparams = HParams::new();
    let mut start_time_secs = 0.0;
    let mut r = ProtoReader::new(data);
    while let Some((f, v)) = r.next_field()? {
        match f {
            field::START_HPARAMS => {
                let (mut key, mut value) = (String::new(), None);
                let mut e = ProtoReader::new(v.as_bytes(f)?);
                while let Some((ef, ev)) = e.next_field()? {
                    match ef {
                        field::MAP_KEY => key = ev.as_str(ef)?.to_string(),
                        field::MAP_VALUE => value = decode_value(ev.as_bytes(ef)?)?,
                        _ => {}
                    }
                }
                if let Some(value) = value {
                    hparams.insert(key, value);
                }
            }
            field::START_START_TIME_SECS => start_time_secs = v.as_double(f)?,
            _ => {}
        }
    }
    Ok(HParamsRecord::SessionStart {
        hparams,
        start_time_secs,
    })
}

fn decode_end(data: &[u8]) -> Result<HParamsRecord, ProtoError> {
    let (mut status, mut end_time_secs) = (RunStatus::Unknown, 0.0);
    let mut r = ProtoReader::new(data);
    while let Some((f, v)) = r.next_field()? {
        match f {
            field::END_STATUS => status = RunStatus::from_number(v.as_varint(f)?),
            field::END_END_TIME_SECS => end_time_secs = v.as_double(f)?,
            _ => {}
        }
    }
    Ok(HParamsRecord::SessionEnd {
        status,
        end_time_secs,
    })
}

/// Parses the plugin content of an `hparams` summary value.
pub fn decode_content(data: &[u8]) -> Result<HParamsRecord, ProtoError> {
    let mut record = HParamsRecord::Empty;
    let mut r = ProtoReader::new(data);
    while let Some((f, v)) = r.next_field()? {
        match f {
            field::DATA_EXPERIMENT => record = HParamsRecord::Experiment,
            field::DATA_SESSION_START_INFO => record = decode_start(v.as_bytes(f)?)?,
            field::DATA_SESSION_END_INFO => record = decode_end(v.as_bytes(f)?)?,
            _ => {}
        }
    }
    Ok(record)
}

/// Hyperparameters from a configuration serialized to JSON (e.g. the `train:` section): nested keys are
/// joined with dots (`optimizer.lr`), an object's `name` is the object's own entry (`optimizer: sgd`),
/// lists become their JSON text (`scheduler.milestones: [10,20]`), and nulls (unset options) are left out.
pub fn hparams_from_config(config: &serde_json::Value) -> HParams {
    let mut out = HParams::new();
    flatten("", config, &mut out);
    out
}

fn flatten(path: &str, value: &serde_json::Value, out: &mut HParams) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let child = match (path.is_empty(), key.as_str()) {
                    (true, _) => key.clone(),
                    (false, "name") => path.to_string(),
                    (false, _) => format!("{path}.{key}"),
                };
                flatten(&child, v, out);
            }
        }
        _ if path.is_empty() => {}
        Value::Null => {}
        Value::Bool(b) => {
            out.insert(path.to_string(), HParamValue::Bool(*b));
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(path.to_string(), HParamValue::Number(x));
            }
        }
        Value::String(s) => {
            out.insert(path.to_string(), HParamValue::Text(s.clone()));
        }
        Value::Array(_) => {
            out.insert(path.to_string(), HParamValue::Text(value.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_start_and_end_round_trip() {
        let hparams = HParams::from([
            ("optimizer.lr".to_string(), HParamValue::Number(0.01)),
            ("optimizer".to_string(), HParamValue::Text("sgd".into())),
            ("optimizer.nesterov".to_string(), HParamValue::Bool(false)),
        ]);
        assert_eq!(
            decode_content(&session_start_content(&hparams, 12.5)).unwrap(),
            HParamsRecord::SessionStart {
                hparams,
                start_time_secs: 12.5
            }
        );
        assert_eq!(
            decode_content(&session_end_content(RunStatus::Failure, 99.0)).unwrap(),
            HParamsRecord::SessionEnd {
                status: RunStatus::Failure,
                end_time_secs: 99.0
            }
        );
    }

    #[test]
    fn the_content_is_what_the_plugins_protobuf_classes_write() {
        // HParamsPluginData(version=0, session_start_info=SessionStartInfo(hparams={"b": Value(number_value=
        // 2.0)}, start_time_secs=1.0)).SerializeToString() with tensorboard 2.21's plugin_data_pb2.
        let content = session_start_content(&HParams::from([("b".into(), HParamValue::Number(2.0))]), 1.0);
        let expected: &[u8] = &[
            // version 0 is the default, so absent
            0x1A, 0x19, // session_start_info, 25 bytes
            0x0A, 0x0E, // hparams entry, 14 bytes
            0x0A, 0x01, b'b', // key
            0x12, 0x09, 0x11, 0, 0, 0, 0, 0, 0, 0, 0x40, // value: number_value 2.0
            0x29, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, // start_time_secs 1.0
        ];
        assert_eq!(content, expected);
    }

    #[test]
    fn a_train_section_flattens_to_dotted_names() {
        let train = json!({
            "epochs": 3,
            "batch_size": 40,
            "eval_batch_size": null,
            "optimizer": {"name": "sgd", "lr": 0.01, "nesterov": true},
            "scheduler": {"name": "multistep", "milestones": [10, 20]},
            "early_stopping": null,
            "select": "best_val_accuracy",
        });
        let h = hparams_from_config(&train);
        let expected = HParams::from([
            ("epochs".into(), HParamValue::Number(3.0)),
            ("batch_size".into(), HParamValue::Number(40.0)),
            ("optimizer".into(), HParamValue::Text("sgd".into())),
            ("optimizer.lr".into(), HParamValue::Number(0.01)),
            ("optimizer.nesterov".into(), HParamValue::Bool(true)),
            ("scheduler".into(), HParamValue::Text("multistep".into())),
            ("scheduler.milestones".into(), HParamValue::Text("[10,20]".into())),
            ("select".into(), HParamValue::Text("best_val_accuracy".into())),
        ]);
        assert_eq!(h, expected);
    }
}
