//! The write-ahead log: checksummed, versioned frames of records in sled, written in groups with
//! one `apply_batch`, one sled flush and one `fdatasync` per group; replay; snapshot files.
//!
//! This crate knows bytes, not events: a record is a shard, a sequence number and an opaque
//! payload. It never decides what is durable enough: `append_group` returns only after the data
//! is on stable storage, or fails, and a failure is final for the process (the caller stops).
//!
//! Why the extra `fdatasync`: sled 0.34's `flush` makes its log stable with `sync_file_range`,
//! which flushes neither the device cache nor file metadata. We call `fdatasync` on sled's data
//! file after every flush. Frames stay below [`FRAME_BYTES_MAX`] because sled writes log items
//! (tree nodes) above 128 KiB as separate blob files without any sync; should one appear anyway
//! (a single huge record, such as a bulk order of thousands of issued cards), the writer syncs
//! every new blob file and the blob directory before the data file, so a reply never depends on
//! an unsynced blob.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod frame;
mod snapshot;

pub use frame::{
    decode_frame, FrameBuilder, FrameError, Record, FRAME_BYTES_MAX, FRAME_VERSION,
    RECORD_BYTES_MAX,
};
pub use snapshot::{decode_snapshot, read_snapshot, write_snapshot, SnapshotError};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Key prefixes inside the one sled tree, so a group's frames and side data share one atomic batch.
const FRAME_PREFIX: u8 = b'w';
const META_PREFIX: u8 = b'm';
/// The last frame number removed by truncation.
const TRUNCATED_META: &str = "truncated_through";

/// Failures of the journal's storage.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("sled failed during {op}")]
    Storage {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("file operation {op} failed on {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("frame {seq} is corrupt and is not the last frame: {reason}")]
    Corrupt { seq: u64, reason: FrameError },
}

fn storage(op: &'static str) -> impl FnOnce(sled::Error) -> WalError {
    move |source| WalError::Storage { op, source }
}

/// Tuning of the store.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// sled's page cache, in bytes; bounds the journal's share of resident memory.
    pub cache_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            cache_bytes: 64 << 20,
        }
    }
}

/// A frame read back during replay.
#[derive(Debug)]
pub struct ReplayedFrame {
    pub seq: u64,
    pub records: Vec<Record>,
}

/// The journal. One writer owns it; reads of side data (codes) may come from clones of `reader`.
pub struct Wal {
    db: sled::Db,
    data_file: File,
    dir: PathBuf,
    next_seq: u64,
    syncs: Arc<AtomicU64>,
    /// Blob files already synced (sled removes blobs it no longer needs; we forget those).
    synced_blobs: std::collections::HashSet<std::ffi::OsString>,
    blob_syncs: Arc<AtomicU64>,
    unfinished_snapshots_removed: usize,
}

/// A cheap handle for reading side data (sealed codes, metadata) from other threads.
#[derive(Clone)]
pub struct WalReader {
    db: sled::Db,
}

impl WalReader {
    /// Reads a side entry.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, WalError> {
        Ok(self
            .db
            .get(key)
            .map_err(storage("get"))?
            .map(|v| v.to_vec()))
    }

    /// Side entries whose key starts with `prefix`, in key order (sealed codes, for a key
    /// rotation).
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), WalError>> + '_ {
        self.db.scan_prefix(prefix).map(|r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(storage("scan"))
        })
    }

    /// Up to `max_frames` frames after `after_seq`, in order: how the outbox follows the journal.
    /// Only frames the writer has made durable are visible to a reader that is told their number
    /// (see `WriterShared::last_seq`); a frame that fails its checksum ends the read with an error.
    pub fn frames_after(
        &self,
        after_seq: u64,
        through_seq: u64,
        max_frames: usize,
    ) -> Result<Vec<ReplayedFrame>, WalError> {
        let mut out = Vec::new();
        if through_seq <= after_seq {
            return Ok(out);
        }
        for kv in self
            .db
            .range(frame_key(after_seq + 1)..=frame_key(through_seq))
            .take(max_frames)
        {
            let (k, v) = kv.map_err(storage("read frames"))?;
            let seq = frame_seq(&k);
            let records = decode_frame(&v).map_err(|reason| WalError::Corrupt { seq, reason })?;
            out.push(ReplayedFrame { seq, records });
        }
        Ok(out)
    }

    /// Stores a small metadata value. Not synced by itself: the next group flush covers it, so it
    /// suits positions that may safely fall back a little after a crash (the outbox cursor).
    pub fn put_meta_lazy(&self, name: &str, value: &[u8]) -> Result<(), WalError> {
        self.db
            .insert(meta_key(name), value)
            .map_err(storage("meta put"))?;
        Ok(())
    }

    /// Reads a metadata value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, WalError> {
        Ok(self
            .db
            .get(meta_key(name))
            .map_err(storage("meta get"))?
            .map(|v| v.to_vec()))
    }
}

impl Wal {
    /// Opens (or creates) the journal under `dir/journal`.
    pub fn open(dir: &Path, opts: &WalOptions) -> Result<Wal, WalError> {
        let path = dir.join("journal");
        let unfinished_snapshots_removed = remove_unfinished_snapshots(&path)?;
        let db = open_sled(&path, opts)?;
        let data_path = path.join("db");
        let data_file = File::open(&data_path).map_err(|source| WalError::Io {
            op: "open",
            path: data_path,
            source,
        })?;
        let last_frame = match db.scan_prefix([FRAME_PREFIX]).next_back() {
            Some(kv) => frame_seq(&kv.map_err(storage("scan"))?.0),
            None => 0,
        };
        // After a truncation no frame may be left; numbering must still go on past the snapshot,
        // or new frames would sort below it and be skipped by replay.
        let truncated = match db
            .get(meta_key(TRUNCATED_META))
            .map_err(storage("meta get"))?
        {
            Some(v) if v.len() == 8 => u64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            _ => 0,
        };
        let next_seq = last_frame.max(truncated) + 1;
        let mut wal = Wal {
            db,
            data_file,
            dir: dir.to_path_buf(),
            next_seq,
            syncs: Arc::new(AtomicU64::new(0)),
            synced_blobs: Default::default(),
            blob_syncs: Arc::new(AtomicU64::new(0)),
            unfinished_snapshots_removed,
        };
        // Blobs left by an earlier run may never have been synced; sync them once now.
        wal.sync_new_blobs()?;
        Ok(wal)
    }

    /// Unfinished sled snapshot files `open` had to remove (see [`remove_unfinished_snapshots`]).
    pub fn unfinished_snapshots_removed(&self) -> usize {
        self.unfinished_snapshots_removed
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A handle for reads from other threads.
    pub fn reader(&self) -> WalReader {
        WalReader {
            db: self.db.clone(),
        }
    }

    /// How many `fdatasync`s have completed: lets tests prove a sync precedes every reply.
    pub fn sync_counter(&self) -> Arc<AtomicU64> {
        self.syncs.clone()
    }

    /// Sequence number the next frame will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes frames and side entries atomically, then makes them durable. Returns the sequence
    /// number of the last frame written.
    pub fn append_group(
        &mut self,
        frames: &[Vec<u8>],
        side: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<u64, WalError> {
        let mut batch = sled::Batch::default();
        for (k, v) in side {
            debug_assert!(
                k.first() != Some(&FRAME_PREFIX),
                "side key collides with frames"
            );
            batch.insert(k.as_slice(), v.as_slice());
        }
        for f in frames {
            batch.insert(&frame_key(self.next_seq)[..], f.as_slice());
            self.next_seq += 1;
        }
        self.db.apply_batch(batch).map_err(storage("apply_batch"))?;
        self.sync()?;
        Ok(self.next_seq - 1)
    }

    /// How many blob files sled wrote that the journal had to sync (zero when frames are sized right).
    pub fn blob_sync_counter(&self) -> Arc<AtomicU64> {
        self.blob_syncs.clone()
    }

    /// Syncs every blob file sled wrote since the last call, then the blob directory.
    fn sync_new_blobs(&mut self) -> Result<(), WalError> {
        let blobs = self.dir.join("journal").join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(WalError::Io {
                    op: "read blob dir",
                    path: blobs,
                    source,
                })
            }
        };
        let mut present = std::collections::HashSet::new();
        let mut synced_any = false;
        for entry in entries {
            let entry = entry.map_err(|source| WalError::Io {
                op: "read blob dir",
                path: blobs.clone(),
                source,
            })?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                let path = entry.path();
                match File::open(&path) {
                    Ok(f) => f.sync_all().map_err(|source| WalError::Io {
                        op: "fsync blob",
                        path: path.clone(),
                        source,
                    })?,
                    // sled may remove an obsolete blob between listing and opening.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => {
                        return Err(WalError::Io {
                            op: "open blob",
                            path,
                            source,
                        })
                    }
                }
                self.blob_syncs.fetch_add(1, Ordering::Relaxed);
                synced_any = true;
            }
            present.insert(name);
        }
        if synced_any {
            File::open(&blobs)
                .and_then(|d| d.sync_all())
                .map_err(|source| WalError::Io {
                    op: "fsync blob dir",
                    path: blobs.clone(),
                    source,
                })?;
        }
        self.synced_blobs = present;
        Ok(())
    }

    /// sled flush, any new blob files, then a real `fdatasync` of its data file.
    fn sync(&mut self) -> Result<(), WalError> {
        self.db.flush().map_err(storage("flush"))?;
        self.sync_new_blobs()?;
        self.data_file.sync_data().map_err(|source| WalError::Io {
            op: "fdatasync",
            path: self.dir.join("journal/db"),
            source,
        })?;
        self.syncs.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Reads every frame after `after_seq`, in order. A corrupt last frame (a torn write) is
    /// removed and replay ends before it; a corrupt frame followed by good ones is an error.
    pub fn replay(
        &mut self,
        after_seq: u64,
        mut f: impl FnMut(ReplayedFrame),
    ) -> Result<u64, WalError> {
        let mut last = after_seq;
        let mut iter = self
            .db
            .range(frame_key(after_seq + 1)..frame_key(u64::MAX))
            .peekable();
        while let Some(kv) = iter.next() {
            let (k, v) = kv.map_err(storage("replay"))?;
            let seq = frame_seq(&k);
            match decode_frame(&v) {
                Ok(records) => f(ReplayedFrame { seq, records }),
                Err(_) if iter.peek().is_none() => {
                    drop(iter);
                    self.db.remove(&k).map_err(storage("remove torn frame"))?;
                    self.sync()?;
                    self.next_seq = seq;
                    return Ok(last);
                }
                Err(reason) => return Err(WalError::Corrupt { seq, reason }),
            }
            last = seq;
        }
        Ok(last)
    }

    /// Removes frames up to and including `seq` (they are covered by a snapshot).
    pub fn truncate_through(&mut self, seq: u64) -> Result<usize, WalError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in self.db.range(frame_key(0)..=frame_key(seq)) {
            batch.remove(kv.map_err(storage("truncate scan"))?.0);
            n += 1;
        }
        batch.insert(meta_key(TRUNCATED_META), &seq.to_le_bytes()[..]);
        self.db.apply_batch(batch).map_err(storage("truncate"))?;
        self.sync()?;
        Ok(n)
    }

    /// Reads a metadata value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, WalError> {
        self.reader().meta(name)
    }

    /// Writes a metadata value durably.
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), WalError> {
        self.db
            .insert(meta_key(name), value)
            .map_err(storage("meta set"))?;
        self.sync()
    }

    /// Writes a snapshot file that covers every frame up to `through_seq`, then truncates the
    /// frames up to `truncate_seq` (at most `through_seq`; lower while an outbox still needs them).
    pub fn checkpoint(
        &mut self,
        through_seq: u64,
        truncate_seq: u64,
        state: &[u8],
    ) -> Result<(), WalError> {
        write_snapshot(&self.dir, through_seq, state).map_err(|e| WalError::Io {
            op: "write snapshot",
            path: self.dir.clone(),
            source: e.into_io(),
        })?;
        if truncate_seq > 0 {
            self.truncate_through(truncate_seq.min(through_seq))?;
        }
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// Removes sled snapshot files whose write never finished, so sled can open the store.
///
/// sled 0.34 writes a snapshot of its page table on every open that finds new log records: to
/// `snap.{lsn}.generating`, synced, then renamed to `snap.{lsn}`. Its reader, though, takes the
/// highest-named `snap.*` file, `.generating` included, and refuses to open the store when that
/// file is short or fails its checksum. A full disk or a crash during the write therefore left a
/// journal sled would never open again, even with space back (sled issues #1527 and #1533, not
/// fixed in 0.34). Removing the file is safe: only the rename finishes a snapshot, and sled removes
/// older snapshots only after that rename, so sled recovers exactly as if the write had never
/// started, from the last finished snapshot (or none) plus its log.
fn remove_unfinished_snapshots(journal: &Path) -> Result<usize, WalError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| WalError::Io { op, path, source }
    };
    let data_path = journal.join("db");
    let data = match File::open(&data_path) {
        Ok(f) => f,
        // No store yet, so no snapshot either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("open", &data_path)(e)),
    };
    // sled holds this lock while the store is open, and a store closed a moment ago may still
    // hold it (see `open_sled`). If it stays taken, someone else has the store open and their
    // snapshot may be mid-write: leave it, and let sled's open report the lock.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    while fs2::FileExt::try_lock_exclusive(&data).is_err() {
        if std::time::Instant::now() >= deadline {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut removed = 0;
    let entries = std::fs::read_dir(journal).map_err(io("read journal dir", journal))?;
    for entry in entries {
        let entry = entry.map_err(io("read journal dir", journal))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())
                .map_err(io("remove unfinished sled snapshot", &entry.path()))?;
            removed += 1;
        }
    }
    // Closing the file releases the lock for sled's own open.
    drop(data);
    Ok(removed)
}

/// How long an open waits for another handle of the store to let go of sled's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens sled, waiting a little for the file lock: a process (or engine) that just closed the
/// directory may still be releasing it from sled's background threads. Seen in CI: a reopen
/// right after a close failed with "could not acquire lock" on a loaded machine.
fn open_sled(path: &Path, opts: &WalOptions) -> Result<sled::Db, WalError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_bytes)
            // We flush ourselves, once per group; a background flusher would only add syncs.
            .flush_every_ms(None)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.map_err(storage("open")),
        }
    }
}

fn frame_key(seq: u64) -> [u8; 9] {
    let mut k = [FRAME_PREFIX; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn frame_seq(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[1..9]);
    u64::from_be_bytes(b)
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![META_PREFIX];
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(records: &[(u16, u64, &[u8])]) -> Vec<u8> {
        let mut b = FrameBuilder::new();
        for (s, l, p) in records {
            b.push(*s, *l, p);
        }
        b.finish()
    }

    #[test]
    fn frames_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
            wal.append_group(&[frame(&[(0, 1, b"a"), (1, 1, b"b")])], &[])
                .unwrap();
            wal.append_group(
                &[frame(&[(0, 2, b"c")]), frame(&[(1, 2, b"d")])],
                &[(b"cx".to_vec(), b"v".to_vec())],
            )
            .unwrap();
            assert_eq!(wal.sync_counter().load(Ordering::Acquire), 2);
        }
        let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
        let mut seen = Vec::new();
        let last = wal
            .replay(0, |f| seen.extend(f.records.into_iter().map(|r| r.payload)))
            .unwrap();
        assert_eq!(last, 3);
        assert_eq!(
            seen,
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(wal.reader().get(b"cx").unwrap(), Some(b"v".to_vec()));
        assert_eq!(wal.next_seq(), 4);
    }

    #[test]
    fn full_size_frames_never_become_unsynced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
        let payload = [9u8; 100];
        let mut lsn = 0;
        for _ in 0..40 {
            let mut frames = Vec::new();
            let mut f = FrameBuilder::new();
            for _ in 0..1_000 {
                if f.len() >= FRAME_BYTES_MAX {
                    frames.push(std::mem::take(&mut f).finish());
                }
                lsn += 1;
                f.push(0, lsn, &payload);
            }
            frames.push(f.finish());
            wal.append_group(&frames, &[]).unwrap();
        }
        let blobs = std::fs::read_dir(dir.path().join("journal/blobs"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(
            blobs, 0,
            "frames of FRAME_BYTES_MAX went to sled blob files"
        );
        assert_eq!(wal.blob_sync_counter().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_oversized_record_is_written_as_a_blob_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
        let big = vec![3u8; 300 * 1024];
        wal.append_group(&[frame(&[(0, 1, &big)])], &[]).unwrap();
        assert!(
            wal.blob_sync_counter().load(Ordering::Relaxed) >= 1,
            "the blob sled wrote was synced"
        );
        let mut n = 0;
        wal.replay(0, |f| n += f.records[0].payload.len()).unwrap();
        assert_eq!(n, big.len());
    }

    #[test]
    fn torn_last_frame_is_discarded_but_torn_middle_frame_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
        let mut torn = frame(&[(0, 2, b"xyz")]);
        torn.truncate(torn.len() - 1);
        wal.append_group(&[frame(&[(0, 1, b"a")]), torn], &[])
            .unwrap();
        let mut n = 0;
        assert_eq!(wal.replay(0, |f| n += f.records.len()).unwrap(), 1);
        assert_eq!(n, 1);
        assert_eq!(wal.next_seq(), 2, "the torn frame's number is reused");

        let mut flipped = frame(&[(0, 2, b"b")]);
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        wal.append_group(&[flipped, frame(&[(0, 3, b"c")])], &[])
            .unwrap();
        assert!(matches!(
            wal.replay(0, |_| {}),
            Err(WalError::Corrupt { seq: 2, .. })
        ));
    }

    #[test]
    fn truncation_removes_covered_frames_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
        for i in 1..=5 {
            wal.append_group(&[frame(&[(0, i, b"e")])], &[]).unwrap();
        }
        wal.checkpoint(3, 3, b"state").unwrap();
        let mut seqs = Vec::new();
        wal.replay(3, |f| seqs.push(f.seq)).unwrap();
        assert_eq!(seqs, vec![4, 5]);
        let (through, state) = read_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!((through, state.as_slice()), (3, &b"state"[..]));
    }

    #[test]
    fn an_unfinished_sled_snapshot_does_not_make_the_journal_unopenable() {
        // Regression (found by the disk-full test of `giftcard serve`): sled writes a snapshot of
        // its page table on open; a full disk (or a crash) during that write leaves
        // `snap.{lsn}.generating`, which sled's own reader then picks as the newest snapshot and
        // refuses as corrupt, so the store never opened again, even with space back.
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
            wal.append_group(&[frame(&[(0, 1, b"a")])], &[]).unwrap();
            wal.append_group(&[frame(&[(0, 2, b"b")])], &[]).unwrap();
        }
        for (name, bytes) in [
            ("snap.7FFFFFFFFFFFFFFF.generating", &b""[..]),
            ("snap.7FFFFFFFFFFFFFFE.generating", &[0xAB; 40][..]),
        ] {
            std::fs::write(dir.path().join("journal").join(name), bytes).unwrap();
        }
        let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
        assert_eq!(wal.unfinished_snapshots_removed(), 2);
        let mut seen = Vec::new();
        wal.replay(0, |f| seen.extend(f.records.into_iter().map(|r| r.payload)))
            .unwrap();
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn numbering_continues_past_a_snapshot_that_covered_every_frame() {
        // Regression (found by the engine property test): after a checkpoint truncated every
        // frame, a reopened journal numbered new frames from 1 again, below the snapshot, and
        // replay after the snapshot skipped them.
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
            wal.append_group(&[frame(&[(0, 1, b"a")]), frame(&[(0, 2, b"b")])], &[])
                .unwrap();
            wal.checkpoint(2, 2, b"s").unwrap();
        }
        let mut wal = Wal::open(dir.path(), &WalOptions::default()).unwrap();
        assert_eq!(wal.next_seq(), 3);
        wal.append_group(&[frame(&[(0, 3, b"c")])], &[]).unwrap();
        let mut seen = Vec::new();
        wal.replay(2, |f| seen.push(f.seq)).unwrap();
        assert_eq!(seen, vec![3]);
    }
}
