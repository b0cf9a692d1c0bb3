//! Kafka record batches (message format v2): the CRC-32C check of every batch of a fetch.
//!
//! aiokafka checks each batch's CRC with a byte-at-a-time table (about a sixth of the profile
//! stage's CPU at 430-byte events); this does the same check with the CPU's CRC-32C
//! instruction where there is one (SSE 4.2), without the GIL. The profile stage's intake
//! (`driftwire.stages._fetch`) calls it on each fetch response and skips aiokafka's check only
//! for batches whose stored CRC this found correct.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

const LOG_OVERHEAD: usize = 12; // base offset (8) + batch length (4)
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21; // the CRC covers the batch from here to its end
const HEADER: usize = 61; // a v2 batch's header, up to its first record

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one byte at a time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc32c_table(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(mut crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut chunks = data.chunks_exact(8);
    let mut wide = crc as u64;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        wide = _mm_crc32_u64(wide, word);
    }
    crc = wide as u32;
    for &b in chunks.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    crc
}

/// CRC-32C of `data`, as Kafka stores it in a v2 batch.
pub fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has the instruction (checked just above).
            return !unsafe { crc32c_sse42(!0, data) };
        }
    }
    !crc32c_table(!0, data)
}

/// The stored CRCs of the leading v2 batches of `data` whose CRC is correct, in order: the
/// walk stops at the first batch that fails, is not v2, or is cut off (the end of a fetch).
fn checked_crcs(data: &[u8]) -> Vec<u32> {
    let mut crcs = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= HEADER {
        let batch = &data[pos..];
        let length = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]);
        if length < 0 || batch[MAGIC] != 2 {
            break;
        }
        let end = LOG_OVERHEAD + length as usize;
        if end > batch.len() || end < HEADER {
            break;
        }
        let stored =
            u32::from_be_bytes([batch[CRC], batch[CRC + 1], batch[CRC + 2], batch[CRC + 3]]);
        if crc32c(&batch[ATTRIBUTES..end]) != stored {
            break;
        }
        crcs.push(stored);
        pos += end;
    }
    crcs
}

/// `crc32c(data)`: CRC-32C of a bytes object (for tests against aiokafka's own).
#[pyfunction]
#[pyo3(name = "crc32c")]
pub fn py_crc32c(py: Python<'_>, data: &Bound<'_, PyBytes>) -> u32 {
    let raw = data.as_bytes();
    py.detach(|| crc32c(raw))
}

/// `batch_crcs(records)`: the stored CRCs of the leading v2 batches of a fetched record set
/// whose CRC is correct (see `checked_crcs`), computed without the GIL.
#[pyfunction]
pub fn batch_crcs(py: Python<'_>, records: &Bound<'_, PyBytes>) -> Vec<u32> {
    let raw = records.as_bytes();
    py.detach(|| checked_crcs(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // RFC 3720's test vector: 32 bytes of zeros
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(crc32c(&data), !crc32c_table(!0, &data));
        }
    }
}
