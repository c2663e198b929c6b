//! The device build of the kernel bodies (`csrc/device.cu`), compiled to PTX by the build
//! script with `nvcc` when the `cuda` feature is on. `nas-ops` loads it into each CUDA device
//! once (candle's `get_or_load_custom_func`) and launches the entry points named here.

/// The PTX of `csrc/device.cu` for `compute_$CUDA_COMPUTE_CAP` (80 when the variable was
/// unset at build time).
pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/nas_kernels.ptx"));

/// The name the module is cached under on a device.
pub const MODULE: &str = "nas_kernels";

/// Threads per block of the reductions in `device.cu` (`NAS_BN_THREADS`): the batch-norm
/// and mixing-weight kernels must be launched with exactly this many.
pub const REDUCTION_THREADS: u32 = 256;

/// The entry point `nas_<base>_<f32|f64>` of `device.cu`.
pub fn entry(base: &str, f64: bool) -> String {
    format!("nas_{base}_{}", if f64 { "f64" } else { "f32" })
}
