//! The data directory is its owner's alone (issue 13): `giftcard serve` makes the directory
//! 0700, even one that existed with a looser mode, and every file it writes there (sled's
//! files, the journal, snapshots) is 0600, whatever the umask it was started with.

mod served;

use serde_json::json;
use served::{Served, ADMIN, CHECKOUT, FUNDING};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Every path under `dir` (itself included) with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(String, u32)>) {
    let meta = std::fs::metadata(dir).expect("metadata");
    out.push((dir.display().to_string(), meta.permissions().mode() & 0o777));
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            modes(&entry.expect("entry").path(), out);
        }
    }
}

#[test]
fn data_files_are_readable_by_their_owner_only() {
    let parent = tempfile::tempdir().expect("tempdir");
    let data = parent.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let served = Served::start(&data);
    let c = &served.client;
    let r = c
        .post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w-1"}))
        .expect("answer");
    assert_eq!(r.status, 201, "{r:?}");
    let r = c
        .post(
            "/v1/wallets/w-1/deposits",
            FUNDING,
            &json!({"deposit_id": "d-1", "amount": {"amount_minor": 500, "currency": "USD"}, "reference": "r"}),
        )
        .expect("answer");
    assert_eq!(r.status, 201, "{r:?}");
    let r = c
        .get("/v1/wallets/checkout-1~w-1", Some(ADMIN))
        .expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(served.terminate(Duration::from_secs(30)).success());

    let mut all = Vec::new();
    modes(&data, &mut all);
    assert!(all.len() > 2, "the server wrote files: {all:?}");
    let loose: Vec<_> = all.iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(loose.is_empty(), "readable by others: {loose:?}");
    assert_eq!(all[0].1, 0o700, "the data directory itself");
}
