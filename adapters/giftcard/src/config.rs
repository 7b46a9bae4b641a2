//! Configuration: `config/default.toml` is compiled in; a file given with `--config` replaces
//! it; then every `GIFTCARD_<SECTION>_<KEY>` environment variable overrides one setting
//! (`GIFTCARD_HTTP_ADDR`, `GIFTCARD_ENGINE_DATA_DIR` or its short form `GIFTCARD_DATA_DIR`,
//! `GIFTCARD_SHARDS`, `GIFTCARD_NATS_URL`, ...). Parsed once into typed structs.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// All settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub engine: EngineSection,
    pub http: giftcard_http::HttpConfig,
    pub nats: NatsSection,
    /// Absent from older files: no limits, no KYC threshold.
    #[serde(default)]
    pub risk: RiskSection,
}

/// `[risk]`: every wallet's default limits (an admin sets a wallet's own over the API) and the
/// KYC thresholds. Checked by the engine in the same commit as each order's debit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSection {
    /// The default limits, in the shape of `PUT /v1/wallets/{id}/limits`.
    #[serde(default)]
    pub limits: giftcard_http::wire::LimitsDto,
    /// Per currency: an order, or a UTC day's total, above this needs a verified wallet.
    #[serde(default)]
    pub kyc_threshold: Vec<giftcard_http::wire::MoneyDto>,
    /// An order over the KYC threshold from an unverified wallet: `"refuse"` (422
    /// kyc_required, the default) or `"review"` (202 pending_review, for an admin to settle).
    #[serde(default)]
    pub kyc_action: KycAction,
    /// How long an order waits for review before it is released by itself (0: a day; at most
    /// thirty days).
    #[serde(default)]
    pub review_ttl_ms: u64,
    /// Risk scoring: rules with weights, and the score above which an order is refused.
    #[serde(default)]
    pub scoring: ScoringSection,
}

/// What happens to an order that needs KYC from an unverified wallet.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KycAction {
    #[default]
    Refuse,
    Review,
}

/// `[risk.scoring]`: each rule that holds for an order adds its weight to the order's score.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringSection {
    /// A score above this refuses the order (`422 risk_rejected`); absent: scores are recorded
    /// and published only.
    #[serde(default)]
    pub reject_above: Option<u32>,
    /// A score above this (and not above `reject_above`) sends the order to review (`202
    /// pending_review`, its funds and codes held until an admin settles it or it expires).
    #[serde(default)]
    pub review_above: Option<u32>,
    #[serde(default)]
    pub rules: Vec<ScoringRule>,
}

/// One `[[risk.scoring.rules]]` entry: `rule` names it, `weight` is what it adds, the rest are
/// its parameters.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScoringRule {
    Velocity {
        weight: u32,
        window_ms: u64,
        orders: u32,
    },
    FundedRecently {
        weight: u32,
        age_ms: u64,
    },
    AmountOverHistory {
        weight: u32,
        percent: u32,
        min_orders: u32,
    },
    NewRecipient {
        weight: u32,
        min_amount: giftcard_http::wire::MoneyDto,
    },
    SharedRecipient {
        weight: u32,
        window_ms: u64,
        wallets: u32,
    },
    HotSku {
        weight: u32,
        window_ms: u64,
        cards: u32,
    },
}

impl ScoringSection {
    /// The engine's scoring, checked as the engine would.
    pub fn scoring(&self) -> Result<giftcard_core::risk::Scoring> {
        use giftcard_core::risk::{RiskRule, WeightedRule};
        let mut rules = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let (weight, rule) = match r {
                ScoringRule::Velocity {
                    weight,
                    window_ms,
                    orders,
                } => (
                    *weight,
                    RiskRule::Velocity {
                        window_ms: *window_ms,
                        orders: *orders,
                    },
                ),
                ScoringRule::FundedRecently { weight, age_ms } => {
                    (*weight, RiskRule::FundedRecently { age_ms: *age_ms })
                }
                ScoringRule::SharedRecipient {
                    weight,
                    window_ms,
                    wallets,
                } => (
                    *weight,
                    RiskRule::SharedRecipient {
                        window_ms: *window_ms,
                        wallets: *wallets,
                    },
                ),
                ScoringRule::HotSku {
                    weight,
                    window_ms,
                    cards,
                } => (
                    *weight,
                    RiskRule::HotSku {
                        window_ms: *window_ms,
                        cards: *cards,
                    },
                ),
                ScoringRule::AmountOverHistory {
                    weight,
                    percent,
                    min_orders,
                } => (
                    *weight,
                    RiskRule::AmountOverHistory {
                        percent: *percent,
                        min_orders: *min_orders,
                    },
                ),
                ScoringRule::NewRecipient { weight, min_amount } => {
                    let field = format!("risk.scoring.rules[{i}].min_amount");
                    let m = giftcard_http::input::money(&field, min_amount).map_err(|e| {
                        anyhow::anyhow!("{}: {e}", e.problem().field.unwrap_or_default())
                    })?;
                    (
                        *weight,
                        RiskRule::NewRecipient {
                            currency: m.currency(),
                            min_amount_minor: m.minor(),
                        },
                    )
                }
            };
            let one = giftcard_core::risk::Scoring {
                rules: vec![WeightedRule {
                    rule: rule.clone(),
                    weight,
                }],
                reject_above: None,
                review_above: None,
            };
            if !one.is_valid() {
                bail!(
                    "risk.scoring.rules[{i}]: weights are 0 to 1000, windows 1 ms to a day (hot_sku: \
                     from a second), counts, percentages and amounts above zero, wallets up to 64"
                );
            }
            rules.push(WeightedRule { rule, weight });
        }
        let scoring = giftcard_core::risk::Scoring {
            rules,
            reject_above: self.reject_above,
            review_above: self.review_above,
        };
        if !scoring.is_valid() {
            bail!(
                "risk.scoring: at most {} rules",
                giftcard_core::risk::RULES_MAX
            );
        }
        Ok(scoring)
    }
}

impl RiskSection {
    /// The engine's policy, every amount and currency checked as the API checks them.
    pub fn policy(&self) -> Result<giftcard_core::limits::RiskPolicy> {
        let limits = giftcard_http::input::limits("risk.limits", &self.limits)
            .map_err(|e| anyhow::anyhow!("{}: {e}", e.problem().field.unwrap_or_default()))?;
        let mut kyc = Vec::new();
        for (i, m) in self.kyc_threshold.iter().enumerate() {
            let m = giftcard_http::input::money(&format!("risk.kyc_threshold[{i}]"), m)
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.problem().field.unwrap_or_default()))?;
            if kyc.iter().any(|(c, _)| *c == m.currency()) {
                bail!("risk.kyc_threshold names {} twice", m.currency());
            }
            kyc.push((m.currency(), m.minor()));
        }
        if self.review_ttl_ms > giftcard_core::limits::REVIEW_TTL_MAX_MS {
            bail!(
                "risk.review_ttl_ms: at most {} (thirty days)",
                giftcard_core::limits::REVIEW_TTL_MAX_MS
            );
        }
        Ok(giftcard_core::limits::RiskPolicy {
            limits,
            kyc_threshold_minor: kyc,
            kyc_review: self.kyc_action == KycAction::Review,
            review_ttl_ms: self.review_ttl_ms,
        })
    }
}

/// `[engine]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    pub data_dir: PathBuf,
    /// 0 means one per core.
    pub shards: u16,
    pub mailbox_len_max: usize,
    pub batch_events_max: usize,
    pub cache_bytes: u64,
    pub checkpoint_after_records: u64,
    /// How long a rejected order's answer is replayed before its id may be used afresh (ms;
    /// 0 keeps rejections for ever). Absent from older files: one day.
    #[serde(default = "rejection_replay_window_ms")]
    pub rejection_replay_window_ms: u64,
    /// The least life of an issued card a jurisdiction sets, in days (0: none). Absent: 0.
    #[serde(default)]
    pub expiry_min_days: u32,
    /// 64 hex characters each.
    pub seal_key: String,
    pub hash_key: String,
    /// The version of `seal_key` (0: codes carry no version header). Absent: 0.
    #[serde(default)]
    pub seal_key_version: u8,
    /// Earlier sealing keys, `version:hex` comma-separated: they open what they sealed.
    #[serde(default)]
    pub previous_seal_keys: String,
}

/// `[nats]` (the queue adapter; off in the embedded default). Its settings are the queue
/// adapter's own configuration type, documented there and in `config/default.toml`.
pub type NatsSection = giftcard_queue::QueueConfig;

/// Short names the product promises, mapped to their section and key.
const ALIASES: &[(&str, &str, &str)] = &[
    ("GIFTCARD_DATA_DIR", "engine", "data_dir"),
    ("GIFTCARD_SHARDS", "engine", "shards"),
];

/// Loads the file (or the embedded default) and applies the environment.
pub fn load(file: Option<&Path>) -> Result<Config> {
    let text = match file {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => DEFAULT_TOML.to_owned(),
    };
    let mut value: toml::Table = toml::from_str(&text).context("parsing configuration")?;
    for (name, val) in std::env::vars() {
        let Some(rest) = name.strip_prefix("GIFTCARD_") else {
            continue;
        };
        let (section, key) = match ALIASES.iter().find(|(n, _, _)| *n == name) {
            Some((_, s, k)) => ((*s).to_owned(), (*k).to_owned()),
            None => match rest.split_once('_') {
                Some((s, k)) => (s.to_ascii_lowercase(), k.to_ascii_lowercase()),
                None => continue,
            },
        };
        let Some(toml::Value::Table(t)) = value.get_mut(&section) else {
            continue;
        };
        // `..._FILE` names a file holding the setting's value (a secret kept out of the
        // environment and the process list); the setting itself is the name without `_file`.
        let (key, val) = match key.strip_suffix("_file") {
            Some(setting) if !t.contains_key(&key) => {
                let text = std::fs::read_to_string(&val)
                    .with_context(|| format!("{name}: reading {val}"))?;
                (setting.to_owned(), text.trim().to_owned())
            }
            _ => (key, val),
        };
        let typed = setting_value(&name, &key, t.get(&key), val, &section)?;
        t.insert(key, typed);
    }
    let cfg: Config = toml::Value::Table(value)
        .try_into()
        .context("configuration has wrong or unknown fields")?;
    Ok(cfg)
}

/// The typed value of one setting given as text (from the environment or a file): parsed as the
/// type the configuration already has there. A list (API keys, gateways) is TOML: an inline
/// array `[{key_hash = "..", client = "..", role = ".."}]`, or a document of `[[api_keys]]`.
fn setting_value(
    name: &str,
    key: &str,
    current: Option<&toml::Value>,
    val: String,
    section: &str,
) -> Result<toml::Value> {
    Ok(match current {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            val.parse()
                .with_context(|| format!("{name} must be an integer"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            val.parse()
                .with_context(|| format!("{name} must be true or false"))?,
        ),
        Some(toml::Value::String(_)) => toml::Value::String(val),
        Some(toml::Value::Array(_)) | None if is_list(section, key) => {
            let inline = toml::from_str::<toml::Table>(&format!("v = {val}"))
                .ok()
                .and_then(|mut t| t.remove("v"));
            let list = match inline {
                Some(v) => v,
                // The parser's own message may quote the text, which holds secrets: not shown.
                None => toml::from_str::<toml::Table>(&val)
                    .map_err(|_| {
                        anyhow::anyhow!("{name} must be TOML: an array, or [[{key}]] tables")
                    })?
                    .remove(key)
                    .with_context(|| format!("{name} holds no [[{key}]]"))?,
            };
            if !list.is_array() {
                bail!("{name} must be a list");
            }
            list
        }
        Some(_) => bail!("{name} cannot be set from the environment"),
        None => bail!("{name} names no setting ([{section}] has no {key})"),
    })
}

/// Settings that are lists of tables, which the environment may replace whole.
fn is_list(section: &str, key: &str) -> bool {
    matches!(
        (section, key),
        ("http", "api_keys")
            | ("http", "gateways")
            | ("nats", "order_signers")
            | ("risk", "kyc_threshold")
    )
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32]> {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .with_context(|| format!("{what} must be hex"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what} must be 64 hex characters (32 bytes)"))
}

/// `version:hex,version:hex` as (version, key) pairs.
fn previous_keys(text: &str) -> Result<Vec<(u8, [u8; 32])>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (v, hex) = entry
                .split_once(':')
                .context("engine.previous_seal_keys entries are version:hex")?;
            let v: u8 = v
                .trim()
                .parse()
                .context("a previous seal key's version is 0 to 255")?;
            Ok((v, hex32(hex.trim(), "engine.previous_seal_keys")?))
        })
        .collect()
}

fn rejection_replay_window_ms() -> u64 {
    86_400_000
}

impl Config {
    /// The engine's settings as the engine takes them.
    pub fn engine_config(&self) -> Result<giftcard_shard::EngineConfig> {
        let shards = match self.engine.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u16),
            n => n,
        };
        let mut c = giftcard_shard::EngineConfig::new(&self.engine.data_dir, shards);
        c.mailbox_len_max = self.engine.mailbox_len_max;
        c.batch_events_max = self.engine.batch_events_max;
        c.cache_bytes = self.engine.cache_bytes;
        c.checkpoint_after_records = self.engine.checkpoint_after_records;
        c.rejection_replay_window_ms = self.engine.rejection_replay_window_ms;
        if self.engine.expiry_min_days > giftcard_core::expiry::EXPIRY_DAYS_MAX {
            bail!(
                "engine.expiry_min_days is at most {}",
                giftcard_core::expiry::EXPIRY_DAYS_MAX
            );
        }
        c.expiry_min_days = self.engine.expiry_min_days;
        c.seal_key = hex32(&self.engine.seal_key, "engine.seal_key")?;
        c.seal_key_version = self.engine.seal_key_version;
        c.previous_seal_keys = previous_keys(&self.engine.previous_seal_keys)?;
        if c.previous_seal_keys
            .iter()
            .any(|(v, _)| *v == c.seal_key_version)
        {
            bail!("engine.previous_seal_keys repeats the version of engine.seal_key");
        }
        c.hash_key = hex32(&self.engine.hash_key, "engine.hash_key")?;
        // The queue adapter publishes events from the journal: checkpoints must keep what it
        // has not published yet.
        c.outbox = self.nats.enabled;
        c.risk = std::sync::Arc::new(self.risk.policy()?);
        c.scoring = std::sync::Arc::new(self.risk.scoring.scoring()?);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_environment_overrides() {
        let cfg = load(None).unwrap();
        assert_eq!(cfg.http.addr, "127.0.0.1:8080");
        assert_eq!(cfg.engine.data_dir, PathBuf::from("./data"));
        assert!(!cfg.nats.enabled);
        cfg.engine_config().unwrap();
    }
}
