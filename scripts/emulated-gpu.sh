#!/usr/bin/env bash
# Runs the CUDA build of nas on a machine without a GPU, against an emulated driver
# (framework/kernels/emulated-gpu, docs/gpu.md "The emulated GPU").
#
# 1. Builds OUT/lib: libcuda.so.1 (the driver API that cudarc calls, with device.cu's kernels
#    and candle's own CUDA kernels compiled for the host and run over their grids on CPU
#    threads), libcublas.so.13 (candle's matrix products) and libcurand.so.10. candle's
#    kernels come from the candle-kernels sources in cargo's registry; each module is compiled
#    in its namespace and its `extern "C"` kernels registered by name (read from the object).
# 2. Checks the driver itself (selftest.cpp: an overrun, a canary, a missing kernel, ...).
# 3. Runs COMMAND with that folder first on LD_LIBRARY_PATH, so the CUDA binary's dlopen of
#    libcuda, libcublas and libcurand finds the emulation. With no command, runs the
#    device-generic tests of the CUDA build that scripts/build-cuda.sh --tests left in
#    target/cuda/tests (nas-ops' `device` tests, also with the other layouts gpu-check.sh
#    times; nas-tests' `conformance::devices`), then
#    target/cuda/nas: every drive's bench step at small sizes and a short digits search
#    (about 50 minutes on 2 cores, most of it `conformance::devices`: the weight gradients'
#    block reductions meet at barriers the emulation runs as fiber switches; 11 before).
#
# The CUDA build itself needs scripts/build-cuda.sh (its nvcc writes the PTX the binary
# embeds; the emulated driver reads the PTX's entry names, so a kernel missing from the PTX is
# refused as on a GPU). Slow: one CPU thread runs all the CUDA threads of a launch, as fibers.
#
# Usage: scripts/emulated-gpu.sh [--out target/emulated-gpu] [--build-only] [-- COMMAND...]
# Set NAS_EMULATED_GPU_STATS=1 for the launches per kernel, the memsets and copies, and the
# peak of device memory at exit. Set NAS_EMULATED_GPU_HOST_ONLY=1 to run nothing on the
# emulated device (launches, memsets, device copies and products counted, not carried out):
# what is left is the host's side of each step, to time and profile (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/emulated-gpu
build_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "emulated-gpu.sh: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
  esac
done

src=framework/kernels/emulated-gpu
csrc=framework/kernels/csrc
# candle-kernels of candle-core's version, as the CUDA build (scripts/build-cuda.sh) fetched it.
version=$(cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(next(p["version"] for p in d["packages"] if p["name"] == "candle-core"))' || true)
candle=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"candle-kernels-$version" 2>/dev/null | head -1 || true)
if [[ -z "$version" || -z "$candle" || ! -d "$candle/src" ]]; then
  echo "emulated-gpu.sh: the sources of candle-kernels $version are not in cargo's registry" \
    "(scripts/build-cuda.sh fetches them)" >&2
  exit 2
fi

mkdir -p "$out/obj" "$out/lib"
out_abs=$(cd "$out" && pwd)  # --out may be relative or absolute
# Initial-exec thread-locals: the kernels read their thread's coordinates (emulate.h's ctx) at
# every blockIdx and threadIdx, which in a dlopened library's default model is a call to
# __tls_get_addr each (19% of an emulated step's samples); with it, about 11% less CPU time
# (a DARTS bench step at 3 cells, 2026-12-08). The few bytes fit the loader's static reserve.
cxx=(g++ -std=c++17 -O2 -fPIC -pthread -fno-fast-math -ffp-contract=off -ftls-model=initial-exec -I"$src" -I"$src/include" -I"$csrc")

# candle's modules, but sort.cu (its argsort uses dynamic shared memory, not emulated) and the
# quantized ones (half precision).
objs=()
for m in affine binary cast conv fill indexing reduce ternary unary; do
  obj="$out/obj/candle_$m.o"
  objs+=("$obj")
  # Rebuilt when the prelude or its headers changed since.
  if [[ -f "$obj" && -z "$(find "$src" -newer "$obj" -type f | head -1)" ]]; then
    continue
  fi
  wrapper="$out/obj/candle_$m.cpp"
  {
    echo '#include "candle_prelude.h"'
    echo "namespace candle_$m {"
    echo 'using ::atomicAdd;'
    echo 'using ::atomicCAS;'
    echo 'using ::atomicMax;'
    echo 'using ::atomicMin;'
    echo "#include \"$candle/src/$m.cu\""
    echo '}'
  } > "$wrapper"
  # First pass: the kernels' names (the object's `extern "C"` functions); second: registered.
  "${cxx[@]}" -c "$wrapper" -o "$obj.names" 2>"$out/obj/candle_$m.log" || {
    cat "$out/obj/candle_$m.log" >&2; echo "emulated-gpu.sh: candle's $m.cu did not compile" >&2; exit 1; }
  nm -g --defined-only "$obj.names" | awk '$2 == "T" && $3 !~ /^_Z/ {print $3}' \
    | while read -r name; do echo "NAS_EMU_REGISTER(candle_$m, $name)"; done >> "$wrapper"
  "${cxx[@]}" -c "$wrapper" -o "$obj"
  rm -f "$obj.names"
done

"${cxx[@]}" -shared -Wl,-soname,libcuda.so.1 -o "$out/lib/libcuda.so.1" "$src/driver.cpp" "${objs[@]}"
ln -sf libcuda.so.1 "$out/lib/libcuda.so"
"${cxx[@]}" -shared -Wl,-soname,libcublas.so.13 -o "$out/lib/libcublas.so.13" "$src/cublas.cpp"
ln -sf libcublas.so.13 "$out/lib/libcublas.so"
"${cxx[@]}" -shared -Wl,-soname,libcurand.so.10 -o "$out/lib/libcurand.so.10" "$src/curand.cpp"
ln -sf libcurand.so.10 "$out/lib/libcurand.so"
echo "emulated-gpu.sh: built $out/lib (libcuda.so.1, libcublas.so.13, libcurand.so.10)" >&2

# The driver's own checks (selftest.cpp): each case's exit status and message.
"${cxx[@]}" -o "$out/selftest" "$src/selftest.cpp" -L"$out/lib" -l:libcuda.so.1 -Wl,-rpath,"$out_abs/lib"
selftest() {  # selftest CASE STATUS PATTERN [VAR=VALUE]
  local got rc=0
  got=$(env -u NAS_EMULATED_GPU_HOST_ONLY ${4:-} "$out/selftest" "$1" 2>&1) || rc=$?
  if [[ $rc != "$2" ]] || ! grep -q "$3" <<<"$got"; then
    echo "emulated-gpu.sh: the driver's self-test \`$1\` gave exit $rc (want $2): $got" >&2
    exit 1
  fi
}
selftest ok 0 "relu over 99 values: right"
selftest overrun 139 "illegal memory access at address .* in kernel \`nas_relu_fwd_f32\`"
selftest slack 134 "wrote outside an allocation of 396 bytes"
selftest missing 0 "no kernel \`nas_relu_bwd_f32\` in the module's PTX"
selftest overcopy 0 "runs past its end"
selftest fresh 0 "fresh allocation: NaN"
selftest hostonly 0 "host only: launch not run" NAS_EMULATED_GPU_HOST_ONLY=1
echo "emulated-gpu.sh: the driver's self-tests pass (a right launch, an overrun, a canary, a missing kernel, an over-long copy, NaN-filled memory, a host-only launch)" >&2
[[ $build_only == 1 ]] && exit 0

# The emulation first; then the CUDA runtime build-cuda.sh ships (linked by candle's MoE
# kernels, never called), which the test executables' rpath does not reach.
export LD_LIBRARY_PATH="$out_abs/lib:$PWD/target/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ $# -gt 0 ]]; then
  exec "$@"
fi

tests=target/cuda/tests
if [[ ! -d "$tests" ]]; then
  echo "emulated-gpu.sh: no $tests: run scripts/build-cuda.sh --arch 90 --tests first, or give a COMMAND" >&2
  exit 2
fi
status=0
for t in "$tests"/*; do
  case "$(basename "$t")" in
    *ops*) filter=device ;;
    *) filter=conformance::devices ;;
  esac
  echo "== $(basename "$t") $filter (emulated GPU)" >&2
  "$t" "$filter" --test-threads 1 || status=1
done
# nas-ops' device tests again with the other layouts a GPU run may pick (scripts/gpu-check.sh's
# stage bench-layouts): the unit's convolutions as two launches, every batch norm over chunks
# of 1,024 values.
for t in "$tests"/*ops*; do
  echo "== $(basename "$t") device, NAS_UNIT_FUSED=0 NAS_BN_CHUNK=1024 NAS_BN_MIN_CHUNKS=1 (emulated GPU)" >&2
  NAS_UNIT_FUSED=0 NAS_BN_CHUNK=1024 NAS_BN_MIN_CHUNKS=1 "$t" device --test-threads 1 || status=1
done

# Then the binary itself, at small sizes: every drive's step, the retraining step, and a
# whole digits search (search, derive, retrain, report).
nas=target/cuda/nas
small=(--layers 2 --channels 4 --batch 2 --size 8 --steps 1)
for args in "--strategy darts" "--strategy darts --order second" "--strategy gdas" \
    "--strategy spos" "--strategy proxylessnas" "--strategy fairnas" "--strategy enas"; do
  echo "== nas --device cuda bench $args (emulated GPU)" >&2
  # shellcheck disable=SC2086
  "$nas" --device cuda bench "${small[@]}" $args || status=1
done
echo "== nas --device cuda bench --strategy retrain (emulated GPU)" >&2
"$nas" --device cuda bench --strategy retrain --layers 3 --channels 4 --batch 2 --size 32 --steps 1 || status=1
echo "== nas --device cuda run configs/experiments/darts-digits.yaml (emulated GPU)" >&2
search_out=$(mktemp -d)
"$nas" --device cuda run configs/experiments/darts-digits.yaml --set budget.epochs=1 \
  --set budget.steps_per_epoch=2 --set train.epochs=1 --set train.limit_batches=2 \
  --out "$search_out/run" || status=1
grep -q '"status": "finished"' "$search_out/run/summary.json" 2>/dev/null || status=1
rm -rf "$search_out"
echo "emulated-gpu.sh: $([[ $status == 0 ]] && echo "everything passed" || echo "something FAILED (above)")" >&2
exit $status
