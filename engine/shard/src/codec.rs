//! The journal's record payload: a versioned bincode envelope around a core event.

use giftcard_core::Event;

/// Version of the envelope written today.
pub const EVENT_VERSION: u8 = 1;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record payload")]
    Empty,
    #[error("unknown event version {0}")]
    UnknownVersion(u8),
    #[error("malformed event")]
    Malformed(#[from] bincode::Error),
}

/// Appends an event's envelope to `buf`.
pub fn encode_into(buf: &mut Vec<u8>, event: &Event) {
    buf.push(EVENT_VERSION);
    // Serializing a plain enum into a Vec cannot fail.
    let _ = bincode::serialize_into(buf, event);
}

/// Decodes an envelope.
pub fn decode(payload: &[u8]) -> Result<Event, DecodeError> {
    let (&version, body) = payload.split_first().ok_or(DecodeError::Empty)?;
    if version != EVENT_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    use bincode::Options;
    // Bounded: a hostile length prefix cannot make the decoder allocate more than the payload.
    let opts = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(payload.len() as u64 * 4 + 1024);
    Ok(opts.deserialize(body)?)
}
