//! Opening a CUDA device (docs/gpu.md). With the `cuda` cargo feature the binary can compute on
//! an NVIDIA GPU; the driver (`libcuda.so.1`) and cuBLAS are loaded at run time, so the same
//! binary starts on a machine without them and says so here instead of panicking.
//!
//! Without the feature every request for a GPU is [`GpuError::NotBuilt`].
use candle_core::Device;

/// Why no GPU device could be opened.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The binary was built without the `cuda` feature.
    #[error(
        "this binary was built without CUDA (the `cuda` cargo feature: scripts/build-cuda.sh builds one, docs/gpu.md)"
    )]
    NotBuilt,
    /// The NVIDIA driver library could not be loaded.
    #[error("no NVIDIA driver on this machine (`{library}` could not be loaded: {reason})")]
    NoDriver {
        /// The library looked for.
        library: &'static str,
        /// The loader's message.
        reason: String,
    },
    /// The driver is there but the device could not be opened (no such ordinal, no device,
    /// a CUDA library such as cuBLAS missing from the library path).
    #[error("CUDA device {ordinal} could not be opened: {message}")]
    Open {
        /// The device ordinal asked for.
        ordinal: usize,
        /// What went wrong.
        message: String,
    },
}

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The library name of the NVIDIA driver API.
#[cfg(feature = "cuda")]
const DRIVER_LIBRARY: &str = "libcuda.so.1";

/// Opens CUDA device `ordinal`.
pub fn open_cuda(ordinal: usize) -> Result<Device, GpuError> {
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        Err(GpuError::NotBuilt)
    }
    #[cfg(feature = "cuda")]
    {
        // cudarc loads the driver and cuBLAS lazily and panics when one is missing: look for
        // the driver first, and turn any panic of the opening into an error.
        // SAFETY: loading the NVIDIA driver library runs its initialisers, as any CUDA program
        // does; the handle is dropped at once (cudarc keeps its own).
        if let Err(e) = unsafe { libloading::Library::new(DRIVER_LIBRARY) } {
            return Err(GpuError::NoDriver {
                library: DRIVER_LIBRARY,
                reason: e.to_string(),
            });
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
        std::panic::set_hook(previous);
        match opened {
            Ok(Ok(device)) => {
                prepare_for_training(&device);
                Ok(device)
            }
            Ok(Err(e)) => Err(GpuError::Open {
                ordinal,
                message: e.to_string(),
            }),
            Err(panic) => Err(GpuError::Open {
                ordinal,
                message: panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a CUDA library could not be loaded".into()),
            }),
        }
    }
}

/// Sets up a freshly opened GPU for a training loop, as PyTorch's caching allocator does:
///
/// - The device's default memory pool (where candle's stream-ordered `cuMemAllocAsync`
///   allocations come from) keeps freed memory instead of returning it to the driver at each
///   synchronisation (release threshold `u64::MAX`; the driver's default is 0). Every step
///   allocates the same buffers as the last, so from the second step on they come from the
///   pool: the caching of buffers between steps.
/// - cudarc's per-buffer event tracking is off. It orders uses of one buffer across streams
///   (an event recorded and waited on for every buffer argument of every launch); a device
///   opened here is used from one thread, so its work is on one stream and in order anyway.
///   Without it a launch costs only the launch.
///
/// Both are best effort: a pool that refuses the attribute (a device without memory pools)
/// leaves the driver's default, with a warning.
#[cfg(feature = "cuda")]
fn prepare_for_training(device: &Device) {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let Device::Cuda(dev) = device else {
        return;
    };
    let stream = dev.cuda_stream();
    let ctx = stream.context();
    // SAFETY: no buffer of this device exists yet outside candle's own (its random-number
    // state), which is used on this stream only; see the doc above for why one stream holds.
    unsafe { dev.disable_event_tracking() };
    if !ctx.has_async_alloc() {
        tracing::warn!(
            "CUDA device {}: no memory pools; freed buffers go back to the driver",
            ctx.ordinal()
        );
        return;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: `pool` receives the device's default pool handle; the attribute value is a
    // `cuuint64_t`, as CU_MEMPOOL_ATTR_RELEASE_THRESHOLD requires.
    let status = unsafe {
        match sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) {
            sys::CUresult::CUDA_SUCCESS => sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            ),
            other => other,
        }
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        tracing::warn!(
            "CUDA device {}: the memory pool keeps its default release threshold ({status:?})",
            ctx.ordinal()
        );
    }
}

/// The most memory the GPU's default pool has had in use at once since it was created, in
/// MiB (`CU_MEMPOOL_ATTR_USED_MEM_HIGH`: what candle's buffers took, the counterpart of
/// PyTorch's `torch.cuda.max_memory_allocated`); `None` on the CPU, without CUDA, or when the
/// driver does not report it.
pub fn peak_memory_mib(device: &Device) -> Option<f64> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let Device::Cuda(dev) = device else {
            return None;
        };
        let stream = dev.cuda_stream();
        let ctx = stream.context();
        if !ctx.has_async_alloc() {
            return None;
        }
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let mut high: u64 = 0;
        // SAFETY: the pool handle is written by the driver; USED_MEM_HIGH is a `cuuint64_t`.
        let ok = unsafe {
            sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device())
                == sys::CUresult::CUDA_SUCCESS
                && sys::cuMemPoolGetAttribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                    (&mut high as *mut u64).cast(),
                ) == sys::CUresult::CUDA_SUCCESS
        };
        ok.then(|| high as f64 / (1024.0 * 1024.0))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        None
    }
}

/// The kernels of nas-ops' device build (`framework/kernels/csrc/device.cu`) launched by this
/// process so far, on every GPU (0 without CUDA). candle's own kernels (element-wise ops,
/// matmuls, copies) are not counted. `nas bench` reports the count per step.
pub fn kernel_launches() -> u64 {
    #[cfg(feature = "cuda")]
    {
        crate::device::KERNEL_LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// The first GPU when this binary has CUDA and one can be opened, else `None` (for `device:
/// auto`).
pub fn first_available() -> Option<Device> {
    open_cuda(0).ok()
}
