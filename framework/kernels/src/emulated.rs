//! The device build's kernels run on the CPU: `csrc/device.cu` compiled for the host with the
//! CUDA built-ins of `csrc/emulate.h` (`csrc/emulated.cpp`), each launch run over its grid of
//! blocks (one at a time in reverse order, `__shared__` memory per block) of threads, either
//! real threads ([`Threads::Os`]: a block's threads concurrently, `__syncthreads` a real
//! barrier, so races inside a block can show) or fibers of the calling thread
//! ([`Threads::Fibers`]: each thread runs until it reaches a barrier or ends, then the next;
//! the same barrier semantics, deterministic and far faster: what the emulated GPU driver of
//! `emulated-gpu/` runs).
//!
//! This is how the part of the CUDA path that the host build cannot reach is tested on a
//! machine without a GPU: the kernels' thread and block indexing, grid-stride loops,
//! shared-memory reductions and barriers, with the launch geometry of [`crate::launch`] that
//! `nas-ops` gives the GPU. It does not test the Rust side's argument marshalling, device
//! memory or the PTX compiler. For tests: slow (one OS thread per CUDA thread).
use std::ffi::{c_void, CString};
use std::os::raw::{c_char, c_int, c_uint};

use crate::launch::Launch;

extern "C" {
    fn nas_emu_launch_in(
        fibers: c_int,
        name: *const c_char,
        grid: *const c_uint,
        block: *const c_uint,
        args: *mut *mut c_void,
        count: c_int,
        sizes: *const std::os::raw::c_ulong,
    ) -> c_int;
    fn nas_emu_has(name: *const c_char) -> c_int;
}

/// How the threads of an emulated block run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// One OS thread per CUDA thread, a block's threads concurrently: races inside a block can
    /// show. Slow (a barrier wakes every thread).
    Os,
    /// The block's threads as fibers of the calling thread, each running until it reaches a
    /// barrier or ends: the same barrier and divergence semantics, deterministic.
    Fibers,
}

/// Why an emulated launch did not run to the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// `device.cu` has no kernel of that name (or the emulator's table misses it).
    #[error("no kernel `{0}` in device.cu's emulation")]
    UnknownKernel(String),
    /// The grid or block is outside CUDA's limits (a launch the GPU would refuse).
    #[error("launch of `{name}` with {launch:?} is outside CUDA's grid and block limits")]
    BadLaunch {
        /// The kernel.
        name: String,
        /// The refused geometry.
        launch: Launch,
    },
    /// Not every thread of a block reached the same `__syncthreads` (a hang or undefined
    /// behaviour on a GPU).
    #[error("the threads of a block of `{0}` diverged at __syncthreads")]
    Diverged(String),
    /// A kernel thread called `__trap()`: a launch the kernel refuses (e.g. a reduction
    /// launched with a block of the wrong size).
    #[error("`{0}` trapped (a launch it refuses)")]
    Trapped(String),
    /// Not the kernel's number of arguments, or one whose size differs from its parameter's
    /// (nothing ran).
    #[error("the arguments of `{0}` do not match its parameters in number or size")]
    BadArguments(String),
    /// A kernel thread failed otherwise.
    #[error("a thread of `{0}` failed")]
    Failed(String),
}

/// Whether the emulation has kernel `name` (an entry point `nas_<base>_<f32|f64>`).
pub fn has_kernel(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string in, an int out.
    unsafe { nas_emu_has(c.as_ptr()) == 1 }
}

/// The arguments of one emulated launch, kept at stable addresses: each pushed value is
/// boxed, and the launch passes a pointer to each (as `cuLaunchKernel` takes them).
#[derive(Default)]
pub struct Args {
    values: Vec<Box<dyn std::any::Any>>,
    pointers: Vec<*mut c_void>,
    sizes: Vec<std::os::raw::c_ulong>,
}

impl Args {
    /// No arguments yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one argument by value: a number, a `#[repr(C)]` struct of the kernel's
    /// parameter type, or a pointer (`slice.as_mut_ptr()`, `std::ptr::null::<T>()`).
    pub fn push<T: 'static>(&mut self, value: T) -> &mut Self {
        let mut boxed = Box::new(value);
        self.pointers.push((&mut *boxed as *mut T).cast());
        self.sizes
            .push(std::mem::size_of::<T>() as std::os::raw::c_ulong);
        self.values.push(boxed);
        self
    }
}

/// Runs kernel `name` of `device.cu` over `launch` with `args`.
///
/// The number of arguments and each one's size are checked against the kernel's parameters
/// (an error, nothing run, when they differ).
///
/// # Safety
/// `args` must hold the kernel's parameters, in order, each of the C type's layout (`i32` for
/// `int`, `i64` for `long`, `#[repr(C)]` structs; the sizes are checked, not the types), and
/// every pointer among them must be valid for everything the kernel reads and writes
/// through it.
pub unsafe fn launch(name: &str, launch: Launch, args: &mut Args) -> Result<(), EmulationError> {
    // SAFETY: as this function's.
    unsafe { launch_as(Threads::Os, name, launch, args) }
}

/// [`launch`] with the block's threads run as `threads` says.
///
/// # Safety
/// As [`launch`].
pub unsafe fn launch_as(
    threads: Threads,
    name: &str,
    launch: Launch,
    args: &mut Args,
) -> Result<(), EmulationError> {
    let c = CString::new(name).map_err(|_| EmulationError::UnknownKernel(name.to_string()))?;
    let grid = [launch.grid.0, launch.grid.1, launch.grid.2];
    let block = [launch.block.0, launch.block.1, launch.block.2];
    // SAFETY: the caller vouches for the arguments; the geometry is checked on the C side.
    let rc = unsafe {
        nas_emu_launch_in(
            c_int::from(threads == Threads::Fibers),
            c.as_ptr(),
            grid.as_ptr(),
            block.as_ptr(),
            args.pointers.as_mut_ptr(),
            c_int::try_from(args.pointers.len()).unwrap_or(c_int::MAX),
            args.sizes.as_ptr(),
        )
    };
    match rc {
        0 => Ok(()),
        -1 => Err(EmulationError::UnknownKernel(name.to_string())),
        -2 => Err(EmulationError::BadLaunch {
            name: name.to_string(),
            launch,
        }),
        -3 => Err(EmulationError::Diverged(name.to_string())),
        -5 => Err(EmulationError::Trapped(name.to_string())),
        -6 => Err(EmulationError::BadArguments(name.to_string())),
        _ => Err(EmulationError::Failed(name.to_string())),
    }
}
