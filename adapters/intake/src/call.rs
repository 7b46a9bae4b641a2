//! The one way adapters call the engine from async code: the command or query is handed to the
//! engine with a reply callback and awaited without blocking the runtime, and an engine that is
//! only overloaded is asked again under one retry policy.

use giftcard_core::Command;
use giftcard_shard::{Engine, EngineError, Outcome, Query, QueryAnswer, Reply};
use std::future::Future;
use std::time::Duration;

/// An overloaded engine is asked again after 1 ms, doubling up to 200 ms, 16 tries in all
/// (about 1.6 s): enough to ride out a burst, short enough to answer 429 under real overload.
pub const RETRY_FIRST: Duration = Duration::from_millis(1);
pub const RETRY_MAX: Duration = Duration::from_millis(200);
pub const RETRY_TRIES: u32 = 16;

/// Submits a command and awaits its durable reply.
pub async fn submit(engine: &Engine, cmd: Command) -> Reply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    engine.submit(
        cmd,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.unwrap_or(Err(EngineError::Stopping))
}

/// Asks a query and awaits the answer.
pub async fn ask(engine: &Engine, q: Query) -> Result<QueryAnswer, EngineError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    engine.query(
        q,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    match rx.await.unwrap_or(Err(EngineError::Stopping))? {
        Outcome::Query(a) => Ok(a),
        other => Err(EngineError::Internal(format!("a query answered {other:?}"))),
    }
}

/// The waits of the retry policy, in order: one fewer than the tries.
fn retry_delays() -> impl Iterator<Item = std::time::Duration> {
    std::iter::successors(Some(RETRY_FIRST), |d| Some((*d * 2).min(RETRY_MAX)))
        .take(RETRY_TRIES as usize - 1)
}

/// Runs `call` until it is not refused as overloaded, under the retry policy above; the last
/// answer (perhaps still `Overloaded`) is returned.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut delays = retry_delays();
    loop {
        match (call().await, delays.next()) {
            (Err(EngineError::Overloaded), Some(delay)) => tokio::time::sleep(delay).await,
            (r, _) => return r,
        }
    }
}

/// [`retrying`] for a thread that may block (the outbox's own thread).
pub fn retrying_blocking<T>(
    mut call: impl FnMut() -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let mut delays = retry_delays();
    loop {
        match (call(), delays.next()) {
            (Err(EngineError::Overloaded), Some(delay)) => std::thread::sleep(delay),
            (r, _) => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_tries_16_times_waiting_1_ms_doubling_to_200_ms() {
        let delays: Vec<u64> = retry_delays().map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays.len() + 1, RETRY_TRIES as usize);
        assert_eq!(&delays[..9], &[1, 2, 4, 8, 16, 32, 64, 128, 200]);
        assert!(delays[9..].iter().all(|d| *d == 200));
        let mut calls = 0;
        let r: Result<(), _> = retrying_blocking(|| {
            calls += 1;
            Err(EngineError::Overloaded)
        });
        assert_eq!((r, calls), (Err(EngineError::Overloaded), RETRY_TRIES));
    }
}
