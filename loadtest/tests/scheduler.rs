//! The open-loop scheduler's latency accounting, on a target that sleeps a known time: a stall of
//! the target must show up in the percentiles (it is charged to every request it delayed), where
//! a closed loop would hide it (coordinated omission).

use loadtest::driver::{drive, Mode};
use loadtest::plan::{Mix, OpGen, Scale, Shape};
use loadtest::record::{Recorder, Summary};
use loadtest::targets::{Sleep, Target};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DELAY: Duration = Duration::from_millis(1);
const STALL_AT: Duration = Duration::from_millis(500);
const STALL: Duration = Duration::from_millis(300);

async fn run_with_stall(mode: Mode) -> Summary {
    let target = Arc::new(Target::Sleep(Sleep::new(DELAY)));
    let start = Instant::now() + Duration::from_millis(20);
    if let Target::Sleep(s) = &*target {
        s.stall_at(start + STALL_AT, STALL);
    }
    let rec = Arc::new(Recorder::new(start, &[("steady".into(), 2.0)]));
    let ops = OpGen::new(
        Mix::uniform(),
        Scale::for_plan(&Mix::uniform(), 2_000, 10, 10),
        7,
    );
    let elapsed = drive(target, ops, mode, rec.clone(), false).await;
    rec.summary(elapsed).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_charges_a_stall_to_every_request_it_delayed() {
    let offsets = Arc::new(Shape::steady(1_000.0, 2.0).offsets());
    let s = run_with_stall(Mode::Open {
        offsets,
        inflight_max: 10_000,
    })
    .await;
    let l = &s.latency_us;
    assert_eq!(s.ops, 2_000);
    // 300 of 2,000 requests (15%) arrive during the stall and wait up to 300 ms for its end.
    assert!(
        l.p50 < 20_000,
        "p50 {} us: most requests only sleep 1 ms",
        l.p50
    );
    assert!(
        l.p90 >= 50_000,
        "p90 {} us should sit inside the stall",
        l.p90
    );
    assert!(l.p99 >= 200_000, "p99 {} us should show the stall", l.p99);
    assert!(
        l.max >= 280_000 && l.max < 400_000,
        "max {} us should be about the stall's 300 ms",
        l.max
    );
    // Nothing answered can be faster than the target's own delay.
    assert!(
        l.p50 >= 1_000,
        "p50 {} us is below the 1 ms the target sleeps",
        l.p50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_hides_the_same_stall_which_is_why_open_loop_is_the_default() {
    let s = run_with_stall(Mode::Closed {
        workers: 2,
        ops: 2_000,
        secs: 2.0,
    })
    .await;
    let l = &s.latency_us;
    // Two workers each waited once: the stall is in the max but not in the percentiles.
    assert!(l.max >= 250_000, "max {} us", l.max);
    assert!(
        l.p99 < 50_000,
        "p99 {} us: a closed loop sends nothing while it waits",
        l.p99
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_second_timeline_shows_when_the_stall_happened() {
    let offsets = Arc::new(Shape::steady(1_000.0, 2.0).offsets());
    let s = run_with_stall(Mode::Open {
        offsets,
        inflight_max: 10_000,
    })
    .await;
    // The stall ends at 0.8 s: everything it held is answered in second 0, with ~300 ms max.
    assert!(s.timeline[0].max_us >= 280_000, "{:?}", s.timeline[0]);
    assert!(s.timeline[1].max_us < 100_000, "{:?}", s.timeline[1]);
}
