//! The few pieces of the protocol-buffer wire format that event files need: varints, 32- and 64-bit
//! scalars and length-delimited fields, in both directions.
//!
//! Hand-written rather than generated because the messages are small and fixed; the field numbers live with
//! the messages in `event.rs` and `hparams.rs`.

/// A wire-format decoding failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The message ended inside a field.
    #[error("the message ends inside a field")]
    Truncated,
    /// A varint ran past ten bytes.
    #[error("a varint is longer than ten bytes")]
    VarintTooLong,
    /// A wire type protobuf does not define, or the deprecated groups.
    #[error("unsupported wire type {0}")]
    UnsupportedWireType(u8),
    /// Field number 0, which protobuf reserves.
    #[error("field number 0")]
    FieldZero,
    /// A known field came with a different wire type than its declaration.
    #[error("field {field} has wire type {found}, expected {expected}")]
    WrongWireType {
        /// Field number.
        field: u32,
        /// The wire type in the data.
        found: u8,
        /// The wire type of the declared field.
        expected: u8,
    },
    /// A `string` field that is not UTF-8.
    #[error("field {0} is not UTF-8")]
    InvalidUtf8(u32),
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Builds one message by appending fields in the order they are added.
#[derive(Debug, Default)]
pub struct ProtoWriter {
    buf: Vec<u8>,
}

impl ProtoWriter {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.raw_varint(((field as u64) << 3) | wire as u64);
    }

    /// An `int32`, `int64`, `uint64`, `bool` or enum field (negative values take ten bytes, as protobuf's).
    pub fn varint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, VARINT);
        self.raw_varint(v);
        self
    }

    /// A `double` field.
    pub fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `float` field.
    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field, or an embedded message already encoded.
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, LEN);
        self.raw_varint(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// The encoded message.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// One decoded field's payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (`double`, `fixed64`).
    Fixed64(u64),
    /// Wire type 2 (`string`, `bytes`, embedded messages, packed repeated).
    Len(&'a [u8]),
    /// Wire type 5 (`float`, `fixed32`).
    Fixed32(u32),
}

impl<'a> FieldValue<'a> {
    fn wire_type(&self) -> u8 {
        match self {
            FieldValue::Varint(_) => VARINT,
            FieldValue::Fixed64(_) => FIXED64,
            FieldValue::Len(_) => LEN,
            FieldValue::Fixed32(_) => FIXED32,
        }
    }

    fn mismatch(&self, field: u32, expected: u8) -> ProtoError {
        ProtoError::WrongWireType {
            field,
            found: self.wire_type(),
            expected,
        }
    }

    /// The value of a varint field.
    pub fn as_varint(&self, field: u32) -> Result<u64, ProtoError> {
        match *self {
            FieldValue::Varint(v) => Ok(v),
            _ => Err(self.mismatch(field, VARINT)),
        }
    }

    /// The value of a `double` field.
    pub fn as_double(&self, field: u32) -> Result<f64, ProtoError> {
        match *self {
            FieldValue::Fixed64(v) => Ok(f64::from_bits(v)),
            _ => Err(self.mismatch(field, FIXED64)),
        }
    }

    /// The value of a `float` field.
    pub fn as_float(&self, field: u32) -> Result<f32, ProtoError> {
        match *self {
            FieldValue::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(self.mismatch(field, FIXED32)),
        }
    }

    /// The payload of a `bytes` or message field.
    pub fn as_bytes(&self, field: u32) -> Result<&'a [u8], ProtoError> {
        match *self {
            FieldValue::Len(v) => Ok(v),
            _ => Err(self.mismatch(field, LEN)),
        }
    }

    /// The text of a `string` field.
    pub fn as_str(&self, field: u32) -> Result<&'a str, ProtoError> {
        std::str::from_utf8(self.as_bytes(field)?).map_err(|_| ProtoError::InvalidUtf8(field))
    }
}

/// Walks the fields of one encoded message in order; unknown fields are the caller's to skip.
pub struct ProtoReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ProtoReader<'a> {
    /// A reader over one message.
    pub fn new(data: &'a [u8]) -> Self {
        ProtoReader { data, pos: 0 }
    }

    fn raw_varint(&mut self) -> Result<u64, ProtoError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.data.get(self.pos).ok_or(ProtoError::Truncated)?;
            self.pos += 1;
            v |= ((b & 0x7F) as u64) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ProtoError::VarintTooLong)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).ok_or(ProtoError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(ProtoError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// The next field as (field number, payload), or None at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, FieldValue<'a>)>, ProtoError> {
        if self.pos == self.data.len() {
            return Ok(None);
        }
        let key = self.raw_varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| ProtoError::FieldZero)?;
        if field == 0 {
            return Err(ProtoError::FieldZero);
        }
        let value = match (key & 7) as u8 {
            VARINT => FieldValue::Varint(self.raw_varint()?),
            FIXED64 => FieldValue::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| ProtoError::Truncated)?,
            )),
            LEN => {
                let n = usize::try_from(self.raw_varint()?).map_err(|_| ProtoError::Truncated)?;
                FieldValue::Len(self.take(n)?)
            }
            FIXED32 => FieldValue::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| ProtoError::Truncated)?,
            )),
            other => return Err(ProtoError::UnsupportedWireType(other)),
        };
        Ok(Some((field, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_in_order() {
        let msg = ProtoWriter::new()
            .double(1, 1.5)
            .varint(2, 300)
            .varint(3, -1i64 as u64)
            .string(4, "héllo")
            .float(5, -0.25)
            .bytes(6, &[])
            .finish();
        let mut r = ProtoReader::new(&msg);
        let mut next = || r.next_field().unwrap().unwrap();
        assert_eq!(next().1.as_double(1).unwrap(), 1.5);
        assert_eq!(next().1.as_varint(2).unwrap(), 300);
        assert_eq!(next().1.as_varint(3).unwrap() as i64, -1);
        assert_eq!(next().1.as_str(4).unwrap(), "héllo");
        assert_eq!(next().1.as_float(5).unwrap(), -0.25);
        assert_eq!(next(), (6, FieldValue::Len(&[])));
        assert_eq!(r.next_field().unwrap(), None);
    }

    #[test]
    fn encodings_match_the_protobuf_specification() {
        // The examples of https://protobuf.dev/programming-guides/encoding/: 150 in field 1, "testing" in 2.
        assert_eq!(ProtoWriter::new().varint(1, 150).finish(), [0x08, 0x96, 0x01]);
        assert_eq!(
            ProtoWriter::new().string(2, "testing").finish(),
            [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67]
        );
        // A negative int64 is ten bytes.
        assert_eq!(ProtoWriter::new().varint(1, -2i64 as u64).finish().len(), 11);
    }

    #[test]
    fn damaged_messages_are_errors_not_panics() {
        let msg = ProtoWriter::new().string(1, "abcdef").double(2, 2.0).finish();
        // Cut anywhere but between the two fields (after 8 bytes), where the rest is a whole message.
        for cut in (1..msg.len()).filter(|&c| c != 8) {
            let mut r = ProtoReader::new(&msg[..cut]);
            let mut result = Ok(Some((0, FieldValue::Varint(0))));
            while let Ok(Some(_)) = result {
                result = r.next_field();
            }
            assert_eq!(result, Err(ProtoError::Truncated), "cut at {cut}");
        }
        assert_eq!(
            ProtoReader::new(&[0x0B]).next_field(),
            Err(ProtoError::UnsupportedWireType(3))
        );
        assert_eq!(ProtoReader::new(&[0x00]).next_field(), Err(ProtoError::FieldZero));
        assert_eq!(
            ProtoReader::new(&[0xFF; 11]).next_field(),
            Err(ProtoError::VarintTooLong)
        );
        let (f, v) = ProtoReader::new(&msg).next_field().unwrap().unwrap();
        assert!(matches!(
            v.as_double(f),
            Err(ProtoError::WrongWireType { field: 1, .. })
        ));
    }
}
