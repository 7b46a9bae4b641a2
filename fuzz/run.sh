#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: fuzz/run.sh SECONDS_PER_TARGET [TARGET...]
# Installs cargo-fuzz if missing. Only the stable toolchain is assumed: cargo-fuzz needs
# nightly-only rustc flags, which RUSTC_BOOTSTRAP=1 unlocks on stable for this build only.
# New corpus entries go to fuzz/corpus/<target> (ignored by git), seeds come from
# fuzz/seeds/<target>; a crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
# Prints "target: N execs" per target from libFuzzer's final stats.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:?usage: fuzz/run.sh SECONDS_PER_TARGET [TARGET...]}"
shift
export RUSTC_BOOTSTRAP=1
# Sanitizer: none by default. Every crate under test forbids unsafe code, so ASan adds little
# here and halves the speed; panics, overflow checks and debug assertions stay on. Override with
# FUZZ_SANITIZER=address.
sanitizer="${FUZZ_SANITIZER:-none}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if [ "${#targets[@]}" = 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --sanitizer "$sanitizer"
logs="$(mktemp -d)"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    corpora=("$PWD/corpus/$t")
    [ -d "seeds/$t" ] && corpora+=("$PWD/seeds/$t")
    dict=()
    case "$t" in order_body | redemption_body) dict=("-dict=$PWD/json.dict") ;; esac
    echo "== $t (${seconds}s)"
    status=0
    cargo fuzz run --sanitizer "$sanitizer" "$t" "${corpora[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" > "$logs/$t.log" 2>&1 || status=$?
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units)' "$logs/$t.log" || true
    if [ "$status" != 0 ]; then
        echo "fuzz target $t failed (exit $status); its log: $logs/$t.log" >&2
        tail -60 "$logs/$t.log" >&2
        exit 1
    fi
done
echo "== executions per target"
for t in "${targets[@]}"; do
    echo "$t: $(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$logs/$t.log" | tail -1) execs"
done
