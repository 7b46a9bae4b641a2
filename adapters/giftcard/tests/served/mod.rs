//! The real `giftcard serve` as a child process, for fault tests: started on a free loopback port
//! with a given data directory and the development keys of `config/default.toml`, a small
//! blocking HTTP client for it, and `giftcard verify`. The child's output is drained all the time
//! (a full pipe would block its logging and so the server) and kept for failure messages.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The development API keys of `config/default.toml` (clear keys listed in README.md).
pub const ADMIN: &str = "dev-admin-key";
/// Client `checkout-1`.
pub const CHECKOUT: &str = "dev-checkout-key";
/// Supplier `supplier-1`.
pub const SUPPLIER: &str = "dev-supplier-key";
/// `checkout-1`'s payment service: deposits only.
pub const FUNDING: &str = "dev-funding-key";
/// Merchant `merchant-1`, accepting `Our Store` cards.
pub const MERCHANT: &str = "dev-merchant-key";

/// Fixed for the life of a data directory; three shards make orders cross shards and borrow stock.
pub const SHARDS: u16 = 3;

/// How long a start may take before the test gives up: generous, the machine is shared and slow
/// (debug build, recovery of the whole journal on every start).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of child output kept for failure messages.
const LOG_LINES_MAX: usize = 2_000;

/// A running `giftcard serve`.
pub struct Served {
    child: Child,
    /// The HTTP client for this server.
    pub client: Client,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Starts the server on `data` and waits until `/readyz` answers 200.
    pub fn start(data: &Path) -> Served {
        let mut served = Served::spawn(data);
        if let Err(status) = served.wait_ready() {
            panic!(
                "giftcard serve exited with {status} before it was ready:\n{}",
                served.log_tail()
            );
        }
        served
    }

    /// Starts the server on `data` and waits until it says where it listens (HTTP is up before
    /// recovery runs; `/readyz` tells when recovery is done).
    pub fn spawn(data: &Path) -> Served {
        Served::spawn_with(data, &[])
    }

    /// [`Served::spawn`] with more environment (later settings win: `RUST_LOG`, NATS...).
    pub fn spawn_with(data: &Path, env: &[(&str, &str)]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_giftcard"))
            .arg("serve")
            .env("GIFTCARD_DATA_DIR", data)
            .env("GIFTCARD_SHARDS", SHARDS.to_string())
            .env("GIFTCARD_HTTP_ADDR", "127.0.0.1:0")
            .env("GIFTCARD_HTTP_WORKERS", "2")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn giftcard serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        drain(stdout, log.clone(), Some(addr_tx));
        drain(stderr, log.clone(), None);
        let Ok(base) = addr_rx.recv_timeout(READY_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "giftcard serve never said where it listens:\n{}",
                tail(&log)
            );
        };
        Served {
            child,
            client: Client::new(&base),
            log,
        }
    }

    /// Waits until `/readyz` answers 200 (`Ok`) or the process exits (`Err` with its status).
    pub fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if matches!(self.client.get("/readyz", None), Ok(r) if r.status == 200) {
                return Ok(());
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "giftcard serve neither ready nor exited after {READY_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL giftcard serve");
        self.child.wait().expect("reap giftcard serve");
    }

    /// SIGTERM, then wait for the exit (a shutdown that never ends is a failure).
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > timeout {
                let log = self.log_tail();
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("giftcard serve did not stop within {timeout:?} of SIGTERM:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines the child printed.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// Every kept line of output that contains `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let lines = self.log.lock().expect("log");
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a child's output to its end, keeping the last lines; the stdout reader also reports the
/// base URL from the "listening" line.
fn drain(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    addr_tx: Option<std::sync::mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let (Some(tx), Some(url)) = (&addr_tx, line.strip_prefix("giftcard listening on ")) {
                let _ = tx.send(url.trim().to_owned());
            }
            let mut log = log.lock().expect("log");
            if log.len() == LOG_LINES_MAX {
                log.remove(0);
            }
            log.push(line);
        }
    });
}

fn tail(log: &Mutex<Vec<String>>) -> String {
    let lines = log.lock().expect("log");
    let from = lines.len().saturating_sub(40);
    lines[from..].join("\n")
}

/// `giftcard verify --data DIR` (the server must be stopped): asserts exit 0, returns its report.
pub fn verify(data: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_giftcard"))
        .args(["verify", "--data"])
        .arg(data)
        .output()
        .expect("run giftcard verify");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "giftcard verify failed ({}):\n{report}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// An HTTP answer: status, JSON body (Null when not JSON), content type, and whether the server
/// said it replayed an earlier answer (`Idempotent-Replayed: true`).
#[derive(Clone, Debug)]
pub struct Res {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
    pub replayed: bool,
}

impl Res {
    /// The problem `code` of an error answer ("" when there is none).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// A small blocking client; cheap to clone (connections are pooled per clone).
#[derive(Clone)]
pub struct Client {
    pub base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .max_idle_connections_per_host(16)
            .build();
        Client {
            base: base.to_owned(),
            agent,
        }
    }

    /// Sends a request. `Err` is a transport failure (refused, reset, timed out): no answer at
    /// all, so the client cannot know whether the server acted.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Res, String> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        for (h, v) in headers {
            req = req.set(h, v);
        }
        let sent = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let res = match sent {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("{method} {path}: {e}")),
        };
        let status = res.status();
        let content_type = res.header("content-type").unwrap_or("").to_owned();
        let replayed = res.header("idempotent-replayed") == Some("true");
        // A body cut short by a kill is no answer either: the status alone is not an
        // acknowledgement the client could act on.
        let text = res
            .into_string()
            .map_err(|e| format!("{method} {path}: body: {e}"))?;
        Ok(Res {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            content_type,
            replayed,
        })
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Result<Res, String> {
        self.call("GET", path, key, None, &[])
    }

    pub fn post(&self, path: &str, key: &str, body: &Value) -> Result<Res, String> {
        self.call("POST", path, Some(key), Some(body), &[])
    }
}
