//! # nas-kernels
//!
//! The bodies of the hot operations (DESIGN.md section 7) written once, in
//! `csrc/nas_kernels.cuh`, as `__host__ __device__` functions that each compute one output
//! element (or one partial sum of a reduction): convolution (dense, grouped, depthwise,
//! pointwise; stride, padding, dilation), max and average pooling with padding
//! (`count_include_pad=False`), training-mode batch norm with running statistics, ReLU and the
//! mixed-op weighted sum, each with its backward.
//!
//! Two builds share those bodies:
//! - the **host build** ([`host`]): `csrc/host.cpp`, compiled by this crate's build script with
//!   the system C++ compiler, loops over the elements; it is tested on every machine against
//!   PyTorch's float64 golden tensors (`shared/data/golden`) and against the plain Rust
//!   references of `nas-ops` (`tests/`);
//! - the **CUDA build** (planned wiring, see `docs/gpu.md`): `csrc/device.cu` launches one
//!   thread per element over the same bodies; `scripts/build-cuda.sh` compiles it to PTX for a
//!   given compute capability with the CUDA compiler from PyPI's wheels. Until a GPU machine
//!   has run it, the device launch is the only untested part.
//!
//! The host build is a correctness contract, not the CPU fast path: `nas-ops`' own kernels
//! (blocked, vectorised, parallel) stay the CPU implementation.
#![deny(missing_docs)]

pub mod host;

pub use host::{Geom, KernelError};
