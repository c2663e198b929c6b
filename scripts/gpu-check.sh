#!/usr/bin/env bash
# The GPU checks of the CUDA build in one go, on a machine with an NVIDIA GPU and PyTorch's
# CUDA 13 wheels but no Rust toolchain and no network (docs/gpu.md, "Running it on a GPU
# machine"). Build and pack first, here: scripts/build-cuda.sh --arch 90 --tests; then carry
# target/cuda.tar.xz and this checkout there and run
#
#   OUT=gpu-check scripts/gpu-check.sh [--budget SECONDS] [--compile]
#   RESULTS=dir OUT=/tmp/gpu-check scripts/gpu-check.sh ...   # also packs the results into dir
#
# Stages, most important first, each under its own time limit and all of them inside the
# budget (default 480 s; a stage whose limit no longer fits is skipped and counted as
# failed), each writing its output to OUT as it goes (what a stage that overruns leaves is
# kept):
#   1. unpack target/cuda.tar.xz; nvidia-smi;
#   2. every nas-ops op on the GPU against the CPU (f64 and f32, running statistics);
#   3. `nas bench --device cuda` on the DARTS first-order step at 8 cells x 16 channels x
#      batch 64, then alternated with PyTorch eager on the same step (compare.sh, one pair),
#      summarised by summarize.py into OUT/summary.md: the figures issue 22 asks for;
#   4. every space's supernet and network on the GPU against the CPU;
#   5. a real search on the embedded digits for one epoch (`nas --device cuda run`);
#   6. `nas bench --device cuda` for GDAS, SPOS, second order and the retraining step;
#   7. the DARTS step of 3 with the layouts moved: the batch norm's (NAS_BN_MIN_CHUNKS: every
#      batch norm at one block per channel, then from two chunks up, the default being 4;
#      NAS_BN_CHUNK: chunks of 2,048 and 1,024 values instead of 8,192) and the unit's
#      convolutions in two launches (NAS_UNIT_FUSED=0);
#   8. with --compile: a second pair against PyTorch eager and torch.compile (its
#      compilation takes minutes).
# With RESULTS set, OUT is packed into RESULTS/gpu-check.tgz on exit, beside copies of
# stages.txt and summary.md (three files: what a lent machine's $OUT can bring back).
# Exit status: the number of stages that failed or were skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
budget=480
compile=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --budget) budget=${2:?--budget needs seconds}; shift 2 ;;
    --compile) compile=1; shift ;;
    --quick) shift ;;  # the old name of the default (no torch.compile)
    *) echo "gpu-check.sh: unknown argument $1" >&2; exit 99 ;;
  esac
done
mkdir -p "$out"
if [[ -n "${RESULTS:-}" ]]; then
  mkdir -p "$RESULTS"
  pack() {
    cp "$out/stages.txt" "$out/summary.md" "$RESULTS/" 2>/dev/null
    tar -czf "$RESULTS/gpu-check.tgz" -C "$(dirname "$out")" "$(basename "$out")"
  }
  trap pack EXIT
fi
failed=0
started=$SECONDS
# stage NAME LIMIT COMMAND...: runs COMMAND for at most LIMIT seconds, or skips it when less
# than LIMIT is left of the budget.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - started)))
  if ((left < limit)); then
    echo "== $name skipped: ${left}s of the budget left, the stage needs ${limit}s" | tee -a "$out/stages.txt"
    failed=$((failed + 1))
    return
  fi
  local start=$SECONDS
  echo "== $name (limit ${limit}s)" | tee -a "$out/stages.txt"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - start))s" | tee -a "$out/stages.txt"
  tail -n 5 "$out/$name.txt"
  [[ $rc == 0 ]] || failed=$((failed + 1))
}
# A device test that found no GPU passes, saying "skipped": here that is a failed check.
no_gpu_seen() {
  if grep -q "skipped" "$out/$1.txt" 2>/dev/null; then
    echo "   $1: tests skipped (no GPU seen)" | tee -a "$out/stages.txt"
    failed=$((failed + 1))
  fi
}
summarize() {
  [[ -s "$out/compare.jsonl" ]] && python3 benches/pytorch/summarize.py "$out/compare.jsonl" >"$out/summary.md" 2>&1
}

[[ -f target/cuda.tar.xz ]] || { echo "gpu-check.sh: target/cuda.tar.xz missing (scripts/build-cuda.sh --tests)" >&2; exit 99; }
tar -C target -xJf target/cuda.tar.xz || exit 99
# The CUDA libraries candle opens at run time (cuBLAS, cuRAND, NVRTC) from PyTorch's wheels:
# every lib folder of the `nvidia` packages (CUDA 13 wheels share nvidia/cu13/lib, older ones
# have one per package), then a toolkit's, if the machine has one.
wheels=$(python3 -c 'import nvidia, os, glob; print(":".join(sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], "*", "lib")))))' 2>/dev/null || true)
toolkit=""
[[ -d /usr/local/cuda/lib64 ]] && toolkit=/usr/local/cuda/lib64
export LD_LIBRARY_PATH="$PWD/target/cuda/lib:${wheels}:${toolkit}:${LD_LIBRARY_PATH:-}"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
# Which of them load (a missing one makes every GPU stage fail the same way: say which first).
python3 - >>"$out/stages.txt" 2>&1 <<'PY'
import ctypes
for name in ["libcuda.so.1", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13",
             "libcurand.so.10", "libnvrtc.so.13"]:
    try:
        ctypes.CDLL(name)
        print(f"library {name}: found")
    except OSError as e:
        print(f"library {name}: MISSING ({e})")
PY
tail -n 6 "$out/stages.txt"
nas=target/cuda/nas

stage tests-ops 150 target/cuda/tests/nas-ops device --test-threads 1 --nocapture
no_gpu_seen tests-ops
stage bench 90 "$nas" --device cuda bench --layers 8 --channels 16 --batch 64 --size 32 --steps 5
stage compare 150 env DEVICE=cuda COMPILE=0 NAS="$nas" OUT="$out/compare.jsonl" \
  bash benches/pytorch/compare.sh 1 16 8 64 first 5
summarize
stage tests-spaces 120 target/cuda/tests/nas-tests devices --test-threads 1 --nocapture
no_gpu_seen tests-spaces
stage search 60 "$nas" --device cuda run configs/experiments/darts-digits.yaml \
  --set budget.epochs=1 --out "$out/search"
# The other drives on the GPU (hard Gumbel sample, one path, second order, the retraining step).
stage bench-others 90 bash -c "for s in gdas spos; do \"$nas\" --device cuda bench --steps 2 --strategy \$s || exit 1; done \
  && \"$nas\" --device cuda bench --steps 2 --order second \
  && \"$nas\" --device cuda bench --steps 2 --strategy retrain --layers 20 --channels 36 --batch 32"
# The layouts chosen without a GPU (nas-ops device.rs), each against the stage `bench`: the
# batch norm's (BN_MIN_CHUNKS 4 and chunks of 8,192 values, guesses) with every batch norm at
# one block per channel, from two chunks per channel up, and with chunks of 2,048 and of 1,024
# values from two up (the 16 x 16 and 8 x 8 cells over several blocks per channel too); and
# the separable unit's convolutions as two launches instead of one. Set the defaults from the
# fastest.
# One line per layout (the stage's last five lines, which the log shows), the full JSON in
# OUT/bench-layouts.jsonl.
stage bench-layouts 120 bash -c "for v in 'NAS_BN_MIN_CHUNKS=1000000' 'NAS_BN_MIN_CHUNKS=2' \
  'NAS_BN_CHUNK=2048 NAS_BN_MIN_CHUNKS=2' 'NAS_BN_CHUNK=1024 NAS_BN_MIN_CHUNKS=2' 'NAS_UNIT_FUSED=0'; do \
  r=\$(env \$v \"$nas\" --device cuda bench --layers 8 --channels 16 --batch 64 --size 32 --steps 3 --json) || exit 1; \
  python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r[\"layout\"]=sys.argv[1]; \
open(sys.argv[3],\"a\").write(json.dumps(r)+\"\\n\"); \
print(sys.argv[1], \"ms/step\", round(r[\"ms_per_step\"],2), \"launches/step\", r.get(\"gpu_kernel_launches_per_step\"), \"peak MiB\", r.get(\"gpu_peak_mib\"))' \
  \"\$v\" \"\$r\" \"$out/bench-layouts.jsonl\" || exit 1; done"
if [[ $compile == 1 ]]; then
  stage compare-compile 400 env DEVICE=cuda COMPILE=1 NAS="$nas" OUT="$out/compare.jsonl" \
    bash benches/pytorch/compare.sh 1 16 8 64 first 5
  summarize
fi
head -n 20 "$out/summary.md" 2>/dev/null
echo "gpu-check.sh: $failed stage(s) failed or skipped in $((SECONDS - started))s; results in $out/"
exit "$failed"
