//! The snapshot file decoder (`giftcard_wal::decode_snapshot`) and, behind it, the decoding of
//! its body as recovery does it (a bincode list of per-shard state bytes, each decoded by
//! `giftcard_shard::codec_state`): errors, never panics or unbounded allocations.
#![no_main]

use libfuzzer_sys::fuzz_target;

const MAGIC: &[u8; 8] = b"GCSNAP01";

fn check(file: &[u8]) {
    let Ok((_through, body)) = giftcard_wal::decode_snapshot(file) else {
        return;
    };
    let Ok(parts) = bincode::deserialize::<Vec<Vec<u8>>>(&body) else {
        return;
    };
    for part in parts {
        let _ = giftcard_shard::codec_state(&part);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Wrap the input in a valid header (magic, length, checksum) so the body decoding is
    // reached, not only the header checks.
    let mut file = Vec::with_capacity(data.len() + 28);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&7u64.to_le_bytes());
    file.extend_from_slice(&crc32(data).to_le_bytes());
    file.extend_from_slice(&(data.len() as u64).to_le_bytes());
    file.extend_from_slice(data);
    check(&file);
    // And one shard's state directly.
    let _ = giftcard_shard::codec_state(data);
});

/// CRC-32 (IEEE), as crc32fast computes it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
