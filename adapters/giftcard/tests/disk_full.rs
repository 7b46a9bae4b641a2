//! Full disk on the real server: `giftcard serve` keeps its data directory on a small tmpfs this
//! test mounts; once the set-up is acknowledged, a ballast file takes every free byte and four
//! clients keep writing. Promises checked:
//!
//! - a write the journal cannot make durable is answered 503 `unavailable` (problem+json), never
//!   2xx; from the first failure on, the engine refuses all work and `/readyz` says 503, while
//!   the process stays up and `/healthz` answers 503 so an orchestrator restarts it;
//! - a restart on the still-full disk refuses to start or refuses writes, and harms nothing;
//! - with space back (the ballast deleted), a restart passes `giftcard verify`, every
//!   acknowledged write is in the books, every unanswered one replays or is done once (see
//!   `acks`), and new writes succeed.
//!
//! Mounting needs root (CI runs as root): without it the test fails and says so, rather than
//! skip and hide the missing capability.

mod acks;
mod served;

use acks::{order_body, Books, Entry, Op};
use served::{verify, Client, Served};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Size of the test's filesystem: room for the server's data set several times over (the
/// journal of this test stays well under 2 MiB), so only the ballast fills it.
const FS_MB: u32 = 16;
const WALLETS: &[&str] = &["w-0", "w-1", "w-2", "w-3"];
const SKU: &str = "acme-25";
const CLIENTS: usize = 4;
/// Refusals each client collects before it stops: enough to see that the refusal lasts.
const REFUSALS_EACH: usize = 5;
/// Free space left beside the ballast: some writes still fit, so the journal fails mid-stream
/// with acknowledged writes just before the failure.
const SLACK_BYTES: u64 = 256 << 10;

/// A size-limited tmpfs mounted for the test; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size_mb: u32) -> Tmpfs {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "disk_full mounts a size-limited tmpfs, which needs root (CI runs as root); \
             run this test as root"
        );
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs on {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds it (a panic left a child behind): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes a file until the filesystem is full, then gives `slack` bytes back.
fn fill(path: &Path, slack: u64) {
    let mut f = std::fs::File::create(path).expect("create ballast");
    // Big blocks first, then single pages, so not even a page is left.
    for block in [1 << 20, 4096] {
        let buf = vec![0x5a_u8; block];
        loop {
            match f.write_all(&buf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("ballast write failed with something else than ENOSPC: {e}"),
            }
        }
    }
    // The file's length, not the sum of whole blocks: a block cut short by ENOSPC still took
    // its pages.
    let size = f.metadata().expect("ballast size").len();
    f.set_len(size.saturating_sub(slack))
        .expect("shrink ballast");
}

#[test]
fn a_full_disk_turns_writes_into_503_and_loses_nothing_acknowledged() {
    let started = Instant::now();
    let root = tempfile::tempdir().expect("tempdir");
    let fs = Tmpfs::mount(root.path(), FS_MB);
    let data = fs.path.join("data");
    let ballast = fs.path.join("ballast");
    let mut books = Books::default();
    let mut server = Served::start(&data);
    set_up(&server.client, &mut books);
    server = disk_fills_under_load(server, &data, &ballast, &mut books, "load-1");
    server = disk_fills_while_stopped(server, &data, &ballast, &mut books);
    // Again under load, now that the store has been reopened with space: sled keeps a snapshot
    // of its own from then on.
    server = disk_fills_under_load(server, &data, &ballast, &mut books, "load-2");
    let orders = books.recheck_all(&server.client);
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM after recovery: {status}");
    verify(&data);
    eprintln!(
        "3 full-disk episodes, {orders} orders read back at the end; outcomes {:?}; in {:?}",
        books.outcomes(),
        started.elapsed()
    );
}

/// Fills the disk under `server` while clients write, checks the refusals, restarts on the full
/// disk, frees the space, restarts, and checks the books; returns the new server.
fn disk_fills_under_load(
    mut server: Served,
    data: &Path,
    ballast: &Path,
    books: &mut Books,
    episode: &str,
) -> Served {
    let c = server.client.clone();
    fill(ballast, SLACK_BYTES);
    let (entries, refused) = write_until_refused(&c, episode);
    let (acked, unknown) = Books::counts(&entries);
    books.extend(entries);
    books.extend([engine_refuses_work(&mut server, &c, episode)]);

    // Today a journal failure is final for the process (engine/shard/src/writer.rs): space
    // coming back does not make it ready again; a restart does. This asserts that behaviour.
    std::fs::remove_file(ballast).expect("remove ballast");
    let r = c.get("/readyz", None).expect("readyz");
    assert_eq!(r.status, 503, "ready again without a restart? {r:?}");
    // Full again for the restart below.
    fill(ballast, 0);
    let status = server.terminate(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM with the journal failed: {status}"
    );

    let full_restart = restart_on_full_disk(data, books, episode);

    let (report, settled) = recover_with_space_back(data, ballast, books, episode);
    eprintln!(
        "disk full under load ({episode}): {acked} writes acknowledged, {unknown} unanswered, \
         {refused} answered 503; restart on the full disk: {full_restart}; with space back: \
         verify: {report}; {} acknowledged writes checked, {} unanswered were durable, {} redone",
        settled.acked, settled.unknown_durable, settled.unknown_redone,
    );
    Served::start(data)
}

/// The disk fills while the server is stopped (another process's files): the restart meets a
/// full disk with journal records newer than sled's last snapshot of its page table, so sled's
/// open tries to write a new one. Once space is back, everything must still be there.
fn disk_fills_while_stopped(
    server: Served,
    data: &Path,
    ballast: &Path,
    books: &mut Books,
) -> Served {
    // A write since this start's own sled snapshot, so the next open has news to snapshot.
    books.run(&server.client, order("before-stop"));
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM: {status}");
    fill(ballast, 0);
    let full_restart = restart_on_full_disk(data, books, "stopped");
    let (report, settled) = recover_with_space_back(data, ballast, books, "stopped");
    eprintln!(
        "disk full while stopped: restart on the full disk: {full_restart}; with space back: \
         verify: {report}; {} writes checked",
        settled.acked
    );
    Served::start(data)
}

/// Deletes the ballast, runs `giftcard verify`, starts the server, settles and checks the books,
/// writes anew (acknowledged, and checked), and stops it. Returns verify's summary and what the
/// settle found.
fn recover_with_space_back(
    data: &Path,
    ballast: &Path,
    books: &mut Books,
    episode: &str,
) -> (String, acks::Settled) {
    std::fs::remove_file(ballast).expect("remove ballast");
    let report = verify(data).lines().next().unwrap_or("").to_owned();
    let server = Served::start(data);
    let c = server.client.clone();
    let settled = books.settle(&c);
    books.check_totals(&c);
    books.run(&c, order(&format!("after-{episode}")));
    books.run(&c, deposit("w-0", &format!("after-{episode}"), 5_000));
    books.settle(&c);
    books.check_totals(&c);
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM after recovery: {status}");
    (report, settled)
}

/// The catalog, codes, wallets with deposits, and some orders: all acknowledged.
fn set_up(c: &Client, books: &mut Books) {
    books.define_sku(c, SKU, 2_500, true);
    let codes = (0..400).map(|i| format!("{SKU}-{i:04}")).collect();
    books.run(
        c,
        Op::Upload {
            sku: SKU.to_owned(),
            codes,
        },
    );
    // The last wallet is poor, so some orders end in a recorded rejection (insufficient_funds).
    for (i, w) in WALLETS.iter().enumerate() {
        books.create_wallet(c, w);
        let minor = if i + 1 == WALLETS.len() {
            10_000
        } else {
            500_000
        };
        books.run(c, deposit(w, "init", minor));
    }
    for i in 0..20 {
        books.run(c, order(&format!("setup-{i}")));
    }
}

/// An order of one or two cards, from a wallet the id picks.
fn order(id: &str) -> Op {
    let pick = id.bytes().map(usize::from).sum::<usize>();
    let wallet = WALLETS[pick % WALLETS.len()];
    Op::Order {
        id: id.to_owned(),
        body: order_body(id, wallet, &[(SKU, 1 + (pick % 2) as u32)]),
    }
}

fn deposit(wallet: &str, key: &str, minor: i64) -> Op {
    Op::Deposit {
        wallet: wallet.to_owned(),
        key: format!("{wallet}-{key}"),
        minor,
    }
}

/// Four clients write (orders, deposits, code uploads) until each has been refused a few times;
/// returns what they sent and were told, and how many answers were 503. Every 503 must be the
/// `unavailable` problem; anything else is classified as in `acks`.
fn write_until_refused(c: &Client, episode: &str) -> (Vec<Entry>, usize) {
    let refused = AtomicUsize::new(0);
    let first_refusal = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let entries = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (refused, first_refusal) = (&refused, &first_refusal);
                s.spawn(move || {
                    let mut entries = Vec::new();
                    let mut mine = 0;
                    for n in 0.. {
                        if mine >= REFUSALS_EACH {
                            break;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "writes were still acknowledged on a full disk after 2 minutes"
                        );
                        let op = match n % 4 {
                            0 | 1 => order(&format!("full-{episode}-{t}-{n}")),
                            2 => deposit(WALLETS[t], &format!("full-{episode}-{n}"), 1_000),
                            _ => Op::Upload {
                                sku: SKU.to_owned(),
                                codes: (0..5)
                                    .map(|i| format!("{SKU}-full-{episode}-{t}-{n}-{i}"))
                                    .collect(),
                            },
                        };
                        // A 503 already seen means the journal had failed before this request
                        // was sent: the engine must refuse it.
                        let sent_after_failure = first_refusal.load(Ordering::Acquire);
                        let sent = acks::send(c, &op);
                        if let Ok(r) = &sent {
                            if r.status == 503 {
                                assert_unavailable(r);
                                first_refusal.store(true, Ordering::Release);
                                refused.fetch_add(1, Ordering::Relaxed);
                                mine += 1;
                            } else {
                                assert!(
                                    !sent_after_failure,
                                    "answered {} after the journal failed: {op:?} {r:?}",
                                    r.status
                                );
                            }
                        }
                        let answer = acks::classify(&op, &sent);
                        entries.push(Entry { op, answer });
                    }
                    entries
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    (entries, refused.into_inner())
}

fn assert_unavailable(r: &served::Res) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.content_type, "application/problem+json", "{r:?}");
    assert_eq!(r.code(), "unavailable", "{r:?}");
}

/// After a journal failure: every write and read is refused, `/readyz` is 503, the process is up
/// and `/healthz` answers 503 (liveness fails, so an orchestrator restarts it), and the log
/// says why. Returns the refused write it sent.
fn engine_refuses_work(server: &mut Served, c: &Client, episode: &str) -> Entry {
    assert!(server.running(), "the server died:\n{}", server.log_tail());
    let r = c.get("/readyz", None).expect("readyz");
    assert_unavailable(&r);
    let r = c.get("/healthz", None).expect("healthz");
    assert_eq!(r.status, 503, "{r:?}");
    let op = deposit("w-1", &format!("while-failed-{episode}"), 1_000);
    let sent = acks::send(c, &op);
    assert_unavailable(sent.as_ref().expect("deposit"));
    // Recorded like any refused write: after the restart it must be done once, or not at all.
    let refused = Entry {
        answer: acks::classify(&op, &sent),
        op,
    };
    // Reads too: memory may hold what the disk does not (STYLE.md, Durability).
    let r = c
        .get("/v1/wallets/w-1", Some(served::ADMIN))
        .expect("read wallet");
    assert_unavailable(&r);
    assert!(
        !server.log_lines_with("journal write failed").is_empty(),
        "no journal failure logged:\n{}",
        server.log_tail()
    );
    refused
}

/// A restart while the disk is still full: it either refuses to start (sled writes on open, and
/// recovery fails) or comes up; then a write must be refused or be durable like any
/// acknowledged one (the books check it later). Either way the data directory must survive:
/// what follows checks every acknowledged write in it. Returns what happened.
fn restart_on_full_disk(data: &Path, books: &mut Books, episode: &str) -> String {
    let mut server = Served::spawn(data);
    match server.wait_ready() {
        Err(status) => {
            assert!(!status.success(), "exit status {status}");
            // The log names the cause, not only the step that failed.
            let said = server.log_lines_with("recovery failed");
            assert!(
                said.iter().any(|l| l.contains("No space left on device")),
                "{}",
                server.log_tail()
            );
            format!("refused to start: {status}")
        }
        Ok(()) => {
            let op = deposit("w-2", &format!("restarted-full-{episode}"), 1_000);
            let sent = acks::send(&server.client, &op);
            let answer = acks::classify(&op, &sent);
            let said = sent.map_or_else(|e| e, |r| r.status.to_string());
            books.extend([Entry { op, answer }]);
            let status = server.terminate(Duration::from_secs(60));
            assert!(status.success(), "SIGTERM on the full disk: {status}");
            format!("started; a deposit got {said}")
        }
    }
}
