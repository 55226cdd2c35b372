//! CRC-32C (Castagnoli), the checksum of TFRecord framing, and the mask TensorFlow applies to it.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// Byte-at-a-time lookup table, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32C of `data`. Event files are small (a few hundred bytes an epoch), so a table is fast enough.
pub fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// TensorFlow's masked CRC (tensorflow/core/lib/hash/crc32c.h): a CRC of data that itself contains CRCs is
/// weak, so the stored value is rotated and offset.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    // TensorFlow's `((crc >> 15) | (crc << 17)) + kMaskDelta`.
    crc32c(data).rotate_right(15).wrapping_add(0xA282_EAD8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // The catalogue check value of CRC-32/ISCSI, and RFC 3720 B.4's 32 zero bytes and 32 0xFF bytes.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn the_mask_rotates_and_offsets_the_crc() {
        let crc: u32 = 0xE306_9283;
        assert_eq!(
            masked_crc32c(b"123456789"),
            crc.rotate_right(15).wrapping_add(0xA282_EAD8)
        );
        // Both values from TensorBoard's own `tensorflow_stub.pywrap_tensorflow.masked_crc32c`.
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224B_7FA3);
    }
}
