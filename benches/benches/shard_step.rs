//! The pure shard step: decide and apply one single-card order on a shard holding 10,000 funded
//! wallets and one SKU with a large pool. No journal, no threads: the core's own cost per order.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use giftcard_core::state::{Decision, ShardState};
use giftcard_core::*;
use giftcard_shard::scenario::{caller, order, sku, usd};

const WALLETS: u32 = 10_000;
const BATCH: u64 = 1_000;

fn loaded_shard() -> ShardState {
    let mut s = ShardState::new(ShardId(0), 1);
    let ctx = Ctx {
        now: UnixMillis(1),
        lsn: Lsn(1),
        shard: ShardId(0),
    };
    let mut lsn = 0;
    let mut run = |s: &mut ShardState, cmd: Command| {
        if let Decision::Events(evs) = s.decide(&cmd, &ctx) {
            for e in evs {
                lsn += 1;
                s.apply(&e, Lsn(lsn));
            }
        }
    };
    run(
        &mut s,
        Command::DefineSku(sku(0, SkuKind::SupplierCode, 2_500)),
    );
    run(
        &mut s,
        Command::AddCodes {
            sku: SkuId::new("sku-0"),
            supplier: None,
            first_slot: 0,
            count: 10_000_000,
            shard_count: 1,
        },
    );
    for w in 0..WALLETS {
        let wallet = giftcard_shard::scenario::wallet_id(w);
        run(
            &mut s,
            Command::CreateWallet {
                caller: caller(),
                wallet: wallet.clone(),
                kyc_verified: false,
            },
        );
        let dep = Command::Deposit {
            caller: caller(),
            wallet,
            deposit_id: RequestId::new("d"),
            amount: Money::new(1_000_000_000, usd()),
            reference: String::new(),
            fingerprint: [0; 16],
        };
        run(&mut s, dep);
    }
    s
}

fn bench(c: &mut Criterion) {
    let base = loaded_shard();
    let orders: Vec<OrderRequest> = (0..BATCH)
        .map(|i| order(i, (i * 7919 % u64::from(WALLETS)) as u32, 0, 1))
        .collect();
    let mut group = c.benchmark_group("shard_step");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("order_decide_apply", |b| {
        b.iter_batched(
            || base.clone(),
            |mut s| {
                let ctx = Ctx {
                    now: UnixMillis(2),
                    lsn: Lsn(0),
                    shard: ShardId(0),
                };
                for o in &orders {
                    if let Decision::Events(evs) = s.decide_order(black_box(o), &ctx) {
                        for e in &evs {
                            let lsn = Lsn(s.last_lsn().0 + 1);
                            s.apply(e, lsn);
                        }
                    }
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
