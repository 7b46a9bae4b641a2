//! The journal frame decoder (`giftcard_wal::decode_frame`) on hostile bytes: it must return an
//! error or records, never panic, and whatever it accepts must re-encode to the same bytes.
#![no_main]

use giftcard_wal::{decode_frame, FrameBuilder, FRAME_VERSION};
use libfuzzer_sys::fuzz_target;

fn check(frame: &[u8]) {
    let Ok(records) = decode_frame(frame) else {
        return;
    };
    // The format has one encoding per record list: an accepted frame is exactly what the
    // builder writes for its records, so nothing in it was skipped or misread.
    let mut b = FrameBuilder::new();
    for r in &records {
        b.push(r.shard, r.lsn, &r.payload);
    }
    assert_eq!(
        b.finish(),
        frame,
        "an accepted frame re-encodes differently"
    );
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Random bytes almost never carry a valid checksum; fix version and checksum so the
    // record parser behind them is reached too.
    if data.len() >= 9 {
        let mut frame = data.to_vec();
        frame[0] = FRAME_VERSION;
        let crc = crc32(&frame[5..]);
        frame[1..5].copy_from_slice(&crc.to_le_bytes());
        check(&frame);
    }
});

/// CRC-32 (IEEE), as crc32fast computes it; written out to keep the target's dependencies to
/// the crates under test.
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
