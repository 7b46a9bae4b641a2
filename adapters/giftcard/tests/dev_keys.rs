//! `giftcard serve` with the shipped development keys (public in this repository) refuses to
//! listen anywhere but loopback, unless `--insecure-dev-keys` says so; with its own keys it
//! starts. The refusal comes before anything is bound.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(data: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_giftcard"));
    cmd.arg("serve")
        .args(extra)
        .env("GIFTCARD_DATA_DIR", data)
        .env("GIFTCARD_SHARDS", "1")
        .env("GIFTCARD_HTTP_WORKERS", "1")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs the server until it says it listens (true) or exits (false), then stops it.
fn starts(mut cmd: Command) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("giftcard runs");
    let stdout = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let mut listening = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.contains("giftcard listening") {
            listening = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("exits");
    (listening, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn development_keys_are_refused_off_loopback_unless_insecure_is_said() {
    let data = tempfile::tempdir().expect("tempdir");
    let any = [("GIFTCARD_HTTP_ADDR", "0.0.0.0:0")];
    let (listening, err) = starts(serve(data.path(), &[], &any));
    assert!(!listening, "served on 0.0.0.0 with the development keys");
    assert!(err.contains("DEVELOPMENT keys"), "{err}");
    assert!(
        err.contains("http.api_keys") && err.contains("engine.seal_key"),
        "{err}"
    );

    // The dev seal key in upper case is still the dev seal key.
    let upper = "6465762D7365616C2D6B65792D6368616E67652D6D652D303132333435363738";
    let own_hash = "1111111111111111111111111111111111111111111111111111111111111111";
    let config = data.path().join("own-keys.toml");
    let default = include_str!("../../../config/default.toml");
    // The default configuration with its development API keys replaced by one of our own.
    let first_key = default
        .find("[[http.api_keys]]")
        .expect("api keys in the default");
    let nats = default
        .find("[nats]")
        .expect("a nats section in the default");
    let own = format!(
        "{}[[http.api_keys]]\nkey_hash = \"{own_hash}\"\nclient = \"admin\"\nrole = \"admin\"\n\n{}",
        &default[..first_key],
        &default[nats..]
    );
    std::fs::write(&config, own).expect("config written");
    let config = config.to_str().expect("utf-8 path");
    let own_engine_keys = [
        ("GIFTCARD_HTTP_ADDR", "0.0.0.0:0"),
        ("GIFTCARD_ENGINE_SEAL_KEY", upper),
        ("GIFTCARD_ENGINE_HASH_KEY", own_hash),
    ];
    let (listening, err) = starts(serve(data.path(), &["--config", config], &own_engine_keys));
    assert!(!listening, "the upper-case dev seal key passed");
    assert!(
        err.contains("engine.seal_key") && !err.contains("http.api_keys"),
        "{err}"
    );

    // Own keys everywhere: it starts.
    let own_everything = [
        ("GIFTCARD_HTTP_ADDR", "0.0.0.0:0"),
        (
            "GIFTCARD_ENGINE_SEAL_KEY",
            "2222222222222222222222222222222222222222222222222222222222222222",
        ),
        ("GIFTCARD_ENGINE_HASH_KEY", own_hash),
    ];
    let (listening, err) = starts(serve(data.path(), &["--config", config], &own_everything));
    assert!(listening, "own keys were refused: {err}");

    // Own keys from the environment alone, without a config file: API keys as an inline TOML
    // list, the seal key from a file named by GIFTCARD_ENGINE_SEAL_KEY_FILE.
    let seal_file = data.path().join("seal.key");
    std::fs::write(&seal_file, format!("{}\n", "3".repeat(64))).expect("key file");
    let api_keys = format!(r#"[{{key_hash = "{own_hash}", client = "admin", role = "admin"}}]"#);
    let from_env = [
        ("GIFTCARD_HTTP_ADDR", "0.0.0.0:0"),
        ("GIFTCARD_HTTP_API_KEYS", api_keys.as_str()),
        (
            "GIFTCARD_ENGINE_SEAL_KEY_FILE",
            seal_file.to_str().expect("utf-8"),
        ),
        ("GIFTCARD_ENGINE_HASH_KEY", own_hash),
    ];
    let (listening, err) = starts(serve(data.path(), &[], &from_env));
    assert!(
        listening,
        "own keys from the environment were refused: {err}"
    );

    // API keys from a file of [[api_keys]] tables named by GIFTCARD_HTTP_API_KEYS_FILE.
    let keys_file = data.path().join("api-keys.toml");
    std::fs::write(
        &keys_file,
        format!("[[api_keys]]\nkey_hash = \"{own_hash}\"\nclient = \"admin\"\nrole = \"admin\"\n"),
    )
    .expect("keys file");
    let from_files = [
        ("GIFTCARD_HTTP_ADDR", "0.0.0.0:0"),
        (
            "GIFTCARD_HTTP_API_KEYS_FILE",
            keys_file.to_str().expect("utf-8"),
        ),
        (
            "GIFTCARD_ENGINE_SEAL_KEY_FILE",
            seal_file.to_str().expect("utf-8"),
        ),
        ("GIFTCARD_ENGINE_HASH_KEY", own_hash),
    ];
    let (listening, err) = starts(serve(data.path(), &[], &from_files));
    assert!(listening, "own keys from files were refused: {err}");
    // Without the key file's API keys, the dev API keys are back and it refuses.
    let (listening, err) = starts(serve(
        data.path(),
        &[],
        &from_files[2..]
            .iter()
            .copied()
            .chain([("GIFTCARD_HTTP_ADDR", "0.0.0.0:0")])
            .collect::<Vec<_>>(),
    ));
    assert!(!listening && err.contains("http.api_keys"), "{err}");

    // The development keys with --insecure-dev-keys: it starts, and says so.
    let (listening, err) = starts(serve(data.path(), &["--insecure-dev-keys"], &any));
    assert!(listening, "--insecure-dev-keys was refused: {err}");
    assert!(err.contains("--insecure-dev-keys"), "{err}");

    // On loopback the development keys need nothing.
    let lo = [("GIFTCARD_HTTP_ADDR", "127.0.0.1:0")];
    assert!(starts(serve(data.path(), &[], &lo)).0);
}
