#!/usr/bin/env bash
# Builds the CUDA side of nas on a machine with no GPU and no CUDA toolkit (docs/gpu.md).
#
# 1. Installs the CUDA 13.0 compiler and headers from PyPI's wheels (nvidia-cuda-nvcc,
#    nvidia-cuda-cccl, nvidia-cuda-runtime, nvidia-nvvm, nvidia-cuda-crt) into a local folder,
#    once. 13.0, the oldest CUDA 13: PTX it writes is compiled by the driver of any CUDA 13
#    machine (PTX from a newer nvcc is refused by an older driver).
# 2. Compiles the kernel bodies (framework/kernels/csrc/device.cu, the same bodies the host
#    build tests against PyTorch's goldens) to PTX and to a cubin for one compute capability,
#    set explicitly: no GPU is queried.
# 3. Builds the `nas` binary with the `cuda` cargo feature (unless --kernels-only). candle
#    links the CUDA libraries at build time; the script builds against a copy of candle-core
#    whose cudarc loads them at run time instead (libcuda.so.1, libcublas.so.13, ...: the
#    driver and PyTorch's CUDA wheels on the GPU machine), so linking needs no CUDA library
#    and the binary starts on a machine without a GPU. The copy exists only for this build
#    (a `[patch]` on the command line, in its own target folder; Cargo.lock is restored).
#    The copy also gets scripts/candle-patches/*.patch (each says what it changes and its
#    upstream pull request), unless --stock-candle.
#
# 4. With --tests, also builds the device-generic test executables with the feature, into
#    OUT/tests: nas-ops (its `device` tests) and nas-tests (its `conformance::devices` tests).
# 5. Packs OUT (stripped binaries, lib/, tests/, kernels) into OUT.tar.xz: the binary alone is
#    about 60 MiB (candle's kernels are embedded PTX), the archive about a sixth of that, which
#    is what is carried to a GPU machine (docs/gpu.md).
#
# Usage: scripts/build-cuda.sh [--arch 90] [--prefix .cuda] [--out target/cuda] [--kernels-only] [--tests]
#        [--stock-candle]
# Output: OUT/nas_kernels_smARCH.ptx, OUT/nas_kernels_smARCH.cubin, OUT/nas, OUT/lib/,
# OUT/tests/ (with --tests) and OUT.tar.xz.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=90
prefix=.cuda
out=target/cuda
binary=1
tests=0
stock=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --kernels-only) binary=0; shift ;;
    --tests) tests=1; shift ;;
    --stock-candle) stock=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "build-cuda.sh: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$arch" =~ ^[0-9]+$ ]]; then
  echo "build-cuda.sh: --arch must be a compute capability such as 90, got \`$arch\`" >&2
  exit 2
fi

cuda="$PWD/$prefix/nvidia/cu13"
if [[ ! -x "$cuda/bin/nvcc" || ! -d "$cuda/include/cccl" ]]; then
  echo "installing the CUDA 13.0 compiler wheels into $prefix"
  python3 -m pip install --quiet --disable-pip-version-check --target "$prefix" \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-runtime==13.0.*" \
    "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*"
fi
export PATH="$cuda/bin:$PATH"
# The wheels keep libcu++ (<nv/target>, needed by cuda_fp16.h) under include/cccl.
export NVCC_APPEND_FLAGS="-I$cuda/include/cccl"
nvcc --version | tail -n 2

mkdir -p "$out"
src=framework/kernels/csrc/device.cu
inc=framework/kernels/csrc
nvcc -ptx -arch="sm_$arch" -std=c++14 -I"$inc" "$src" -o "$out/nas_kernels_sm$arch.ptx"
nvcc -cubin -arch="sm_$arch" -std=c++14 -I"$inc" "$src" -o "$out/nas_kernels_sm$arch.cubin"
entries=$(grep -c '^\.visible \.entry' "$out/nas_kernels_sm$arch.ptx" || true)
echo "wrote $out/nas_kernels_sm$arch.ptx and .cubin ($entries kernels)"
[[ "$binary" == 1 ]] || exit 0

# candle-core, with cudarc loading the CUDA libraries at run time.
candle_dir=$(cargo metadata --format-version 1 | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in d["packages"] if p["name"] == "candle-core"))')
patched="$PWD/$out/candle-core"
candle_patches=()
[[ "$stock" == 1 ]] || candle_patches=(scripts/candle-patches/*.patch)
copy_id="$candle_dir"
if (( ${#candle_patches[@]} )); then
  copy_id+=" $(cat "${candle_patches[@]}" | sha256sum)"
fi
# Made once per candle-core version and set of patches (a fresh copy would make cargo rebuild
# everything above it).
if [[ "$(cat "$patched/.copied-from" 2>/dev/null)" != "$copy_id" ]]; then
  rm -rf "$patched"
  cp -a "$candle_dir" "$patched"
  chmod -R u+w "$patched"
  sed -i 's/"dynamic-linking"/"dynamic-loading"/' "$patched/Cargo.toml"
  grep -q '"dynamic-loading"' "$patched/Cargo.toml" || {
    echo "build-cuda.sh: candle-core's Cargo.toml no longer names cudarc's dynamic-linking; update this script" >&2
    exit 1
  }
  for p in "${candle_patches[@]}"; do
    patch -p1 --forward --silent -d "$patched" < "$p" || {
      echo "build-cuda.sh: $p does not apply to $candle_dir; update it (or build with --stock-candle)" >&2
      exit 1
    }
    echo "applied $p to the copy of candle-core"
  done
  echo "$copy_id" > "$patched/.copied-from"
fi
# candle's CUDA kernels include a static library on the CUDA runtime (libcudart.so.13): it is
# linked from the wheel and shipped beside the binary (OUT/lib, found through the rpath).
ln -sf libcudart.so.13 "$cuda/lib/libcudart.so"
mkdir -p "$out/lib"
# (Copied aside and renamed: a process running the previous build keeps its mapped copy.)
cp "$cuda/lib/libcudart.so.13" "$out/lib/libcudart.so.13.tmp"
mv -f "$out/lib/libcudart.so.13.tmp" "$out/lib/libcudart.so.13"
cp Cargo.lock "$out/Cargo.lock.orig"
trap 'cp "$out/Cargo.lock.orig" Cargo.lock' EXIT
export CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP="$arch"
export RUSTFLAGS="-L native=$cuda/lib -C link-arg=-Wl,-rpath,\$ORIGIN/lib"
patch_arg="patch.crates-io.candle-core.path=\"$patched\""
cargo build --release -p nas-cli --features cuda --target-dir target/cuda-build --config "$patch_arg"
strip -o "$out/nas.tmp" target/cuda-build/release/nas && mv -f "$out/nas.tmp" "$out/nas"
echo "wrote $out/nas (CUDA for sm_$arch; run it with the CUDA 13 libraries on LD_LIBRARY_PATH, docs/gpu.md)"

if [[ "$tests" == 1 ]]; then
  # Run them with OUT/lib on LD_LIBRARY_PATH (their rpath, $ORIGIN/lib, is OUT/tests/lib).
  rm -rf "$out/tests"
  mkdir -p "$out/tests"
  cargo test --release --features cuda -p nas-ops -p nas-tests --target-dir target/cuda-build \
    --config "$patch_arg" --no-run --message-format=json \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])' \
    | while read -r name exe; do
        case "$name" in
          ops) strip -o "$out/tests/nas-ops.tmp" "$exe" && mv -f "$out/tests/nas-ops.tmp" "$out/tests/nas-ops"; echo "wrote $out/tests/nas-ops" ;;
          tests) strip -o "$out/tests/nas-tests.tmp" "$exe" && mv -f "$out/tests/nas-tests.tmp" "$out/tests/nas-tests"; echo "wrote $out/tests/nas-tests" ;;
        esac
      done
fi

tar -C "$(dirname "$out")" -cJf "$out.tar.xz.tmp" --exclude candle-core --exclude Cargo.lock.orig \
  --exclude "*.tmp" "$(basename "$out")"
mv -f "$out.tar.xz.tmp" "$out.tar.xz"
echo "wrote $out.tar.xz ($(du -h "$out.tar.xz" | cut -f1)): carry it, then tar xf it beside the repository's target/"
