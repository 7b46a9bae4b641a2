//! The systems a run can drive: the engine in-process, the engine over HTTP, the PostgreSQL
//! peer, and a target that only sleeps (to test the tool itself). Each sets up the data set
//! through its own front door, executes operations, and reports its books.

mod http;
mod inproc;
mod nats;
mod pg;
mod sleep;

use crate::plan::{Op, Scale};
use anyhow::{bail, Result};
use serde::Serialize;

pub use http::Http;
pub use inproc::InProcess;
pub use nats::Nats;
pub use pg::Postgres;
pub use sleep::Sleep;

/// How one operation ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: an order completed (with its card count), a redemption applied, a balance read.
    Completed { cards: u32 },
    /// A business rejection the target recorded (`out_of_stock`, `insufficient_funds`, ...).
    Rejected(String),
    /// Refused for overload (HTTP 429, a full mailbox): the target promises no effect.
    Shed,
    /// Anything else: a timeout, a 5xx, a broken connection. The effect is unknown.
    Failed(String),
}

impl Outcome {
    /// The key this outcome is counted under in the report.
    pub fn key(&self) -> String {
        match self {
            Outcome::Completed { .. } => "completed".into(),
            Outcome::Rejected(code) => format!("rejected:{code}"),
            Outcome::Shed => "shed".into(),
            Outcome::Failed(why) => format!("failed:{why}"),
        }
    }
}

/// What the target's books say, read before and after a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Books {
    /// Orders the target holds (completed and recorded rejections).
    pub orders: u64,
    /// Cards sold or issued.
    pub cards: u64,
    /// Invariant violations the target reported about itself.
    pub violations: Vec<String>,
}

/// Options that shape how a target is reached.
#[derive(Clone, Debug)]
pub struct TargetOpts {
    /// Connections for HTTP and PostgreSQL.
    pub connections: usize,
    /// Shards of the in-process engine (0: one per core).
    pub shards: u16,
    /// Schema the PostgreSQL peer builds its tables in (dropped and recreated at set-up).
    pub pg_schema: String,
    /// Distinguishes this run's ids on a server that keeps data between runs.
    pub run_id: String,
    /// The engine's HTTP API, which the NATS target uses for set-up, redemptions and books.
    pub http: String,
}

/// One of the systems under test.
pub enum Target {
    InProcess(InProcess),
    Http(Http),
    Nats(Nats),
    Postgres(Postgres),
    Sleep(Sleep),
}

impl Target {
    /// Opens a target from its spec: `inproc`, `http://HOST:PORT`, `nats://HOST:PORT` (with the
    /// HTTP API at `opts.http` for set-up and books), `postgres://...`,
    /// `sleep://MILLIS` (a target that answers every request after that long).
    pub async fn open(spec: &str, opts: &TargetOpts) -> Result<Target> {
        if spec == "inproc" || spec == "in-process" {
            Ok(Target::InProcess(InProcess::open(opts.shards).await?))
        } else if spec.starts_with("http://") {
            Ok(Target::Http(Http::open(spec, opts).await?))
        } else if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            Ok(Target::Postgres(Postgres::open(spec, opts).await?))
        } else if let Some(ms) = spec.strip_prefix("sleep://") {
            Ok(Target::Sleep(Sleep::new(std::time::Duration::from_micros(
                (ms.parse::<f64>()? * 1_000.0) as u64,
            ))))
        } else if spec.starts_with("nats://") {
            nats::check_url(spec)?;
            Ok(Target::Nats(Nats::open(spec, opts).await?))
        } else {
            bail!("unknown target {spec:?}: use inproc, http://HOST:PORT, nats://HOST:PORT, postgres://... or sleep://MILLIS")
        }
    }

    /// A short description for reports: what it is and how durable it was asked to be.
    pub fn describe(&self) -> String {
        match self {
            Target::InProcess(t) => t.describe(),
            Target::Http(t) => t.describe(),
            Target::Nats(t) => t.describe(),
            Target::Postgres(t) => t.describe(),
            Target::Sleep(t) => t.describe(),
        }
    }

    /// A short name for tables and file names.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::InProcess(_) => "inproc",
            Target::Http(_) => "http",
            Target::Nats(_) => "nats",
            Target::Postgres(_) => "postgres",
            Target::Sleep(_) => "sleep",
        }
    }

    /// Loads the data set: catalog, code pools, funded wallets, issued cards to redeem.
    pub async fn setup(&self, scale: &Scale) -> Result<()> {
        match self {
            Target::InProcess(t) => t.setup(scale).await,
            Target::Http(t) => t.setup(scale).await,
            Target::Nats(t) => t.setup(scale).await,
            Target::Postgres(t) => t.setup(scale).await,
            Target::Sleep(_) => Ok(()),
        }
    }

    /// Executes one operation. Never fails: every way it can end is an [`Outcome`].
    pub async fn exec(&self, op: &Op) -> Outcome {
        match self {
            Target::InProcess(t) => t.exec(op).await,
            Target::Http(t) => t.exec(op).await,
            Target::Nats(t) => t.exec(op).await,
            Target::Postgres(t) => t.exec(op).await,
            Target::Sleep(t) => t.exec(op).await,
        }
    }

    /// What the target holds for order `order_no` of this run: its outcome, or `None` if it
    /// has no such order.
    pub async fn lookup(&self, order_no: u64) -> Result<Option<Outcome>> {
        match self {
            Target::InProcess(t) => t.lookup(order_no).await,
            Target::Http(t) => t.lookup(order_no).await,
            Target::Nats(t) => t.lookup(order_no).await,
            Target::Postgres(t) => t.lookup(order_no).await,
            Target::Sleep(_) => Ok(None),
        }
    }

    /// The target's books now.
    pub async fn books(&self) -> Result<Books> {
        match self {
            Target::InProcess(t) => t.books().await,
            Target::Http(t) => t.books().await,
            Target::Nats(t) => t.books().await,
            Target::Postgres(t) => t.books().await,
            Target::Sleep(t) => Ok(t.books()),
        }
    }
}
