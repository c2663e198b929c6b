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
//! average pooling with `count_include_pad=False`; batch norm in training mode (the batch
//! statistics come back to the host, `2C` values, for the running averages and the
//! backward). The weighted sum, global pooling and batch norm with running statistics use
//! candle's own device ops off the CPU. Average pooling with `count_include_pad=True` and
//! im2col still run through the host (docs/gpu.md).
use crate::geom::Window;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result, Shape, WithDType};
use nas_kernels::device::{entry, MODULE, PTX};
use nas_kernels::Geom;

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

/// Grid-stride launch over `total` elements: 256 threads a block, at most 65,536 blocks.
fn elementwise(total: usize) -> LaunchConfig {
    const THREADS: usize = 256;
    let blocks = total.div_ceil(THREADS).clamp(1, 1 << 16);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
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

/// Number of elements of an NCHW tensor of `g`'s input / output / weight.
fn input_len(g: &Geom) -> usize {
    g.n as usize * g.cin as usize * g.h as usize * g.w as usize
}
fn output_len(g: &Geom) -> usize {
    g.n as usize * g.cout as usize * g.oh as usize * g.ow as usize
}
fn weight_len(g: &Geom) -> usize {
    g.cout as usize * (g.cin / g.groups) as usize * g.k as usize * g.k as usize
}

/// Entry point `nas_<base>_<f32|f64>` of the module, loaded into `dev` once.
macro_rules! kernel {
    ($dev:expr, $base:expr, $t:ty) => {
        $dev.get_or_load_custom_func(&entry($base, <$t as DevFloat>::F64), MODULE, PTX)?
    };
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
    unsafe { b.launch(elementwise(len)) }.w()?;
    Ok(y)
}

/// ReLU forward.
pub(crate) fn relu(s: &CudaStorage, l: &Layout) -> Result<Launched> {
    by_float!(s, |T| {
        let Some(x) = view::<T>(s, l)? else {
            return Ok(None);
        };
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
    unsafe { b.launch(elementwise(len)) }.w()?;
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
        // SAFETY: every element is written by the kernel.
        let mut gx = unsafe { y.device.alloc::<T>(len)? };
        relu_mask(&y.device, &yv, &gv, &mut gx, len)?;
        Ok(Some((
            T::wrap_cuda_slice(gx, y.device.clone()),
            ly.shape().clone(),
        )))
    })
}

/// `y = conv(x, w)` under `g` into a new buffer.
fn conv_into<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
    g: Geom,
) -> Result<CudaSlice<T>> {
    let len = output_len(&g);
    // SAFETY: every output element is written by the kernel.
    let mut y = unsafe { dev.alloc::<T>(len)? };
    let f = kernel!(dev, "conv_fwd", T);
    let dg = DevGeom(g);
    let mut b = f.builder();
    b.arg(x).arg(w).arg(&mut y).arg(&dg);
    // SAFETY: `nas_conv_fwd(const T* x, const T* w, T* y, Geom g)` with x, w, y of g's sizes.
    unsafe { b.launch(elementwise(len)) }.w()?;
    Ok(y)
}

/// A convolution forward: `x` `[n, cin, h, w]` (rectified first when `relu`), `w` of `g`.
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
        if x.len() != input_len(&g) || w.len() != weight_len(&g) {
            return Ok(None);
        }
        let dev = &sx.device;
        let y = if relu {
            let xr = relu_into(dev, &x, x.len())?;
            conv_into(dev, &xr.slice(..), &w, g)?
        } else {
            conv_into(dev, &x, &w, g)?
        };
        let shape = Shape::from((g.n as usize, g.cout as usize, g.oh as usize, g.ow as usize));
        Ok(Some((T::wrap_cuda_slice(y, dev.clone()), shape)))
    })
}

/// A convolution backward: inputs `x`, `w`, `dL/dy`; output the flat `[dL/dx, dL/dw]` (the
/// layout of the CPU backward ops). With `relu` the forward read `max(x, 0)`.
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
        if x.len() != nx || w.len() != nw || gy.len() != output_len(&g) {
            return Ok(None);
        }
        let dev = &sx.device;
        let dg = DevGeom(g);
        // SAFETY: both parts are written in full below.
        let mut out = unsafe { dev.alloc::<T>(nx + nw)? };
        let xr = if relu {
            Some(relu_into(dev, &x, nx)?)
        } else {
            None
        };
        {
            let (_, mut gw) = out.split_at_mut(nx);
            match &xr {
                Some(rectified) => weight_grad(dev, &rectified.slice(..), &gy, &mut gw, g)?,
                None => weight_grad(dev, &x, &gy, &mut gw, g)?,
            }
        }
        if relu {
            // SAFETY: written in full by the input-gradient kernel.
            let mut raw = unsafe { dev.alloc::<T>(nx)? };
            {
                let f = kernel!(dev, "conv_bwd_input", T);
                let mut b = f.builder();
                b.arg(&gy).arg(&w).arg(&mut raw).arg(&dg);
                // SAFETY: `nas_conv_bwd_input(const T* gy, const T* w, T* gx, Geom g)`.
                unsafe { b.launch(elementwise(nx)) }.w()?;
            }
            let (mut gx, _) = out.split_at_mut(nx);
            let f = kernel!(dev, "relu_bwd", T);
            let n = nx as i64;
            let mut b = f.builder();
            b.arg(&x).arg(&raw).arg(&mut gx).arg(&n);
            // SAFETY: `nas_relu_bwd(const T* x, const T* gy, T* gx, long len)`, nx each.
            unsafe { b.launch(elementwise(nx)) }.w()?;
        } else {
            let (mut gx, _) = out.split_at_mut(nx);
            let f = kernel!(dev, "conv_bwd_input", T);
            let mut b = f.builder();
            b.arg(&gy).arg(&w).arg(&mut gx).arg(&dg);
            // SAFETY: `nas_conv_bwd_input(const T* gy, const T* w, T* gx, Geom g)`.
            unsafe { b.launch(elementwise(nx)) }.w()?;
        }
        Ok(Some((
            T::wrap_cuda_slice(out, dev.clone()),
            Shape::from(nx + nw),
        )))
    })
}

/// `gw = dL/dw` from the input the forward read and `dL/dy`: one kernel when the weight is
/// large, else partial sums over splits of the batch and a second kernel that adds them.
fn weight_grad<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    gy: &CudaView<'_, T>,
    gw: &mut CudaViewMut<'_, T>,
    g: Geom,
) -> Result<()> {
    let nw = weight_len(&g);
    let (splits, per) = nas_kernels::weight_splits(g.n as usize, nw);
    let dg = DevGeom(g);
    if splits == 1 {
        let f = kernel!(dev, "conv_bwd_weight", T);
        let mut b = f.builder();
        b.arg(x).arg(gy).arg(gw).arg(&dg);
        // SAFETY: `nas_conv_bwd_weight(const T* x, const T* gy, T* gw, Geom g)`, sizes of g.
        unsafe { b.launch(elementwise(nw)) }.w()?;
        return Ok(());
    }
    // SAFETY: every partial sum is written by the split kernel.
    let mut part = unsafe { dev.alloc::<T>(splits * nw)? };
    {
        let f = kernel!(dev, "conv_bwd_weight_split", T);
        let per_i = per as i32;
        let mut cfg = elementwise(nw);
        cfg.grid_dim.1 = splits as u32;
        let mut b = f.builder();
        b.arg(x).arg(gy).arg(&mut part).arg(&dg).arg(&per_i);
        // SAFETY: `nas_conv_bwd_weight_split(x, gy, T* part, Geom g, int per)`, part holds
        // `splits` rows of nw, one grid row (blockIdx.y) per split.
        unsafe { b.launch(cfg) }.w()?;
    }
    let f = kernel!(dev, "sum_splits", T);
    let (splits_i, len) = (splits as i32, nw as i64);
    let mut b = f.builder();
    b.arg(&part).arg(gw).arg(&splits_i).arg(&len);
    // SAFETY: `nas_sum_splits(const T* part, T* out, int splits, long len)`.
    unsafe { b.launch(elementwise(nw)) }.w()?;
    Ok(())
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
        let dev = &s.device;
        let (y, _arg) = max_pool_into(dev, &x, g)?;
        let shape = Shape::from((win.n, win.c, win.oh, win.ow));
        Ok(Some((T::wrap_cuda_slice(y, dev.clone()), shape)))
    })
}

/// Max pooling outputs and, per output, the in-plane index of its winner.
fn max_pool_into<T: DevFloat>(
    dev: &CudaDevice,
    x: &CudaView<'_, T>,
    g: Geom,
) -> Result<(CudaSlice<T>, CudaSlice<i32>)> {
    let len = output_len(&g);
    // SAFETY: every output and index is written by the kernel.
    let (mut y, mut arg) = unsafe { (dev.alloc::<T>(len)?, dev.alloc::<i32>(len)?) };
    let f = kernel!(dev, "max_pool_fwd", T);
    let dg = DevGeom(g);
    let mut b = f.builder();
    b.arg(x).arg(&mut y).arg(&mut arg).arg(&dg);
    // SAFETY: `nas_max_pool_fwd(const T* x, T* y, int* arg, Geom g)`, outputs of g's size.
    unsafe { b.launch(elementwise(len)) }.w()?;
    Ok((y, arg))
}

/// Max pooling backward from `dL/dy` and the forward's input `x` (the winners are found
/// again, with the forward's tie rule); output `dL/dx` flat.
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
        let dev = &sg.device;
        let (_y, arg) = max_pool_into(dev, &x, g)?;
        let nx = input_len(&g);
        // SAFETY: every input-gradient element is written by the kernel.
        let mut gx = unsafe { dev.alloc::<T>(nx)? };
        let f = kernel!(dev, "max_pool_bwd", T);
        let dg = DevGeom(g);
        let mut b = f.builder();
        b.arg(&gy).arg(&arg).arg(&mut gx).arg(&dg);
        // SAFETY: `nas_max_pool_bwd(const T* gy, const int* arg, T* gx, Geom g)`.
        unsafe { b.launch(elementwise(nx)) }.w()?;
        Ok(Some((T::wrap_cuda_slice(gx, dev.clone()), Shape::from(nx))))
    })
}

/// Average pooling (`count_include_pad=False`) forward, or its backward when `backward`
/// (input `dL/dy`, output `dL/dx` `[N, C, H, W]`).
pub(crate) fn avg_pool(
    s: &CudaStorage,
    l: &Layout,
    win: &Window,
    backward: bool,
) -> Result<Launched> {
    by_float!(s, |T| {
        let Some(x) = view::<T>(s, l)? else {
            return Ok(None);
        };
        let g = pool_geom(win)?;
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
        let dg = DevGeom(g);
        let mut b = f.builder();
        b.arg(&x).arg(&mut y).arg(&dg);
        // SAFETY: `nas_avg_pool_{fwd,bwd}(const T* in, T* out, Geom g)`, sizes of g.
        unsafe { b.launch(elementwise(len)) }.w()?;
        Ok(Some((T::wrap_cuda_slice(y, dev.clone()), shape)))
    })
}

/// A null device pointer for an optional kernel argument.
const NULL: u64 = 0;

/// Launch shape of the per-channel reductions: one block per channel.
fn per_channel(c: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (c as u32, 1, 1),
        block_dim: (nas_kernels::device::REDUCTION_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// What a training-mode batch-norm forward gives back: the output, and each channel's batch
/// mean and biased variance (on the host).
pub(crate) type BatchNormed = Option<(CudaStorage, Shape, Vec<f64>, Vec<f64>)>;

/// Batch norm forward with batch statistics over `x` `[n, c, hw]` (`affine`: gamma, beta).
pub(crate) fn batch_norm_train(
    (sx, lx): (&CudaStorage, &Layout),
    affine: Option<[(&CudaStorage, &Layout); 2]>,
    (n, c, hw): (usize, usize, usize),
    eps: f64,
) -> Result<BatchNormed> {
    by_float!(sx, |T| {
        let Some(x) = view::<T>(sx, lx)? else {
            return Ok(None);
        };
        let params = match affine {
            Some([(sg, lg), (sb, lb)]) => match (view::<T>(sg, lg)?, view::<T>(sb, lb)?) {
                (Some(g), Some(b)) => Some((g, b)),
                _ => return Ok(None),
            },
            None => None,
        };
        if x.len() != n * c * hw {
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
        {
            let f = kernel!(dev, "bn_fwd_train", T);
            let (ni, ci, hwl) = (n as i32, c as i32, hw as i64);
            let (eps_t, momentum) = (T::from_f64(eps), T::from_f64(0.0));
            let mut b = f.builder();
            b.arg(&x);
            match &params {
                Some((g, be)) => b.arg(g).arg(be),
                None => b.arg(&NULL).arg(&NULL),
            };
            // The running statistics are folded on the host (BatchNorm2d::update_running).
            b.arg(&ni).arg(&ci).arg(&hwl).arg(&eps_t).arg(&momentum);
            b.arg(&NULL)
                .arg(&NULL)
                .arg(&mut y)
                .arg(&mut mean)
                .arg(&mut invstd);
            // SAFETY: `nas_bn_fwd_train(x, gamma, beta, int n, int c, long hw, T eps,
            // T momentum, run_mean, run_var, y, save_mean, save_invstd)`, one block per
            // channel of REDUCTION_THREADS threads.
            unsafe { b.launch(per_channel(c)) }.w()?;
        }
        let mean: Vec<f64> = dev
            .clone_dtoh(&mean)?
            .into_iter()
            .map(|v: T| v.to_f64())
            .collect();
        let var: Vec<f64> = dev
            .clone_dtoh(&invstd)?
            .into_iter()
            .map(|v: T| {
                let is = v.to_f64();
                1.0 / (is * is) - eps
            })
            .collect();
        Ok(Some((
            T::wrap_cuda_slice(y, dev.clone()),
            lx.shape().clone(),
            mean,
            var,
        )))
    })
}

/// Batch norm backward through batch statistics: inputs `x` and `dL/dy`, the forward's
/// `mean`, `invstd` and `gamma` per channel; output the flat `[dL/dx, dL/dgamma, dL/dbeta]`.
pub(crate) fn batch_norm_train_bwd(
    (sx, lx): (&CudaStorage, &Layout),
    (sg, lg): (&CudaStorage, &Layout),
    (n, c, hw): (usize, usize, usize),
    [mean, invstd, gamma]: [&[f64]; 3],
) -> Result<Launched> {
    by_float!(sx, |T| {
        let (Some(x), Some(gy)) = (view::<T>(sx, lx)?, view::<T>(sg, lg)?) else {
            return Ok(None);
        };
        let nx = n * c * hw;
        if x.len() != nx || gy.len() != nx || [mean, invstd, gamma].iter().any(|v| v.len() != c) {
            return Ok(None);
        }
        let dev = &sx.device;
        let on_device = |v: &[f64]| -> Result<CudaSlice<T>> {
            let host: Vec<T> = v.iter().map(|&e| T::from_f64(e)).collect();
            dev.clone_htod(&host)
        };
        let (mean_d, invstd_d, gamma_d) = (on_device(mean)?, on_device(invstd)?, on_device(gamma)?);
        // SAFETY: the three parts are written in full by the kernel.
        let mut out = unsafe { dev.alloc::<T>(nx + 2 * c)? };
        {
            let (mut gx, mut rest) = out.split_at_mut(nx);
            let (mut ggamma, mut gbeta) = rest.split_at_mut(c);
            let f = kernel!(dev, "bn_bwd_train", T);
            let (ni, ci, hwl) = (n as i32, c as i32, hw as i64);
            let mut b = f.builder();
            b.arg(&x).arg(&gy).arg(&gamma_d).arg(&ni).arg(&ci).arg(&hwl);
            b.arg(&mean_d)
                .arg(&invstd_d)
                .arg(&mut gx)
                .arg(&mut ggamma)
                .arg(&mut gbeta);
            // SAFETY: `nas_bn_bwd_train(x, gy, gamma, int n, int c, long hw, save_mean,
            // save_invstd, gx, ggamma, gbeta)`, one block per channel.
            unsafe { b.launch(per_channel(c)) }.w()?;
        }
        Ok(Some((
            T::wrap_cuda_slice(out, dev.clone()),
            Shape::from(nx + 2 * c),
        )))
    })
}
