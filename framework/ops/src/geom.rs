//! Window geometry shared by convolution and pooling: output sizes and, for each kernel tap,
//! the range of output positions whose input position lies inside the image. Precomputing the
//! ranges keeps every bounds check out of the inner loops.
use candle_core::{bail, Result};

/// Output length of a window op along one axis (PyTorch's floor-mode formula):
/// `floor((len + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1`.
pub fn out_size(
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        bail!("nas-ops: kernel, stride and dilation must be >= 1 (got kernel {kernel}, stride {stride}, dilation {dilation})");
    }
    let span = dilation * (kernel - 1) + 1;
    let padded = len + 2 * padding;
    if padded < span {
        bail!("nas-ops: window of span {span} (kernel {kernel}, dilation {dilation}) does not fit input length {len} with padding {padding}");
    }
    Ok((padded - span) / stride + 1)
}

/// One kernel tap along one axis: output positions `lo..hi` read input position
/// `o * stride + off` (always inside `0..len` for `o` in the range).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tap {
    pub lo: usize,
    pub hi: usize,
    pub off: isize,
}

impl Tap {
    /// Input position of output position `o` (which must lie in `lo..hi`).
    #[inline(always)]
    pub fn input(&self, o: usize, stride: usize) -> usize {
        (o as isize * stride as isize + self.off) as usize
    }

    /// Number of output positions the tap covers.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.hi - self.lo
    }
}

/// The taps of a window of `kernel` taps with `dilation`, `padding`, `stride` over an axis of
/// `len` inputs and `out` outputs.
pub(crate) fn taps(
    len: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Vec<Tap> {
    (0..kernel)
        .map(|i| {
            let off = (i * dilation) as isize - padding as isize;
            let s = stride as isize;
            // o * s + off >= 0  <=>  o >= ceil(-off / s)
            let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
            // o * s + off <= len - 1  <=>  o <= floor((len - 1 - off) / s)
            let last = len as isize - 1 - off;
            let hi = if last < 0 { 0 } else { last / s + 1 };
            let hi = (hi as usize).min(out);
            let lo = (lo as usize).min(hi);
            Tap { lo, hi, off }
        })
        .collect()
}

/// Geometry of a per-channel (depthwise or pooling) window op over NCHW planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Window {
    /// Checks the parameters and computes the output size.
    pub fn new(
        dims: (usize, usize, usize, usize),
        k: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Result<Self> {
        let (n, c, h, w) = dims;
        let oh = out_size(h, k, stride, padding, dilation)?;
        let ow = out_size(w, k, stride, padding, dilation)?;
        Ok(Self {
            n,
            c,
            h,
            w,
            k,
            stride,
            padding,
            dilation,
            oh,
            ow,
        })
    }

    /// Row taps (over `h`).
    pub fn row_taps(&self) -> Vec<Tap> {
        taps(
            self.h,
            self.oh,
            self.k,
            self.stride,
            self.padding,
            self.dilation,
        )
    }

    /// Column taps (over `w`).
    pub fn col_taps(&self) -> Vec<Tap> {
        taps(
            self.w,
            self.ow,
            self.k,
            self.stride,
            self.padding,
            self.dilation,
        )
    }

    /// Elements of one input plane.
    pub fn in_plane(&self) -> usize {
        self.h * self.w
    }

    /// Elements of one output plane.
    pub fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
}
