//! The journal's group commit: one frame of 1,000 records of 100 bytes written with one sled
//! batch, one flush and one fdatasync, versus the same records as one sled key each.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use giftcard_wal::{FrameBuilder, Wal, WalOptions};

const RECORDS: u64 = 1_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wal = Wal::open(dir.path(), &WalOptions::default()).expect("open");
    let payload = [7u8; 100];
    let mut group = c.benchmark_group("wal_append");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(30);
    let mut lsn = 0u64;
    group.bench_function("frame_of_1000_fdatasync", |b| {
        b.iter(|| {
            let mut f = FrameBuilder::new();
            for _ in 0..RECORDS {
                lsn += 1;
                f.push(0, lsn, &payload);
            }
            wal.append_group(&[f.finish()], &[]).expect("append")
        })
    });
    let db = sled::Config::new()
        .path(dir.path().join("plain"))
        .flush_every_ms(None)
        .open()
        .expect("sled");
    let mut key = 0u64;
    group.bench_function("key_per_record_flush", |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..RECORDS {
                key += 1;
                batch.insert(&key.to_be_bytes(), &payload[..]);
            }
            db.apply_batch(batch).expect("batch");
            db.flush().expect("flush")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
