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
#
# Usage: scripts/build-cuda.sh [--arch 90] [--prefix .cuda] [--out target/cuda] [--kernels-only]
# Output: OUT/nas_kernels_smARCH.ptx, OUT/nas_kernels_smARCH.cubin and OUT/nas.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=90
prefix=.cuda
out=target/cuda
binary=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --kernels-only) binary=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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
rm -rf "$patched"
cp -r "$candle_dir" "$patched"
sed -i 's/"dynamic-linking"/"dynamic-loading"/' "$patched/Cargo.toml"
grep -q '"dynamic-loading"' "$patched/Cargo.toml" || {
  echo "build-cuda.sh: candle-core's Cargo.toml no longer names cudarc's dynamic-linking; update this script" >&2
  exit 1
}
# candle's CUDA kernels include a static library on the CUDA runtime (libcudart.so.13): it is
# linked from the wheel and shipped beside the binary (OUT/lib, found through the rpath).
ln -sf libcudart.so.13 "$cuda/lib/libcudart.so"
mkdir -p "$out/lib"
cp "$cuda/lib/libcudart.so.13" "$out/lib/"
cp Cargo.lock "$out/Cargo.lock.orig"
trap 'cp "$out/Cargo.lock.orig" Cargo.lock' EXIT
CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP="$arch" \
  RUSTFLAGS="-L native=$cuda/lib -C link-arg=-Wl,-rpath,\$ORIGIN/lib" \
  cargo build --release -p nas-cli --features cuda --target-dir target/cuda-build \
  --config "patch.crates-io.candle-core.path=\"$patched\""
cp target/cuda-build/release/nas "$out/nas"
echo "wrote $out/nas (CUDA for sm_$arch; run it with the CUDA 13 libraries on LD_LIBRARY_PATH, docs/gpu.md)"
