//! The peer: the same purchase built the way a typical gift card platform builds it on
//! PostgreSQL, at `synchronous_commit = on`. One server round trip per order (a plpgsql
//! function), which is the fastest honest shape for PostgreSQL: the comparison flatters the
//! peer rather than the engine.
//!
//! The transaction: claim the order id (unique key, so a retry replays the stored outcome),
//! debit the wallet where the balance covers it, decrement the SKU's stock where it covers the
//! quantity, take that many unsold codes with `FOR UPDATE SKIP LOCKED`, write two ledger rows
//! that sum to zero. A rejection records the order's status and changes nothing else.

use super::{Books, Outcome, TargetOpts};
use crate::plan::{Op, Scale};
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Tables and the purchase function, in the schema named by `{schema}`.
const SCHEMA_SQL: &str = r#"
DROP SCHEMA IF EXISTS {schema} CASCADE;
CREATE SCHEMA {schema};
SET search_path = {schema};
CREATE TABLE wallet (
    wallet_id      bigint PRIMARY KEY,
    balance_minor  bigint NOT NULL CHECK (balance_minor >= 0)
);
CREATE TABLE sku (
    sku_id       int PRIMARY KEY,
    price_minor  bigint NOT NULL CHECK (price_minor > 0),
    in_stock     int NOT NULL CHECK (in_stock >= 0)
);
CREATE TABLE purchase (
    order_id     text PRIMARY KEY,          -- the client's idempotency key
    wallet_id    bigint NOT NULL,
    sku_id       int NOT NULL,
    quantity     int NOT NULL CHECK (quantity > 0),
    charged_minor bigint NOT NULL,
    outcome      text NOT NULL,             -- completed | out_of_stock | insufficient_funds | unknown_sku
    placed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE code (
    code_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku_id    int NOT NULL REFERENCES sku,
    secret    text NOT NULL UNIQUE,
    order_id  text REFERENCES purchase      -- NULL while unsold
);
CREATE TABLE entry (
    entry_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id  text NOT NULL REFERENCES purchase,
    account   text NOT NULL,                -- wallet:<id> | sales:<sku>
    amount_minor bigint NOT NULL            -- debit negative, credit positive; each order sums to 0
);
CREATE FUNCTION buy(p_order text, p_wallet bigint, p_sku int, p_qty int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_price bigint;
    v_total bigint;
    v_taken int;
    v_prior text;
BEGIN
    INSERT INTO purchase (order_id, wallet_id, sku_id, quantity, charged_minor, outcome)
    VALUES (p_order, p_wallet, p_sku, p_qty, 0, 'completed')
    ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT outcome INTO v_prior FROM purchase WHERE order_id = p_order;
        RETURN 'replay:' || v_prior;
    END IF;
    SELECT price_minor INTO v_price FROM sku WHERE sku_id = p_sku;
    IF NOT FOUND THEN
        UPDATE purchase SET outcome = 'unknown_sku' WHERE order_id = p_order;
        RETURN 'unknown_sku';
    END IF;
    v_total := v_price * p_qty;
    -- The wallet row first: it is rarely contended, so the hot SKU row stays locked briefly.
    UPDATE wallet SET balance_minor = balance_minor - v_total
     WHERE wallet_id = p_wallet AND balance_minor >= v_total;
    IF NOT FOUND THEN
        UPDATE purchase SET outcome = 'insufficient_funds' WHERE order_id = p_order;
        RETURN 'insufficient_funds';
    END IF;
    UPDATE sku SET in_stock = in_stock - p_qty WHERE sku_id = p_sku AND in_stock >= p_qty;
    IF NOT FOUND THEN
        UPDATE wallet SET balance_minor = balance_minor + v_total WHERE wallet_id = p_wallet;
        UPDATE purchase SET outcome = 'out_of_stock' WHERE order_id = p_order;
        RETURN 'out_of_stock';
    END IF;
    UPDATE code SET order_id = p_order
     WHERE code_id IN (SELECT code_id FROM code
                        WHERE sku_id = p_sku AND order_id IS NULL
                        ORDER BY code_id LIMIT p_qty
                        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_taken = ROW_COUNT;
    IF v_taken <> p_qty THEN
        RAISE EXCEPTION 'sku % counted stock but found only % of % codes', p_sku, v_taken, p_qty;
    END IF;
    INSERT INTO entry (order_id, account, amount_minor)
    VALUES (p_order, 'wallet:' || p_wallet, -v_total), (p_order, 'sales:' || p_sku, v_total);
    UPDATE purchase SET charged_minor = v_total WHERE order_id = p_order;
    RETURN 'completed';
END
$$;
"#;

/// Data, loaded with set-based SQL; indexes after the rows, as a bulk load would.
const LOAD_SQL: &str = r#"
SET search_path = {schema};
INSERT INTO wallet SELECT w, {deposit} FROM generate_series(0, {wallets} - 1) w;
INSERT INTO sku SELECT s, {price}, CASE WHEN s < {hot_skus} THEN {hot_codes} ELSE {codes} END
  FROM generate_series(0, {skus} - 1) s;
INSERT INTO code (sku_id, secret)
  SELECT s.sku_id, 'PG-' || s.sku_id || '-' || n || '-' || md5(s.sku_id || ':' || n)
  FROM sku s, LATERAL generate_series(1, s.in_stock) n;
CREATE INDEX code_unsold ON code (sku_id, code_id) WHERE order_id IS NULL;
CREATE INDEX code_sold ON code (order_id) WHERE order_id IS NOT NULL;
ANALYZE wallet, sku, code;
"#;

/// The checks behind the peer's books: what the engine's reconciliation checks, in SQL.
const VIOLATIONS_SQL: &str = r#"
SELECT 'ledger sums to ' || sum(amount_minor) FROM entry HAVING sum(amount_minor) <> 0
UNION ALL
SELECT 'sku ' || s.sku_id || ' counts ' || s.in_stock || ' in stock but has ' || count(c.code_id) || ' unsold codes'
  FROM sku s LEFT JOIN code c ON c.sku_id = s.sku_id AND c.order_id IS NULL
 GROUP BY s.sku_id, s.in_stock HAVING count(c.code_id) <> s.in_stock
UNION ALL
SELECT 'order ' || p.order_id || ' bought ' || p.quantity || ' but holds ' || count(c.code_id) || ' codes'
  FROM purchase p LEFT JOIN code c ON c.order_id = p.order_id
 WHERE p.outcome = 'completed'
 GROUP BY p.order_id, p.quantity HAVING count(c.code_id) <> p.quantity
"#;

/// PostgreSQL behind a `postgres://` URL.
pub struct Postgres {
    url: String,
    schema: String,
    conns: Vec<Mutex<(Client, Statement)>>,
    next: AtomicUsize,
    settings: String,
}

impl Postgres {
    pub async fn open(url: &str, opts: &TargetOpts) -> Result<Postgres> {
        let schema = opts.pg_schema.clone();
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("the PostgreSQL schema name must be lowercase letters, digits and _: {schema:?}");
        }
        let admin = connect(url).await?;
        admin
            .batch_execute(&SCHEMA_SQL.replace("{schema}", &schema))
            .await
            .context("creating the peer schema")?;
        let row = admin
            .query_one(
                "SELECT current_setting('fsync'), current_setting('server_version')",
                &[],
            )
            .await?;
        let settings = format!(
            "PostgreSQL {}, fsync={}, synchronous_commit=on",
            row.get::<_, String>(1),
            row.get::<_, String>(0)
        );
        let mut conns = Vec::new();
        for _ in 0..opts.connections.max(1) {
            let c = connect(url).await?;
            c.batch_execute(&format!(
                "SET search_path = {schema}; SET synchronous_commit = on;"
            ))
            .await?;
            let st = c.prepare("SELECT buy($1, $2, $3, $4)").await?;
            conns.push(Mutex::new((c, st)));
        }
        Ok(Postgres {
            url: redact(url),
            schema,
            conns,
            next: AtomicUsize::new(0),
            settings,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} at {} (schema {}), {} connections, one plpgsql call per order",
            self.settings,
            self.url,
            self.schema,
            self.conns.len()
        )
    }

    pub async fn setup(&self, scale: &Scale) -> Result<()> {
        let sql = LOAD_SQL
            .replace("{schema}", &self.schema)
            .replace("{deposit}", &scale.deposit_minor.to_string())
            .replace("{wallets}", &scale.wallets.to_string())
            .replace("{skus}", &scale.skus.to_string())
            .replace("{price}", &scale.face_minor.to_string())
            .replace("{hot_skus}", &scale.hot_skus.to_string())
            .replace("{hot_codes}", &scale.codes_per_hot_sku.to_string())
            .replace("{codes}", &scale.codes_per_sku.to_string());
        let c = self.conns[0].lock().await;
        c.0.batch_execute(&sql)
            .await
            .context("loading the peer's data set")
    }

    pub async fn exec(&self, op: &Op) -> Outcome {
        let Op::Order {
            order_no,
            wallet,
            sku,
            quantity,
        } = *op
        else {
            return Outcome::Failed("unsupported_by_peer".into());
        };
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let conn = self.conns[slot].lock().await;
        let (client, st) = &*conn;
        let order_id = format!("o-{order_no}");
        let (wallet, sku, quantity_i) = (i64::from(wallet), sku as i32, quantity as i32);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&order_id, &wallet, &sku, &quantity_i];
        let call = client.query_one(st, &params);
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Err(_) => Outcome::Failed("timeout".into()),
            Ok(Err(e)) => Outcome::Failed(
                e.code()
                    .map_or("connection".into(), |c| format!("sqlstate_{}", c.code())),
            ),
            Ok(Ok(row)) => match row.get::<_, String>(0).as_str() {
                "completed" => Outcome::Completed { cards: quantity },
                // A retried order id: the stored outcome, and no new record. Runs use fresh ids,
                // so this is counted apart from the outcomes the books check expects a record for.
                replay if replay.starts_with("replay:") => Outcome::Failed(replay.to_owned()),
                other => Outcome::Rejected(other.to_owned()),
            },
        }
    }

    pub async fn lookup(&self, order_no: u64) -> Result<Option<Outcome>> {
        let c = self.conns[0].lock().await;
        let row =
            c.0.query_opt(
                "SELECT outcome, quantity FROM purchase WHERE order_id = $1",
                &[&format!("o-{order_no}")],
            )
            .await?;
        Ok(row.map(|r| match r.get::<_, String>(0).as_str() {
            "completed" => Outcome::Completed {
                cards: r.get::<_, i32>(1) as u32,
            },
            other => Outcome::Rejected(other.to_owned()),
        }))
    }

    pub async fn books(&self) -> Result<Books> {
        let c = self.conns[0].lock().await;
        let row = c.0.query_one("SELECT (SELECT count(*) FROM purchase), (SELECT count(*) FROM code WHERE order_id IS NOT NULL)", &[]).await?;
        let violations =
            c.0.query(VIOLATIONS_SQL, &[])
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
        Ok(Books {
            orders: row.get::<_, i64>(0) as u64,
            cards: row.get::<_, i64>(1) as u64,
            violations,
        })
    }

    /// Drops the schema (tests clean up after themselves).
    pub async fn drop_schema(&self) -> Result<()> {
        let c = self.conns[0].lock().await;
        c.0.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await?;
        Ok(())
    }
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("loadtest: PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// The URL without a password, for reports.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}
