//! Device launches of the kernel bodies of `nas-kernels` (`csrc/device.cu`, compiled to PTX
//! by its build script) for the CUDA forward of the ops below. The bodies are the ones the
//! host build tests against PyTorch's golden tensors on every machine; what only a GPU can
//! check is this file: buffer sizes, argument order and launch shapes (the device-generic
//! tests in `tests/device.rs` compare every op with the CPU in f64 on a GPU machine).
//!
//! Each launcher returns `Ok(None)` when it does not serve the request (a dtype other than
//! f32/f64, an input that is not contiguous, an option the kernels lack): the op then runs
//! through the host ([`crate::host_fallback`]), which is correct for everything.
//!
//! Served on the device: ReLU and its backward; depthwise (dilated, strided, with or without
//! the fused input ReLU), 1x1 and direct dense/grouped convolution ([`crate::direct_conv`])
//! with both gradients; max pooling (the backward recomputes the winners on the device) and
//! average pooling; batch norm in training mode (the batch statistics stay on the device for
//! the backward, and the same launch folds the running averages there: no copy to the host
//! per forward; channels of many values over several blocks each, [`bn_chunks`]); the weight
//! gradients as block reductions ([`WeightGradLaunch`]); the mixed-op weighted sum with shared weights and its backward (one launch
//! each); the separable unit (ReLU, depthwise, pointwise, batch norm) and the 1x1
//! `ReLUConvBN` as one op each in training, affine or not ([`unit_fwd`], [`unit_bwd`]);
//! `FactorizedReduce` with its batch norm ([`factorized_reduce_fwd`],
//! [`factorized_reduce_bwd`]); the optimizer step of many parameters and the sum of squares
//! of many tensors ([`optimizer_step`]: SGD, Adam/AdamW, RMSprop; [`sum_squares`]). The
//! weighted sum with per-example weights, global pooling and batch norm in evaluation mode
//! use candle's own device ops. im2col still runs through the host
//! (docs/gpu.md). Every launch's grid and block come from `nas_kernels::launch`, the geometry
//! the emulated device build is tested with.
use crate::geom::Window;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr, LaunchArgs,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, DeviceId, WrapErr};
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result, Shape, WithDType};
use nas_kernels::device::{MODULE, PTX};
use nas_kernels::launch::{self, entry, Launch};
use nas_kernels::Geom;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// What a launcher gives back: the output on the device, or `None` for the host path.
pub(crate) type Launched = Option<(CudaStorage, Shape)>;

/// [`Geom`] as a kernel argument: the C struct `nas::Geom`, passed by value.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct DevGeom(Geom);

// SAFETY: `Geom` is `#[repr(C)]` with twelve `c_int` fields and no padding, the layout of the
// C struct `nas::Geom` that the kernels take by value.
unsafe impl DeviceRepr for DevGeom {}

/// The float types the kernels are built for.
trait DevFloat: CudaDType + DeviceRepr + ValidAsZeroBits + WithDType {
    /// Whether the `_f64` entry points apply (else `_f32`).
    const F64: bool;
}

impl DevFloat for f32 {
    const F64: bool = false;
}

impl DevFloat for f64 {
    const F64: bool = true;
}

/// Runs `$body` with `T` bound to the element type of `$s` (f32 or f64), else `Ok(None)`.
macro_rules! by_float {
    ($s:expr, |$t:ident| $body:expr) => {
        match $s.dtype() {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::F64 => {
                type $t = f64;
                $body
            }
            _ => Ok(None),
        }
    };
}

/// The contiguous data of `s` under `l`, or `None` (the host path then serves the op).
fn view<'a, T: DevFloat>(s: &'a CudaStorage, l: &Layout) -> Result<Option<CudaView<'a, T>>> {
    l.contiguous_offsets()
        .map(|(a, b)| T::as_cuda_slice(s).map(|sl| sl.slice(a..b)))
        .transpose()
}

/// cudarc's launch configuration for a geometry of [`nas_kernels::launch`] (the one the
/// emulated device build is tested with).
fn config(l: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: l.block,
        shared_mem_bytes: 0,
    }
}

/// Grid-stride launch over `total` elements ([`launch::elementwise`]).
fn elementwise(total: usize) -> LaunchConfig {
    config(launch::elementwise(total))
}

fn geom_err(e: nas_kernels::KernelError) -> candle_core::Error {
    candle_core::Error::Msg(format!("nas-ops on CUDA: {e}"))
}

/// The kernel geometry of a depthwise convolution over `win`.
fn depthwise_geom(win: &Window) -> Result<Geom> {
    Geom::conv(
        win.n,
        win.c,
        win.h,
        win.w,
        win.c,
        win.k,
        win.stride,
        win.padding,
        win.dilation,
        win.c,
    )
    .map_err(geom_err)
}

/// The kernel geometry of a pooling window over `win`.
fn pool_geom(win: &Window) -> Result<Geom> {
    Geom::pool(win.n, win.c, win.h, win.w, win.k, win.stride, win.padding).map_err(geom_err)
}

/// Number of elements of an NCHW tensor of `g`'s input / output / weight ([`Geom`]'s).
fn input_len(g: &Geom) -> usize {
    g.input_len()
}
fn output_len(g: &Geom) -> usize {
    g.output_len()
}
fn weight_len(g: &Geom) -> usize {
    g.weight_len()
}

/// Whether `g` has an empty input, output or weight: nothing to launch for (the driver
/// refuses an empty allocation and a grid of zero blocks); the host path serves it.
fn is_empty(g: &Geom) -> bool {
    input_len(g) == 0 || output_len(g) == 0 || weight_len(g) == 0
}

/// Kernel launches of this module since the process started ([`crate::gpu::kernel_launches`]).
pub(crate) static KERNEL_LAUNCHES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Queues the launch `b` with `cfg` and counts it in [`KERNEL_LAUNCHES`].
///
/// # Safety
/// As cudarc's `LaunchArgs::launch`: the arguments pushed on `b` must be the kernel's
/// parameters, in order and of their types, and every buffer valid for what it does.
unsafe fn counted(b: &mut LaunchArgs<'_>, cfg: LaunchConfig) -> Result<()> {
    KERNEL_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's.
    unsafe { b.launch(cfg) }.w()?;
    Ok(())
}

/// One of the module's kernels and the stream it launches on.
struct Kernel {
    func: CudaFunction,
    stream: Arc<CudaStream>,
}

impl Kernel {
    /// A launch of the kernel on its device's stream.
    fn builder(&self) -> LaunchArgs<'_> {
        self.stream.launch_builder(&self.func)
    }
}

/// What this thread keeps for the device it last launched on: the kernels resolved so far,
/// `(base, f64)` -> function (resolving through candle's `get_or_load_custom_func` formats the
/// name, takes a lock, allocates a C string and asks the driver, on every launch; a DARTS step
/// launches tens of thousands), and the thread's block counter. Only the last device's are
/// kept (a sweep opens a device per run; the cache must not keep every earlier one's module
/// loaded).
struct ThreadKernels {
    device: DeviceId,
    funcs: HashMap<(&'static str, bool), CudaFunction>,
    /// The counter of finished blocks that the launches ending with a sum over their blocks'
    /// partial results use (`last_block_done` in device.cu): zero between launches, one per
    /// thread because each thread launches on its own stream (candle's per-thread stream),
    /// where its launches run one after another.
    counter: Option<CudaSlice<u32>>,
    /// [`MAX_OPTIONS`] ones of `f32` (index 0) and of `f64` (index 1), the weights of a plain
    /// sum through the weighted-sum kernel ([`sum_storages`]).
    ones: [Option<CudaSlice<u8>>; 2],
}

thread_local! {
    static KERNELS: RefCell<Option<ThreadKernels>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's cache for `dev` (emptied first when it was another device's).
fn with_thread_cache<R>(dev: &CudaDevice, f: impl FnOnce(&mut ThreadKernels) -> R) -> R {
    KERNELS.with(|k| {
        let mut k = k.borrow_mut();
        let cache = match &mut *k {
            Some(t) if t.device == dev.id() => t,
            slot => slot.insert(ThreadKernels {
                device: dev.id(),
                funcs: HashMap::new(),
                counter: None,
                ones: [None, None],
            }),
        };
        f(cache)
    })
}

/// Entry point `nas_<base>_<f32|f64>` of the module on `dev` (loaded once per device).
fn kernel<T: DevFloat>(dev: &CudaDevice, base: &'static str) -> Result<Kernel> {
    let key = (base, T::F64);
    let cached = with_thread_cache(dev, |t| t.funcs.get(&key).cloned());
    let func = match cached {
        Some(f) => f,
        None => {
            let f = dev
                .get_or_load_custom_func(&entry(base, T::F64), MODULE, PTX)?
                .into_cuda_function();
            with_thread_cache(dev, |t| t.funcs.insert(key, f.clone()));
            f
        }
    };
    Ok(Kernel {
        func,
        stream: dev.cuda_stream(),
    })
}

/// The device address of this thread's block counter on `dev` (allocated, zeroed, on first
/// use; see [`ThreadKernels::counter`]).
fn block_counter(dev: &CudaDevice) -> Result<u64> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    with_thread_cache(dev, |t| {
        let counter = match &mut t.counter {
            Some(c) => c,
            slot => slot.insert(dev.alloc_zeros::<u32>(1)?),
        };
        let stream = dev.cuda_stream();
        let (ptr, _record) = counter.device_ptr(&stream);
        Ok(ptr)
    })
}

/// The device address of [`MAX_OPTIONS`] ones of `T` on `dev` (uploaded once per thread and
/// device; see [`ThreadKernels::ones`]).
fn ones<T: DevFloat>(dev: &CudaDevice) -> Result<u64> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    with_thread_cache(dev, |t| {
        let ones = match &mut t.ones[usize::from(T::F64)] {
            Some(o) => o,
            slot => {
                let bytes: Vec<u8> = if T::F64 {
                    [1.0f64; MAX_OPTIONS]
                        .iter()
                        .flat_map(|v| v.to_ne_bytes())
                        .collect()
                } else {
                    [1.0f32; MAX_OPTIONS]
                        .iter()
                        .flat_map(|v| v.to_ne_bytes())
                        .collect()
                };
                slot.insert(dev.clone_htod(&bytes)?)
            }
        };
        let stream = dev.cuda_stream();
        let (ptr, _record) = ones.device_ptr(&stream);
        Ok(ptr)
    })
}

/// [`kernel`] for the element type `$t`.
macro_rules! kernel {
    ($dev:expr, $base:expr, $t:ty) => {
        kernel::<$t>($dev, $base)?
    };
}

/// One element of `s`'s dtype on its device, never written (`None` for other dtypes): the
/// value of the tap chain's links and of their gradients, which no kernel reads
/// (`mixed::unread_scalar`). An allocation from the device's pool, no memset.
pub(crate) fn unread_scalar(s: &CudaStorage) -> Result<Launched> {
    by_float!(s, |T| {
        // SAFETY: nothing reads the element; it only orders candle's backward.
        let y = unsafe { s.device.alloc::<T>(1)? };
        Ok(Some((
            T::wrap_cuda_slice(y, s.device.clone()),
            Shape::from(1),
        )))
    })
}

/// `max(x, 0)` of `len` elements into a new buffer.
fn relu_into<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    len: usize,
) -> Result<CudaSlice<T>> {
    // SAFETY: every element is written by the kernel below.
    let mut y = unsafe { dev.alloc::<T>(len)? };
    let f = kernel!(dev, "relu_fwd", T);
    let n = len as i64;
    let mut b = f.builder();
    b.arg(x).arg(&mut y).arg(&n);
    // SAFETY: `nas_relu_fwd(const T* x, T* y, long len)`, both buffers hold `len` elements.
    unsafe { counted(&mut b, elementwise(len)) }?;
    Ok(y)
}

/// ReLU forward.
pub(crate) fn relu(s: &CudaStorage, l: &Layout) -> Result<Launched> {
    by_float!(s, |T| {
        let Some(x) = view::<T>(s, l)? else {
            return Ok(None);
        };
        if x.is_empty() {
            // Nothing to launch for (the driver refuses an empty allocation).
            return Ok(None);
        }
        let y = relu_into(&s.device, &x, l.shape().elem_count())?;
        Ok(Some((
            T::wrap_cuda_slice(y, s.device.clone()),
            l.shape().clone(),
        )))
    })
}

/// `gx[i] = gy[i] * (x[i] > 0)` over `len` elements.
fn relu_mask<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    gy: &CudaView<'_, T>,
    gx: &mut CudaSlice<T>,
    len: usize,
) -> Result<()> {
    let f = kernel!(dev, "relu_bwd", T);
    let n = len as i64;
    let mut b = f.builder();
    b.arg(x).arg(gy).arg(gx).arg(&n);
    // SAFETY: `nas_relu_bwd(const T* x, const T* gy, T* gx, long len)`, `len` elements each.
    unsafe { counted(&mut b, elementwise(len)) }?;
    Ok(())
}

/// ReLU backward from the forward's output `y` (`y > 0` exactly where `x > 0`) and `dL/dy`.
pub(crate) fn relu_bwd(
    y: &CudaStorage,
    ly: &Layout,
    g: &CudaStorage,
    lg: &Layout,
) -> Result<Launched> {
    by_float!(y, |T| {
        let (Some(yv), Some(gv)) = (view::<T>(y, ly)?, view::<T>(g, lg)?) else {
            return Ok(None);
        };
        let len = ly.shape().elem_count();
        if len == 0 || yv.len() != len || gv.len() != len {
            return Ok(None);
        }
        // SAFETY: every element is written by the kernel.
        let mut gx = unsafe { y.device.alloc::<T>(len)? };
        relu_mask(&y.device, &yv, &gv, &mut gx, len)?;
        Ok(Some((
            T::wrap_cuda_slice(gx, y.device.clone()),
            ly.shape().clone(),
        )))
    })
}

/// `y = conv(x, w)` (of `max(x, 0)` when `relu`) under `g` into a new buffer: one launch.
fn conv_into<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
    g: Geom,
    relu: bool,
) -> Result<CudaSlice<T>> {
    let len = output_len(&g);
    // SAFETY: every output element is written by the kernel.
    let mut y = unsafe { dev.alloc::<T>(len)? };
    let f = kernel!(dev, "conv_fwd", T);
    let (dg, relu_i) = (DevGeom(g), i32::from(relu));
    let mut b = f.builder();
    b.arg(x).arg(w).arg(&mut y).arg(&dg).arg(&relu_i);
    // SAFETY: `nas_conv_fwd(const T* x, const T* w, T* y, Geom g, int relu_in)` with x, w, y
    // of g's sizes.
    unsafe { counted(&mut b, elementwise(len)) }?;
    Ok(y)
}

/// The environment variable that turns the separable unit's one-launch convolutions off (`0`)
/// or on (`1`, the default), read once per process: a knob of `scripts/gpu-check.sh`'s
/// layout stage, so that a GPU run can compare the one launch with the two.
pub(crate) const UNIT_FUSED_VAR: &str = "NAS_UNIT_FUSED";

/// Whether a separable unit's convolutions run in one launch ([`UNIT_FUSED_VAR`]); an error
/// naming the variable when it is neither `0` nor `1`.
fn unit_fused() -> Result<bool> {
    static VALUE: SettingCell<bool> = SettingCell::new();
    let switch = nas_kernels::launch::switch_setting;
    Ok(tuning_setting(UNIT_FUSED_VAR, &VALUE, switch)?.unwrap_or(true))
}

/// A separable unit's two convolutions, `a = depthwise(max(x, 0), wd)` under `gd` and `b =
/// conv1x1(a, wp)` under `gp`, into new buffers: one launch (`nas_unit_conv_fwd`, each block
/// a tile of positions of one example, the depthwise outputs kept in shared memory for the
/// pointwise sum; [`launch::unit_conv`]) when the tile's channels fit its shared memory, else
/// the two convolutions one after the other. The same additions in the same order either way
/// (the pointwise sum runs over the channels in the convolution kernel's order; bit for bit
/// in the emulation).
fn unit_convs_into<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    wd: &CudaView<'_, T>,
    wp: &CudaView<'_, T>,
    gd: Geom,
    gp: Geom,
) -> Result<(CudaSlice<T>, CudaSlice<T>)> {
    let chained = unit_fused()?
        && gd.groups == gd.cin
        && gd.cin == gd.cout
        && gp.is_pointwise()
        && gp.stride == 1
        && (gp.n, gp.cin, gp.h, gp.w) == (gd.n, gd.cout, gd.oh, gd.ow);
    let fused = chained
        .then(|| {
            launch::unit_conv(
                gd.cout as usize,
                gp.cout as usize,
                (gd.oh * gd.ow) as usize,
                gd.n as usize,
                std::mem::size_of::<T>(),
            )
        })
        .flatten();
    let Some((l, tile)) = fused else {
        let a = conv_into(dev, x, wd, gd, true)?;
        let b = conv_into(dev, &a.slice(0..a.len()), wp, gp, false)?;
        return Ok((a, b));
    };
    // SAFETY: every element of both is written by the kernel (every tile of every example).
    let (mut a, mut b) = unsafe {
        (
            dev.alloc::<T>(output_len(&gd))?,
            dev.alloc::<T>(output_len(&gp))?,
        )
    };
    let f = kernel!(dev, "unit_conv_fwd", T);
    let (dgd, dgp, tile_i) = (DevGeom(gd), DevGeom(gp), tile as i32);
    let mut b_ = f.builder();
    b_.arg(x).arg(wd).arg(wp).arg(&mut a).arg(&mut b);
    b_.arg(&dgd).arg(&dgp).arg(&tile_i);
    // SAFETY: `nas_unit_conv_fwd(const T* x, const T* wd, const T* wp, T* a, T* b, Geom gd,
    // Geom gp, int tile)` with x, wd, a of gd's sizes and wp, b of gp's (gp reads a: checked
    // above), over launch::unit_conv's grid for that tile.
    unsafe { counted(&mut b_, config(l)) }?;
    Ok((a, b))
}

/// A convolution forward: `x` `[n, cin, h, w]` (rectified on the fly when `relu`), `w` of `g`.
pub(crate) fn conv(
    sx: &CudaStorage,
    lx: &Layout,
    sw: &CudaStorage,
    lw: &Layout,
    g: Geom,
    relu: bool,
) -> Result<Launched> {
    by_float!(sx, |T| {
        let (Some(x), Some(w)) = (view::<T>(sx, lx)?, view::<T>(sw, lw)?) else {
            return Ok(None);
        };
        if is_empty(&g) || x.len() != input_len(&g) || w.len() != weight_len(&g) {
            return Ok(None);
        }
        let dev = &sx.device;
        let y = conv_into(dev, &x, &w, g, relu)?;
        let shape = Shape::from((g.n as usize, g.cout as usize, g.oh as usize, g.ow as usize));
        Ok(Some((T::wrap_cuda_slice(y, dev.clone()), shape)))
    })
}

/// A convolution backward: inputs `x`, `w`, `dL/dy`; output the flat `[dL/dx, dL/dw]` (the
/// layout of the CPU backward ops). With `relu` the forward read `max(x, 0)`: the weight
/// gradient reads it the same way and the input gradient is masked where `x <= 0`, inside
/// the same kernels.
pub(crate) fn conv_bwd(
    inputs: [(&CudaStorage, &Layout); 3],
    g: Geom,
    relu: bool,
) -> Result<Launched> {
    let [(sx, lx), (sw, lw), (sg, lg)] = inputs;
    by_float!(sx, |T| {
        let (Some(x), Some(w), Some(gy)) =
            (view::<T>(sx, lx)?, view::<T>(sw, lw)?, view::<T>(sg, lg)?)
        else {
            return Ok(None);
        };
        let (nx, nw) = (input_len(&g), weight_len(&g));
        if is_empty(&g) || x.len() != nx || w.len() != nw || gy.len() != output_len(&g) {
            return Ok(None);
        }
        let dev = &sx.device;
        // SAFETY: both parts are written in full below.
        let mut out = unsafe { dev.alloc::<T>(nx + nw)? };
        {
            let (_, mut gw) = out.split_at_mut(nx);
            weight_grad(dev, &x, &gy, &mut gw, g, relu)?;
        }
        let (mut gx, _) = out.split_at_mut(nx);
        input_grad_into(dev, &gy, &w, &mut gx, g, relu.then_some(&x))?;
        Ok(Some((
            T::wrap_cuda_slice(out, dev.clone()),
            Shape::from(nx + nw),
        )))
    })
}

/// `gx = dL/dx` of a convolution under `g` from `dL/dy` and the weight: one launch; masked
/// where `relu_x <= 0` when the forward read `max(relu_x, 0)` (a fused input ReLU).
fn input_grad_into<T: DevFloat>(
    dev: &CudaDevice,
    gy: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
    gx: &mut CudaViewMut<'_, T>,
    g: Geom,
    relu_x: Option<&CudaView<'_, T>>,
) -> Result<()> {
    let f = kernel!(dev, "conv_bwd_input", T);
    let dg = DevGeom(g);
    let mut b = f.builder();
    b.arg(gy).arg(w).arg(gx).arg(&dg);
    match relu_x {
        Some(x) => b.arg(x),
        None => b.arg(&NULL),
    };
    // SAFETY: `nas_conv_bwd_input(const T* gy, const T* w, T* gx, Geom g,
    // const T* relu_x)`, gy, w and gx of g's sizes, relu_x null or of the input's size.
    unsafe { counted(&mut b, elementwise(input_len(&g))) }?;
    Ok(())
}

/// `gw = dL/dw` from the input the forward read (`max(x, 0)` when `relu`) and `dL/dy`, in one
/// launch: `nas_pw_bwd_weight` in tiles for a pointwise convolution, else
/// `nas_conv_bwd_weight`, a block per weight element and chunk of output positions
/// ([`WeightGradLaunch`]).
fn weight_grad<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    gy: &CudaView<'_, T>,
    gw: &mut CudaViewMut<'_, T>,
    g: Geom,
    relu: bool,
) -> Result<()> {
    let relu_i = i32::from(relu);
    let (f, mut w) = if g.is_pointwise() {
        let f = kernel!(dev, "pw_bwd_weight", T);
        (f, WeightGradLaunch::<T>::pointwise(dev, g)?)
    } else {
        let f = kernel!(dev, "conv_bwd_weight", T);
        (
            f,
            WeightGradLaunch::<T>::per_element(dev, g, weight_len(&g))?,
        )
    };
    let (done, cfg) = (w.done, w.config);
    let mut b = f.builder();
    b.arg(x).arg(gy);
    w.push_chunking(&mut b);
    b.arg(&relu_i).arg(gw).arg(&done);
    // SAFETY: `nas_conv_bwd_weight` and `nas_pw_bwd_weight` both take `(const T* x,
    // const T* gy, T* part, Geom g, long per, int relu_in, T* gw, unsigned int* done)`: x and
    // gy of g's input and output sizes, gw of its weight's, the rest as [`WeightGradLaunch`]
    // says.
    unsafe { counted(&mut b, cfg) }?;
    Ok(())
}

/// What one launch of a weight-gradient kernel (`nas_conv_bwd_weight`, `nas_pw_bwd_weight`,
/// `nas_fr_bwd_weight`: `inputs.., T* part, Geom g, long per, extra.., T* gw, unsigned int*
/// done`) needs beside its inputs and output: a block of 256 threads per weight element (or
/// 16 x 16 tile) and chunk of output positions; with several chunks a buffer for their
/// partial sums, which the launch's last block adds in chunk order, and this thread's block
/// counter (zero between launches); with one chunk neither (null: each block writes its
/// elements of `gw`).
struct WeightGradLaunch<T> {
    /// `chunks` rows of `nw` partial sums, none with one chunk.
    part: Option<CudaSlice<T>>,
    /// The geometry, as the kernel's `Geom`.
    geom: DevGeom,
    /// Output positions per chunk.
    per: i64,
    /// The block counter's device address (0 with one chunk: not read).
    done: u64,
    /// Grid and block ([`launch::weight_blocks`]).
    config: LaunchConfig,
}

impl<T: DevFloat> WeightGradLaunch<T> {
    /// The block-per-element launch (`nas_conv_bwd_weight`, `nas_fr_bwd_weight`) over `g`'s
    /// output positions for `nw` weight elements.
    fn per_element(dev: &CudaDevice, g: Geom, nw: usize) -> Result<Self> {
        if nw > launch::MAX_WEIGHT_BLOCKS {
            candle_core::bail!("a weight of {nw} elements exceeds one launch's grid");
        }
        let (chunks, per) = nas_kernels::weight_chunks(g.positions(), nw);
        Self::with_chunks(dev, g, nw, (chunks, per), launch::weight_blocks(nw, chunks))
    }

    /// The tiled launch of a pointwise weight gradient (`nas_pw_bwd_weight`; `g` is
    /// [`Geom::is_pointwise`]): a block per 16 x 16 tile of the weight and chunk of
    /// [`nas_kernels::pw_weight_chunks`].
    fn pointwise(dev: &CudaDevice, g: Geom) -> Result<Self> {
        let (co, ci) = (g.cout as usize, g.cin as usize);
        let tiles = co.div_ceil(launch::PW_TILE) * ci.div_ceil(launch::PW_TILE);
        if tiles > launch::MAX_WEIGHT_BLOCKS {
            candle_core::bail!("a pointwise weight of {co} x {ci} exceeds one launch's grid");
        }
        let (chunks, per) = nas_kernels::pw_weight_chunks(g.positions(), co * ci);
        Self::with_chunks(
            dev,
            g,
            co * ci,
            (chunks, per),
            launch::pw_tiles(co, ci, chunks),
        )
    }

    /// Pushes the kernel's `T* part, Geom g, long per` (after its inputs).
    fn push_chunking<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
        match &mut self.part {
            Some(p) => b.arg(p),
            None => b.arg(&NULL),
        };
        b.arg(&self.geom).arg(&self.per);
    }

    /// The launch `l` over `chunks` chunks of `per` positions for `nw` weight elements.
    fn with_chunks(
        dev: &CudaDevice,
        g: Geom,
        nw: usize,
        (chunks, per): (usize, usize),
        l: Launch,
    ) -> Result<Self> {
        let (part, done) = if chunks > 1 {
            // SAFETY: every partial sum is written by its block before the last block reads
            // it.
            let part = unsafe { dev.alloc::<T>(chunks * nw)? };
            (Some(part), block_counter(dev)?)
        } else {
            (None, 0)
        };
        Ok(Self {
            part,
            geom: DevGeom(g),
            per: per as i64,
            done,
            config: config(l),
        })
    }
}

/// Depthwise convolution forward over `win` (weight `[C, 1, k, k]`).
pub(crate) fn depthwise(
    sx: &CudaStorage,
    lx: &Layout,
    sw: &CudaStorage,
    lw: &Layout,
    win: &Window,
    relu: bool,
) -> Result<Launched> {
    conv(sx, lx, sw, lw, depthwise_geom(win)?, relu)
}

/// Depthwise convolution backward (flat `[dL/dx, dL/dw]`).
pub(crate) fn depthwise_bwd(
    inputs: [(&CudaStorage, &Layout); 3],
    win: &Window,
    relu: bool,
) -> Result<Launched> {
    conv_bwd(inputs, depthwise_geom(win)?, relu)
}

/// The kernel geometry of a bias-free 1x1 convolution with `stride` (no padding).
pub(crate) fn pointwise_geom(
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    stride: usize,
) -> Result<Geom> {
    Geom::conv(n, ci, h, w, co, 1, stride, 0, 1, 1).map_err(geom_err)
}

/// Max pooling forward; the winners are not kept (the backward recomputes them).
pub(crate) fn max_pool(s: &CudaStorage, l: &Layout, win: &Window) -> Result<Launched> {
    by_float!(s, |T| {
        let Some(x) = view::<T>(s, l)? else {
            return Ok(None);
        };
        let g = pool_geom(win)?;
        if is_empty(&g) || x.len() != input_len(&g) {
            return Ok(None);
        }
        let dev = &s.device;
        let len = output_len(&g);
        // SAFETY: every output is written by the kernel.
        let mut y = unsafe { dev.alloc::<T>(len)? };
        let f = kernel!(dev, "max_pool_fwd", T);
        let dg = DevGeom(g);
        let mut b = f.builder();
        b.arg(&x).arg(&mut y).arg(&NULL).arg(&dg);
        // SAFETY: `nas_max_pool_fwd(const T* x, T* y, int* arg, Geom g)`, y of g's output size,
        // arg null (not kept).
        unsafe { counted(&mut b, elementwise(len)) }?;
        let shape = Shape::from((win.n, win.c, win.oh, win.ow));
        Ok(Some((T::wrap_cuda_slice(y, dev.clone()), shape)))
    })
}

/// Max pooling backward from `dL/dy` and the forward's input `x` (the winners are found
/// again, with the forward's tie rule, without writing the outputs); output `dL/dx` flat.
pub(crate) fn max_pool_bwd(
    sg: &CudaStorage,
    lg: &Layout,
    sx: &CudaStorage,
    lx: &Layout,
    win: &Window,
) -> Result<Launched> {
    by_float!(sg, |T| {
        let (Some(gy), Some(x)) = (view::<T>(sg, lg)?, view::<T>(sx, lx)?) else {
            return Ok(None);
        };
        let g = pool_geom(win)?;
        if is_empty(&g) || x.len() != input_len(&g) || gy.len() != output_len(&g) {
            return Ok(None);
        }
        let dev = &sg.device;
        let dg = DevGeom(g);
        let len = output_len(&g);
        // SAFETY: every winner index is written by the kernel.
        let mut arg = unsafe { dev.alloc::<i32>(len)? };
        {
            let f = kernel!(dev, "max_pool_fwd", T);
            let mut b = f.builder();
            b.arg(&x).arg(&NULL).arg(&mut arg).arg(&dg);
            // SAFETY: `nas_max_pool_fwd(const T* x, T* y, int* arg, Geom g)`, y null (not
            // needed), arg of g's output size.
            unsafe { counted(&mut b, elementwise(len)) }?;
        }
        let nx = input_len(&g);
        // SAFETY: every input-gradient element is written by the kernel.
        let mut gx = unsafe { dev.alloc::<T>(nx)? };
        let f = kernel!(dev, "max_pool_bwd", T);
        let mut b = f.builder();
        b.arg(&gy).arg(&arg).arg(&mut gx).arg(&dg);
        // SAFETY: `nas_max_pool_bwd(const T* gy, const int* arg, T* gx, Geom g)`.
        unsafe { counted(&mut b, elementwise(nx)) }?;
        Ok(Some((T::wrap_cuda_slice(gx, dev.clone()), Shape::from(nx))))
    })
}

/// Average pooling forward, or its backward when `backward` (input `dL/dy`, output `dL/dx`
/// `[N, C, H, W]`); `include_pad` is PyTorch's `count_include_pad`.
pub(crate) fn avg_pool(
    s: &CudaStorage,
    l: &Layout,
    win: &Window,
    include_pad: bool,
    backward: bool,
) -> Result<Launched> {
    by_float!(s, |T| {
        let Some(x) = view::<T>(s, l)? else {
            return Ok(None);
        };
        let g = pool_geom(win)?;
        let want = if backward {
            output_len(&g)
        } else {
            input_len(&g)
        };
        if is_empty(&g) || x.len() != want {
            return Ok(None);
        }
        let dev = &s.device;
        let (base, len, shape) = if backward {
            (
                "avg_pool_bwd",
                input_len(&g),
                Shape::from((win.n, win.c, win.h, win.w)),
            )
        } else {
            (
                "avg_pool_fwd",
                output_len(&g),
                Shape::from((win.n, win.c, win.oh, win.ow)),
            )
        };
        // SAFETY: every element is written by the kernel.
        let mut y = unsafe { dev.alloc::<T>(len)? };
        let f = kernel!(dev, base, T);
        let (dg, pad_i) = (DevGeom(g), i32::from(include_pad));
        let mut b = f.builder();
        b.arg(&x).arg(&mut y).arg(&dg).arg(&pad_i);
        // SAFETY: `nas_avg_pool_{fwd,bwd}(const T* in, T* out, Geom g, int include_pad)`,
        // sizes of g.
        unsafe { counted(&mut b, elementwise(len)) }?;
        Ok(Some((T::wrap_cuda_slice(y, dev.clone()), shape)))
    })
}

/// A null device pointer for an optional kernel argument.
const NULL: u64 = 0;

/// Launch shape of the per-channel reductions: one block per channel
/// ([`launch::per_channel`]).
fn per_channel(c: usize) -> LaunchConfig {
    config(launch::per_channel(c))
}

/// The batch statistics of one training-mode batch-norm forward, left on the device where it
/// ran: per channel the mean and `1 / sqrt(var + eps)`, in the input's element type, which the
/// backward reads; nothing goes through the host. `folded`: whether the forward also folded
/// them into the running statistics ([`RunningFold`]).
pub(crate) struct DeviceBatchStats {
    mean: CudaStorage,
    invstd: CudaStorage,
    folded: bool,
}

impl DeviceBatchStats {
    /// Whether the forward folded these statistics into the running ones.
    pub(crate) fn folded(&self) -> bool {
        self.folded
    }

    /// The per-channel mean and `1 / sqrt(var + eps)` as `T`.
    fn slices<T: DevFloat>(&self) -> Result<(&CudaSlice<T>, &CudaSlice<T>)> {
        Ok((
            T::as_cuda_slice(&self.mean)?,
            T::as_cuda_slice(&self.invstd)?,
        ))
    }
}

/// A batch norm's running mean and (unbiased) variance on a device, in `f64` as on the CPU.
pub(crate) struct DeviceRunning {
    device: CudaDevice,
    mean: CudaSlice<f64>,
    var: CudaSlice<f64>,
}

/// Where a training-mode batch-norm forward folds its batch statistics, in the same launch:
/// the device addresses of a [`DeviceRunning`]'s mean and variance (`channels` values each)
/// and the running-average factor of this batch (PyTorch's update, the unbiased variance).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunningFold {
    mean: u64,
    var: u64,
    channels: usize,
    factor: f64,
}

impl DeviceRunning {
    /// The running statistics `mean`, `var` copied to `device`.
    pub(crate) fn upload(device: &CudaDevice, mean: &[f64], var: &[f64]) -> Result<Self> {
        Ok(Self {
            mean: device.clone_htod(mean)?,
            var: device.clone_htod(var)?,
            device: device.clone(),
        })
    }

    /// Whether these statistics live on `device`.
    pub(crate) fn is_on(&self, device: &CudaDevice) -> bool {
        use candle_core::backend::BackendDevice;
        self.device.same_device(device)
    }

    /// The running `(mean, var)` copied to the host (a synchronisation).
    pub(crate) fn download(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        Ok((
            self.device.clone_dtoh(&self.mean)?,
            self.device.clone_dtoh(&self.var)?,
        ))
    }

    /// Where the next training forward folds its batch statistics with the factor `factor`.
    /// The forward writes through these addresses in stream order, so the caller keeps this
    /// value alive (holds the batch norm's state) until the forward is launched.
    pub(crate) fn fold_target(&mut self, factor: f64) -> RunningFold {
        use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
        let stream = self.device.cuda_stream();
        let channels = self.mean.len();
        let (mean, _record_mean) = self.mean.device_ptr_mut(&stream);
        let (var, _record_var) = self.var.device_ptr_mut(&stream);
        RunningFold {
            mean,
            var,
            channels,
            factor,
        }
    }
}

/// What a training-mode batch-norm forward gives back: the output and its batch statistics.
pub(crate) type BatchNormed = Option<(CudaStorage, Shape, DeviceBatchStats)>;

/// The fewest chunks per channel for which a batch norm runs over several blocks per channel
/// (`nas_bn_moments` + `nas_bn_apply` forward, `nas_bn_grad_sums` + `nas_bn_bwd_apply`
/// backward: two launches each) instead of one block per channel (one launch);
/// [`nas_kernels::launch::bn_chunking`]. With the default chunks of 8,192 values, four are
/// 24,577 values or more per channel: the first cells of a DARTS search at batch 64 and
/// 32 x 32 (65,536 per channel, 16 channels: 16 blocks of 256 threads alone, where the chunks
/// give 128). A guess not yet measured on a GPU (docs/gpu.md, "What is left"):
/// [`BN_MIN_CHUNKS_VAR`] overrides it for a benchmark.
const BN_MIN_CHUNKS: usize = 4;

/// The environment variable that overrides [`BN_MIN_CHUNKS`] (a positive integer; a large
/// one keeps every batch norm at one block per channel), read once per process: a knob
/// `scripts/gpu-check.sh` tunes the batch norm with.
pub(crate) const BN_MIN_CHUNKS_VAR: &str = "NAS_BN_MIN_CHUNKS";

/// The environment variable that sets the values per chunk of a batch norm over several
/// blocks per channel (a positive integer; unset: [`nas_kernels::reduction_chunks`]' 8,192),
/// read once per process: the other batch-norm knob of `scripts/gpu-check.sh`'s layout stage. Smaller
/// chunks give the 16 x 16 and 8 x 8 cells of a search (16,384 and 4,096 values per channel
/// at batch 64) more blocks than their 32 and 64 channels.
pub(crate) const BN_CHUNK_VAR: &str = "NAS_BN_CHUNK";

/// A launch-tuning setting cell: the environment variable's parsed value (`None` when unset)
/// or the error naming it, read once per process.
type SettingCell<V> = std::sync::OnceLock<std::result::Result<Option<V>, String>>;

/// The environment variable `var` parsed by `parse` (one of [`nas_kernels::launch`]'s setting
/// parsers), read once into `cell`: `None` when unset, an error naming the variable when
/// `parse` refuses its value.
fn tuning_setting<V: Clone>(
    var: &'static str,
    cell: &'static SettingCell<V>,
    parse: fn(&str, &str) -> std::result::Result<V, String>,
) -> Result<Option<V>> {
    let value = cell.get_or_init(|| match std::env::var(var) {
        Err(_) => Ok(None),
        Ok(v) => parse(var, &v).map(Some),
    });
    value.clone().map_err(candle_core::Error::Msg)
}

/// `(chunks, values per chunk)` when a batch norm over `m` values per channel and `c`
/// channels runs over several blocks per channel, else `None`:
/// [`nas_kernels::launch::bn_chunking`] with [`BN_MIN_CHUNKS`] and the default chunks, or the
/// environment's [`BN_MIN_CHUNKS_VAR`] and [`BN_CHUNK_VAR`].
fn bn_chunks(m: usize, c: usize) -> Result<Option<(usize, i64)>> {
    static MIN_CHUNKS: SettingCell<usize> = SettingCell::new();
    static CHUNK: SettingCell<usize> = SettingCell::new();
    let positive = nas_kernels::launch::positive_setting;
    let min_chunks =
        tuning_setting(BN_MIN_CHUNKS_VAR, &MIN_CHUNKS, positive)?.unwrap_or(BN_MIN_CHUNKS);
    let chunk = tuning_setting(BN_CHUNK_VAR, &CHUNK, positive)?;
    Ok(nas_kernels::launch::bn_chunking(m, c, chunk, min_chunks).map(|(k, per)| (k, per as i64)))
}

/// Batch norm forward with batch statistics over `x` `[n, c, hw]` (`affine`: gamma, beta),
/// folding them into the running statistics of `fold` in the same launches when given: one
/// block per channel, or over several ([`bn_chunks`]) and then one thread per value.
pub(crate) fn batch_norm_train(
    (sx, lx): (&CudaStorage, &Layout),
    affine: Option<[(&CudaStorage, &Layout); 2]>,
    (n, c, hw): (usize, usize, usize),
    eps: f64,
    fold: Option<RunningFold>,
) -> Result<BatchNormed> {
    if let Some(f) = fold.filter(|f| f.channels != c) {
        candle_core::bail!(
            "BatchNorm2d on CUDA: {} running statistics for {c} channels",
            f.channels
        );
    }
    by_float!(sx, |T| {
        let Some(x) = view::<T>(sx, lx)? else {
            return Ok(None);
        };
        let params = match affine {
            Some([(sg, lg), (sb, lb)]) => match (view::<T>(sg, lg)?, view::<T>(sb, lb)?) {
                (Some(g), Some(b)) if g.len() == c && b.len() == c => Some((g, b)),
                _ => return Ok(None),
            },
            None => None,
        };
        if x.is_empty() || x.len() != n * c * hw {
            return Ok(None);
        }
        let dev = &sx.device;
        // SAFETY: every element of the three buffers is written by the kernel.
        let (mut y, mut mean, mut invstd) = unsafe {
            (
                dev.alloc::<T>(x.len())?,
                dev.alloc::<T>(c)?,
                dev.alloc::<T>(c)?,
            )
        };
        let (ni, ci, hwl) = (n as i32, c as i32, hw as i64);
        let eps_t = T::from_f64(eps);
        let (factor, run_mean, run_var) = match fold {
            Some(f) => (f.factor, f.mean, f.var),
            None => (0.0, NULL, NULL),
        };
        if let Some((chunks, per)) = bn_chunks(n * hw, c)? {
            // SAFETY: every partial sum is written by its block before the last block reads it.
            let mut part = unsafe { dev.alloc::<T>(2 * chunks * c)? };
            let done = block_counter(dev)?;
            let f = kernel!(dev, "bn_moments", T);
            let mut b = f.builder();
            b.arg(&x).arg(&ni).arg(&ci).arg(&hwl).arg(&per).arg(&eps_t);
            b.arg(&mut part).arg(&mut mean).arg(&mut invstd);
            b.arg(&factor).arg(&run_mean).arg(&run_var).arg(&done);
            // SAFETY: `nas_bn_moments(x, int n, int c, long hw, long per, T eps, T* part,
            // save_mean, save_invstd, double factor, double* run_mean, double* run_var,
            // unsigned int* done)`: a grid of chunks x c blocks of REDUCTION_THREADS, part of
            // 2 chunks c values, the statistics of c (the running ones c or null), done this
            // thread's counter, zero between launches.
            unsafe { counted(&mut b, config(launch::channel_chunks(chunks, c))) }?;
            let f = kernel!(dev, "bn_apply", T);
            let mut b = f.builder();
            b.arg(&x);
            match &params {
                Some((g, be)) => b.arg(g).arg(be),
                None => b.arg(&NULL).arg(&NULL),
            };
            b.arg(&ni)
                .arg(&ci)
                .arg(&hwl)
                .arg(&mean)
                .arg(&invstd)
                .arg(&mut y);
            // SAFETY: `nas_bn_apply(x, gamma, beta, int n, int c, long hw, mean, invstd, y)`:
            // x and y of n c hw values, the rest of c (gamma and beta null when not affine).
            unsafe { counted(&mut b, elementwise(x.len())) }?;
        } else {
            let f = kernel!(dev, "bn_fwd_train", T);
            let mut b = f.builder();
            b.arg(&x);
            match &params {
                Some((g, be)) => b.arg(g).arg(be),
                None => b.arg(&NULL).arg(&NULL),
            };
            b.arg(&ni).arg(&ci).arg(&hwl).arg(&eps_t);
            b.arg(&mut y).arg(&mut mean).arg(&mut invstd);
            b.arg(&factor).arg(&run_mean).arg(&run_var);
            // SAFETY: `nas_bn_fwd_train(x, gamma, beta, int n, int c, long hw, T eps, y,
            // save_mean, save_invstd, double factor, double* run_mean, double* run_var)`, one
            // block per channel of REDUCTION_THREADS threads; the running statistics are c
            // values each (checked above) or null.
            unsafe { counted(&mut b, per_channel(c)) }?;
        }
        let wrap = |s: CudaSlice<T>| T::wrap_cuda_slice(s, dev.clone());
        let stats = DeviceBatchStats {
            mean: wrap(mean),
            invstd: wrap(invstd),
            folded: fold.is_some(),
        };
        Ok(Some((wrap(y), lx.shape().clone(), stats)))
    })
}

/// Batch norm backward through the batch statistics `stats` of the forward: inputs `x`,
/// `dL/dy` and, when affine, `gamma`; output the flat `[dL/dx, dL/dgamma, dL/dbeta]`.
pub(crate) fn batch_norm_train_bwd(
    (sx, lx): (&CudaStorage, &Layout),
    (sg, lg): (&CudaStorage, &Layout),
    gamma: Option<(&CudaStorage, &Layout)>,
    (n, c, hw): (usize, usize, usize),
    stats: &DeviceBatchStats,
) -> Result<Launched> {
    by_float!(sx, |T| {
        let (Some(x), Some(gy)) = (view::<T>(sx, lx)?, view::<T>(sg, lg)?) else {
            return Ok(None);
        };
        let gamma = match gamma {
            Some((s, l)) => match view::<T>(s, l)? {
                Some(v) if v.len() == c => Some(v),
                _ => return Ok(None),
            },
            None => None,
        };
        let (mean, invstd) = stats.slices::<T>()?;
        let nx = n * c * hw;
        if nx == 0 || x.len() != nx || gy.len() != nx || mean.len() != c || invstd.len() != c {
            return Ok(None);
        }
        let dev = &sx.device;
        // SAFETY: the three parts are written in full by the kernel.
        let mut out = unsafe { dev.alloc::<T>(nx + 2 * c)? };
        {
            let (mut gx, mut params) = out.split_at_mut(nx);
            let stats = (mean, invstd);
            let dims = (n, c, hw);
            bn_bwd_into(
                dev,
                &x,
                &gy,
                stats,
                gamma.as_ref(),
                &mut gx,
                Some(&mut params),
                dims,
            )?;
        }
        Ok(Some((
            T::wrap_cuda_slice(out, dev.clone()),
            Shape::from(nx + 2 * c),
        )))
    })
}

/// The most options a weighted sum launches with ([`launch::MAX_OPTIONS`]); a sum of more goes
/// through candle's element-wise ops.
pub(crate) const MAX_OPTIONS: usize = launch::MAX_OPTIONS;

/// Up to [`MAX_OPTIONS`] device pointers as one kernel argument passed by value (the C
/// structs `Operands<T>` / `Outputs<T>`), unused entries null.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct DevPtrs([u64; MAX_OPTIONS]);

// SAFETY: `[u64; 32]` has the layout of a C struct of 32 pointers (8 bytes each, no padding).
unsafe impl DeviceRepr for DevPtrs {}

/// The contiguous views, as `T`, of the locked candle storages `guards` (each with its
/// layout); `None` unless every one is a CUDA storage on `dev` and contiguous.
fn cuda_views<'a, T: DevFloat, G: std::ops::Deref<Target = candle_core::Storage>>(
    dev: &CudaDevice,
    guards: &'a [(G, &Layout)],
) -> Result<Option<Vec<CudaView<'a, T>>>> {
    use candle_core::backend::BackendDevice;
    let mut views = Vec::with_capacity(guards.len());
    for (st, l) in guards {
        let candle_core::Storage::Cuda(cs) = &**st else {
            return Ok(None);
        };
        if !cs.device.same_device(dev) {
            return Ok(None);
        }
        match view::<T>(cs, l)? {
            Some(v) => views.push(v),
            None => return Ok(None),
        }
    }
    Ok(Some(views))
}

/// Runs `f` with the device pointers of the contiguous CUDA tensors `ys` (each of `len`
/// elements of `T`); `Ok(None)` when one is elsewhere or not contiguous.
fn with_pointers<T: DevFloat, R>(
    dev: &CudaDevice,
    ys: &[candle_core::Tensor],
    len: usize,
    f: impl FnOnce(DevPtrs) -> Result<R>,
) -> Result<Option<R>> {
    let guards: Vec<_> = ys.iter().map(|y| y.storage_and_layout()).collect();
    match cuda_storages(&guards) {
        Some(storages) => with_storage_pointers::<T, R>(dev, &storages, len, f),
        None => Ok(None),
    }
}

/// The CUDA storages of the locked candle storages `guards` (each with its layout); `None`
/// when one is elsewhere.
pub(crate) fn cuda_storages<'a, G: std::ops::Deref<Target = candle_core::Storage>>(
    guards: &'a [(G, &'a Layout)],
) -> Option<Vec<(&'a CudaStorage, &'a Layout)>> {
    guards
        .iter()
        .map(|(st, l)| match &**st {
            candle_core::Storage::Cuda(cs) => Some((cs, *l)),
            _ => None,
        })
        .collect()
}

/// [`with_pointers`] for storages a custom op holds (each under its layout).
fn with_storage_pointers<T: DevFloat, R>(
    dev: &CudaDevice,
    ys: &[(&CudaStorage, &Layout)],
    len: usize,
    f: impl FnOnce(DevPtrs) -> Result<R>,
) -> Result<Option<R>> {
    use candle_core::backend::BackendDevice;
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    if ys.len() > MAX_OPTIONS {
        return Ok(None);
    }
    let mut views = Vec::with_capacity(ys.len());
    for (cs, l) in ys {
        if !cs.device.same_device(dev) {
            return Ok(None);
        }
        match view::<T>(cs, l)? {
            Some(v) if v.len() == len => views.push(v),
            _ => return Ok(None),
        }
    }
    let stream = dev.cuda_stream();
    let mut ptrs = DevPtrs([0; MAX_OPTIONS]);
    let mut records = Vec::with_capacity(views.len());
    for (p, v) in ptrs.0.iter_mut().zip(&views) {
        let (ptr, record) = v.device_ptr(&stream);
        *p = ptr;
        records.push(record);
    }
    // The records (no-ops without cudarc's event tracking) are dropped after the launch in f.
    let out = f(ptrs)?;
    drop(records);
    Ok(Some(out))
}

/// `sum_k ys[k]` (contiguous storages of `numel` values each, at most [`MAX_OPTIONS`]) into a
/// new buffer: one launch of the weighted-sum kernel with weights one. `Ok(None)` when it does
/// not serve them.
pub(crate) fn sum_storages(
    ys: &[(&CudaStorage, &Layout)],
    numel: usize,
) -> Result<Option<CudaStorage>> {
    let Some((first, _)) = ys.first() else {
        return Ok(None);
    };
    by_float!(first, |T| {
        if numel == 0 {
            return Ok(None);
        }
        let dev = &first.device;
        let w = ones::<T>(dev)?;
        let y = with_storage_pointers::<T, _>(dev, ys, numel, |ptrs| {
            // SAFETY: every output element is written by the kernel.
            let mut y = unsafe { dev.alloc::<T>(numel)? };
            let f = kernel!(dev, "mixed_fwd", T);
            let (kn, len) = (ys.len() as i32, numel as i64);
            let mut b = f.builder();
            b.arg(&ptrs).arg(&w).arg(&kn).arg(&len).arg(&mut y);
            // SAFETY: `nas_mixed_fwd(Operands<T> ys, const T* w, int kn, long len, T* y)`,
            // kn operands of len elements, w MAX_OPTIONS >= kn ones.
            unsafe { counted(&mut b, elementwise(numel)) }?;
            Ok(y)
        })?;
        Ok(y.map(|y| T::wrap_cuda_slice(y, dev.clone())))
    })
}

/// The mixed-op sum `y = sum_k w[k] * ys[k]` (shared weights `w` `[K]`, zero-weight options
/// skipped) into a new buffer of `numel` elements: one launch.
pub(crate) fn mixed_sum(
    ys: &[candle_core::Tensor],
    w: (&CudaStorage, &Layout),
    numel: usize,
) -> Result<Option<CudaStorage>> {
    let guards: Vec<_> = ys.iter().map(|y| y.storage_and_layout()).collect();
    match cuda_storages(&guards) {
        Some(storages) => mixed_sum_storages(&storages, w, numel),
        None => Ok(None),
    }
}

/// [`mixed_sum`] over storages a custom op holds (each under its layout).
pub(crate) fn mixed_sum_storages(
    ys: &[(&CudaStorage, &Layout)],
    (sw, lw): (&CudaStorage, &Layout),
    numel: usize,
) -> Result<Option<CudaStorage>> {
    by_float!(sw, |T| {
        let Some(w) = view::<T>(sw, lw)? else {
            return Ok(None);
        };
        if w.len() != ys.len() || numel == 0 {
            // Nothing to launch for an empty sum; candle's ops make it.
            return Ok(None);
        }
        let dev = &sw.device;
        let y = with_storage_pointers::<T, _>(dev, ys, numel, |ptrs| {
            // SAFETY: every output element is written by the kernel.
            let mut y = unsafe { dev.alloc::<T>(numel)? };
            let f = kernel!(dev, "mixed_fwd", T);
            let (kn, len) = (ys.len() as i32, numel as i64);
            let mut b = f.builder();
            b.arg(&ptrs).arg(&w).arg(&kn).arg(&len).arg(&mut y);
            // SAFETY: `nas_mixed_fwd(Operands<T> ys, const T* w, int kn, long len, T* y)`,
            // kn operands of len elements, w of kn.
            unsafe { counted(&mut b, elementwise(numel)) }?;
            Ok(y)
        })?;
        Ok(y.map(|y| T::wrap_cuda_slice(y, dev.clone())))
    })
}

/// The backward of [`mixed_sum`] for the upstream gradient `g`: the flat buffer
/// `[dL/dw (K) | dL/dys[k] (numel) for each tracked k, in order]`; `dL/dw` is left unwritten
/// unless `want_w`. One launch: its last block to finish adds the weight gradient's partial
/// sums in a fixed order, so the result does not depend on scheduling.
pub(crate) fn mixed_sum_bwd(
    ys: &[candle_core::Tensor],
    (sw, lw): (&CudaStorage, &Layout),
    (sg, lg): (&CudaStorage, &Layout),
    tracked: &[bool],
    want_w: bool,
) -> Result<Option<CudaStorage>> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
    by_float!(sw, |T| {
        let (Some(w), Some(g)) = (view::<T>(sw, lw)?, view::<T>(sg, lg)?) else {
            return Ok(None);
        };
        let (k, numel) = (ys.len(), g.len());
        if w.len() != k || tracked.len() != k || k == 0 || numel == 0 {
            return Ok(None);
        }
        let dev = &sw.device;
        let outputs = tracked.iter().filter(|&&t| t).count();
        let out = with_pointers::<T, _>(dev, ys, numel, |ptrs| {
            // SAFETY: dL/dw is written when asked for, each tracked dL/dys[k] in full; the
            // rest is not read.
            let mut out = unsafe { dev.alloc::<T>(k + outputs * numel)? };
            let stream = dev.cuda_stream();
            {
                let (base, _record) = out.device_ptr_mut(&stream);
                let gys =
                    row_pointers::<T>(base + (k * std::mem::size_of::<T>()) as u64, numel, tracked);
                let gw = if want_w { base } else { NULL };
                launch_mixed_bwd(dev, &g, ptrs, &w, numel, gys, gw)?;
            }
            Ok(out)
        })?;
        Ok(out.map(|o| T::wrap_cuda_slice(o, dev.clone())))
    })
}

/// The backward of the weighted sum over the contiguous storages `ys` (a fused mixed edge's
/// options' outputs) for the upstream gradient `g`, every option tracked: `(dL/dw, dL/dys)`
/// in buffers of their own (`K` values; `K * numel`, option after option), so that the small
/// weight gradient, held until the end of the backward, does not hold the large one. One
/// launch.
pub(crate) fn mixed_storages_bwd(
    ys: &[(&CudaStorage, &Layout)],
    (sw, lw): (&CudaStorage, &Layout),
    (sg, lg): (&CudaStorage, &Layout),
) -> Result<Option<(CudaStorage, CudaStorage)>> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
    by_float!(sw, |T| {
        let (Some(w), Some(g)) = (view::<T>(sw, lw)?, view::<T>(sg, lg)?) else {
            return Ok(None);
        };
        let (k, numel) = (ys.len(), g.len());
        if w.len() != k || k == 0 || numel == 0 {
            return Ok(None);
        }
        let dev = &sw.device;
        let out = with_storage_pointers::<T, _>(dev, ys, numel, |ptrs| {
            // SAFETY: both written in full by the kernel (gw by its last block).
            let (mut gw, mut gys) = unsafe { (dev.alloc::<T>(k)?, dev.alloc::<T>(k * numel)?) };
            let stream = dev.cuda_stream();
            {
                let (gw_ptr, _rw) = gw.device_ptr_mut(&stream);
                let (base, _rg) = gys.device_ptr_mut(&stream);
                let rows = row_pointers::<T>(base, numel, &vec![true; k]);
                launch_mixed_bwd(dev, &g, ptrs, &w, numel, rows, gw_ptr)?;
            }
            Ok((gw, gys))
        })?;
        let wrap = |s: CudaSlice<T>| T::wrap_cuda_slice(s, dev.clone());
        Ok(out.map(|(gw, gys)| (wrap(gw), wrap(gys))))
    })
}

/// Pointers to consecutive rows of `numel` values of `T` from `base`, one per `tracked` entry
/// that is true (null for the others).
fn row_pointers<T: DevFloat>(base: u64, numel: usize, tracked: &[bool]) -> DevPtrs {
    let size = std::mem::size_of::<T>() as u64;
    let mut rows = DevPtrs([0; MAX_OPTIONS]);
    let mut next = 0u64;
    for (p, _) in rows.0.iter_mut().zip(tracked).filter(|(_, t)| **t) {
        *p = base + next * size;
        next += numel as u64;
    }
    rows
}

/// One launch of `nas_mixed_bwd` over the `w.len()` options at `ys` (`numel` values each):
/// `gys[k] = w[k] * g` where `gys[k]` is not null, and the weight gradient into `gw` (its
/// partial sums added by the launch's last block) unless `gw` is null.
fn launch_mixed_bwd<T: DevFloat>(
    dev: &CudaDevice,
    g: &CudaView<'_, T>,
    ys: DevPtrs,
    w: &CudaView<'_, T>,
    numel: usize,
    gys: DevPtrs,
    gw: u64,
) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
    let k = w.len();
    let want_w = gw != NULL;
    let chunks = launch::mixed_chunks(numel);
    // SAFETY: written in full by the kernel's blocks before its last block reads it, when
    // want_w.
    let mut part = unsafe { dev.alloc::<T>(if want_w { k * chunks } else { 1 })? };
    let stream = dev.cuda_stream();
    let (part_ptr, _record_part) = part.device_ptr_mut(&stream);
    let (part_arg, done): (u64, u64) = if want_w {
        (part_ptr, block_counter(dev)?)
    } else {
        (NULL, NULL)
    };
    let f = kernel!(dev, "mixed_bwd", T);
    let (kn, len) = (k as i32, numel as i64);
    let mut b = f.builder();
    b.arg(g)
        .arg(&ys)
        .arg(w)
        .arg(&kn)
        .arg(&len)
        .arg(&gys)
        .arg(&part_arg)
        .arg(&gw)
        .arg(&done);
    // SAFETY: `nas_mixed_bwd(const T* gy, Operands<T> ys, const T* w, int kn, long len,
    // Outputs<T> gys, T* part, T* gw, unsigned int* done)`: each non-null gys row holds numel
    // values, part kn * chunks values and gw kn (the weight gradient that the last block adds
    // up with this thread's counter `done`), all three null unless want_w; grid (chunks, kn)
    // of REDUCTION_THREADS threads (block_sum2's size).
    unsafe { counted(&mut b, config(launch::mixed_bwd(numel, k))) }?;
    Ok(())
}

/// One tensor of a multi-tensor gather or scatter: the C struct `nas::FlatSpan<P>` (a pointer
/// and two `long`s, 24 bytes): its pointer, length and offset in the flat `f64` buffer.
#[repr(C)]
#[derive(Clone, Copy)]
struct FlatSpan {
    ptr: u64,
    len: i64,
    offset: i64,
}

// SAFETY: `#[repr(C)]` with the fields, order and sizes of `nas::FlatSpan<P>`.
unsafe impl DeviceRepr for FlatSpan {}

/// The most tensors one gather or scatter takes (a grid row each).
const MAX_SPANS: usize = launch::MAX_SPANS;

/// Runs the multi-tensor kernel `base` (`nas_<base>_<T>(const FlatSpan<P>* spans, flat)`) over
/// `views` laid end to end in the flat `f64` buffer at device address `flat`: the table of
/// spans copied to the device, a grid of chunks x tensors of 256 threads. The views' total
/// length must be the flat buffer's.
fn launch_over_spans<T: DevFloat>(
    dev: &CudaDevice,
    base: &'static str,
    views: &[CudaView<'_, T>],
    flat: u64,
) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    let stream = dev.cuda_stream();
    let mut table = Vec::with_capacity(views.len());
    let mut records = Vec::with_capacity(views.len());
    let (mut offset, mut longest) = (0usize, 0usize);
    for v in views {
        // A scatter writes through these pointers, in place as `Var::set` does; nothing else
        // runs on the tensors between here and the launch on this stream.
        let (ptr, record) = v.device_ptr(&stream);
        table.push(FlatSpan {
            ptr,
            len: v.len() as i64,
            offset: offset as i64,
        });
        records.push(record);
        offset += v.len();
        longest = longest.max(v.len());
    }
    let table_on_device = dev.clone_htod(&table)?;
    let f = kernel::<T>(dev, base)?;
    let cfg = config(launch::over_spans(longest, views.len()));
    let mut b = f.builder();
    b.arg(&table_on_device).arg(&flat);
    // SAFETY: `nas_gather_f64_from(const FlatSpan<const T*>*, double* out)` /
    // `nas_scatter_f64_to(const FlatSpan<T*>*, const double* in)`: one grid row (blockIdx.y)
    // per span of the table (at most MAX_SPANS), the spans tiling the flat buffer.
    unsafe { counted(&mut b, cfg) }?;
    drop(records);
    Ok(())
}

/// The values of `first` (a storage candle handed to a custom op) and of the tensors `rest`
/// (contiguous, one float dtype, on the same device) concatenated and converted to `f64` in
/// one launch (`nas_gather_f64_from`); `Ok(None)` when one is elsewhere, of another dtype, or
/// not contiguous, when they are empty, or when there are more than [`MAX_SPANS`].
pub(crate) fn gather_f64(
    first: (&CudaStorage, &Layout),
    rest: &[candle_core::Tensor],
) -> Result<Option<CudaStorage>> {
    match first.0.dtype() {
        DType::F32 => gather_typed::<f32>(first, rest),
        DType::F64 => gather_typed::<f64>(first, rest),
        _ => Ok(None),
    }
}

fn gather_typed<T: DevFloat>(
    (s0, l0): (&CudaStorage, &Layout),
    rest: &[candle_core::Tensor],
) -> Result<Option<CudaStorage>> {
    if rest.len() >= MAX_SPANS || rest.iter().any(|t| t.dtype() != T::DTYPE) {
        return Ok(None);
    }
    let dev = &s0.device;
    let Some(first) = view::<T>(s0, l0)? else {
        return Ok(None);
    };
    // The first storage is locked by candle already (it runs this op on it); only the others
    // are locked here.
    let guards: Vec<_> = rest.iter().map(|t| t.storage_and_layout()).collect();
    let Some(others) = cuda_views::<T, _>(dev, &guards)? else {
        return Ok(None);
    };
    let views: Vec<CudaView<'_, T>> = std::iter::once(first).chain(others).collect();
    let total: usize = views.iter().map(|v| v.len()).sum();
    if total == 0 {
        // Nothing to launch for; candle's concatenation makes the empty tensor.
        return Ok(None);
    }
    use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
    // SAFETY: every element of `out` is written: the spans tile 0..total.
    let mut out = unsafe { dev.alloc::<f64>(total)? };
    {
        let stream = dev.cuda_stream();
        let (flat, _record) = out.device_ptr_mut(&stream);
        launch_over_spans(dev, "gather_f64_from", &views, flat)?;
    }
    Ok(Some(f64::wrap_cuda_slice(out, dev.clone())))
}

/// Writes the contiguous `[total]` f64 CUDA tensor `flat` into the variables `vars` in order
/// (one float dtype, contiguous, on `flat`'s device), each value converted to their dtype, in
/// one launch (`nas_scatter_f64_to`). `Ok(false)` when it does not serve them (the caller then
/// sets each variable).
pub(crate) fn scatter_f64(flat: &candle_core::Tensor, vars: &[&candle_core::Var]) -> Result<bool> {
    match vars.first().map(|v| v.dtype()) {
        Some(DType::F32) => scatter_typed::<f32>(flat, vars),
        Some(DType::F64) => scatter_typed::<f64>(flat, vars),
        _ => Ok(false),
    }
}

fn scatter_typed<T: DevFloat>(
    flat: &candle_core::Tensor,
    vars: &[&candle_core::Var],
) -> Result<bool> {
    if vars.len() > MAX_SPANS || vars.iter().any(|v| v.dtype() != T::DTYPE) {
        return Ok(false);
    }
    let (flat_storage, flat_layout) = flat.storage_and_layout();
    let candle_core::Storage::Cuda(fs) = &*flat_storage else {
        return Ok(false);
    };
    let Some(input) = view::<f64>(fs, flat_layout)? else {
        return Ok(false);
    };
    let dev = &fs.device;
    let guards: Vec<_> = vars
        .iter()
        .map(|v| v.as_tensor().storage_and_layout())
        .collect();
    let Some(views) = cuda_views::<T, _>(dev, &guards)? else {
        return Ok(false);
    };
    let total: usize = views.iter().map(|v| v.len()).sum();
    if total != input.len() || total == 0 {
        return Ok(false);
    }
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    let stream = dev.cuda_stream();
    let (flat, _record) = input.device_ptr(&stream);
    launch_over_spans(dev, "scatter_f64_to", &views, flat)?;
    Ok(true)
}

/// The C struct `nas::StepSpan<T>` with device pointers (64 bytes: three pointers, two
/// `long`s, two `double`s, an `int` and its padding).
#[repr(C)]
#[derive(Clone, Copy)]
struct StepSpan {
    param: u64,
    grad: u64,
    state: u64,
    stride: i64,
    len: i64,
    step_size: f64,
    bc2_sqrt: f64,
    first: i32,
}

// SAFETY: `#[repr(C)]` with the fields, order and sizes of `nas::StepSpan<T>`.
unsafe impl DeviceRepr for StepSpan {}

/// A rule of `nas_kernels::host` (`SgdRule`, `AdamRule`, `RmsPropRule`), passed by value.
#[repr(transparent)]
struct DevRule<R>(R);

// SAFETY: the rules of `nas_kernels::host` are `#[repr(C)]` with the fields of the C structs
// `nas::SgdRule`, `nas::AdamRule` and `nas::RmsPropRule` that the step kernels take by value.
unsafe impl DeviceRepr for DevRule<crate::SgdRule> {}
unsafe impl DeviceRepr for DevRule<crate::AdamRule> {}
unsafe impl DeviceRepr for DevRule<crate::RmsPropRule> {}

/// [`crate::optimizer_step`] on a CUDA device: one launch of the rule's kernel
/// (`nas_sgd_step`, `nas_adam_step`, `nas_rmsprop_step`) over every parameter. `Ok(false)` when
/// it does not serve them (mixed dtypes, more than [`MAX_SPANS`] tensors, a tensor on another
/// device); nothing has changed then.
pub(crate) fn optimizer_step(
    params: &[&candle_core::Var],
    grads: &[Option<&candle_core::Tensor>],
    state: Option<(&candle_core::Tensor, &[usize])>,
    tensors: &[crate::TensorStep],
    rule: &crate::StepRule,
) -> Result<bool> {
    match params.first().map(|p| p.dtype()) {
        Some(DType::F32) => step_typed::<f32>(params, grads, state, tensors, rule),
        Some(DType::F64) => step_typed::<f64>(params, grads, state, tensors, rule),
        _ => Ok(false),
    }
}

fn step_typed<T: DevFloat>(
    params: &[&candle_core::Var],
    grads: &[Option<&candle_core::Tensor>],
    state: Option<(&candle_core::Tensor, &[usize])>,
    tensors: &[crate::TensorStep],
    rule: &crate::StepRule,
) -> Result<bool> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    if params.len() > MAX_SPANS || params.iter().any(|p| p.dtype() != T::DTYPE) {
        return Ok(false);
    }
    let candle_core::Device::Cuda(dev) = params[0].device() else {
        return Ok(false);
    };
    let param_guards: Vec<_> = params
        .iter()
        .map(|v| v.as_tensor().storage_and_layout())
        .collect();
    let Some(param_views) = cuda_views::<T, _>(dev, &param_guards)? else {
        return Ok(false);
    };
    let present: Vec<candle_core::Tensor> = grads
        .iter()
        .flatten()
        .map(|g| g.contiguous())
        .collect::<Result<_>>()?;
    let grad_guards: Vec<_> = present.iter().map(|g| g.storage_and_layout()).collect();
    let Some(grad_views) = cuda_views::<T, _>(dev, &grad_guards)? else {
        return Ok(false);
    };
    let state_guard = state.map(|(v, offsets)| (v.storage_and_layout(), offsets));
    let state_view = match &state_guard {
        Some(((st, l), offsets)) => {
            let candle_core::Storage::Cuda(cs) = &**st else {
                return Ok(false);
            };
            match view::<f64>(cs, l)? {
                Some(v) => Some((v, *offsets)),
                None => return Ok(false),
            }
        }
        None => None,
    };
    // Each buffer's length (`crate::optimizer_step` checked that the state divides into the
    // rule's buffers and that every parameter's values lie inside one).
    let stride = match (&state_view, rule.buffers()) {
        (Some((v, _)), b) if b > 0 => v.len() / b,
        _ => 0,
    };
    let stream = dev.cuda_stream();
    let mut grad_views = grad_views.iter();
    let mut table = Vec::with_capacity(params.len());
    // cudarc's records of the pointers' uses, kept until the launch is queued.
    let mut records = Vec::with_capacity(3 * params.len());
    let mut longest = 0usize;
    for (i, p) in param_views.iter().enumerate() {
        // The parameters and the state are written through these pointers, in place as the
        // scatter of `assign_f64` does; nothing else runs on them between here and the launch.
        let (param, r) = p.device_ptr(&stream);
        records.push(r);
        let grad = match grads[i] {
            Some(_) => match grad_views.next() {
                Some(g) => {
                    let (ptr, r) = g.device_ptr(&stream);
                    records.push(r);
                    ptr
                }
                None => candle_core::bail!("optimizer_step: a gradient went missing"),
            },
            None => NULL,
        };
        let state = match &state_view {
            Some((v, offsets)) => {
                let (base, r) = v.device_ptr(&stream);
                records.push(r);
                base + (offsets[i] * std::mem::size_of::<f64>()) as u64
            }
            None => NULL,
        };
        let t = tensors[i];
        table.push(StepSpan {
            param,
            grad,
            state,
            stride: stride as i64,
            len: p.len() as i64,
            step_size: t.step_size,
            bc2_sqrt: t.bc2_sqrt,
            first: i32::from(t.first),
        });
        longest = longest.max(p.len());
    }
    if longest == 0 {
        return Ok(true);
    }
    let table_on_device = dev.clone_htod(&table)?;
    let f = kernel::<T>(dev, rule.kernel())?;
    // The rule, declared before the builder that borrows it.
    let (sgd, adam, rmsprop);
    let mut b = f.builder();
    b.arg(&table_on_device);
    match rule {
        crate::StepRule::Sgd(r) => {
            sgd = DevRule(*r);
            b.arg(&sgd)
        }
        crate::StepRule::Adam(r) => {
            adam = DevRule(*r);
            b.arg(&adam)
        }
        crate::StepRule::RmsProp(r) => {
            rmsprop = DevRule(*r);
            b.arg(&rmsprop)
        }
    };
    // SAFETY: `nas_<rule>_step(const nas::StepSpan<T>* spans, nas::<Rule> rule)`: one grid row
    // (blockIdx.y) per span of the table; each span's pointers cover `len` values (the
    // parameters' and gradients' views; each state buffer `len` values from the parameter's
    // offset within `stride`, as checked by `crate::optimizer_step`) or are null where the body
    // reads nothing (no gradient; a rule without state).
    unsafe { counted(&mut b, config(launch::over_spans(longest, table.len()))) }?;
    drop(records);
    Ok(true)
}

/// [`crate::sum_squares`] on a CUDA device: one launch of `nas_sum_squares` and one copy of
/// the result. `Ok(None)` when it does not serve the tensors (mixed dtypes, another device,
/// more than [`MAX_SPANS`], all empty).
pub(crate) fn sum_squares(ts: &[&candle_core::Tensor]) -> Result<Option<f64>> {
    match ts.first().map(|t| t.dtype()) {
        Some(DType::F32) => sum_squares_typed::<f32>(ts),
        Some(DType::F64) => sum_squares_typed::<f64>(ts),
        _ => Ok(None),
    }
}

fn sum_squares_typed<T: DevFloat>(ts: &[&candle_core::Tensor]) -> Result<Option<f64>> {
    use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
    if ts.len() > MAX_SPANS || ts.iter().any(|t| t.dtype() != T::DTYPE) {
        return Ok(None);
    }
    let candle_core::Device::Cuda(dev) = ts[0].device() else {
        return Ok(None);
    };
    let contiguous: Vec<candle_core::Tensor> =
        ts.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
    let guards: Vec<_> = contiguous.iter().map(|t| t.storage_and_layout()).collect();
    let Some(views) = cuda_views::<T, _>(dev, &guards)? else {
        return Ok(None);
    };
    let longest = views.iter().map(|v| v.len()).max().unwrap_or(0);
    if longest == 0 {
        return Ok(None);
    }
    let stream = dev.cuda_stream();
    // cudarc's records of the pointers' uses, kept until the launch is queued.
    let mut records = Vec::with_capacity(views.len());
    let table: Vec<FlatSpan> = views
        .iter()
        .map(|v| {
            let (ptr, r) = v.device_ptr(&stream);
            records.push(r);
            FlatSpan {
                ptr,
                len: v.len() as i64,
                offset: 0,
            }
        })
        .collect();
    let table_on_device = dev.clone_htod(&table)?;
    let l = launch::reduce_over_spans(longest, views.len());
    let parts = (l.grid.0 * l.grid.1) as usize;
    // SAFETY: every partial sum is written by its block before the last block reads it; the
    // result by the last block.
    let (mut part, mut out) = unsafe { (dev.alloc::<f64>(parts)?, dev.alloc::<f64>(1)?) };
    let done = block_counter(dev)?;
    {
        let (part_ptr, _rp) = part.device_ptr_mut(&stream);
        let (out_ptr, _ro) = out.device_ptr_mut(&stream);
        let f = kernel::<T>(dev, "sum_squares")?;
        let mut b = f.builder();
        b.arg(&table_on_device)
            .arg(&part_ptr)
            .arg(&out_ptr)
            .arg(&done);
        // SAFETY: `nas_sum_squares(const nas::FlatSpan<const T*>* spans, double* part,
        // double* out, unsigned int* done)`: one grid row per span, part of gridDim.x *
        // gridDim.y values, out of one, done this thread's counter.
        unsafe { counted(&mut b, config(l)) }?;
    }
    drop(records);
    Ok(dev.clone_dtoh(&out)?.first().copied())
}

/// The input gradient `gx` (`n c hw` values) of a training batch norm over `[n, c, hw]` from
/// its input `x` (the forward's), `dL/dy` and the forward's statistics, in one launch (two
/// over several blocks per channel, [`bn_chunks`]): with
/// `gamma` an affine batch norm's weight (else 1), and with `params` (`2 c` values) its
/// `[dL/dgamma, dL/dbeta]` written there.
#[allow(clippy::too_many_arguments)]
fn bn_bwd_into<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    gy: &CudaView<'_, T>,
    (mean, invstd): (&CudaSlice<T>, &CudaSlice<T>),
    gamma: Option<&CudaView<'_, T>>,
    gx: &mut CudaViewMut<'_, T>,
    params: Option<&mut CudaViewMut<'_, T>>,
    (n, c, hw): (usize, usize, usize),
) -> Result<()> {
    if gx.len() != n * c * hw || params.as_ref().is_some_and(|p| p.len() != 2 * c) {
        candle_core::bail!("batch norm backward on CUDA: output buffers of the wrong size");
    }
    let mut halves = params.map(|p| p.split_at_mut(c));
    let (ni, ci, hwl) = (n as i32, c as i32, hw as i64);
    if let Some((chunks, per)) = bn_chunks(n * hw, c)? {
        // SAFETY: every partial sum is written by its block before the last block reads it,
        // and the channel sums by the last block before the second launch reads them.
        let (mut part, mut sums) =
            unsafe { (dev.alloc::<T>(2 * chunks * c)?, dev.alloc::<T>(2 * c)?) };
        let done = block_counter(dev)?;
        let f = kernel!(dev, "bn_grad_sums", T);
        let mut l = f.builder();
        l.arg(x).arg(gy).arg(&ni).arg(&ci).arg(&hwl).arg(&per);
        l.arg(mean).arg(invstd).arg(&mut part).arg(&mut sums);
        match halves.as_mut() {
            Some((gg, gb)) => l.arg(gg).arg(gb),
            None => l.arg(&NULL).arg(&NULL),
        };
        l.arg(&done);
        // SAFETY: `nas_bn_grad_sums(x, gy, int n, int c, long hw, long per, save_mean,
        // save_invstd, T* part, T* sums, ggamma, gbeta, unsigned int* done)`: a grid of chunks
        // x c blocks of REDUCTION_THREADS, part of 2 chunks c values, sums of 2 c, the
        // statistics, ggamma and gbeta of c (or null), done this thread's counter.
        unsafe { counted(&mut l, config(launch::channel_chunks(chunks, c))) }?;
        let f = kernel!(dev, "bn_bwd_apply", T);
        let mut l = f.builder();
        l.arg(x).arg(gy);
        match gamma {
            Some(g) => l.arg(g),
            None => l.arg(&NULL),
        };
        l.arg(&ni)
            .arg(&ci)
            .arg(&hwl)
            .arg(mean)
            .arg(invstd)
            .arg(&sums)
            .arg(gx);
        // SAFETY: `nas_bn_bwd_apply(x, gy, gamma, int n, int c, long hw, save_mean,
        // save_invstd, sums, gx)`: x, gy and gx of n c hw values, gamma of c or null.
        unsafe { counted(&mut l, elementwise(n * c * hw)) }?;
        return Ok(());
    }
    let f = kernel!(dev, "bn_bwd_train", T);
    let mut l = f.builder();
    l.arg(x).arg(gy);
    match gamma {
        Some(g) => l.arg(g),
        None => l.arg(&NULL),
    };
    l.arg(&ni).arg(&ci).arg(&hwl).arg(mean).arg(invstd);
    l.arg(gx);
    match halves.as_mut() {
        Some((gg, gb)) => l.arg(gg).arg(gb),
        None => l.arg(&NULL).arg(&NULL),
    };
    // SAFETY: `nas_bn_bwd_train(x, gy, gamma, int n, int c, long hw, save_mean, save_invstd,
    // gx, ggamma, gbeta)`: x, gy and gx of n c hw values, the statistics, gamma, ggamma and
    // gbeta of c each (ggamma and gbeta the two halves of `params`) or null (gamma 1, no
    // parameter gradients); one block per channel.
    unsafe { counted(&mut l, per_channel(c)) }?;
    Ok(())
}

/// The convolutions of a fused unit on the device, between its input ReLU and its batch norm:
/// a depthwise then a pointwise convolution (`crate::relu_dw_pw_bn`: DARTS' SepConv halves and
/// DilConv), or a pointwise convolution alone (`crate::relu_conv1x1_bn`: DARTS' 1x1
/// `ReLUConvBN`, the cells' preprocessing).
#[derive(Clone, Copy, Debug)]
pub(crate) enum UnitConvs {
    /// ReLU, depthwise convolution over the window, pointwise convolution.
    Separable(Window),
    /// ReLU and a pointwise convolution of stride 1 on `[n, c, h, w]`.
    Pointwise {
        /// Batch.
        n: usize,
        /// Input channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
}

/// A fused unit as the device kernels see it: its convolutions, the pointwise convolution's
/// output channels `co`, and whether its batch norm is affine (its weight and bias then packed
/// behind the pointwise weight).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceUnit {
    /// The convolutions.
    pub convs: UnitConvs,
    /// Output channels.
    pub co: usize,
    /// Whether the batch norm has a weight and a bias.
    pub affine: bool,
}

impl DeviceUnit {
    /// The depthwise geometry (none for a pointwise unit) and the pointwise one.
    fn geoms(&self) -> Result<(Option<Geom>, Geom)> {
        let co = self.co;
        Ok(match &self.convs {
            UnitConvs::Separable(win) => (
                Some(depthwise_geom(win)?),
                pointwise_geom(win.n, win.c, win.oh, win.ow, co, 1)?,
            ),
            UnitConvs::Pointwise { n, c, h, w } => (None, pointwise_geom(*n, *c, *h, *w, co, 1)?),
        })
    }
}

/// What a fused unit's forward leaves on the device for its backward: the depthwise output
/// `a` (none for a pointwise unit), the pointwise output `b` and the batch norm's statistics.
pub(crate) struct UnitSaved {
    a: Option<CudaStorage>,
    b: CudaStorage,
    stats: Arc<DeviceBatchStats>,
}

impl UnitSaved {
    /// The batch norm's statistics (also recorded as the batch norm's batch statistics).
    pub(crate) fn stats(&self) -> Arc<DeviceBatchStats> {
        self.stats.clone()
    }
}

/// The layouts, inside a fused op's packed weight input (`crate::fused::pack_affine`), of the
/// pointwise weight (`npw` values) and, when `affine`, of the batch norm's weight and bias
/// (`co` values each, behind it); `None` when `lp` is not such a contiguous packing.
fn packed_layouts(
    lp: &Layout,
    npw: usize,
    co: usize,
    affine: bool,
) -> Option<(Layout, Option<[Layout; 2]>)> {
    let want = npw + if affine { 2 * co } else { 0 };
    if !lp.is_contiguous() || lp.shape().elem_count() != want {
        return None;
    }
    let at = |len: usize, offset: usize| {
        Layout::contiguous_with_offset(Shape::from(len), lp.start_offset() + offset)
    };
    Some((at(npw, 0), affine.then(|| [at(co, npw), at(co, npw + co)])))
}

/// The batch norm's weight inside a fused op's packed input `s` (`layouts` from
/// [`packed_layouts`], none when not affine).
fn packed_gamma<'a, T: DevFloat>(
    s: &'a CudaStorage,
    layouts: &Option<[Layout; 2]>,
) -> Result<Option<CudaView<'a, T>>> {
    let Some([lg, _]) = layouts else {
        return Ok(None);
    };
    match view::<T>(s, lg)? {
        Some(v) => Ok(Some(v)),
        None => candle_core::bail!("a fused op's packed batch-norm weight is not contiguous"),
    }
}

/// A fused unit's training forward on the device: `bn(conv1x1(depthwise(max(x, 0), w_dw),
/// w_pw))`, or `bn(conv1x1(max(x, 0), w_pw))` for [`UnitConvs::Pointwise`], with batch
/// statistics folded into the running ones of `fold`. Inputs `x`, the depthwise weight (none
/// for a pointwise unit) and the pointwise weight, with an `affine` batch norm's weight and
/// bias packed behind it. Two launches: the two convolutions in one ([`unit_convs_into`]; the
/// ReLU read inside it), then the batch norm (one more when the batch norm runs over several
/// blocks per channel, or when the convolutions cannot share a launch; a pointwise unit's
/// convolution is one); and one node in the autograd graph instead of four. `Ok(None)` when the
/// kernels do not serve the inputs (nothing launched for the batch norm then).
pub(crate) fn unit_fwd(
    (sx, lx): (&CudaStorage, &Layout),
    dw: Option<(&CudaStorage, &Layout)>,
    (sp, lp): (&CudaStorage, &Layout),
    unit: &DeviceUnit,
    eps: f64,
    fold: Option<RunningFold>,
) -> Result<Option<(CudaStorage, Shape, UnitSaved)>> {
    let (co, affine) = (unit.co, unit.affine);
    let (gd, gp) = unit.geoms()?;
    let Some((wl, affine_layouts)) = packed_layouts(lp, weight_len(&gp), co, affine) else {
        return Ok(None);
    };
    by_float!(sx, |T| {
        let (Some(x), Some(wp)) = (view::<T>(sx, lx)?, view::<T>(sp, &wl)?) else {
            return Ok(None);
        };
        let wd = match (dw, gd) {
            (Some((sd, ld)), Some(gd)) => match view::<T>(sd, ld)? {
                Some(wd) if wd.len() == weight_len(&gd) && !is_empty(&gd) => Some((wd, gd)),
                _ => return Ok(None),
            },
            (None, None) => None,
            _ => return Ok(None),
        };
        let first = gd.unwrap_or(gp);
        if is_empty(&gp) || x.len() != input_len(&first) || wp.len() != weight_len(&gp) {
            return Ok(None);
        }
        let dev = &sx.device;
        let wrap = |s: CudaSlice<T>| T::wrap_cuda_slice(s, dev.clone());
        let (a, b) = match wd {
            Some((wd, gd)) => {
                let (a, b) = unit_convs_into(dev, &x, &wd, &wp, gd, gp)?;
                (Some(a), b)
            }
            None => (None, conv_into(dev, &x, &wp, gp, true)?),
        };
        let b = wrap(b);
        let (n, oh, ow) = (gp.n as usize, gp.oh as usize, gp.ow as usize);
        let layout_b = Layout::contiguous(Shape::from((n, co, oh, ow)));
        let params = affine_layouts.as_ref().map(|[lg, lb]| [(sp, lg), (sp, lb)]);
        let normed = batch_norm_train((&b, &layout_b), params, (n, co, oh * ow), eps, fold)?;
        let Some((y, shape, stats)) = normed else {
            return Ok(None);
        };
        let saved = UnitSaved {
            a: a.map(wrap),
            b,
            stats: Arc::new(stats),
        };
        Ok(Some((y, shape, saved)))
    })
}

/// What a fused unit's backward gives back: `dL/dx`, and with weights the flat `[dL/dw_dw,
/// dL/dw_pw, dL/dgamma, dL/dbeta]` (no depthwise part for a pointwise unit, no batch-norm part
/// unless affine: the gradients of the op's inputs one after the other) in a buffer of its own
/// (held until the end of the backward, it does not hold the input's gradient).
pub(crate) type UnitGrads = Option<(CudaStorage, Option<CudaStorage>)>;

/// A fused unit's backward on the device from its forward's `saved`, for the output gradient
/// `g`, the inputs as [`unit_fwd`]'s: the batch norm's backward (with its parameters'
/// gradients when affine), the pointwise input and weight gradients, the depthwise ones with
/// the ReLU's mask (a pointwise unit masks the pointwise input gradient instead). Five launches
/// (three for a pointwise unit); without `weights` (an architecture step under
/// `with_frozen_weights`) `dL/dx` alone, three (two). No zero-filled gradient buffers for the
/// intermediate activations and no additions into them, which the separate ops' backward
/// costs.
pub(crate) fn unit_bwd(
    (sx, lx): (&CudaStorage, &Layout),
    dw: Option<(&CudaStorage, &Layout)>,
    (sp, lp): (&CudaStorage, &Layout),
    (sg, lg): (&CudaStorage, &Layout),
    saved: &UnitSaved,
    unit: &DeviceUnit,
    weights: bool,
) -> Result<UnitGrads> {
    let (co, affine) = (unit.co, unit.affine);
    let (gd, gp) = unit.geoms()?;
    let npw = weight_len(&gp);
    let Some((wl, affine_layouts)) = packed_layouts(lp, npw, co, affine) else {
        return Ok(None);
    };
    by_float!(sx, |T| {
        let (Some(x), Some(wp), Some(g)) =
            (view::<T>(sx, lx)?, view::<T>(sp, &wl)?, view::<T>(sg, lg)?)
        else {
            return Ok(None);
        };
        let gamma = packed_gamma::<T>(sp, &affine_layouts)?;
        let b = T::as_cuda_slice(&saved.b)?;
        let (mean, invstd) = saved.stats.slices::<T>()?;
        let nb = output_len(&gp);
        let first = gd.unwrap_or(gp);
        let nx = input_len(&first);
        if x.len() != nx
            || b.len() != nb
            || g.len() != nb
            || wp.len() != npw
            || mean.len() != co
            || invstd.len() != co
        {
            return Ok(None);
        }
        // The depthwise stage: its weight, output and geometry.
        let depthwise = match (dw, gd, &saved.a) {
            (Some((sd, ld)), Some(gd), Some(a)) => {
                let (wd, a) = (view::<T>(sd, ld)?, T::as_cuda_slice(a)?);
                match wd {
                    Some(wd) if wd.len() == weight_len(&gd) && a.len() == output_len(&gd) => {
                        Some((wd, a, gd))
                    }
                    _ => return Ok(None),
                }
            }
            (None, None, None) => None,
            _ => return Ok(None),
        };
        let ndw = depthwise.as_ref().map_or(0, |(_, _, gd)| weight_len(gd));
        let nbn = if affine { 2 * co } else { 0 };
        let dev = &sx.device;
        // SAFETY: every part is written in full below (the batch norm's by its backward).
        let mut gw = match weights {
            true => Some(unsafe { dev.alloc::<T>(ndw + npw + nbn)? }),
            false => None,
        };
        let dims = (gp.n as usize, co, (gp.oh * gp.ow) as usize);
        // SAFETY: written in full by the batch norm's backward below.
        let mut gb = unsafe { dev.alloc::<T>(nb)? };
        {
            let mut bn_part = match (&mut gw, affine) {
                (Some(gw), true) => Some(gw.slice_mut(ndw + npw..ndw + npw + nbn)),
                _ => None,
            };
            let (b, stats, mut out) = (b.slice(0..nb), (mean, invstd), gb.slice_mut(0..nb));
            let params = bn_part.as_mut();
            bn_bwd_into(dev, &b, &g, stats, gamma.as_ref(), &mut out, params, dims)?;
        }
        let gb = gb.slice(0..nb);
        // SAFETY: written in full by the first convolution's input gradient below.
        let mut gx = unsafe { dev.alloc::<T>(nx)? };
        match &depthwise {
            Some((wd, a, gd)) => {
                let na = a.len();
                // SAFETY: written in full by the pointwise input gradient below.
                let mut ga = unsafe { dev.alloc::<T>(na)? };
                input_grad_into(dev, &gb, &wp, &mut ga.slice_mut(0..na), gp, None)?;
                let ga = ga.slice(0..na);
                input_grad_into(dev, &ga, wd, &mut gx.slice_mut(0..nx), *gd, Some(&x))?;
                if let Some(gw) = gw.as_mut() {
                    let (mut gdw, mut rest) = gw.split_at_mut(ndw);
                    let mut gpw = rest.slice_mut(0..npw);
                    weight_grad(dev, &a.slice(0..na), &gb, &mut gpw, gp, false)?;
                    weight_grad(dev, &x, &ga, &mut gdw, *gd, true)?;
                }
            }
            None => {
                input_grad_into(dev, &gb, &wp, &mut gx.slice_mut(0..nx), gp, Some(&x))?;
                if let Some(gw) = gw.as_mut() {
                    weight_grad(dev, &x, &gb, &mut gw.slice_mut(0..npw), gp, true)?;
                }
            }
        }
        let wrap = |s: CudaSlice<T>| T::wrap_cuda_slice(s, dev.clone());
        Ok(Some((wrap(gx), gw.map(wrap))))
    })
}

/// What DARTS' `FactorizedReduce` leaves on the device for its backward: the concatenated
/// convolution output `z` (its batch norm's input) and the batch norm's statistics.
pub(crate) struct ReduceSaved {
    z: CudaStorage,
    stats: Arc<DeviceBatchStats>,
}

impl ReduceSaved {
    /// The batch norm's statistics (also recorded as the batch norm's batch statistics).
    pub(crate) fn stats(&self) -> Arc<DeviceBatchStats> {
        self.stats.clone()
    }
}

/// The kernel geometry of `FactorizedReduce` on `[n, c, h, w]` into `co` channels (even
/// sizes: the reference fails on odd ones).
pub(crate) fn reduce_geom(n: usize, c: usize, h: usize, w: usize, co: usize) -> Result<Geom> {
    Geom::factorized_reduce(n, c, h, w, co).map_err(geom_err)
}

/// `FactorizedReduce` in training on the device (quark0/darts `operations.py`):
/// `bn(cat(conv_1(relu(x)), conv_2(relu(x)[:, :, 1:, 1:])))` with batch statistics, folded
/// into the running ones of `fold`: two launches (the ReLU, both convolutions and the
/// concatenation in `nas_fr_fwd`, then the batch norm) instead of the separate ops' ReLU,
/// shift copy, two convolutions, concatenation and batch norm. `g` from [`reduce_geom`];
/// inputs `x`, `w_a` and `w_b`, with an `affine` batch norm's weight and bias packed behind
/// `w_b` (`crate::fused::pack_affine`). `Ok(None)` when the kernels do not serve the inputs.
pub(crate) fn factorized_reduce_fwd(
    [(sx, lx), (sa, la), (sb, lb)]: [(&CudaStorage, &Layout); 3],
    g: Geom,
    affine: bool,
    eps: f64,
    fold: Option<RunningFold>,
) -> Result<Option<(CudaStorage, Shape, ReduceSaved)>> {
    let nw = weight_len(&g);
    let Some((wbl, affine_layouts)) = packed_layouts(lb, nw / 2, g.cout as usize, affine) else {
        return Ok(None);
    };
    by_float!(sx, |T| {
        let (Some(x), Some(wa), Some(wb)) =
            (view::<T>(sx, lx)?, view::<T>(sa, la)?, view::<T>(sb, &wbl)?)
        else {
            return Ok(None);
        };
        if is_empty(&g) || x.len() != input_len(&g) || wa.len() * 2 != nw || wb.len() * 2 != nw {
            return Ok(None);
        }
        let dev = &sx.device;
        let nz = output_len(&g);
        // SAFETY: every element is written by the kernel.
        let mut z = unsafe { dev.alloc::<T>(nz)? };
        {
            let f = kernel!(dev, "fr_fwd", T);
            let dg = DevGeom(g);
            let mut b = f.builder();
            b.arg(&x).arg(&wa).arg(&wb).arg(&mut z).arg(&dg);
            // SAFETY: `nas_fr_fwd(const T* x, const T* wa, const T* wb, T* z, Geom g)`: x and z
            // of g's input and output sizes, wa and wb of half its weight's each (checked).
            unsafe { counted(&mut b, elementwise(nz)) }?;
        }
        let z = T::wrap_cuda_slice(z, dev.clone());
        let (n, co, hw) = (g.n as usize, g.cout as usize, (g.oh * g.ow) as usize);
        let layout = Layout::contiguous(Shape::from((n, co, g.oh as usize, g.ow as usize)));
        let params = affine_layouts.as_ref().map(|[lg, lb]| [(sb, lg), (sb, lb)]);
        let Some((y, shape, stats)) =
            batch_norm_train((&z, &layout), params, (n, co, hw), eps, fold)?
        else {
            return Ok(None);
        };
        let saved = ReduceSaved {
            z,
            stats: Arc::new(stats),
        };
        Ok(Some((y, shape, saved)))
    })
}

/// `FactorizedReduce`'s backward on the device from its forward's `saved`, for the output
/// gradient `g` (inputs `x`, `w_a`, the packed `w_b` as [`factorized_reduce_fwd`]'s, and
/// `dL/dy`): `dL/dx` and, with `weights`, the flat `[dL/dw_a, dL/dw_b, dL/dgamma, dL/dbeta]`
/// (the batch norm's part when `affine`) in a buffer of its own. Three launches (the batch
/// norm's, the input gradient through the ReLU, the weight gradient as block reductions); two
/// without `weights`.
pub(crate) fn factorized_reduce_bwd(
    [(sx, lx), (sa, la), (sb, lb), (sg, lg)]: [(&CudaStorage, &Layout); 4],
    saved: &ReduceSaved,
    g: Geom,
    affine: bool,
    weights: bool,
) -> Result<UnitGrads> {
    let (nw, co) = (weight_len(&g), g.cout as usize);
    let Some((wbl, affine_layouts)) = packed_layouts(lb, nw / 2, co, affine) else {
        return Ok(None);
    };
    by_float!(sx, |T| {
        let (Some(x), Some(wa), Some(wb), Some(gy)) = (
            view::<T>(sx, lx)?,
            view::<T>(sa, la)?,
            view::<T>(sb, &wbl)?,
            view::<T>(sg, lg)?,
        ) else {
            return Ok(None);
        };
        let gamma = packed_gamma::<T>(sb, &affine_layouts)?;
        let z = T::as_cuda_slice(&saved.z)?;
        let (mean, invstd) = saved.stats.slices::<T>()?;
        let (nx, nz) = (input_len(&g), output_len(&g));
        if x.len() != nx
            || z.len() != nz
            || gy.len() != nz
            || wa.len() * 2 != nw
            || wb.len() * 2 != nw
            || mean.len() != co
            || invstd.len() != co
        {
            return Ok(None);
        }
        let dev = &sx.device;
        let nbn = if affine { 2 * co } else { 0 };
        // SAFETY: every part is written in full below (the batch norm's by its backward).
        let mut gw = match weights {
            true => Some(unsafe { dev.alloc::<T>(nw + nbn)? }),
            false => None,
        };
        let dims = (g.n as usize, co, (g.oh * g.ow) as usize);
        // SAFETY: written in full by the batch norm's backward below.
        let mut gz = unsafe { dev.alloc::<T>(nz)? };
        {
            let mut bn_part = match (&mut gw, affine) {
                (Some(gw), true) => Some(gw.slice_mut(nw..nw + nbn)),
                _ => None,
            };
            let (z, stats, mut out) = (z.slice(0..nz), (mean, invstd), gz.slice_mut(0..nz));
            let params = bn_part.as_mut();
            bn_bwd_into(dev, &z, &gy, stats, gamma.as_ref(), &mut out, params, dims)?;
        }
        let dg = DevGeom(g);
        // SAFETY: written in full by the input gradient below.
        let mut gx = unsafe { dev.alloc::<T>(nx)? };
        {
            let f = kernel!(dev, "fr_bwd_input", T);
            let mut b = f.builder();
            b.arg(&gz).arg(&wa).arg(&wb).arg(&x).arg(&mut gx).arg(&dg);
            // SAFETY: `nas_fr_bwd_input(const T* gz, const T* wa, const T* wb, const T* x,
            // T* gx, Geom g)`: gz of g's output size, x and gx of its input size.
            unsafe { counted(&mut b, elementwise(nx)) }?;
        }
        if let Some(gw) = gw.as_mut() {
            let f = kernel!(dev, "fr_bwd_weight", T);
            let mut gw = gw.slice_mut(0..nw);
            let mut w = WeightGradLaunch::<T>::per_element(dev, g, nw)?;
            let (done, cfg) = (w.done, w.config);
            let mut b = f.builder();
            b.arg(&x).arg(&gz);
            w.push_chunking(&mut b);
            b.arg(&mut gw).arg(&done);
            // SAFETY: `nas_fr_bwd_weight(const T* x, const T* gz, T* part, Geom g, long per,
            // T* gw, unsigned int* done)`: x of g's input size, gz of its output size, the
            // weights' part of gw nw values, the rest as [`WeightGradLaunch`] says.
            unsafe { counted(&mut b, cfg) }?;
        }
        let wrap = |s: CudaSlice<T>| T::wrap_cuda_slice(s, dev.clone());
        Ok(Some((wrap(gx), gw.map(wrap))))
    })
}
