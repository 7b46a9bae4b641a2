//! `loadtest`: an open-loop load generator for the gift card engine. It sets up a data set
//! through the target's own front door, offers operations at intended times (or back to back in
//! closed loop), measures latency from the intended send time into HdrHistograms, draws the run,
//! and checks the target's books against every answer it saw. The same plan can be run against
//! the PostgreSQL peer in the same invocation, for a side-by-side comparison.
//!
//! It never reaches into a target's internals beyond what that target's clients could see
//! (the in-process target uses the engine's public API and its reconciliation).

pub mod books;
pub mod chart;
pub mod driver;
pub mod plan;
pub mod record;
pub mod report;
pub mod targets;
