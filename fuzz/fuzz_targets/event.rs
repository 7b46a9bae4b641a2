//! The engine's event envelope decoder (`giftcard_shard::codec::decode`): every journal record
//! payload goes through it on recovery. Errors, never panics; an accepted event re-encodes and
//! decodes to itself.
#![no_main]

use giftcard_shard::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = codec::decode(data) else {
        return;
    };
    let mut again = Vec::new();
    codec::encode_into(&mut again, &event);
    let decoded = codec::decode(&again).expect("a re-encoded event decodes");
    assert_eq!(decoded, event, "an event changed through encode and decode");
});
