//! The delivery consumer opens sealed codes with libsodium, not with this crate: an independent
//! implementation (PyNaCl's `SealedBox`, libsodium's `crypto_box_seal_open`) must open what the
//! adapter seals, and must refuse a tampered box. Needs `python3` with PyNaCl (`.ci/run`
//! installs it); fails by name when it is missing, never skips.

use giftcard_queue::seal::{keygen, CodeSealer};
use std::process::Command;

const OPEN: &str = r#"
import base64, sys
from nacl.public import PrivateKey, SealedBox
sk = PrivateKey(base64.b64decode(sys.argv[1]))
try:
    print(SealedBox(sk).decrypt(base64.b64decode(sys.argv[2])).decode(), end="")
except Exception as e:
    print("refused:", type(e).__name__, end="")
"#;

fn libsodium_open(secret: &str, sealed: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", OPEN, secret, sealed])
        .output()
        .expect("python3 runs (it opens sealed codes with PyNaCl in this test)");
    assert!(
        out.status.success(),
        "python3 with PyNaCl is needed (pip install pynacl==1.5.0): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn libsodium_opens_the_codes_the_adapter_seals_and_refuses_a_tampered_one() {
    let (public, secret) = keygen();
    let sealer = CodeSealer::from_config(&public, false).expect("a key");
    let sealed = sealer
        .field("GIFT-4242-ABCD-9999".into())
        .expect("seals")
        .sealed_code
        .expect("sealed");
    assert_eq!(libsodium_open(&secret, &sealed), "GIFT-4242-ABCD-9999");

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bytes = b64.decode(&sealed).expect("base64");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let opened = libsodium_open(&secret, &b64.encode(bytes));
    assert!(opened.starts_with("refused:"), "{opened}");
}
