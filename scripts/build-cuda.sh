#!/usr/bin/env bash
# Builds the CUDA side of nas on a machine with no GPU and no CUDA toolkit (docs/gpu.md).
#
# 1. Installs the CUDA 13 compiler from PyPI's wheels (nvidia-cuda-nvcc and what it requires:
#    nvidia-nvvm, nvidia-cuda-runtime, nvidia-cuda-crt) into a local folder, once.
# 2. Compiles the kernel bodies (framework/kernels/csrc/device.cu, the same bodies the host
#    build tests against PyTorch's goldens) to PTX and to a cubin for one compute capability,
#    set explicitly: no GPU is queried.
#
# Usage: scripts/build-cuda.sh [--arch 90] [--prefix .cuda] [--out target/cuda]
# Output: OUT/nas_kernels_smARCH.ptx and OUT/nas_kernels_smARCH.cubin.
#
# Status: the kernels compile here for sm_90 (H100/H200); the `cuda` cargo feature that
# loads them into candle custom ops is planned (docs/gpu.md lists what is left).
set -euo pipefail
cd "$(dirname "$0")/.."

arch=90
prefix=.cuda
out=target/cuda
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build-cuda.sh: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$arch" =~ ^[0-9]+$ ]]; then
  echo "build-cuda.sh: --arch must be a compute capability such as 90, got \`$arch\`" >&2
  exit 2
fi

nvcc_dir="$prefix/nvidia/cu13/bin"
if [[ ! -x "$nvcc_dir/nvcc" ]]; then
  echo "installing the CUDA 13 compiler wheels into $prefix"
  python3 -m pip install --quiet --disable-pip-version-check --target "$prefix" nvidia-cuda-nvcc
fi
export PATH="$PWD/$nvcc_dir:$PATH"
nvcc --version | tail -n 2

mkdir -p "$out"
src=framework/kernels/csrc/device.cu
inc=framework/kernels/csrc
nvcc -ptx -arch="sm_$arch" -std=c++14 -I"$inc" "$src" -o "$out/nas_kernels_sm$arch.ptx"
nvcc -cubin -arch="sm_$arch" -std=c++14 -I"$inc" "$src" -o "$out/nas_kernels_sm$arch.cubin"
entries=$(grep -c '^\.visible \.entry' "$out/nas_kernels_sm$arch.ptx" || true)
echo "wrote $out/nas_kernels_sm$arch.ptx and .cubin ($entries kernels)"
