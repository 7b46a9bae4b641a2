//! Frame format (version 1), all integers little-endian:
//!
//! ```text
//! frame  = version:u8 crc32:u32 count:u32 body
//! body   = record*            (crc32 covers count and body)
//! record = shard:u16 lsn:u64 len:u32 payload[len]
//! ```
//! Decoding never trusts a length: every read is bounds-checked, so a torn or hostile frame is
//! an error, never a panic or a misread.

/// The only frame version written today.
pub const FRAME_VERSION: u8 = 1;

/// Frames are closed once they reach this size. sled 0.34 writes any log item above
/// segment_size / 4 (128 KiB by default) as a separate blob file that it never syncs, and the
/// item is not the value but the tree node holding it: a leaf holds up to 16 keys before it
/// splits, so a consolidated leaf of 16 frames must stay below 128 KiB. Measured here: frames of
/// 96 KiB left dozens of unsynced blob files after a 100k-order run; 7 KiB frames leave none.
pub const FRAME_BYTES_MAX: usize = 7 * 1024;

/// Largest single record a frame holds (one event; a bulk order of 10,000 cards is the biggest).
/// A frame with such a record exceeds `FRAME_BYTES_MAX`; the writer syncs any blob it causes.
pub const RECORD_BYTES_MAX: usize = 4 << 20;

const HEADER: usize = 1 + 4 + 4;

/// One journaled record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub shard: u16,
    pub lsn: u64,
    pub payload: Vec<u8>,
}

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame shorter than its header")]
    Short,
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    #[error("checksum mismatch")]
    Checksum,
    #[error("record runs past the end of the frame")]
    Truncated,
    #[error("{0} trailing bytes after the last record")]
    Trailing(usize),
}

/// Builds one frame.
pub struct FrameBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl Default for FrameBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBuilder {
    /// An empty frame.
    pub fn new() -> FrameBuilder {
        let mut buf = Vec::with_capacity(FRAME_BYTES_MAX + 1024);
        buf.extend_from_slice(&[0u8; HEADER]);
        FrameBuilder { buf, count: 0 }
    }

    /// Appends a record.
    pub fn push(&mut self, shard: u16, lsn: u64, payload: &[u8]) {
        self.push_with(shard, lsn, |buf| buf.extend_from_slice(payload));
    }

    /// Appends a record whose payload `write` encodes straight into the frame (no copy).
    pub fn push_with(&mut self, shard: u16, lsn: u64, write: impl FnOnce(&mut Vec<u8>)) {
        self.buf.extend_from_slice(&shard.to_le_bytes());
        self.buf.extend_from_slice(&lsn.to_le_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 4]);
        write(&mut self.buf);
        let len = (self.buf.len() - len_at - 4) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Seals the frame with its version and checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[0] = FRAME_VERSION;
        self.buf[5..9].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&self.buf[5..]);
        self.buf[1..5].copy_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
    if bytes.len() < n {
        return Err(FrameError::Truncated);
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn le<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], FrameError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(bytes, N)?);
    Ok(out)
}

/// Decodes and verifies a frame.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Record>, FrameError> {
    if frame.len() < HEADER {
        return Err(FrameError::Short);
    }
    if frame[0] != FRAME_VERSION {
        return Err(FrameError::UnknownVersion(frame[0]));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&frame[1..5]);
    if crc32fast::hash(&frame[5..]) != u32::from_le_bytes(crc) {
        return Err(FrameError::Checksum);
    }
    let mut rest = &frame[5..];
    let count = u32::from_le_bytes(le(&mut rest)?);
    // A record takes at least 14 bytes, which bounds the allocation whatever `count` claims.
    let mut records = Vec::with_capacity((count as usize).min(rest.len() / 14));
    for _ in 0..count {
        let shard = u16::from_le_bytes(le(&mut rest)?);
        let lsn = u64::from_le_bytes(le(&mut rest)?);
        let len = u32::from_le_bytes(le(&mut rest)?) as usize;
        let payload = take(&mut rest, len)?.to_vec();
        records.push(Record {
            shard,
            lsn,
            payload,
        });
    }
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let mut b = FrameBuilder::new();
        b.push(3, 7, b"hello");
        b.push(1, 9, b"");
        let f = b.finish();
        assert_eq!(decode_frame(&f).unwrap().len(), 2);
        for cut in 0..f.len() {
            assert!(
                decode_frame(&f[..cut]).is_err(),
                "cut at {cut} was accepted"
            );
        }
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(
                    decode_frame(&g).is_err(),
                    "flip at byte {i} bit {bit} was accepted"
                );
            }
        }
    }
}
