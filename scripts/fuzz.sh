#!/usr/bin/env bash
# Fuzzes the experiment-config loader and the architecture parsers for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s; every target)
#
# Targets (fuzz/fuzz_targets/): config_loader, darts_genotype, nb201_arch. Each starts from
# the seeds in fuzz/seeds/TARGET and keeps what it finds in fuzz/corpus/TARGET (ignored by
# git); a crash is written to fuzz/artifacts/TARGET and makes the script exit non-zero.
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Without them it runs the stable random-input test of the
# same parsers instead (framework/cli/tests/parsers_random.rs, also part of `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(config_loader darts_genotype nb201_arch)
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain or no cargo-fuzz; running the stable random-input test instead" >&2
  exec cargo test -p nas-cli --test cli parsers_random
fi

for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t: ${secs}s"
  # The targets are safe Rust looking for panics, aborts and broken round trips: no
  # sanitizer (twice the speed), but debug assertions (integer overflow panics) on.
  cargo +nightly fuzz run --sanitizer none --debug-assertions "$t" \
    "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz.sh: no crash in ${#targets[@]} target(s), ${secs}s each"
