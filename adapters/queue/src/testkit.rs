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

/// A running `nats-server -js -sd DIR` child, killed on drop.
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
        let conf = store_dir.with_extension("conf");
        let text = format!("authorization {{\n{authorization}\n}}\n");
        std::fs::write(&conf, text).expect("nats-server configuration written");
        NatsServer::spawn(free_port(), store_dir, Some(&conf))
    }

    fn spawn(port: u16, store_dir: &Path, conf: Option<&Path>) -> NatsServer {
        let bin = nats_server_binary();
        let mut cmd = Command::new(&bin);
        if let Some(c) = conf {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store_dir)
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
    let stream = js.get_stream(stream).await.expect("stream exists");
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
            return out;
        }
    }
}

/// Polls `read_stream` until `done` holds for what is stored, or panics after `timeout`.
pub async fn wait_for(
    js: &Context,
    stream: &str,
    filter: &str,
    timeout: Duration,
    done: impl Fn(&[Stored]) -> bool,
) -> Vec<Stored> {
    let started = Instant::now();
    loop {
        let got = read_stream(js, stream, filter).await;
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
