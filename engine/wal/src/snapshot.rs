//! Snapshot files: `snapshot.bin` in the data directory, written to a temporary file, synced,
//! renamed over the old one, and the directory synced, so a crash leaves the old or the new
//! snapshot whole, never a mix. Layout: magic, version, through_seq:u64, crc32:u32, len:u64, bytes.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"GCSNAP01";
const FILE: &str = "snapshot.bin";

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot i/o")]
    Io(#[from] std::io::Error),
    #[error("snapshot is corrupt: {0}")]
    Corrupt(&'static str),
}

impl SnapshotError {
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            SnapshotError::Io(e) => e,
            SnapshotError::Corrupt(m) => std::io::Error::new(std::io::ErrorKind::InvalidData, m),
        }
    }
}

/// Writes the snapshot covering frames through `through_seq`, durably and atomically.
pub fn write_snapshot(dir: &Path, through_seq: u64, state: &[u8]) -> Result<(), SnapshotError> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(&through_seq.to_le_bytes())?;
    f.write_all(&crc32fast::hash(state).to_le_bytes())?;
    f.write_all(&(state.len() as u64).to_le_bytes())?;
    f.write_all(state)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(FILE))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads the snapshot, if any: `(through_seq, state bytes)`.
pub fn read_snapshot(dir: &Path) -> Result<Option<(u64, Vec<u8>)>, SnapshotError> {
    let mut f = match File::open(dir.join(FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    decode_snapshot(&bytes).map(Some)
}

/// Decodes a snapshot file's bytes, checking magic, length and checksum.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(u64, Vec<u8>), SnapshotError> {
    if bytes.len() < 28 || &bytes[..8] != MAGIC {
        return Err(SnapshotError::Corrupt("bad magic or short header"));
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let through = u64_at(8);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    let len = u64_at(20);
    let body = &bytes[28..];
    if body.len() as u64 != len {
        return Err(SnapshotError::Corrupt("length mismatch"));
    }
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(SnapshotError::Corrupt("checksum mismatch"));
    }
    Ok((through, body.to_vec()))
}
