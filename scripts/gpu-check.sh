#!/usr/bin/env bash
# The GPU checks of the CUDA build in one go, on a machine with an NVIDIA GPU and PyTorch's
# CUDA 13 wheels but no Rust toolchain and no network (docs/gpu.md, "Running it on a GPU
# machine"). Build and pack first, here: scripts/build-cuda.sh --arch 90 --tests; then carry
# target/cuda.tar.xz and this checkout there and run
#
#   OUT=gpu-check scripts/gpu-check.sh [--quick]
#
# Stages, each under its own time limit, each writing its output to OUT as it goes (what a
# stage that overruns leaves is kept):
#   1. unpack target/cuda.tar.xz; nvidia-smi;
#   2. the device-generic tests: every nas-ops op on the GPU against the CPU (f64 and f32,
#      batch norm's running statistics) and every space's supernet and network;
#   3. a real search on the embedded digits for one epoch (`nas --device cuda run`);
#   4. `nas bench --device cuda` alone (and GDAS, SPOS, second order, the retraining step),
#      then alternated with PyTorch eager (and, without
#      --quick, torch.compile) on the DARTS first-order step at 8 cells x 16 channels x batch
#      64 (compare.sh), summarised by summarize.py into OUT/summary.md.
# Exit status: the number of stages that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
quick=0
[[ "${1:-}" == --quick ]] && quick=1
mkdir -p "$out"
failed=0
stage() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s)" | tee -a "$out/stages.txt"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - start))s" | tee -a "$out/stages.txt"
  tail -n 5 "$out/$name.txt"
  [[ $rc == 0 ]] || failed=$((failed + 1))
}

[[ -f target/cuda.tar.xz ]] || { echo "gpu-check.sh: target/cuda.tar.xz missing (scripts/build-cuda.sh --tests)" >&2; exit 99; }
tar -C target -xJf target/cuda.tar.xz || exit 99
wheels=$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$PWD/target/cuda/lib:${wheels}:${LD_LIBRARY_PATH:-}"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
nas=target/cuda/nas

stage tests-ops 240 target/cuda/tests/nas-ops device --test-threads 1 --nocapture
stage tests-spaces 300 target/cuda/tests/nas-tests devices --test-threads 1 --nocapture
# A device test that found no GPU passes, saying "skipped": here that is a failed check.
for t in tests-ops tests-spaces; do
  if grep -q "skipped" "$out/$t.txt"; then
    echo "   $t: tests skipped (no GPU seen)" | tee -a "$out/stages.txt"
    failed=$((failed + 1))
  fi
done
stage search 240 "$nas" --device cuda run configs/experiments/darts-digits.yaml \
  --set budget.epochs=1 --out "$out/search"
stage bench 180 "$nas" --device cuda bench --layers 8 --channels 16 --batch 64 --size 32 --steps 5
# The other drives on the GPU (hard Gumbel sample, one path, second order, the retraining step).
stage bench-others 300 bash -c "for s in gdas spos; do \"$nas\" --device cuda bench --steps 2 --strategy \$s || exit 1; done \
  && \"$nas\" --device cuda bench --steps 2 --order second \
  && \"$nas\" --device cuda bench --steps 2 --strategy retrain --layers 20 --channels 36 --batch 32"
compile=1
[[ $quick == 1 ]] && compile=0
stage compare 600 env DEVICE=cuda COMPILE=$compile NAS="$nas" OUT="$out/compare.jsonl" \
  bash benches/pytorch/compare.sh 2 16 8 64 first 5
[[ -s "$out/compare.jsonl" ]] && python3 benches/pytorch/summarize.py "$out/compare.jsonl" >"$out/summary.md" 2>&1
head -n 20 "$out/summary.md" 2>/dev/null
echo "gpu-check.sh: $failed stage(s) failed; results in $out/"
exit "$failed"
