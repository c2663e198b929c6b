//! The CUDA forward of the custom ops: a device kernel where [`crate::device`] serves the op
//! ([`cuda_via_device`]), else through the host: the inputs are copied to the host, the CPU
//! kernel runs, and the output is copied back (docs/gpu.md lists which ops run which way).
//! The host path is correct on any CUDA device, and slow: it makes every supernet run on a GPU
//! while the device kernels of `nas-kernels` (csrc/device.cu) are wired in op by op.
#[cfg(feature = "cuda")]
use candle_core::backend::{BackendDevice, BackendStorage};
#[cfg(feature = "cuda")]
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape,
};

#[cfg(feature = "cuda")]
/// The output of a CPU kernel, moved to the device of `like`.
fn to_device(
    like: &CudaStorage,
    (out, shape): (CpuStorage, Shape),
) -> Result<(CudaStorage, Shape)> {
    Ok((like.device().storage_from_cpu_storage_owned(out)?, shape))
}

#[cfg(feature = "cuda")]
/// [`CustomOp1::cuda_fwd`] through the host.
pub(crate) fn op1(
    op: &impl CustomOp1,
    s: &CudaStorage,
    l: &Layout,
) -> Result<(CudaStorage, Shape)> {
    to_device(s, op.cpu_fwd(&s.to_cpu_storage()?, l)?)
}

#[cfg(feature = "cuda")]
/// [`CustomOp2::cuda_fwd`] through the host.
pub(crate) fn op2(
    op: &impl CustomOp2,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let out = op.cpu_fwd(&s1.to_cpu_storage()?, l1, &s2.to_cpu_storage()?, l2)?;
    to_device(s1, out)
}

#[cfg(feature = "cuda")]
/// [`CustomOp3::cuda_fwd`] through the host.
pub(crate) fn op3(
    op: &impl CustomOp3,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let out = op.cpu_fwd(
        &s1.to_cpu_storage()?,
        l1,
        &s2.to_cpu_storage()?,
        l2,
        &s3.to_cpu_storage()?,
        l3,
    )?;
    to_device(s1, out)
}

/// The `cuda_fwd` method of a custom op taking 1, 2 or 3 inputs, through the host.
macro_rules! cuda_via_host {
    (1) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s: &candle_core::CudaStorage,
            l: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            crate::host_fallback::op1(self, s, l)
        }
    };
    (2) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s1: &candle_core::CudaStorage,
            l1: &candle_core::Layout,
            s2: &candle_core::CudaStorage,
            l2: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            crate::host_fallback::op2(self, s1, l1, s2, l2)
        }
    };
    (3) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s1: &candle_core::CudaStorage,
            l1: &candle_core::Layout,
            s2: &candle_core::CudaStorage,
            l2: &candle_core::Layout,
            s3: &candle_core::CudaStorage,
            l3: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            crate::host_fallback::op3(self, s1, l1, s2, l2, s3, l3)
        }
    };
}
pub(crate) use cuda_via_host;

/// The `cuda_fwd` method of a custom op that launches a device kernel ([`crate::device`]):
/// `|op, s1, l1, ...| expr` gives a `Result<Launched>`; `None` runs the op through the host.
macro_rules! cuda_via_device {
    (|$op:ident, $s:ident, $l:ident| $body:expr) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            $s: &candle_core::CudaStorage,
            $l: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            let $op = self;
            match $body? {
                Some(out) => Ok(out),
                None => crate::host_fallback::op1(self, $s, $l),
            }
        }
    };
    (|$op:ident, $s1:ident, $l1:ident, $s2:ident, $l2:ident| $body:expr) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            $s1: &candle_core::CudaStorage,
            $l1: &candle_core::Layout,
            $s2: &candle_core::CudaStorage,
            $l2: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            let $op = self;
            match $body? {
                Some(out) => Ok(out),
                None => crate::host_fallback::op2(self, $s1, $l1, $s2, $l2),
            }
        }
    };
    (|$op:ident, $s1:ident, $l1:ident, $s2:ident, $l2:ident, $s3:ident, $l3:ident| $body:expr) => {
        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            $s1: &candle_core::CudaStorage,
            $l1: &candle_core::Layout,
            $s2: &candle_core::CudaStorage,
            $l2: &candle_core::Layout,
            $s3: &candle_core::CudaStorage,
            $l3: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            let $op = self;
            match $body? {
                Some(out) => Ok(out),
                None => crate::host_fallback::op3(self, $s1, $l1, $s2, $l2, $s3, $l3),
            }
        }
    };
}
pub(crate) use cuda_via_device;
