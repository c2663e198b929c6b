//! # nas-kernels
//!
//! The bodies of the hot operations (DESIGN.md section 7) written once, in
//! `csrc/nas_kernels.cuh`, as `__host__ __device__` functions that each compute one output
//! element (or one partial sum of a reduction): convolution (dense, grouped, depthwise,
//! pointwise; stride, padding, dilation), max and average pooling with padding
//! (`count_include_pad` either way), training-mode batch norm with running statistics, ReLU and
//! the mixed-op weighted sum, each with its backward; the gather and scatter of many tensors
//! to and from one `f64` buffer, the optimizer step of many tensors (SGD, Adam/AdamW, RMSprop:
//! `nas_optim`'s arithmetic) and the sum of squares of many tensors.
//!
//! Two builds share those bodies:
//! - the **host build** ([`host`]): `csrc/host.cpp`, compiled by this crate's build script with
//!   the system C++ compiler, loops over the elements; it is tested on every machine against
//!   PyTorch's float64 golden tensors (`shared/data/golden`) and against the plain Rust
//!   references of `nas-ops` (`tests/`);
//! - the **CUDA build** (module `device`, with the `cuda` feature): `csrc/device.cu` launches one
//!   thread per element over the same bodies; this crate's build script compiles it to PTX with
//!   `nvcc` (which `scripts/build-cuda.sh` installs from PyPI's wheels) and `nas-ops` launches
//!   it from its ops' CUDA forward (docs/gpu.md). Until a GPU machine has run it, the device
//!   launch is the only untested part.
//!
//! - the **emulated device build** ([`emulated`]): `csrc/device.cu` itself compiled for the host
//!   with the CUDA built-ins of `csrc/emulate.h`, its kernels run over grids of blocks of CPU
//!   threads with the launch geometry of [`launch`] (the one `nas-ops` gives a GPU), so the
//!   kernels' indexing, reductions and barriers are tested on every machine too.
//!
//! The host build is a correctness contract, not the CPU fast path: `nas-ops`' own kernels
//! (blocked, vectorised, parallel) stay the CPU implementation.
#![deny(missing_docs)]

#[cfg(feature = "cuda")]
pub mod device;
pub mod emulated;
pub mod host;
pub mod launch;

pub use host::{pw_weight_chunks, reduction_chunks, weight_chunks, Geom, KernelError};
