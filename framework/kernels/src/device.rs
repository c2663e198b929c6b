//! The device build of the kernel bodies (`csrc/device.cu`), compiled to PTX by the build
//! script with `nvcc` when the `cuda` feature is on. `nas-ops` loads it into each CUDA device
//! once (candle's `get_or_load_custom_func`) and launches its entry points
//! ([`crate::launch::entry`]) with the geometry of [`crate::launch`].

/// The PTX of `csrc/device.cu` for `compute_$CUDA_COMPUTE_CAP` (80 when the variable was
/// unset at build time).
pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/nas_kernels.ptx"));

/// The name the module is cached under on a device.
pub const MODULE: &str = "nas_kernels";
