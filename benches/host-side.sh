#!/usr/bin/env bash
# The host's side of a DARTS first-order search step, nas against PyTorch, on a machine
# without a GPU (docs/performance.md, thirteenth session). Alternates, REPS times:
#
#   nas:   the CUDA build (`scripts/build-cuda.sh`) against the emulated driver in host-only
#          mode (NAS_EMULATED_GPU_HOST_ONLY=1: every launch, memset and product is counted but
#          not carried out; memsets and copies are still checked against the allocations), at the issue-22 size (8 cells x 16 channels, batch 64,
#          32x32). What is timed is nas', candle's and cudarc's work per launch, plus the
#          emulated driver's own bookkeeping; the real driver's cost per launch is not in it.
#   torch: benches/pytorch/darts_step.py on the CPU at a size where the arithmetic is
#          negligible (batch 1, 8x8, one thread): the same operators, dispatched by Python,
#          the dispatcher and autograd, each running a CPU kernel of a few values. That is
#          PyTorch's cost per step when the device is not the bottleneck (the issue measured
#          0.87-1.0 s per step on an H100 at batch 8 and 256 alike); an upper bound on its
#          host side, since the tiny CPU kernels are in it.
#
#   benches/host-side.sh REPS [STEPS]
#
# NAS (default target/cuda/nas), EMULATED (default target/emulated-gpu/lib, built by
# scripts/emulated-gpu.sh --build-only) and PYTHON (default python3, with torch) choose what
# runs. One JSON line per run on stdout, with "impl" (nas-host-only, torch-cpu-tiny) and "rep".
set -euo pipefail
reps=${1:?usage: benches/host-side.sh REPS [STEPS]}
steps=${2:-20}
nas=${NAS:-target/cuda/nas}
lib=${EMULATED:-target/emulated-gpu/lib}
py=${PYTHON:-python3}
here=$(dirname "$0")
if [[ ! -x "$nas" || ! -e "$lib/libcuda.so.1" ]]; then
  echo "host-side.sh: needs $nas (scripts/build-cuda.sh) and $lib/libcuda.so.1" \
    "(scripts/emulated-gpu.sh --build-only)" >&2
  exit 2
fi
cuda_lib=$(dirname "$nas")/lib
for r in $(seq 1 "$reps"); do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  res=$(NAS_EMULATED_GPU_HOST_ONLY=1 LD_LIBRARY_PATH="$lib:$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    RAYON_NUM_THREADS=1 "$nas" --device cuda bench --layers 8 --channels 16 --batch 64 --size 32 \
    --steps "$steps" --json)
  "$py" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(impl="nas-host-only", rep=int(sys.argv[2]), load=sys.argv[3]); print(json.dumps(r))' \
    "$res" "$r" "$load"
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  res=$("$py" "$here/pytorch/darts_step.py" --layers 8 --channels 16 --batch 1 --size 8 \
    --steps 5 --warmup 1 --threads 1 --json)
  "$py" -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(impl="torch-cpu-tiny", rep=int(sys.argv[2]), load=sys.argv[3]); print(json.dumps(r))' \
    "$res" "$r" "$load"
done
