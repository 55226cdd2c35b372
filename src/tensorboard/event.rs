//! The `Event` message of an event file and the parts of `Summary` that labpipe writes.
//!
//! Field numbers are those of tensorboard/compat/proto/event.proto and summary.proto (copies of TensorFlow's
//! tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto), checked against the
//! descriptors of the `tensorboard` 2.21 Python package.

use super::proto::{ProtoError, ProtoReader, ProtoWriter};

/// `Event.file_version` of every file TensorBoard's own writers produce; version 2 turns on TensorBoard's
/// purge of orphaned steps by `SessionLog.START`.
pub const FILE_VERSION: &str = "brain.Event:2";

mod field {
    pub const EVENT_WALL_TIME: u32 = 1;
    pub const EVENT_STEP: u32 = 2;
    pub const EVENT_FILE_VERSION: u32 = 3;
    pub const EVENT_SUMMARY: u32 = 5;
    pub const EVENT_SESSION_LOG: u32 = 7;
    pub const SUMMARY_VALUE: u32 = 1;
    pub const VALUE_TAG: u32 = 1;
    pub const VALUE_SIMPLE_VALUE: u32 = 2;
    pub const VALUE_METADATA: u32 = 9;
    pub const METADATA_PLUGIN_DATA: u32 = 1;
    pub const PLUGIN_DATA_PLUGIN_NAME: u32 = 1;
    pub const PLUGIN_DATA_CONTENT: u32 = 2;
    pub const SESSION_LOG_STATUS: u32 = 1;
}

/// One record of an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch when the event was written.
    pub wall_time: f64,
    /// The step the event belongs to (labpipe: the 1-based epoch; 0 for run-level records).
    pub step: i64,
    /// What the event carries.
    pub what: EventKind,
}

/// The `oneof what` of an `Event`.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// None of the fields below (the oneof is empty).
    Empty,
    /// The file header: [`FILE_VERSION`].
    FileVersion(String),
    /// Tagged values.
    Summary(Vec<SummaryValue>),
    /// A session boundary.
    SessionLog(SessionStatus),
    /// A field labpipe does not write (graphs, run metadata), by number.
    Other(u32),
}

/// One `Summary.Value`: a tag with a scalar and/or plugin metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryValue {
    /// The series name, e.g. `train/loss`.
    pub tag: String,
    /// `simple_value`: a scalar for the SCALARS tab.
    pub simple_value: Option<f32>,
    /// `metadata.plugin_data`: which plugin reads the value and its plugin-specific payload.
    pub plugin_data: Option<PluginData>,
}

/// `SummaryMetadata.PluginData`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginData {
    /// The plugin, e.g. `hparams`.
    pub plugin_name: String,
    /// A serialized plugin message.
    pub content: Vec<u8>,
}

/// `SessionLog.SessionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// 0, or a value this version does not know.
    Unspecified,
    /// 1: a (re)start at this step; TensorBoard drops earlier-read events at or after it.
    Start,
    /// 2.
    Stop,
    /// 3.
    Checkpoint,
}

impl SessionStatus {
    fn number(self) -> u64 {
        match self {
            SessionStatus::Unspecified => 0,
            SessionStatus::Start => 1,
            SessionStatus::Stop => 2,
            SessionStatus::Checkpoint => 3,
        }
    }

    fn from_number(n: u64) -> Self {
        match n {
            1 => SessionStatus::Start,
            2 => SessionStatus::Stop,
            3 => SessionStatus::Checkpoint,
            _ => SessionStatus::Unspecified,
        }
    }
}

impl SummaryValue {
    /// A scalar for the SCALARS tab.
    pub fn scalar(tag: &str, value: f32) -> Self {
        SummaryValue {
            tag: tag.to_string(),
            simple_value: Some(value),
            plugin_data: None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = ProtoWriter::new();
        w.string(field::VALUE_TAG, &self.tag);
        // Written even when 0.0: it is a oneof member, so presence is what makes it a scalar.
        if let Some(v) = self.simple_value {
            w.float(field::VALUE_SIMPLE_VALUE, v);
        }
        if let Some(p) = &self.plugin_data {
            let plugin = ProtoWriter::new()
                .string(field::PLUGIN_DATA_PLUGIN_NAME, &p.plugin_name)
                .bytes(field::PLUGIN_DATA_CONTENT, &p.content)
                .finish();
            let metadata = ProtoWriter::new()
                .bytes(field::METADATA_PLUGIN_DATA, &plugin)
                .finish();
            w.bytes(field::VALUE_METADATA, &metadata);
        }
        w.finish()
    }

    fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut v = SummaryValue {
            tag: String::new(),
            simple_value: None,
            plugin_data: None,
        };
        let mut r = ProtoReader::new(data);
        while let Some((f, value)) = r.next_field()? {
            match f {
                field::VALUE_TAG => v.tag = value.as_str(f)?.to_string(),
                field::VALUE_SIMPLE_VALUE => v.simple_value = Some(value.as_float(f)?),
                field::VALUE_METADATA => {
                    let mut m = ProtoReader::new(value.as_bytes(f)?);
                    while let Some((mf, mv)) = m.next_field()? {
                        if mf == field::METADATA_PLUGIN_DATA {
                            v.plugin_data = Some(decode_plugin_data(mv.as_bytes(mf)?)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(v)
    }
}

fn decode_plugin_data(data: &[u8]) -> Result<PluginData, ProtoError> {
    let mut p = PluginData {
        plugin_name: String::new(),
        content: Vec::new(),
    };
    let mut r = ProtoReader::new(data);
    while let Some((f, v)) = r.next_field()? {
        match f {
            field::PLUGIN_DATA_PLUGIN_NAME => p.plugin_name = v.as_str(f)?.to_string(),
            field::PLUGIN_DATA_CONTENT => p.content = v.as_bytes(f)?.to_vec(),
            _ => {}
        }
    }
    Ok(p)
}

impl Event {
    /// The serialized `Event` message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = ProtoWriter::new();
        w.double(field::EVENT_WALL_TIME, self.wall_time);
        if self.step != 0 {
            w.varint(field::EVENT_STEP, self.step as u64);
        }
        match &self.what {
            EventKind::Empty | EventKind::Other(_) => {}
            EventKind::FileVersion(v) => {
                w.string(field::EVENT_FILE_VERSION, v);
            }
            EventKind::Summary(values) => {
                let mut s = ProtoWriter::new();
                for v in values {
                    s.bytes(field::SUMMARY_VALUE, &v.encode());
                }
                w.bytes(field::EVENT_SUMMARY, &s.finish());
            }
            EventKind::SessionLog(status) => {
                let log = ProtoWriter::new()
                    .varint(field::SESSION_LOG_STATUS, status.number())
                    .finish();
                w.bytes(field::EVENT_SESSION_LOG, &log);
            }
        }
        w.finish()
    }

    /// Parses a serialized `Event`, keeping the fields labpipe knows.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut e = Event {
            wall_time: 0.0,
            step: 0,
            what: EventKind::Empty,
        };
        let mut r = ProtoReader::new(data);
        while let Some((f, v)) = r.next_field()? {
            match f {
                field::EVENT_WALL_TIME => e.wall_time = v.as_double(f)?,
                field::EVENT_STEP => e.step = v.as_varint(f)? as i64,
                field::EVENT_FILE_VERSION => e.what = EventKind::FileVersion(v.as_str(f)?.to_string()),
                field::EVENT_SUMMARY => {
                    let mut values = Vec::new();
                    let mut s = ProtoReader::new(v.as_bytes(f)?);
                    while let Some((sf, sv)) = s.next_field()? {
                        if sf == field::SUMMARY_VALUE {
                            values.push(SummaryValue::decode(sv.as_bytes(sf)?)?);
                        }
                    }
                    e.what = EventKind::Summary(values);
                }
                field::EVENT_SESSION_LOG => {
                    let mut status = SessionStatus::Unspecified;
                    let mut s = ProtoReader::new(v.as_bytes(f)?);
                    while let Some((sf, sv)) = s.next_field()? {
                        if sf == field::SESSION_LOG_STATUS {
                            status = SessionStatus::from_number(sv.as_varint(sf)?);
                        }
                    }
                    e.what = EventKind::SessionLog(status);
                }
                // The other members of `oneof what` (graph_def 4 .. meta_graph_def 9).
                4..=9 => e.what = EventKind::Other(f),
                _ => {}
            }
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let events = [
            Event {
                wall_time: 1_700_000_000.25,
                step: 0,
                what: EventKind::FileVersion(FILE_VERSION.into()),
            },
            Event {
                wall_time: 2.0,
                step: 3,
                what: EventKind::Summary(vec![
                    SummaryValue::scalar("train/loss", 0.0),
                    SummaryValue {
                        tag: "_hparams_/session_start_info".into(),
                        simple_value: None,
                        plugin_data: Some(PluginData {
                            plugin_name: "hparams".into(),
                            content: vec![1, 2, 0, 255],
                        }),
                    },
                ]),
            },
            Event {
                wall_time: 3.0,
                step: 4,
                what: EventKind::SessionLog(SessionStatus::Start),
            },
        ];
        for e in &events {
            assert_eq!(&Event::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn a_scalar_event_has_the_bytes_tensorboard_writes() {
        // Event{wall_time: 1.0, step: 2, summary{value{tag: "a", simple_value: 0.5}}} as serialized by the
        // `tensorboard` package's protobuf classes (`event_pb2.Event(...).SerializeToString()`).
        let e = Event {
            wall_time: 1.0,
            step: 2,
            what: EventKind::Summary(vec![SummaryValue::scalar("a", 0.5)]),
        };
        let expected: &[u8] = &[
            0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, // wall_time = 1.0
            0x10, 0x02, // step = 2
            0x2A, 0x0A, // summary, 10 bytes
            0x0A, 0x08, // value, 8 bytes
            0x0A, 0x01, b'a', // tag
            0x15, 0, 0, 0, 0x3F, // simple_value = 0.5
        ];
        assert_eq!(e.encode(), expected);

        // Event(wall_time=1.0, step=2, session_log=SessionLog(status=START)), same source.
        let restart = Event {
            wall_time: 1.0,
            step: 2,
            what: EventKind::SessionLog(SessionStatus::Start),
        };
        let expected: &[u8] = &[
            0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0x10, 0x02, 0x3A, 0x02, 0x08, 0x01,
        ];
        assert_eq!(restart.encode(), expected);

        // Event(wall_time=1.0, file_version="brain.Event:2"): the header, step 0 left out as protobuf does.
        let header = Event {
            wall_time: 1.0,
            step: 0,
            what: EventKind::FileVersion(FILE_VERSION.into()),
        };
        let mut expected = vec![0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0x1A, 0x0D];
        expected.extend_from_slice(b"brain.Event:2");
        assert_eq!(header.encode(), expected);
    }
}
