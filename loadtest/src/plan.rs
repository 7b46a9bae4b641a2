//! What a run offers: the arrival-rate shape over time (steady, ramp, spike) and the mix of
//! operations (single cards, hot SKUs, bulk orders, redemptions, balance inquiries). Everything
//! here is a pure function of the arguments and a seed, so two targets in one comparison get
//! the very same sequence of operations at the very same intended times.

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One stretch of the arrival shape: the rate moves linearly from `from_per_s` to `to_per_s`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub label: String,
    pub secs: f64,
    pub from_per_s: f64,
    pub to_per_s: f64,
}

/// The open-loop arrival shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shape {
    pub segments: Vec<Segment>,
}

/// Ramps are cut into steps this long, each at a constant rate.
const RAMP_STEP_SECS: f64 = 0.1;

impl Shape {
    /// A constant rate.
    pub fn steady(rate_per_s: f64, secs: f64) -> Shape {
        Shape {
            segments: vec![seg("steady", secs, rate_per_s, rate_per_s)],
        }
    }

    /// A linear climb from `from` to `to`.
    pub fn ramp(from_per_s: f64, to_per_s: f64, secs: f64) -> Shape {
        Shape {
            segments: vec![seg("ramp", secs, from_per_s, to_per_s)],
        }
    }

    /// The Black Friday shape: base, 10x base, 100x base, then base again; `phase_secs` are the
    /// four durations.
    pub fn spike(base_per_s: f64, phase_secs: [f64; 4]) -> Shape {
        let [a, b, c, d] = phase_secs;
        Shape {
            segments: vec![
                seg("base", a, base_per_s, base_per_s),
                seg("10x", b, base_per_s * 10.0, base_per_s * 10.0),
                seg("100x", c, base_per_s * 100.0, base_per_s * 100.0),
                seg("after", d, base_per_s, base_per_s),
            ],
        }
    }

    /// Total length of the run.
    pub fn secs(&self) -> f64 {
        self.segments.iter().map(|s| s.secs).sum()
    }

    /// The intended send time of every request, from the start of the run, in order.
    pub fn offsets(&self) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut seg_start = 0.0f64;
        for s in &self.segments {
            let steps = if s.from_per_s == s.to_per_s {
                1
            } else {
                (s.secs / RAMP_STEP_SECS).ceil().max(1.0) as usize
            };
            let step_secs = s.secs / steps as f64;
            for k in 0..steps {
                // The rate at the middle of the step keeps the ramp's total right.
                let mid = (k as f64 + 0.5) / steps as f64;
                let rate = s.from_per_s + (s.to_per_s - s.from_per_s) * mid;
                let t0 = seg_start + k as f64 * step_secs;
                if rate <= 0.0 {
                    continue;
                }
                let n = (rate * step_secs).round() as u64;
                let gap = step_secs / n.max(1) as f64;
                out.extend((0..n).map(|i| Duration::from_secs_f64(t0 + i as f64 * gap)));
            }
            seg_start += s.secs;
        }
        out
    }

    /// The label of the segment that covers `secs` from the start.
    pub fn label_at(&self, secs: f64) -> &str {
        let mut end = 0.0;
        for s in &self.segments {
            end += s.secs;
            if secs < end {
                return &s.label;
            }
        }
        self.segments.last().map_or("", |s| &s.label)
    }
}

fn seg(label: &str, secs: f64, from_per_s: f64, to_per_s: f64) -> Segment {
    Segment {
        label: label.into(),
        secs,
        from_per_s,
        to_per_s,
    }
}

/// Weights of the operation kinds, and their parameters. Read from `config/loadtest-*.toml`
/// under `[mix]`, or built in for the named profiles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    /// One card of a SKU chosen uniformly.
    pub single: u32,
    /// One card of one of the `hot_skus` first SKUs.
    pub hot: u32,
    /// `bulk_quantity` cards of one SKU (a corporate gifting order).
    pub bulk: u32,
    /// Redeem `redeem_amount_minor` from an issued card.
    pub redeem: u32,
    /// Balance inquiry of an issued card.
    pub balance: u32,
    pub hot_skus: u32,
    pub bulk_quantity: u32,
    pub redeem_amount_minor: i64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            single: 1,
            hot: 0,
            bulk: 0,
            redeem: 0,
            balance: 0,
            hot_skus: 10,
            bulk_quantity: 500,
            redeem_amount_minor: 1,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixFile {
    mix: Mix,
}

impl Mix {
    /// One card per order, SKUs uniform.
    pub fn uniform() -> Mix {
        Mix::default()
    }

    /// 90% of orders on 10 SKUs.
    pub fn hot_sku() -> Mix {
        Mix {
            single: 10,
            hot: 90,
            ..Mix::default()
        }
    }

    /// Large corporate orders (500 cards) mixed with single cards: 1 in 100 orders is bulk.
    pub fn bulk() -> Mix {
        Mix {
            single: 99,
            bulk: 1,
            ..Mix::default()
        }
    }

    /// Redemptions and balance inquiries of issued cards, 4 to 1.
    pub fn redeem() -> Mix {
        Mix {
            single: 0,
            redeem: 80,
            balance: 20,
            ..Mix::default()
        }
    }

    /// Reads `[mix]` from a TOML file.
    pub fn from_file(path: &Path) -> Result<Mix> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading mix file {}", path.display()))?;
        let file: MixFile = toml::from_str(&text)
            .with_context(|| format!("parsing mix file {}", path.display()))?;
        file.mix.validate()?;
        Ok(file.mix)
    }

    fn validate(&self) -> Result<()> {
        if self.total() == 0 {
            bail!("the mix has no weight at all");
        }
        if self.hot > 0 && self.hot_skus == 0 {
            bail!("hot orders need hot_skus >= 1");
        }
        if self.bulk > 0 && self.bulk_quantity == 0 {
            bail!("bulk orders need bulk_quantity >= 1");
        }
        Ok(())
    }

    fn total(&self) -> u32 {
        self.single + self.hot + self.bulk + self.redeem + self.balance
    }

    /// Whether the data set needs issued cards to redeem.
    pub fn needs_cards(&self) -> bool {
        self.redeem + self.balance > 0
    }

    /// Expected supplier cards sold per op, as (uniform share, hot share) per op.
    fn cards_per_op(&self) -> (f64, f64) {
        let t = f64::from(self.total().max(1));
        let uniform =
            (f64::from(self.single) + f64::from(self.bulk) * f64::from(self.bulk_quantity)) / t;
        (uniform, f64::from(self.hot) / t)
    }
}

/// One operation the tool sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `order_no` is unique within the run; targets turn it into their order id.
    Order {
        order_no: u64,
        wallet: u32,
        sku: u32,
        quantity: u32,
    },
    Redeem {
        redemption_no: u64,
        card: u32,
        amount_minor: i64,
    },
    Balance {
        card: u32,
    },
}

/// The data set a run needs, sized from the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scale {
    pub wallets: u32,
    pub skus: u32,
    /// Codes per SKU for SKUs beyond the hot ones.
    pub codes_per_sku: u64,
    pub hot_skus: u32,
    pub codes_per_hot_sku: u64,
    /// Issued cards bought during set-up for redemptions and inquiries.
    pub cards: u32,
    pub deposit_minor: i64,
    pub face_minor: i64,
}

impl Scale {
    /// Pools sized for `ops` operations of `mix` with 20% headroom, so a run measures the
    /// engine, not stock-outs.
    pub fn for_plan(mix: &Mix, ops: u64, wallets: u32, skus: u32) -> Scale {
        let (uniform, hot) = mix.cards_per_op();
        let ops = ops as f64;
        let hot_skus = if mix.hot > 0 {
            mix.hot_skus.min(skus)
        } else {
            0
        };
        // Bulk orders arrive in lumps: a few extra per SKU cover the luck of small runs.
        let lumps = 16 + 8 * u64::from(if mix.bulk > 0 { mix.bulk_quantity } else { 1 });
        let plain = (ops * uniform / f64::from(skus.max(1)) * 1.2).ceil() as u64 + lumps;
        let per_hot = if hot_skus > 0 {
            (ops * hot / f64::from(hot_skus) * 1.2).ceil() as u64 + plain
        } else {
            0
        };
        Scale {
            wallets,
            skus,
            codes_per_sku: plain,
            hot_skus,
            codes_per_hot_sku: per_hot,
            cards: if mix.needs_cards() { 2_000 } else { 0 },
            deposit_minor: 1_000_000_000,
            face_minor: 2_500,
        }
    }

    /// Codes loaded into SKU `i`.
    pub fn codes_of(&self, sku: u32) -> u64 {
        if sku < self.hot_skus {
            self.codes_per_hot_sku
        } else {
            self.codes_per_sku
        }
    }
}

/// Turns the mix into a deterministic sequence of operations.
pub struct OpGen {
    mix: Mix,
    scale: Scale,
    rng: StdRng,
    orders: u64,
    redemptions: u64,
}

impl OpGen {
    pub fn new(mix: Mix, scale: Scale, seed: u64) -> OpGen {
        OpGen {
            mix,
            scale,
            rng: StdRng::seed_from_u64(seed),
            orders: 0,
            redemptions: 0,
        }
    }
}

impl Iterator for OpGen {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        let m = &self.mix;
        let mut pick = self.rng.gen_range(0..m.total().max(1));
        let wallet = self.rng.gen_range(0..self.scale.wallets.max(1));
        let skus = self.scale.skus.max(1);
        let order = |sku: u32, quantity: u32, this: &mut u64| {
            *this += 1;
            Some(Op::Order {
                order_no: *this,
                wallet,
                sku,
                quantity,
            })
        };
        if pick < m.single {
            let sku = self.rng.gen_range(0..skus);
            return order(sku, 1, &mut self.orders);
        }
        pick -= m.single;
        if pick < m.hot {
            let sku = self.rng.gen_range(0..m.hot_skus.clamp(1, skus));
            return order(sku, 1, &mut self.orders);
        }
        pick -= m.hot;
        if pick < m.bulk {
            let sku = self.rng.gen_range(0..skus);
            return order(sku, m.bulk_quantity, &mut self.orders);
        }
        pick -= m.bulk;
        let card = self.rng.gen_range(0..self.scale.cards.max(1));
        if pick < m.redeem {
            self.redemptions += 1;
            return Some(Op::Redeem {
                redemption_no: self.redemptions,
                card,
                amount_minor: m.redeem_amount_minor,
            });
        }
        Some(Op::Balance { card })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_offsets_are_evenly_spaced_at_the_rate() {
        let offs = Shape::steady(1_000.0, 2.0).offsets();
        assert_eq!(offs.len(), 2_000);
        assert_eq!(offs[1] - offs[0], Duration::from_millis(1));
        assert!(offs.last().is_some_and(|d| *d < Duration::from_secs(2)));
    }

    #[test]
    fn spike_offers_base_then_ten_then_hundred_times_it() {
        let offs = Shape::spike(10.0, [1.0, 1.0, 1.0, 1.0]).offsets();
        let in_sec = |s: u64| offs.iter().filter(|d| d.as_secs() == s).count();
        assert_eq!(
            [in_sec(0), in_sec(1), in_sec(2), in_sec(3)],
            [10, 100, 1_000, 10]
        );
    }

    #[test]
    fn ramp_offers_the_area_under_the_line() {
        let n = Shape::ramp(0.0, 1_000.0, 10.0).offsets().len();
        assert!((4_900..=5_100).contains(&n), "{n}");
    }

    #[test]
    fn hot_sku_mix_puts_nine_in_ten_orders_on_ten_skus() {
        let scale = Scale::for_plan(&Mix::hot_sku(), 10_000, 100, 1_000);
        let hot = OpGen::new(Mix::hot_sku(), scale, 1)
            .take(10_000)
            .filter(|op| matches!(op, Op::Order { sku, .. } if *sku < 10))
            .count();
        assert!((8_900..=9_200).contains(&hot), "{hot}");
    }

    #[test]
    fn mix_file_parses_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, "[mix]\nsingle = 5\nbulk = 1\nbulk_quantity = 100\n").unwrap();
        let m = Mix::from_file(&p).unwrap();
        assert_eq!(
            (m.single, m.bulk, m.bulk_quantity, m.hot_skus),
            (5, 1, 100, 10)
        );
        std::fs::write(&p, "[mix]\nsingel = 5\n").unwrap();
        assert!(Mix::from_file(&p).is_err());
    }
}
