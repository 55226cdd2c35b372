//! TFRecord framing: each record is `u64 length (LE) | masked CRC32C of those 8 bytes | data | masked
//! CRC32C of data`, the container of every TensorBoard event file.

use super::crc32c::masked_crc32c;

/// Bytes of framing around each record's data.
pub const OVERHEAD: usize = 8 + 4 + 4;

/// Why a byte stream is not a sequence of whole, intact records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The stream ends inside a record (a writer still writing, or a cut file).
    #[error("record at byte {offset} is cut off ({available} of {needed} bytes present)")]
    Truncated {
        /// Where the record starts.
        offset: usize,
        /// Bytes the record needs.
        needed: usize,
        /// Bytes left in the stream.
        available: usize,
    },
    /// The length field does not match its checksum.
    #[error("record at byte {offset}: the length's CRC does not match")]
    LengthCrc {
        /// Where the record starts.
        offset: usize,
    },
    /// The data does not match its checksum.
    #[error("record at byte {offset}: the data's CRC does not match")]
    DataCrc {
        /// Where the record starts.
        offset: usize,
    },
}

/// Appends one framed record holding `data` to `out`.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The records of `bytes` as (offset, data), after checking both CRCs of each.
pub fn unframe(bytes: &[u8]) -> Result<Vec<(usize, &[u8])>, FramingError> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let truncated = |needed: usize| FramingError::Truncated {
            offset,
            needed,
            available: rest.len(),
        };
        if rest.len() < 12 {
            return Err(truncated(12));
        }
        if masked_crc32c(&rest[..8]) != u32_at(rest, 8) {
            return Err(FramingError::LengthCrc { offset });
        }
        // The length's CRC held, so a huge value is a real (unsatisfiable) length, not noise.
        let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let needed = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(OVERHEAD))
            .unwrap_or(usize::MAX);
        if rest.len() < needed {
            return Err(truncated(needed));
        }
        let data = &rest[12..needed - 4];
        if masked_crc32c(data) != u32_at(rest, needed - 4) {
            return Err(FramingError::DataCrc { offset });
        }
        records.push((offset, data));
        offset += needed;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> Vec<u8> {
        let mut out = Vec::new();
        frame(b"first record", &mut out);
        frame(b"", &mut out);
        out
    }

    #[test]
    fn framed_records_come_back_with_their_offsets() {
        let bytes = two_records();
        assert_eq!(bytes.len(), 2 * OVERHEAD + 12);
        let records = unframe(&bytes).unwrap();
        assert_eq!(records, [(0, &b"first record"[..]), (OVERHEAD + 12, &b""[..])]);
    }

    #[test]
    fn the_framing_is_tensorflows() {
        // TensorBoard's own `RecordWriter` (tensorboard/summary/writer/record_writer.py) writing b"abc" into a
        // BytesIO, tensorboard 2.21.
        let mut out = Vec::new();
        frame(b"abc", &mut out);
        let expected: &[u8] = &[
            0x03, 0, 0, 0, 0, 0, 0, 0, 0xB0, 0x99, 0x49, 0x0E, b'a', b'b', b'c', 0x6E, 0x57, 0xF1, 0x21,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let bytes = two_records();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            let err = unframe(&damaged).expect_err(&format!("flipped byte {i} went unnoticed"));
            let in_second = i >= OVERHEAD + 12;
            let offset = if in_second { OVERHEAD + 12 } else { 0 };
            let rel = i - offset;
            match err {
                // A flipped length bit fails the length's CRC before the length is used.
                FramingError::LengthCrc { offset: o } => assert!(rel < 12 && o == offset, "byte {i}"),
                FramingError::DataCrc { offset: o } => assert!(rel >= 12 && o == offset, "byte {i}"),
                other => panic!("byte {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_cut_stream_is_truncated() {
        let bytes = two_records();
        for cut in 1..bytes.len() {
            if cut == OVERHEAD + 12 {
                continue; // a whole first record
            }
            assert!(
                matches!(unframe(&bytes[..cut]), Err(FramingError::Truncated { .. })),
                "cut at {cut}"
            );
        }
    }
}
