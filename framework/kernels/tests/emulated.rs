//! The device build (`csrc/device.cu`) run on the CPU through the emulation of
//! `nas_kernels::emulated`, with the launch geometry `nas-ops` gives a GPU
//! (`nas_kernels::launch`), against the host build (`nas_kernels::host`, itself tested against
//! PyTorch's goldens) and, for the statistics, against sums computed here.
//!
//! Element kernels run the same body per element as the host build, so they must agree bit
//! for bit, as must the weight gradients (the host build adds the same partial sums in the
//! same tree and chunk order); the other reductions (batch norm, the mixing weights'
//! gradients) add in another order and agree to rounding.
use nas_kernels::emulated::{self, Args, EmulationError, Threads};
use nas_kernels::host::{
    self, AdamRule, BnShape, HostFloat, RmsPropRule, SgdRule, StepRule, StepSpan, TensorStep,
};
use nas_kernels::launch::{self, entry, Launch};
use nas_kernels::{pw_weight_chunks, reduction_chunks, weight_chunks, Geom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The element types the device build exports, with what these tests need of them.
trait Elem: HostFloat + Into<f64> + PartialEq + std::fmt::Debug + 'static {
    const F64: bool;
    /// Normwise relative tolerance of a reduction summed in another order.
    const TOL: f64;
    fn of(v: f64) -> Self;
}

impl Elem for f32 {
    const F64: bool = false;
    const TOL: f64 = 1e-5;
    fn of(v: f64) -> Self {
        v as f32
    }
}

impl Elem for f64 {
    const F64: bool = true;
    const TOL: f64 = 1e-12;
    fn of(v: f64) -> Self {
        v
    }
}

fn random<T: Elem>(len: usize, seed: u64) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| T::of(rng.random_range(-1.0..1.0)))
        .collect()
}

thread_local! {
    /// How [`run`] runs a block's threads (set by [`each_way`]).
    static THREADS: std::cell::Cell<Threads> = const { std::cell::Cell::new(Threads::Os) };
}

/// Runs `body` with the blocks' threads as OS threads, then as fibers (the emulated GPU
/// driver's way): the kernels must give the same results both ways.
fn each_way(body: impl Fn()) {
    for threads in [Threads::Os, Threads::Fibers] {
        THREADS.with(|t| t.set(threads));
        body();
    }
    THREADS.with(|t| t.set(Threads::Os));
}

/// Runs kernel `base` for `T` over `l`; panics with the emulator's error.
fn run<T: Elem>(base: &str, l: Launch, args: &mut Args) {
    let name = entry(base, T::F64);
    let threads = THREADS.with(|t| t.get());
    // SAFETY: every call below passes the kernel's parameters in order, with pointers into
    // buffers of the lengths the geometry implies (the same the host wrappers check).
    unsafe { emulated::launch_as(threads, &name, l, args) }
        .unwrap_or_else(|e| panic!("{name} ({threads:?}): {e}"));
}

fn assert_close<T: Elem>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        let (g, w): (f64, f64) = ((*g).into(), (*w).into());
        diff += (g - w) * (g - w);
        norm += w * w;
    }
    let rel = diff.sqrt() / norm.sqrt().max(1e-30);
    assert!(
        rel <= T::TOL,
        "{what}: relative error {rel:e} > {:e}",
        T::TOL
    );
}

fn in_len(g: &Geom) -> usize {
    (g.n * g.cin * g.h * g.w) as usize
}
fn out_len(g: &Geom) -> usize {
    (g.n * g.cout * g.oh * g.ow) as usize
}
fn w_len(g: &Geom) -> usize {
    (g.cout * (g.cin / g.groups) * g.k * g.k) as usize
}

/// Depthwise (k 3, and k 5 dilated strided), pointwise, and a grouped strided dense
/// convolution, over outputs of more than one block; and a depthwise one with more output
/// positions than one chunk of the weight gradient holds.
fn conv_geometries() -> Vec<Geom> {
    vec![
        Geom::conv(2, 8, 9, 9, 8, 3, 1, 1, 1, 8).unwrap(),
        Geom::conv(2, 2, 66, 66, 2, 3, 1, 1, 1, 2).unwrap(),
        Geom::conv(2, 4, 11, 10, 4, 5, 2, 4, 2, 4).unwrap(),
        Geom::conv(3, 8, 7, 7, 6, 1, 1, 0, 1, 1).unwrap(),
        Geom::conv(2, 6, 9, 8, 4, 3, 2, 1, 1, 2).unwrap(),
        // Pointwise over two chunks of the tiled weight gradient (800 and 578 positions), in
        // one tile and in partial tiles of 16 x 16 (18 x 20), strided.
        Geom::conv(2, 4, 20, 20, 5, 1, 1, 0, 1, 1).unwrap(),
        Geom::conv(2, 20, 34, 34, 18, 1, 2, 0, 1, 1).unwrap(),
    ]
}

fn conv_case<T: Elem>(g: Geom, relu: bool, seed: u64) {
    let x = random::<T>(in_len(&g), seed);
    let w = random::<T>(w_len(&g), seed + 1);
    let gy = random::<T>(out_len(&g), seed + 2);
    let relu_i = i32::from(relu);
    let want_y = if relu {
        host::relu_conv_fwd(&x, &w, &g)
    } else {
        host::conv_fwd(&x, &w, &g)
    }
    .unwrap();
    let (want_gx, want_gw) = if relu {
        host::relu_conv_bwd(&x, &w, &gy, &g)
    } else {
        host::conv_bwd(&x, &w, &gy, &g)
    }
    .unwrap();
    // The forward with nas-ops' geometry and with a grid too small for one pass (the
    // grid-stride loop).
    for l in [
        launch::elementwise(out_len(&g)),
        Launch {
            grid: (2, 1, 1),
            block: (64, 1, 1),
        },
    ] {
        let mut y = vec![T::default(); out_len(&g)];
        let mut a = Args::new();
        a.push(x.as_ptr()).push(w.as_ptr()).push(y.as_mut_ptr());
        a.push(g).push(relu_i);
        run::<T>("conv_fwd", l, &mut a);
        assert!(y == want_y, "conv_fwd {g:?} relu {relu} {l:?}");
    }
    let mut gx = vec![T::default(); in_len(&g)];
    let relu_x = if relu { x.as_ptr() } else { std::ptr::null() };
    let mut a = Args::new();
    a.push(gy.as_ptr()).push(w.as_ptr()).push(gx.as_mut_ptr());
    a.push(g).push(relu_x);
    run::<T>("conv_bwd_input", launch::elementwise(in_len(&g)), &mut a);
    assert!(gx == want_gx, "conv_bwd_input {g:?} relu {relu}");
    let Some(gw) = weight_grad::<T>(&g, w_len(&g), |a, part, per| {
        a.push(x.as_ptr()).push(gy.as_ptr()).push(part);
        a.push(g).push(per).push(relu_i);
    }) else {
        return;
    };
    assert!(gw == want_gw, "weight gradient {g:?} relu {relu}");
}

/// Launches the weight-gradient kernel `base` of `nw` elements as nas-ops does, over `l` with
/// `chunks` chunks of `per` output positions: the chunks' partial sums in a buffer of their
/// own (null with one chunk) that the last block to finish adds. `args` pushes every argument
/// before `gw`, given the partial sums' pointer and the chunk length.
///
/// `None` (not run) with OS threads for a weight of more than [`MAX_OS_THREAD_WEIGHTS`]
/// elements: a block of 256 OS threads meets at its barriers for tens of milliseconds on two
/// cores, and every block runs the same code, so the small weights (over two chunks too)
/// cover the races OS threads can show; fibers run every case.
fn weight_grad_of<T: Elem>(
    base: &str,
    (chunks, per, l): (usize, usize, Launch),
    nw: usize,
    args: impl Fn(&mut Args, *mut T, i64),
) -> Option<Vec<T>> {
    if THREADS.with(|t| t.get()) == Threads::Os && nw > MAX_OS_THREAD_WEIGHTS {
        return None;
    }
    let mut part = vec![T::default(); if chunks > 1 { chunks * nw } else { 0 }];
    let part_ptr = if chunks > 1 {
        part.as_mut_ptr()
    } else {
        std::ptr::null_mut()
    };
    let mut gw = vec![T::default(); nw];
    let mut done = Box::new(0u32);
    let mut a = Args::new();
    args(&mut a, part_ptr, per as i64);
    a.push(gw.as_mut_ptr()).push(&mut *done as *mut u32);
    run::<T>(base, l, &mut a);
    assert_eq!(*done, 0, "{base}: the block counter is back at 0");
    Some(gw)
}

/// [`weight_grad_of`] for a convolution, as nas-ops launches it: a pointwise weight gradient
/// ([`Geom::is_pointwise`]) as `pw_bwd_weight`, one block per 16 x 16 tile of the weight and
/// chunk of [`pw_weight_chunks`]; any other as `conv_bwd_weight`, one block per element and
/// chunk of [`weight_chunks`].
fn weight_grad<T: Elem>(
    g: &Geom,
    nw: usize,
    args: impl Fn(&mut Args, *mut T, i64),
) -> Option<Vec<T>> {
    let p = g.positions();
    if g.is_pointwise() {
        let (chunks, per) = pw_weight_chunks(p, nw);
        let l = launch::pw_tiles(g.cout as usize, g.cin as usize, chunks);
        weight_grad_of("pw_bwd_weight", (chunks, per, l), nw, args)
    } else {
        let (chunks, per) = weight_chunks(p, nw);
        let l = launch::weight_blocks(nw, chunks);
        weight_grad_of("conv_bwd_weight", (chunks, per, l), nw, args)
    }
}

/// The largest weight whose gradient [`weight_grad`] also runs with OS threads.
const MAX_OS_THREAD_WEIGHTS: usize = 36;

#[test]
fn convolutions_match_the_host_build() {
    each_way(|| {
        for (i, g) in conv_geometries().into_iter().enumerate() {
            for relu in [false, true] {
                conv_case::<f32>(g, relu, 10 * i as u64);
                conv_case::<f64>(g, relu, 10 * i as u64 + 5);
            }
        }
    });
}

/// The separable unit's two convolutions in one launch against the host build's depthwise
/// then pointwise convolution, bit for bit: `a` (the depthwise output) and `b`.
fn unit_conv_case<T: Elem>(gd: Geom, co: usize, seed: u64) {
    let u = |v: i32| v as usize;
    let gp = Geom::conv(u(gd.n), u(gd.cout), u(gd.oh), u(gd.ow), co, 1, 1, 0, 1, 1).unwrap();
    let x = random::<T>(in_len(&gd), seed);
    let wd = random::<T>(w_len(&gd), seed + 1);
    let wp = random::<T>(w_len(&gp), seed + 2);
    let want_a = host::relu_conv_fwd(&x, &wd, &gd).unwrap();
    let want_b = host::conv_fwd(&want_a, &wp, &gp).unwrap();
    let positions = (gd.oh * gd.ow) as usize;
    let (l, tile) = launch::unit_conv(
        gd.cout as usize,
        co,
        positions,
        gd.n as usize,
        std::mem::size_of::<T>(),
    )
    .unwrap();
    let mut a = vec![T::default(); out_len(&gd)];
    let mut b = vec![T::default(); out_len(&gp)];
    let mut args = Args::new();
    args.push(x.as_ptr()).push(wd.as_ptr()).push(wp.as_ptr());
    args.push(a.as_mut_ptr()).push(b.as_mut_ptr());
    args.push(gd).push(gp).push(tile as i32);
    run::<T>("unit_conv_fwd", l, &mut args);
    assert!(a == want_a, "unit depthwise output {gd:?} tile {tile}");
    assert!(
        b == want_b,
        "unit pointwise output {gd:?} -> {co} tile {tile}"
    );
}

#[test]
fn the_unit_convolutions_in_one_launch_match_the_host_build() {
    each_way(|| {
        let cases = [
            // SepConv 3x3 (stride 1), whole tiles of 32 positions and a partial one (81).
            (Geom::conv(2, 8, 9, 9, 8, 3, 1, 1, 1, 8).unwrap(), 8),
            // DilConv 5x5, dilation 2, stride 2, into more channels than it reads.
            (Geom::conv(2, 4, 11, 10, 4, 5, 2, 4, 2, 4).unwrap(), 6),
            // Many channels: tiles of 12 positions (49 = 4 x 12 + 1), fewer outputs.
            (Geom::conv(1, 40, 7, 7, 40, 3, 1, 1, 1, 40).unwrap(), 24),
        ];
        for (i, (gd, co)) in cases.into_iter().enumerate() {
            unit_conv_case::<f32>(gd, co, 40 + 10 * i as u64);
            unit_conv_case::<f64>(gd, co, 45 + 10 * i as u64);
        }
    });
}

/// A tile whose depthwise outputs do not fit the shared memory is refused (a trap), as is a
/// pointwise geometry that does not read the depthwise one's channels.
#[test]
fn unit_convolution_launches_it_cannot_hold_trap() {
    let gd = Geom::conv(1, 8, 4, 4, 8, 3, 1, 1, 1, 8).unwrap();
    let x = vec![0f32; in_len(&gd)];
    let wd = vec![0f32; w_len(&gd)];
    let wp = vec![0f32; 64];
    let (mut a, mut b) = (vec![0f32; out_len(&gd)], vec![0f32; out_len(&gd)]);
    let l = Launch {
        grid: (1, 1, 1),
        block: (32, 1, 1),
    };
    let fits = launch::UNIT_SHARED_BYTES / 4 / 8;
    for (tile, pw_cin) in [(fits + 1, 8), (0, 8), (4, 7)] {
        let gp = Geom::conv(1, pw_cin, 4, 4, 8, 1, 1, 0, 1, 1).unwrap();
        let mut args = Args::new();
        args.push(x.as_ptr()).push(wd.as_ptr()).push(wp.as_ptr());
        args.push(a.as_mut_ptr()).push(b.as_mut_ptr());
        args.push(gd).push(gp).push(tile as i32);
        // SAFETY: the buffers are of the geometry's sizes (the kernel traps before any access).
        let got =
            unsafe { emulated::launch_as(Threads::Fibers, "nas_unit_conv_fwd_f32", l, &mut args) };
        assert!(
            matches!(got, Err(EmulationError::Trapped(_))),
            "tile {tile}, pointwise over {pw_cin}: {got:?}"
        );
    }
}

/// `FactorizedReduce` (before its batch norm): forward over nas-ops' grid and a grid too small
/// for one pass, the input gradient with the ReLU's mask, and the weight gradient split over
/// the batch, each against the host build (element kernels bit for bit, as is the split: the
/// host adds the same partial sums in the same order).
fn factorized_reduce_case<T: Elem>(g: Geom, seed: u64) {
    let nw = (g.cout * g.cin) as usize;
    let x = random::<T>(in_len(&g), seed);
    let w = random::<T>(nw, seed + 1);
    let (wa, wb) = w.split_at(nw / 2);
    let gz = random::<T>(out_len(&g), seed + 2);
    let want_z = host::factorized_reduce_fwd(&x, wa, wb, &g).unwrap();
    let (want_gx, want_gw) = host::factorized_reduce_bwd(&x, wa, wb, &gz, &g).unwrap();
    for l in [
        launch::elementwise(out_len(&g)),
        Launch {
            grid: (2, 1, 1),
            block: (64, 1, 1),
        },
    ] {
        let mut z = vec![T::default(); out_len(&g)];
        let mut a = Args::new();
        a.push(x.as_ptr()).push(wa.as_ptr()).push(wb.as_ptr());
        a.push(z.as_mut_ptr()).push(g);
        run::<T>("fr_fwd", l, &mut a);
        assert!(z == want_z, "fr_fwd {g:?} {l:?}");
    }
    let mut gx = vec![T::default(); in_len(&g)];
    let mut a = Args::new();
    a.push(gz.as_ptr()).push(wa.as_ptr()).push(wb.as_ptr());
    a.push(x.as_ptr()).push(gx.as_mut_ptr()).push(g);
    run::<T>("fr_bwd_input", launch::elementwise(in_len(&g)), &mut a);
    assert!(gx == want_gx, "fr_bwd_input {g:?}");
    let (chunks, per) = weight_chunks(g.positions(), nw);
    let l = launch::weight_blocks(nw, chunks);
    let Some(gw) = weight_grad_of::<T>("fr_bwd_weight", (chunks, per, l), nw, |a, part, per| {
        a.push(x.as_ptr()).push(gz.as_ptr()).push(part);
        a.push(g).push(per);
    }) else {
        return;
    };
    assert!(gw == want_gw, "fr_bwd_weight {g:?} ({chunks} chunks)");
}

/// A hand-built case: the output cells read the right input cells through the ReLU, and the
/// input gradient reaches only the cells a convolution read.
#[test]
fn factorized_reduce_reads_the_cells_of_the_reference() {
    // One example, one input channel, 4x4, two output channels (one per convolution).
    let g = Geom::factorized_reduce(1, 1, 4, 4, 2).unwrap();
    let x: Vec<f64> = (0..16).map(|i| i as f64 - 5.0).collect();
    let (wa, wb) = ([2.0], [3.0]);
    let z = host::factorized_reduce_fwd(&x, &wa, &wb, &g).unwrap();
    // conv_1 reads (0,0) (0,2) (2,0) (2,2) = -5 -3 3 5 -> relu 0 0 3 5, times 2;
    // conv_2 reads (1,1) (1,3) (3,1) (3,3) = 0 2 8 10, times 3.
    assert_eq!(z, vec![0.0, 0.0, 6.0, 10.0, 0.0, 6.0, 24.0, 30.0]);
    let gz = vec![1.0; 8];
    let (gx, gw) = host::factorized_reduce_bwd(&x, &wa, &wb, &gz, &g).unwrap();
    let mut want = vec![0.0; 16];
    for (i, v) in [(8, 2.0), (10, 2.0), (7, 3.0), (13, 3.0), (15, 3.0)] {
        want[i] = v; // read and positive; (1,1) = 0 is read but masked, as PyTorch's ReLU
    }
    assert_eq!(gx, want);
    assert_eq!(gw, vec![8.0, 20.0]);
}

#[test]
fn factorized_reduce_matches_the_host_build() {
    each_way(|| {
        let geometries = [
            Geom::factorized_reduce(3, 5, 8, 6, 6).unwrap(),
            Geom::factorized_reduce(2, 6, 16, 16, 8).unwrap(),
            // More output positions than one chunk of the weight gradient holds.
            Geom::factorized_reduce(3, 2, 110, 110, 2).unwrap(),
        ];
        for (i, g) in geometries.into_iter().enumerate() {
            factorized_reduce_case::<f32>(g, 70 + 10 * i as u64);
            factorized_reduce_case::<f64>(g, 75 + 10 * i as u64);
        }
    });
}

fn pool_case<T: Elem>(g: Geom, seed: u64) {
    let mut x = random::<T>(in_len(&g), seed);
    // Ties: the first maximum in window order must win, as in the host build.
    for v in x.iter_mut().step_by(7) {
        *v = T::of(0.5);
    }
    let gy = random::<T>(out_len(&g), seed + 1);
    let (want_y, want_arg) = host::max_pool_fwd(&x, &g).unwrap();
    let want_gx = host::max_pool_bwd(&gy, &want_arg, &g).unwrap();
    let lo = launch::elementwise(out_len(&g));
    // Both outputs, then each alone (the other pointer null), as nas-ops launches it.
    let mut y = vec![T::default(); out_len(&g)];
    let mut arg = vec![-7i32; out_len(&g)];
    let mut a = Args::new();
    a.push(x.as_ptr())
        .push(y.as_mut_ptr())
        .push(arg.as_mut_ptr())
        .push(g);
    run::<T>("max_pool_fwd", lo, &mut a);
    assert!(y == want_y && arg == want_arg, "max_pool_fwd {g:?}");
    let mut y_only = vec![T::default(); out_len(&g)];
    let mut a = Args::new();
    a.push(x.as_ptr()).push(y_only.as_mut_ptr());
    a.push(std::ptr::null_mut::<i32>()).push(g);
    run::<T>("max_pool_fwd", lo, &mut a);
    assert!(y_only == want_y);
    let mut arg_only = vec![-7i32; out_len(&g)];
    let mut a = Args::new();
    a.push(x.as_ptr()).push(std::ptr::null_mut::<T>());
    a.push(arg_only.as_mut_ptr()).push(g);
    run::<T>("max_pool_fwd", lo, &mut a);
    assert!(arg_only == want_arg);
    let mut gx = vec![T::default(); in_len(&g)];
    let mut a = Args::new();
    a.push(gy.as_ptr())
        .push(arg.as_ptr())
        .push(gx.as_mut_ptr())
        .push(g);
    run::<T>("max_pool_bwd", launch::elementwise(in_len(&g)), &mut a);
    assert!(gx == want_gx, "max_pool_bwd {g:?}");
    for include_pad in [false, true] {
        let pad_i = i32::from(include_pad);
        let mut y = vec![T::default(); out_len(&g)];
        let mut a = Args::new();
        a.push(x.as_ptr()).push(y.as_mut_ptr()).push(g).push(pad_i);
        run::<T>("avg_pool_fwd", lo, &mut a);
        assert!(y == host::avg_pool_fwd(&x, &g, include_pad).unwrap());
        let mut gx = vec![T::default(); in_len(&g)];
        let mut a = Args::new();
        a.push(gy.as_ptr())
            .push(gx.as_mut_ptr())
            .push(g)
            .push(pad_i);
        run::<T>("avg_pool_bwd", launch::elementwise(in_len(&g)), &mut a);
        assert!(gx == host::avg_pool_bwd(&gy, &g, include_pad).unwrap());
    }
}

#[test]
fn pooling_matches_the_host_build() {
    each_way(|| {
        for (i, g) in [
            Geom::pool(2, 5, 9, 9, 3, 1, 1).unwrap(),
            Geom::pool(2, 5, 9, 8, 3, 2, 1).unwrap(),
        ]
        .into_iter()
        .enumerate()
        {
            pool_case::<f32>(g, 100 + i as u64);
            pool_case::<f64>(g, 200 + i as u64);
        }
    });
}

/// Mean and biased variance per channel of an `[n, c, hw]` input, summed here in f64.
fn channel_moments<T: Elem>(x: &[T], s: BnShape) -> (Vec<f64>, Vec<f64>) {
    let m = (s.n * s.hw) as f64;
    (0..s.c)
        .map(|ch| {
            let vals: Vec<f64> = (0..s.n)
                .flat_map(|i| (0..s.hw).map(move |j| (i * s.c + ch) * s.hw + j))
                .map(|o| x[o].into())
                .collect();
            let mean = vals.iter().sum::<f64>() / m;
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m;
            (mean, var)
        })
        .unzip()
}

/// Which batch-norm kernels a case launches: nas-ops' one block per channel
/// (`bn_fwd_train`, `bn_bwd_train`), or several blocks per channel (`bn_moments` then
/// `bn_apply`, `bn_grad_sums` then `bn_bwd_apply`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum BnKernels {
    PerChannel,
    Chunked,
}

fn bn_case<T: Elem>(s: BnShape, affine: bool, kernels: BnKernels, seed: u64) {
    let len = s.n * s.c * s.hw;
    // An offset larger than the spread, as after a ReLU: the shifted sums must hold up.
    let x: Vec<T> = random::<T>(len, seed)
        .into_iter()
        .map(|v| T::of(v.into() + 3.0))
        .collect();
    let gy = random::<T>(len, seed + 1);
    let gamma = random::<T>(s.c, seed + 2);
    let beta = random::<T>(s.c, seed + 3);
    let eps = T::of(1e-5);
    let want = host::bn_fwd_train(
        &x,
        s,
        affine.then_some((&gamma[..], &beta[..])),
        eps,
        T::of(0.1),
        None,
    )
    .unwrap();
    let (gp, bp) = if affine {
        (gamma.as_ptr(), beta.as_ptr())
    } else {
        (std::ptr::null(), std::ptr::null())
    };
    let mut y = vec![T::default(); len];
    let (mut mean, mut invstd) = (vec![T::default(); s.c], vec![T::default(); s.c]);
    // The running statistics (f64) folded by the same launch, or not (null), as nas-ops asks.
    let fold = affine;
    let (mut run_mean, mut run_var): (Vec<f64>, Vec<f64>) = (0..s.c)
        .map(|ch| (0.25 * ch as f64, 1.0 + ch as f64))
        .unzip();
    let before = (run_mean.clone(), run_var.clone());
    let (rmp, rvp) = if fold {
        (run_mean.as_mut_ptr(), run_var.as_mut_ptr())
    } else {
        (std::ptr::null_mut(), std::ptr::null_mut())
    };
    let (n, c, hw) = (s.n as i32, s.c as i32, s.hw as i64);
    let (chunks, per) = reduction_chunks(s.n * s.hw);
    let mut part = vec![T::default(); 2 * chunks * s.c];
    let mut done = Box::new(0u32);
    let done_ptr = &mut *done as *mut u32;
    let mut a = Args::new();
    if kernels == BnKernels::PerChannel {
        a.push(x.as_ptr()).push(gp).push(bp);
        a.push(n).push(c).push(hw).push(eps);
        a.push(y.as_mut_ptr())
            .push(mean.as_mut_ptr())
            .push(invstd.as_mut_ptr());
        a.push(0.1f64).push(rmp).push(rvp);
        run::<T>("bn_fwd_train", launch::per_channel(s.c), &mut a);
    } else {
        a.push(x.as_ptr()).push(n).push(c).push(hw).push(per as i64);
        a.push(eps).push(part.as_mut_ptr());
        a.push(mean.as_mut_ptr()).push(invstd.as_mut_ptr());
        a.push(0.1f64).push(rmp).push(rvp).push(done_ptr);
        run::<T>("bn_moments", launch::channel_chunks(chunks, s.c), &mut a);
        assert_eq!(*done, 0, "bn_moments: the block counter is back at 0");
        let mut a = Args::new();
        a.push(x.as_ptr())
            .push(gp)
            .push(bp)
            .push(n)
            .push(c)
            .push(hw);
        a.push(mean.as_ptr())
            .push(invstd.as_ptr())
            .push(y.as_mut_ptr());
        run::<T>("bn_apply", launch::elementwise(len), &mut a);
    }
    let what = format!("bn {s:?} affine {affine} {kernels:?} ({chunks} chunks)");
    assert_close(&y, &want.y, &format!("{what}: y"));
    assert_close(&mean, &want.mean, &format!("{what}: mean"));
    assert_close(&invstd, &want.invstd, &format!("{what}: invstd"));
    let (want_mean, want_var) = channel_moments(&x, s);
    let want_mean_t: Vec<T> = want_mean.iter().map(|&v| T::of(v)).collect();
    assert_close(&mean, &want_mean_t, &format!("{what}: mean vs f64 sums"));
    let m = s.n * s.hw;
    for ch in 0..s.c {
        if !fold {
            assert_eq!((run_mean[ch], run_var[ch]), (before.0[ch], before.1[ch]));
            continue;
        }
        // PyTorch's update with momentum 0.1 and the unbiased variance, from sums made here.
        let unbiased = if m > 1 {
            want_var[ch] * m as f64 / (m - 1) as f64
        } else {
            want_var[ch]
        };
        let rm = 0.9 * before.0[ch] + 0.1 * want_mean[ch];
        let rv = 0.9 * before.1[ch] + 0.1 * unbiased;
        let tol = if T::F64 { 1e-12 } else { 1e-6 };
        assert!(
            (run_mean[ch] - rm).abs() <= tol * (1.0 + rm.abs()),
            "{what}: running mean {} vs {rm}",
            run_mean[ch]
        );
        assert!(
            (run_var[ch] - rv).abs() <= tol * (1.0 + rv.abs()),
            "{what}: running var {} vs {rv}",
            run_var[ch]
        );
    }

    // The backward from the statistics the forward left (as on the device).
    let want_bwd = host::bn_bwd_train(&x, &gy, s, affine.then_some(&gamma[..]), &want).unwrap();
    let mut gx = vec![T::default(); len];
    let (mut gg, mut gb) = (vec![T::default(); s.c], vec![T::default(); s.c]);
    let (ggp, gbp) = if affine {
        (gg.as_mut_ptr(), gb.as_mut_ptr())
    } else {
        (std::ptr::null_mut(), std::ptr::null_mut())
    };
    let mut a = Args::new();
    if kernels == BnKernels::PerChannel {
        a.push(x.as_ptr()).push(gy.as_ptr()).push(gp);
        a.push(n).push(c).push(hw);
        a.push(mean.as_ptr()).push(invstd.as_ptr());
        a.push(gx.as_mut_ptr()).push(ggp).push(gbp);
        run::<T>("bn_bwd_train", launch::per_channel(s.c), &mut a);
    } else {
        let mut sums = vec![T::default(); 2 * s.c];
        a.push(x.as_ptr()).push(gy.as_ptr());
        a.push(n).push(c).push(hw).push(per as i64);
        a.push(mean.as_ptr())
            .push(invstd.as_ptr())
            .push(part.as_mut_ptr());
        a.push(sums.as_mut_ptr()).push(ggp).push(gbp).push(done_ptr);
        run::<T>("bn_grad_sums", launch::channel_chunks(chunks, s.c), &mut a);
        assert_eq!(*done, 0, "bn_grad_sums: the block counter is back at 0");
        let mut a = Args::new();
        a.push(x.as_ptr()).push(gy.as_ptr()).push(gp);
        a.push(n).push(c).push(hw);
        a.push(mean.as_ptr())
            .push(invstd.as_ptr())
            .push(sums.as_ptr());
        a.push(gx.as_mut_ptr());
        run::<T>("bn_bwd_apply", launch::elementwise(len), &mut a);
    }
    assert_close(&gx, &want_bwd.0, &format!("{what}: dx"));
    if let Some((want_gg, want_gb)) = &want_bwd.1 {
        assert_close(&gg, want_gg, &format!("{what}: dgamma"));
        assert_close(&gb, want_gb, &format!("{what}: dbeta"));
    }
}

#[test]
fn batch_norm_matches_the_host_build_and_sums_here() {
    each_way(|| {
        let shapes = [
            BnShape { n: 3, c: 5, hw: 37 },
            BnShape { n: 2, c: 3, hw: 1 },
            BnShape {
                n: 4,
                c: 2,
                hw: 300,
            },
            // Two chunks of reduction_chunks per channel (8,400 values).
            BnShape {
                n: 2,
                c: 2,
                hw: 4_200,
            },
        ];
        for (i, s) in shapes.into_iter().enumerate() {
            for affine in [true, false] {
                for kernels in [BnKernels::PerChannel, BnKernels::Chunked] {
                    bn_case::<f32>(s, affine, kernels, 300 + 10 * i as u64);
                    bn_case::<f64>(s, affine, kernels, 400 + 10 * i as u64);
                }
            }
        }
    });
}

#[test]
fn relu_matches_the_host_build() {
    let mut x = random::<f32>(1000, 7);
    x[3] = f32::NAN;
    x[4] = 0.0;
    let gy = random::<f32>(1000, 8);
    let mut y = vec![0f32; 1000];
    let mut a = Args::new();
    a.push(x.as_ptr()).push(y.as_mut_ptr()).push(1000i64);
    run::<f32>("relu_fwd", launch::elementwise(1000), &mut a);
    let want = host::relu_fwd(&x).unwrap();
    assert!(y[3].is_nan() && want[3].is_nan());
    y[3] = 0.0;
    let mut want = want;
    want[3] = 0.0;
    assert!(y == want);
    let mut gx = vec![0f64; 1000];
    let (x64, gy64): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(&gy)
        .map(|(&a, &b)| (a as f64, b as f64))
        .unzip();
    let mut a = Args::new();
    a.push(x64.as_ptr())
        .push(gy64.as_ptr())
        .push(gx.as_mut_ptr())
        .push(1000i64);
    run::<f64>("relu_bwd", launch::elementwise(1000), &mut a);
    let want = host::relu_bwd(&x64, &gy64).unwrap();
    assert_eq!(gx.len(), want.len());
    for (i, (g, w)) in gx.iter().zip(&want).enumerate() {
        assert!(
            g == w || (g.is_nan() && w.is_nan()),
            "relu_bwd at {i}: {g} vs {w}"
        );
    }
}

/// The C struct `Operands<T>` / `Outputs<T>`: the options' pointers by value.
#[repr(C)]
struct Pointers<P>([P; launch::MAX_OPTIONS]);

fn mixed_case<T: Elem>(len: usize, seed: u64) {
    const K: usize = 5;
    let ys: Vec<Vec<T>> = (0..K).map(|k| random::<T>(len, seed + k as u64)).collect();
    let mut w = random::<T>(K, seed + 10);
    // Option 2 not computed (weight exactly 0, no output), as under hard sampling.
    w[2] = T::default();
    let present: Vec<Option<&[T]>> = (0..K).map(|k| (k != 2).then_some(&ys[k][..])).collect();
    let gy = random::<T>(len, seed + 20);
    let want_y = host::mixed_fwd(&present, &w, len).unwrap();
    let (want_gys, want_gw) = host::mixed_bwd(&gy, &present, &w).unwrap();
    let mut operands = Pointers([std::ptr::null::<T>(); launch::MAX_OPTIONS]);
    for (k, y) in present.iter().enumerate() {
        operands.0[k] = y.map_or(std::ptr::null(), |y| y.as_ptr());
    }
    let mut y = vec![T::default(); len];
    let mut a = Args::new();
    a.push(Pointers(operands.0)).push(w.as_ptr()).push(K as i32);
    a.push(len as i64).push(y.as_mut_ptr());
    run::<T>("mixed_fwd", launch::elementwise(len), &mut a);
    assert!(y == want_y, "mixed_fwd");

    // The backward as nas-ops launches it: every present option's gradient and the partial
    // sums over the chunks, which the last block to finish adds in order.
    let chunks = launch::mixed_chunks(len);
    assert!(chunks > 1, "the case spans several chunks");
    let mut gys: Vec<Vec<T>> = (0..K).map(|_| vec![T::default(); len]).collect();
    let mut outputs = Pointers([std::ptr::null_mut::<T>(); launch::MAX_OPTIONS]);
    for (k, g) in gys.iter_mut().enumerate() {
        if k != 2 {
            outputs.0[k] = g.as_mut_ptr();
        }
    }
    let mut part = vec![T::default(); K * chunks];
    let mut gw = vec![T::default(); K];
    let mut a = Args::new();
    a.push(gy.as_ptr())
        .push(Pointers(operands.0))
        .push(w.as_ptr())
        .push(K as i32);
    a.push(len as i64)
        .push(outputs)
        .push(part.as_mut_ptr())
        .push(gw.as_mut_ptr());
    let mut done = Box::new(0u32);
    a.push(&mut *done as *mut u32);
    run::<T>("mixed_bwd", launch::mixed_bwd(len, K), &mut a);
    assert_eq!(
        *done, 0,
        "the block counter is back at 0 for the next launch"
    );
    for k in 0..K {
        match &want_gys[k] {
            Some(want) => assert!(gys[k] == *want, "dL/dys[{k}]"),
            None => assert!(gys[k].iter().all(|v| *v == T::default()), "ys[2] untouched"),
        }
    }
    // The absent option's weight gradient is 0, as on the host.
    assert_eq!(gw[2], T::default());
    assert_close(&gw, &want_gw, "dL/dw");

    // Without the weight gradient (part null): the options' gradients alone.
    let mut only = vec![T::default(); len];
    let mut outputs = Pointers([std::ptr::null_mut::<T>(); launch::MAX_OPTIONS]);
    outputs.0[4] = only.as_mut_ptr();
    let mut a = Args::new();
    a.push(gy.as_ptr())
        .push(operands)
        .push(w.as_ptr())
        .push(K as i32);
    a.push(len as i64)
        .push(outputs)
        .push(std::ptr::null_mut::<T>())
        .push(std::ptr::null_mut::<T>())
        .push(std::ptr::null_mut::<u32>());
    run::<T>("mixed_bwd", launch::mixed_bwd(len, K), &mut a);
    assert!(Some(&only) == want_gys[4].as_ref());
}

#[test]
fn the_weighted_sum_matches_the_host_build() {
    each_way(|| {
        mixed_case::<f32>(10_001, 500);
        mixed_case::<f64>(9_000, 600);
    });
}

/// The C struct `nas::FlatSpan<P>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct FlatSpan<P> {
    ptr: P,
    len: i64,
    offset: i64,
}

#[test]
fn gather_and_scatter_over_many_tensors_match_the_host_build() {
    each_way(|| {
        let lens = [3usize, 700, 1, 300];
        let tensors: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| random::<f32>(n, 700 + i as u64))
            .collect();
        let longest = *lens.iter().max().unwrap();
        let total: usize = lens.iter().sum();
        let mut spans = Vec::new();
        let mut offset = 0;
        for t in &tensors {
            spans.push(FlatSpan {
                ptr: t.as_ptr(),
                len: t.len() as i64,
                offset: offset as i64,
            });
            offset += t.len();
        }
        let mut flat = vec![0f64; total];
        let mut a = Args::new();
        a.push(spans.as_ptr()).push(flat.as_mut_ptr());
        run::<f32>(
            "gather_f64_from",
            launch::over_spans(longest, lens.len()),
            &mut a,
        );
        let srcs: Vec<&[f32]> = tensors.iter().map(|t| &t[..]).collect();
        assert_eq!(flat, host::gather_f64(&srcs).unwrap());

        let input: Vec<f64> = (0..total).map(|i| i as f64 * 0.1 - 7.0).collect();
        let mut targets: Vec<Vec<f32>> = lens.iter().map(|&n| vec![0f32; n]).collect();
        let mut spans = Vec::new();
        let mut offset = 0;
        for t in targets.iter_mut() {
            spans.push(FlatSpan {
                ptr: t.as_mut_ptr(),
                len: t.len() as i64,
                offset: offset as i64,
            });
            offset += t.len();
        }
        let mut a = Args::new();
        a.push(spans.as_ptr()).push(input.as_ptr());
        run::<f32>(
            "scatter_f64_to",
            launch::over_spans(longest, lens.len()),
            &mut a,
        );
        let mut want: Vec<Vec<f32>> = lens.iter().map(|&n| vec![0f32; n]).collect();
        let mut dsts: Vec<&mut [f32]> = want.iter_mut().map(|t| &mut t[..]).collect();
        host::scatter_f64(&input, &mut dsts).unwrap();
        assert_eq!(targets, want);
    });
}

#[test]
fn every_kernel_of_device_cu_is_emulated() {
    let source = include_str!("../csrc/device.cu");
    let mut bases = Vec::new();
    for line in source.lines() {
        // The optimizer steps are stamped out by a macro: `NAS_STEP_KERNEL(T, S, <name>, ...)`
        // defines `nas_<name>_step_<S>`.
        if let Some(rest) = line.split("NAS_STEP_KERNEL(T, S, ").nth(1) {
            let name = rest.split(',').next().unwrap().trim();
            // (not the macro's own definition, whose parameter is `NAME`)
            if name.chars().all(|c| c.is_ascii_lowercase()) {
                bases.push(format!("{name}_step"));
            }
            continue;
        }
        let Some(rest) = line.split("NAS_KERNEL void nas_").nth(1) else {
            continue;
        };
        let base = rest.split("_##S").next().unwrap();
        if !base.contains("##") {
            bases.push(base.to_string());
        }
    }
    assert!(bases.len() >= 20, "found {bases:?}");
    for step in ["sgd_step", "adam_step", "rmsprop_step"] {
        assert!(bases.iter().any(|b| b == step), "{step} in {bases:?}");
    }
    for base in &bases {
        for f64 in [false, true] {
            let name = entry(base, f64);
            assert!(
                emulated::has_kernel(&name),
                "{name} is not in emulated.cpp's table"
            );
        }
    }
}

#[test]
fn launches_a_gpu_would_refuse_are_refused() {
    let x = [1.0f32; 4];
    let mut y = [0f32; 4];
    let mut args = || {
        let mut a = Args::new();
        a.push(x.as_ptr()).push(y.as_mut_ptr()).push(4i64);
        a
    };
    let too_wide = Launch {
        grid: (1, 1, 1),
        block: (2048, 1, 1),
    };
    let too_tall = Launch {
        grid: (1, 70_000, 1),
        block: (32, 1, 1),
    };
    for l in [too_wide, too_tall] {
        // SAFETY: the arguments of nas_relu_fwd_f32; the launch is refused before running.
        let err = unsafe { emulated::launch("nas_relu_fwd_f32", l, &mut args()) }.unwrap_err();
        assert!(matches!(err, EmulationError::BadLaunch { .. }), "{err}");
    }
    // SAFETY: refused by name before any argument is read.
    let err =
        unsafe { emulated::launch("nas_no_such_kernel", launch::elementwise(4), &mut args()) };
    assert!(matches!(err, Err(EmulationError::UnknownKernel(_))));
}

#[test]
fn a_reduction_launched_with_the_wrong_block_traps() {
    let s = BnShape { n: 2, c: 3, hw: 5 };
    let x = random::<f64>(30, 900);
    let mut y = vec![0f64; 30];
    let (mut mean, mut invstd) = (vec![0f64; 3], vec![0f64; 3]);
    let mut a = Args::new();
    a.push(x.as_ptr())
        .push(std::ptr::null::<f64>())
        .push(std::ptr::null::<f64>());
    a.push(s.n as i32)
        .push(s.c as i32)
        .push(s.hw as i64)
        .push(1e-5f64);
    a.push(y.as_mut_ptr()).push(mean.as_mut_ptr());
    a.push(invstd.as_mut_ptr()).push(0.1f64);
    a.push(std::ptr::null_mut::<f64>())
        .push(std::ptr::null_mut::<f64>());
    let mut half = launch::per_channel(s.c);
    half.block.0 /= 2;
    for threads in [Threads::Os, Threads::Fibers] {
        // SAFETY: the arguments of nas_bn_fwd_train_f64 over buffers of the shape's lengths.
        let err = unsafe { emulated::launch_as(threads, "nas_bn_fwd_train_f64", half, &mut a) }
            .unwrap_err();
        assert!(
            matches!(err, EmulationError::Trapped(_)),
            "{threads:?}: {err}"
        );
    }
}

#[test]
fn arguments_of_the_wrong_number_or_size_are_refused() {
    let x = [1.0f32; 4];
    let mut y = [0f32; 4];
    let mut short = Args::new();
    short.push(x.as_ptr()).push(y.as_mut_ptr());
    let mut narrow = Args::new();
    narrow.push(x.as_ptr()).push(y.as_mut_ptr()).push(4i32);
    for mut a in [short, narrow] {
        // SAFETY: refused before the kernel runs (count or size differs).
        let err = unsafe { emulated::launch("nas_relu_fwd_f32", launch::elementwise(4), &mut a) };
        assert!(
            matches!(err, Err(EmulationError::BadArguments(_))),
            "{err:?}"
        );
    }
    assert_eq!(y, [0.0; 4]);
}

/// One launch of the rule's step kernel over four tensors whose state lies in one allocation
/// (buffer `b` of tensor `t` at `b * total + offset[t]`, as nas-ops lays it out), against the
/// host build tensor by tensor: tensor 1 has no gradient (zeros), tensor 2 starts SGD's
/// momentum buffer, and each tensor has its own Adam bias corrections.
fn step_case<T: Elem>(rule: StepRule, seed: u64) {
    let lens = [3usize, 700, 1, 300];
    let total: usize = lens.iter().sum();
    let offsets: Vec<usize> = lens
        .iter()
        .scan(0, |acc, &n| {
            let o = *acc;
            *acc += n;
            Some(o)
        })
        .collect();
    let buffers = rule.buffers();
    let mut params: Vec<Vec<T>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| random::<T>(n, seed + i as u64))
        .collect();
    let grads: Vec<Vec<T>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| random::<T>(n, seed + 10 + i as u64))
        .collect();
    // Positive state (RMSprop's square average must be), in one allocation.
    let mut state: Vec<f64> = random::<f64>(buffers * total, seed + 20)
        .into_iter()
        .map(f64::abs)
        .collect();
    let tensors: Vec<TensorStep> = (0..lens.len())
        .map(|t| TensorStep {
            first: t == 2,
            step_size: 0.01 * (t + 1) as f64,
            bc2_sqrt: 0.1 + 0.2 * t as f64,
        })
        .collect();
    let mut want_params = params.clone();
    let mut want_state = state.clone();
    for t in 0..lens.len() {
        let mut own: Vec<f64> = (0..buffers)
            .flat_map(|b| want_state[b * total + offsets[t]..][..lens[t]].to_vec())
            .collect();
        let grad = (t != 1).then_some(&grads[t][..]);
        host::optimizer_step(&mut want_params[t], grad, &mut own, tensors[t], &rule).unwrap();
        for b in 0..buffers {
            want_state[b * total + offsets[t]..][..lens[t]]
                .copy_from_slice(&own[b * lens[t]..][..lens[t]]);
        }
    }
    let base = state.as_mut_ptr();
    let spans: Vec<StepSpan<T>> = (0..lens.len())
        .map(|t| StepSpan {
            param: params[t].as_mut_ptr(),
            grad: if t == 1 {
                std::ptr::null()
            } else {
                grads[t].as_ptr()
            },
            state: if buffers == 0 {
                std::ptr::null_mut()
            } else {
                base.wrapping_add(offsets[t])
            },
            stride: total as i64,
            len: lens[t] as i64,
            step_size: tensors[t].step_size,
            bc2_sqrt: tensors[t].bc2_sqrt,
            first: i32::from(tensors[t].first),
        })
        .collect();
    let mut a = Args::new();
    a.push(spans.as_ptr());
    match rule {
        StepRule::Sgd(r) => a.push(r),
        StepRule::Adam(r) => a.push(r),
        StepRule::RmsProp(r) => a.push(r),
    };
    run::<T>(rule.kernel(), launch::over_spans(700, lens.len()), &mut a);
    assert!(params == want_params, "{rule:?}: parameters");
    assert_eq!(state, want_state, "{rule:?}: state");
}

#[test]
fn the_optimizer_steps_over_many_tensors_match_the_host_build() {
    each_way(|| {
        let sgd = |momentum| {
            StepRule::Sgd(SgdRule {
                lr: 0.05,
                momentum,
                weight_decay: 3e-4,
                grad_scale: 0.7,
                nesterov: 0,
            })
        };
        step_case::<f32>(sgd(0.9), 1000);
        step_case::<f64>(sgd(0.9), 1100);
        step_case::<f32>(sgd(0.0), 1200);
        for (decoupled, seed) in [(0, 1300), (1, 1400)] {
            let adam = StepRule::Adam(AdamRule {
                lr: 0.01,
                beta1: 0.5,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-3,
                grad_scale: 0.9,
                decoupled,
            });
            step_case::<f32>(adam, seed);
            step_case::<f64>(adam, seed + 50);
        }
        for (momentum, centered, seed) in [
            (0.0, 0, 1500),
            (0.9, 0, 1600),
            (0.0, 1, 1700),
            (0.5, 1, 1800),
        ] {
            let rms = StepRule::RmsProp(RmsPropRule {
                lr: 0.01,
                alpha: 0.99,
                eps: 1e-8,
                weight_decay: 1e-4,
                momentum,
                grad_scale: 1.0,
                centered,
            });
            step_case::<f32>(rms, seed);
            step_case::<f64>(rms, seed + 50);
        }
    });
}

#[test]
fn the_sum_of_squares_over_many_tensors_matches_a_sum_here() {
    each_way(|| {
        let lens = [3usize, 7_000, 1, 300];
        let tensors: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| random::<f32>(n, 1300 + i as u64))
            .collect();
        let want: f64 = tensors.iter().flatten().map(|&v| v as f64 * v as f64).sum();
        let spans: Vec<FlatSpan<*const f32>> = tensors
            .iter()
            .map(|t| FlatSpan {
                ptr: t.as_ptr(),
                len: t.len() as i64,
                offset: 0,
            })
            .collect();
        let l = launch::reduce_over_spans(7_000, lens.len());
        assert!(l.grid.0 > 1, "several chunks per tensor");
        let mut part = vec![f64::NAN; (l.grid.0 * l.grid.1) as usize];
        let mut out = [f64::NAN];
        let mut done = Box::new(0u32);
        let mut a = Args::new();
        a.push(spans.as_ptr())
            .push(part.as_mut_ptr())
            .push(out.as_mut_ptr())
            .push(&mut *done as *mut u32);
        run::<f32>("sum_squares", l, &mut a);
        assert!(
            (out[0] - want).abs() <= 1e-12 * want,
            "{} vs {want}",
            out[0]
        );
        assert_eq!(*done, 0);
    });
}
