// nas_kernels.cuh: the bodies of the hot operations (DESIGN.md section 7), written once for
// the host and for CUDA devices.
//
// Every function here computes ONE output element (or one partial sum of a reduction) from
// plain pointers and a geometry struct, and is marked NAS_HD: `__host__ __device__` under
// nvcc, a plain inline function under a C++ host compiler. The host build (csrc/host.cpp,
// compiled by build.rs with the `cc` crate) loops over the elements and is tested on every
// machine against PyTorch's golden tensors and the plain Rust references of nas-ops; the CUDA
// build (csrc/device.cu, scripts/build-cuda.sh) launches one thread per element (or per
// partial sum of a block reduction) over the very same bodies, so the launch is the only part
// that a machine without a GPU cannot test.
//
// Semantics follow PyTorch as DARTS uses it (quark0/darts `operations.py`):
// - convolution: NCHW, weight [Cout, Cin/groups, k, k], no bias, zero padding, stride,
//   dilation; depthwise = groups == Cin == Cout, pointwise = k 1;
// - MaxPool2d(k, s, p): padding never wins (only in-image cells compete), the first maximum
//   in row-major window order wins ties (as PyTorch's CPU kernel);
// - AvgPool2d(k, s, p, count_include_pad=False): the divisor counts in-image cells only;
// - BatchNorm2d in training mode: batch mean and biased variance over (N, H, W); running
//   statistics updated with the unbiased variance and `momentum` (PyTorch 0.1).
#pragma once

#include <math.h>

#ifdef __CUDACC__
#define NAS_HD __host__ __device__ __forceinline__
#else
#define NAS_HD inline
#endif

namespace nas {

// Geometry of a 2-D convolution or pooling window over NCHW tensors.
struct Geom {
  int n;       // batch
  int cin;     // input channels
  int h, w;    // input height, width
  int cout;    // output channels (= cin for pooling)
  int oh, ow;  // output height, width
  int k;       // square kernel size
  int stride;
  int pad;
  int dil;
  int groups;  // convolution groups (1 for pooling, unused there)
};

// Output length along one axis (PyTorch's floor mode); -1 when the window does not fit.
NAS_HD int out_len(int len, int k, int stride, int pad, int dil) {
  int span = dil * (k - 1) + 1;
  int padded = len + 2 * pad;
  if (k < 1 || stride < 1 || dil < 1 || padded < span) return -1;
  return (padded - span) / stride + 1;
}

// ---------------------------------------------------------------------------------------
// Convolution (dense, grouped, depthwise, pointwise)
// ---------------------------------------------------------------------------------------

// max(x, 0): PyTorch's ReLU.
template <typename T>
NAS_HD T relu_fwd_elem(T x) {
  return x < T(0) ? T(0) : x;  // NaN stays NaN, as in PyTorch and nas-ops' CPU ReLU
}

// An input value of a convolution: x itself, or max(x, 0) when relu_in (the ReLU of a
// ReLU-conv unit read on the fly: DARTS' ReLUConvBN, SepConv and DilConv start with it).
template <typename T>
NAS_HD T conv_input(T v, int relu_in) {
  return relu_in ? relu_fwd_elem(v) : v;
}

// y[n, co, oy, ox] for the flat output index `i` (of conv(relu(x)) when relu_in).
template <typename T>
NAS_HD T conv_fwd_elem(const T* x, const T* wt, const Geom& g, long i, int relu_in) {
  int ox = (int)(i % g.ow);
  long t = i / g.ow;
  int oy = (int)(t % g.oh);
  t /= g.oh;
  int co = (int)(t % g.cout);
  int n = (int)(t / g.cout);
  int cin_g = g.cin / g.groups;
  int cout_g = g.cout / g.groups;
  int ci0 = (co / cout_g) * cin_g;
  T acc = T(0);
  for (int cl = 0; cl < cin_g; ++cl) {
    const T* xp = x + ((long)n * g.cin + ci0 + cl) * g.h * g.w;
    const T* wp = wt + ((long)co * cin_g + cl) * g.k * g.k;
    for (int ky = 0; ky < g.k; ++ky) {
      int iy = oy * g.stride - g.pad + ky * g.dil;
      if (iy < 0 || iy >= g.h) continue;
      for (int kx = 0; kx < g.k; ++kx) {
        int ix = ox * g.stride - g.pad + kx * g.dil;
        if (ix < 0 || ix >= g.w) continue;
        acc += conv_input(xp[(long)iy * g.w + ix], relu_in) * wp[ky * g.k + kx];
      }
    }
  }
  return acc;
}

// dL/dx[n, ci, iy, ix] for the flat input index `i`, gathered from every output that reads it.
template <typename T>
NAS_HD T conv_bwd_input_elem(const T* gy, const T* wt, const Geom& g, long i) {
  int ix = (int)(i % g.w);
  long t = i / g.w;
  int iy = (int)(t % g.h);
  t /= g.h;
  int ci = (int)(t % g.cin);
  int n = (int)(t / g.cin);
  int cin_g = g.cin / g.groups;
  int cout_g = g.cout / g.groups;
  int grp = ci / cin_g;
  int cl = ci - grp * cin_g;
  T acc = T(0);
  for (int col = 0; col < cout_g; ++col) {
    int co = grp * cout_g + col;
    const T* gp = gy + ((long)n * g.cout + co) * g.oh * g.ow;
    const T* wp = wt + ((long)co * cin_g + cl) * g.k * g.k;
    for (int ky = 0; ky < g.k; ++ky) {
      int ny = iy + g.pad - ky * g.dil;  // = oy * stride
      if (ny < 0 || ny % g.stride != 0) continue;
      int oy = ny / g.stride;
      if (oy >= g.oh) continue;
      for (int kx = 0; kx < g.k; ++kx) {
        int nx = ix + g.pad - kx * g.dil;
        if (nx < 0 || nx % g.stride != 0) continue;
        int ox = nx / g.stride;
        if (ox >= g.ow) continue;
        acc += gp[(long)oy * g.ow + ox] * wp[ky * g.k + kx];
      }
    }
  }
  return acc;
}

// ---------------------------------------------------------------------------------------
// Weight gradients as block reductions
//
// A convolution's weight gradient is, per weight element, a sum over the output positions
// (example, row, column: n * oh * ow of them, example-major). The device runs one block of
// NAS_REDUCTION_THREADS threads per weight element and chunk of positions (reduction_chunks):
// thread t sums the chunk's positions t, t + threads, t + 2 threads, ... (neighbouring
// threads read neighbouring cells), the block adds its threads' sums by tree_sum's tree, and
// the chunks' sums are added in chunk order by the launch's last block. The host build
// computes the same partial sums and adds them in the same order. This is the shape of
// PyTorch's depthwise weight-gradient kernel (`conv_depthwise2d_grad_weight_kernel` in
// aten/src/ATen/native/cuda/DepthwiseConv2d.cu: a block per weight element reducing over
// the batch and the plane), where one thread per weight would sum a whole batch alone.
// ---------------------------------------------------------------------------------------

// Threads per block of every block reduction (batch norm, the mixing weights' and the weight
// gradients, sum_squares); launch::REDUCTION_THREADS on the Rust side. A power of two.
#define NAS_REDUCTION_THREADS 256

// About how many terms each thread of a chunked block reduction sums (reduction_chunks).
#define NAS_REDUCTION_TERMS 32

// How a block reduction over `count` terms (a weight gradient's output positions, a batch
// norm's values of one channel) splits: `*chunks` ranges of `*per` consecutive terms (the
// last may be shorter, none is empty), one block each, about NAS_REDUCTION_TERMS per thread,
// at most 65,535 ranges (CUDA's limit on gridDim.y).
NAS_HD void reduction_chunks(long count, long* chunks, long* per) {
  if (count < 1) count = 1;
  long want = (long)NAS_REDUCTION_THREADS * NAS_REDUCTION_TERMS;
  long c = (count + want - 1) / want;
  if (c > 65535) c = 65535;
  long p = (count + c - 1) / c;
  *per = p;
  *chunks = (count + p - 1) / p;
}

// The most partial sums a chunked weight gradient leaves for its launch's last block to add
// (1,024 per thread of its block): for the block-per-element weight gradients (weight_chunks)
// and the pointwise ones (pw_weight_chunks).
#define NAS_MAX_WEIGHT_PARTIALS 262144

// The chunks of a block-per-element weight gradient of `nw` elements over `positions` output
// positions: reduction_chunks', but no more than NAS_MAX_WEIGHT_PARTIALS / nw of them (at least
// one), so that a large weight (a dense 3x3 convolution of 256 channels into 256: 589,824
// elements) is not left with millions of partial sums for one block to add; the chunks are
// then longer. The last chunk may be shorter, none is empty.
NAS_HD void weight_chunks(long positions, long nw, long* chunks, long* per) {
  long c = 1, p = 1;
  reduction_chunks(positions, &c, &p);
  long cap = NAS_MAX_WEIGHT_PARTIALS / (nw > 0 ? nw : 1);
  if (cap < 1) cap = 1;
  if (c > cap) {  // then c > 1, so positions > 1
    p = (positions + cap - 1) / cap;
    c = (positions + p - 1) / p;
  }
  *chunks = c;
  *per = p;
}

// The sum of v[0 .. NAS_REDUCTION_THREADS) in the order of a block's shared-memory tree
// (device.cu's block_sum2): v[t] += v[t + s] for s = threads / 2, ..., 1. Overwrites v.
template <typename T>
NAS_HD T tree_sum(T* v) {
  for (int s = NAS_REDUCTION_THREADS / 2; s > 0; s >>= 1)
    for (int t = 0; t < s; ++t) v[t] += v[t + s];
  return v[0];
}

// Thread `t`'s share of dL/dw[co, cl, ky, kx] (the flat weight index `i`) over the output
// positions p0 + t, p0 + t + step, ... below p1; the forward read max(x, 0) when relu_in.
template <typename T>
NAS_HD T conv_bwd_weight_partial(const T* x, const T* gy, const Geom& g, long i, long p0,
                                 long p1, int t, int step, int relu_in) {
  int cin_g = g.cin / g.groups;
  int cout_g = g.cout / g.groups;
  int kx = (int)(i % g.k);
  long r = i / g.k;
  int ky = (int)(r % g.k);
  r /= g.k;
  int cl = (int)(r % cin_g);
  int co = (int)(r / cin_g);
  int ci = (co / cout_g) * cin_g + cl;
  long plane = (long)g.oh * g.ow;
  T acc = T(0);
  for (long p = p0 + t; p < p1; p += step) {
    int n = (int)(p / plane);
    long q = p - (long)n * plane;
    int oy = (int)(q / g.ow);
    int ox = (int)(q - (long)oy * g.ow);
    int iy = oy * g.stride - g.pad + ky * g.dil;
    int ix = ox * g.stride - g.pad + kx * g.dil;
    if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
    T v = x[(((long)n * g.cin + ci) * g.h + iy) * g.w + ix];
    acc += conv_input(v, relu_in) * gy[((long)n * g.cout + co) * plane + q];
  }
  return acc;
}

// The separable unit's two convolutions in one launch (nas_unit_conv_fwd in device.cu): a
// block computes the depthwise outputs of every channel over a tile of `tile` output
// positions of one example into NAS_UNIT_SHARED_BYTES of shared memory (and into `a`, which
// the backward reads), then the pointwise outputs of that tile from them. The pointwise sum
// runs over the channels in conv_fwd_elem's order, so the result is that of the two
// convolutions launched one after the other: bit for bit in the host and emulated builds
// (tests/emulated.rs), the same additions in the same order on a GPU.
#define NAS_UNIT_SHARED_BYTES 16384

// y[co] of a pointwise convolution at one position from its input channels' values s[ci *
// stride] (conv_fwd_elem's sum for k 1 and one group, in its order) and the weight row
// w[ci] of output channel co.
template <typename T>
NAS_HD T pw_dot(const T* s, int stride, const T* w, int cin) {
  T acc = T(0);
  for (int ci = 0; ci < cin; ++ci) acc += conv_input(s[(long)ci * stride], 0) * w[ci];
  return acc;
}

// The pointwise weight gradient (k 1, one group, no padding: DARTS' SepConv and DilConv
// second convolution, its 1x1 ReLUConvBN) is a matrix product, dL/dw = dL/dy [cout x P] .
// x_s^T [P x cin] over the P output positions (x_s: the input at the strided cells). The
// device computes it in tiles of NAS_PW_TILE x NAS_PW_TILE weight elements, one block of
// NAS_PW_TILE^2 threads per tile and chunk of positions (pw_weight_chunks): the block reads
// NAS_PW_TILE positions of NAS_PW_TILE rows of dL/dy and of x into shared memory at a time,
// and each thread adds its element's products over the chunk's positions in order. So each
// value is read once per tile instead of once per weight element (what the generic block
// reduction above reads), and the host build adds in the same order: position after
// position within a chunk, then the chunks in order.
#define NAS_PW_TILE 16

// Positions per chunk of the pointwise weight gradient, before the cap below.
#define NAS_PW_CHUNK 512

// The chunks of the pointwise weight gradient of `nw` elements over `positions` positions:
// NAS_PW_CHUNK positions each, but at most 262,144 partial sums in all (what the last block
// adds: 1,024 per thread) and 65,535 chunks; the last chunk may be shorter, none is empty.
NAS_HD void pw_weight_chunks(long positions, long nw, long* chunks, long* per) {
  if (positions < 1) positions = 1;
  long c = (positions + NAS_PW_CHUNK - 1) / NAS_PW_CHUNK;
  long cap = NAS_MAX_WEIGHT_PARTIALS / (nw > 0 ? nw : 1);
  if (cap < 1) cap = 1;
  if (c > cap) c = cap;
  if (c > 65535) c = 65535;
  long p = (positions + c - 1) / c;
  *per = p;
  *chunks = (positions + p - 1) / p;
}

// Whether a convolution's weight gradient takes the pointwise path (pw_weight_chunks).
NAS_HD bool is_pointwise(const Geom& g) { return g.k == 1 && g.groups == 1 && g.pad == 0; }

// The offsets, for output position p (example, row, column) of a pointwise geometry, of
// dL/dy[n, co, oy, ox] and of the input cell x[n, ci, oy * stride, ox * stride] it read.
NAS_HD long pw_output_offset(const Geom& g, long p, int co) {
  long plane = (long)g.oh * g.ow;
  long n = p / plane;
  return (n * g.cout + co) * plane + (p - n * plane);
}
NAS_HD long pw_input_offset(const Geom& g, long p, int ci) {
  long plane = (long)g.oh * g.ow;
  long n = p / plane;
  long q = p - n * plane;
  long oy = q / g.ow, ox = q - oy * g.ow;
  return ((n * g.cin + ci) * g.h + oy * g.stride) * g.w + ox * g.stride;
}

// Element `i` of the sum of `splits` rows of `len` partial sums (in row order).
template <typename T>
NAS_HD T sum_splits_elem(const T* part, int splits, long len, long i) {
  T acc = T(0);
  for (int s = 0; s < splits; ++s) acc += part[(long)s * len + i];
  return acc;
}

// ---------------------------------------------------------------------------------------
// FactorizedReduce without its batch norm (quark0/darts operations.py): the concatenation
// over channels of conv_1(relu(x)) and conv_2(relu(x)[:, :, 1:, 1:]), both 1x1 convolutions
// of stride 2 with half of the output channels each. Geometry: the input (n, cin, h, w; h
// and w even, as the reference needs), cout the concatenated channels (even), oh = h / 2,
// ow = w / 2; k, stride, pad, dil and groups are not read. Weights wa, wb: [cout/2, cin].
// ---------------------------------------------------------------------------------------

// z[n, co, oy, ox] for the flat output index `i`: the first half reads input cell
// (2 oy, 2 ox), the second (2 oy + 1, 2 ox + 1).
template <typename T>
NAS_HD T fr_fwd_elem(const T* x, const T* wa, const T* wb, const Geom& g, long i) {
  int ox = (int)(i % g.ow);
  long t = i / g.ow;
  int oy = (int)(t % g.oh);
  t /= g.oh;
  int co = (int)(t % g.cout);
  int n = (int)(t / g.cout);
  int half = g.cout / 2;
  int second = co >= half ? 1 : 0;
  int iy = 2 * oy + second, ix = 2 * ox + second;
  if (iy >= g.h || ix >= g.w) return T(0);
  const T* wp = (second ? wb : wa) + (long)(co - second * half) * g.cin;
  long plane = (long)g.h * g.w;
  const T* xp = x + (long)n * g.cin * plane + (long)iy * g.w + ix;
  T acc = T(0);
  for (int ci = 0; ci < g.cin; ++ci) acc += relu_fwd_elem(xp[ci * plane]) * wp[ci];
  return acc;
}

// dL/drelu(x)[n, ci, iy, ix] for the flat input index `i` (the caller applies the ReLU's
// mask): a cell with both coordinates even feeds the first half's output (iy/2, ix/2), both
// odd the second half's ((iy-1)/2, (ix-1)/2), any other none.
template <typename T>
NAS_HD T fr_bwd_input_elem(const T* gz, const T* wa, const T* wb, const Geom& g, long i) {
  int ix = (int)(i % g.w);
  long t = i / g.w;
  int iy = (int)(t % g.h);
  t /= g.h;
  int ci = (int)(t % g.cin);
  int n = (int)(t / g.cin);
  int second = iy & 1;
  if ((ix & 1) != second) return T(0);
  int oy = iy >> 1, ox = ix >> 1;
  if (oy >= g.oh || ox >= g.ow) return T(0);
  int half = g.cout / 2;
  long oplane = (long)g.oh * g.ow;
  const T* gp = gz + ((long)n * g.cout + second * half) * oplane + (long)oy * g.ow + ox;
  const T* wp = (second ? wb : wa) + ci;
  T acc = T(0);
  for (int c = 0; c < half; ++c) acc += gp[c * oplane] * wp[(long)c * g.cin];
  return acc;
}

// Thread `t`'s share of dL/d[wa, wb] at the flat index `i` of the two weights one after the
// other (wa's cout/2 * cin values, then wb's) against relu(x), over the output positions
// p0 + t, p0 + t + step, ... below p1 (as conv_bwd_weight_partial).
template <typename T>
NAS_HD T fr_bwd_weight_partial(const T* x, const T* gz, const Geom& g, long i, long p0, long p1,
                               int t, int step) {
  int half = g.cout / 2;
  long per_weight = (long)half * g.cin;
  int second = i >= per_weight ? 1 : 0;
  long r = i - second * per_weight;
  int co = (int)(r / g.cin);
  int ci = (int)(r % g.cin);
  long plane = (long)g.oh * g.ow;
  T acc = T(0);
  for (long p = p0 + t; p < p1; p += step) {
    int n = (int)(p / plane);
    long q = p - (long)n * plane;
    int oy = (int)(q / g.ow);
    int ox = (int)(q - (long)oy * g.ow);
    int iy = 2 * oy + second, ix = 2 * ox + second;
    if (iy >= g.h || ix >= g.w) continue;
    T v = x[(((long)n * g.cin + ci) * g.h + iy) * g.w + ix];
    acc += relu_fwd_elem(v) * gz[((long)n * g.cout + second * half + co) * plane + q];
  }
  return acc;
}

// ---------------------------------------------------------------------------------------
// Pooling (per channel: g.cin == g.cout, dilation 1)
// ---------------------------------------------------------------------------------------

// Max over the in-image cells of output `i`'s window; `*arg` receives the flat in-plane
// index (iy * w + ix) of the winner (the first maximum in row-major window order).
template <typename T>
NAS_HD T max_pool_fwd_elem(const T* x, const Geom& g, long i, int* arg) {
  int ox = (int)(i % g.ow);
  long t = i / g.ow;
  int oy = (int)(t % g.oh);
  long plane = t / g.oh;  // n * c + c
  const T* xp = x + plane * g.h * g.w;
  int best = -1;
  T m = T(0);
  for (int ky = 0; ky < g.k; ++ky) {
    int iy = oy * g.stride - g.pad + ky;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.k; ++kx) {
      int ix = ox * g.stride - g.pad + kx;
      if (ix < 0 || ix >= g.w) continue;
      T v = xp[iy * g.w + ix];
      if (best < 0 || v > m || v != v) {  // NaN propagates, as in PyTorch
        m = v;
        best = iy * g.w + ix;
      }
    }
  }
  *arg = best;
  return m;
}

// First and last output index (inclusive range lo..hi) whose window covers input position
// `ip` along one axis; empty when lo > hi.
NAS_HD void covering(int ip, int len_out, int k, int stride, int pad, int* lo, int* hi) {
  // o * stride - pad <= ip <= o * stride - pad + k - 1
  int a = ip + pad - (k - 1);
  int l = a <= 0 ? 0 : (a + stride - 1) / stride;
  int hh = (ip + pad) / stride;
  if (hh > len_out - 1) hh = len_out - 1;
  *lo = l;
  *hi = hh;
}

// dL/dx for the flat input index `i` of a max pool: the sum of the upstream gradients of the
// windows whose winner is this cell.
template <typename T>
NAS_HD T max_pool_bwd_elem(const T* gy, const int* arg, const Geom& g, long i) {
  int ix = (int)(i % g.w);
  long t = i / g.w;
  int iy = (int)(t % g.h);
  long plane = t / g.h;
  int ylo, yhi, xlo, xhi;
  covering(iy, g.oh, g.k, g.stride, g.pad, &ylo, &yhi);
  covering(ix, g.ow, g.k, g.stride, g.pad, &xlo, &xhi);
  const T* gp = gy + plane * g.oh * g.ow;
  const int* ap = arg + plane * g.oh * g.ow;
  int me = iy * g.w + ix;
  T acc = T(0);
  for (int oy = ylo; oy <= yhi; ++oy)
    for (int ox = xlo; ox <= xhi; ++ox)
      if (ap[oy * g.ow + ox] == me) acc += gp[oy * g.ow + ox];
  return acc;
}

// The divisor of output (oy, ox)'s window: with include_pad == 0 the number of its in-image
// cells (count_include_pad=False), else its cells inside the padded image (PyTorch's
// count_include_pad=True: the window clipped at len + pad only; k * k in floor mode).
NAS_HD int avg_pool_count(const Geom& g, int oy, int ox, int include_pad) {
  int y0 = oy * g.stride - g.pad, x0 = ox * g.stride - g.pad;
  int y1 = y0 + g.k, x1 = x0 + g.k;
  if (include_pad) {
    int ye = g.h + g.pad, xe = g.w + g.pad;
    return ((y1 < ye ? y1 : ye) - y0) * ((x1 < xe ? x1 : xe) - x0);
  }
  if (y0 < 0) y0 = 0;
  if (x0 < 0) x0 = 0;
  if (y1 > g.h) y1 = g.h;
  if (x1 > g.w) x1 = g.w;
  return (y1 - y0) * (x1 - x0);
}

// Output `i` of an average pool: the sum of its window's in-image cells over the divisor
// of avg_pool_count.
template <typename T>
NAS_HD T avg_pool_fwd_elem(const T* x, const Geom& g, long i, int include_pad) {
  int ox = (int)(i % g.ow);
  long t = i / g.ow;
  int oy = (int)(t % g.oh);
  long plane = t / g.oh;
  const T* xp = x + plane * g.h * g.w;
  T acc = T(0);
  for (int ky = 0; ky < g.k; ++ky) {
    int iy = oy * g.stride - g.pad + ky;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.k; ++kx) {
      int ix = ox * g.stride - g.pad + kx;
      if (ix < 0 || ix >= g.w) continue;
      acc += xp[iy * g.w + ix];
    }
  }
  return acc / T(avg_pool_count(g, oy, ox, include_pad));
}

// dL/dx for the flat input index `i` of an average pool.
template <typename T>
NAS_HD T avg_pool_bwd_elem(const T* gy, const Geom& g, long i, int include_pad) {
  int ix = (int)(i % g.w);
  long t = i / g.w;
  int iy = (int)(t % g.h);
  long plane = t / g.h;
  int ylo, yhi, xlo, xhi;
  covering(iy, g.oh, g.k, g.stride, g.pad, &ylo, &yhi);
  covering(ix, g.ow, g.k, g.stride, g.pad, &xlo, &xhi);
  const T* gp = gy + plane * g.oh * g.ow;
  T acc = T(0);
  for (int oy = ylo; oy <= yhi; ++oy)
    for (int ox = xlo; ox <= xhi; ++ox)
      acc += gp[oy * g.ow + ox] / T(avg_pool_count(g, oy, ox, include_pad));
  return acc;
}

// ---------------------------------------------------------------------------------------
// Batch norm (training mode), over x [N, C, HW]
// ---------------------------------------------------------------------------------------

// Channel `c`'s values in a flat order: its value e (0 <= e < n * hw) is example e / hw,
// cell e % hw of x [n, C, hw].
NAS_HD long bn_offset(int c, int C, long hw, long e) {
  return ((e / hw) * C + c) * hw + e % hw;
}

// Partial sums of channel `c` over its values e0, e0 + step, ... below m = n * hw: s1 += sum
// x, s2 += sum x^2 relative to `shift` (a value near the mean, e.g. the first element, for a
// stable variance). One thread of a block takes e0 = its index and step = the block size
// (neighbouring threads read neighbouring cells); the host build takes e0 = 0, step = 1.
template <typename T>
NAS_HD void bn_partial_moments(const T* x, int c, int C, long hw, long m, long e0, long step,
                               T shift, T* s1, T* s2) {
  T a = T(0), b = T(0);
  for (long e = e0; e < m; e += step) {
    T d = x[bn_offset(c, C, hw, e)] - shift;
    a += d;
    b += d * d;
  }
  *s1 += a;
  *s2 += b;
}

// Mean and biased variance of a channel from its shifted sums over m elements.
template <typename T>
NAS_HD void bn_moments(T s1, T s2, T shift, long m, T* mean, T* var) {
  T md = s1 / T(m);
  *mean = shift + md;
  T v = s2 / T(m) - md * md;
  *var = v < T(0) ? T(0) : v;  // rounding below 0 clamped; NaN kept (as on the CPU)
}

// The running statistics after one training forward (PyTorch: the unbiased variance), kept
// in R (the element type on the host build; f64 on the device, as the CPU ops keep them).
template <typename T, typename R>
NAS_HD void bn_update_running(T mean, T var_biased, long m, R momentum, R* run_mean,
                              R* run_var) {
  R unbiased = m > 1 ? R(var_biased) * R(m) / R(m - 1) : R(var_biased);
  *run_mean = (R(1) - momentum) * *run_mean + momentum * R(mean);
  *run_var = (R(1) - momentum) * *run_var + momentum * unbiased;
}

// y for element `i` given its channel's mean and 1/sqrt(var + eps) (gamma 1, beta 0 when
// the norm is not affine).
template <typename T>
NAS_HD T bn_fwd_elem(T x, T mean, T invstd, T gamma, T beta) {
  return (x - mean) * invstd * gamma + beta;
}

// Partial sums of channel `c` for the backward over its values e0, e0 + step, ... below m
// (as bn_partial_moments): sg += sum gy, sgx += sum gy * xhat.
template <typename T>
NAS_HD void bn_partial_grad_sums(const T* x, const T* gy, int c, int C, long hw, long m, long e0,
                                 long step, T mean, T invstd, T* sg, T* sgx) {
  T a = T(0), b = T(0);
  for (long e = e0; e < m; e += step) {
    long o = bn_offset(c, C, hw, e);
    T gv = gy[o];
    a += gv;
    b += gv * (x[o] - mean) * invstd;
  }
  *sg += a;
  *sgx += b;
}

// dL/dx for one element through the batch statistics:
// gx = gamma * invstd / m * (m * gy - sum gy - xhat * sum(gy * xhat)).
// (dL/dgamma = sum(gy * xhat) and dL/dbeta = sum gy are the channel sums themselves.)
template <typename T>
NAS_HD T bn_bwd_elem(T x, T gy, T mean, T invstd, T gamma, T sg, T sgx, long m) {
  T xhat = (x - mean) * invstd;
  return gamma * invstd / T(m) * (T(m) * gy - sg - xhat * sgx);
}

// ---------------------------------------------------------------------------------------
// ReLU and the mixed-op weighted sum
// ---------------------------------------------------------------------------------------

// PyTorch's ReLU backward: the gradient passes where the input is > 0.
template <typename T>
NAS_HD T relu_bwd_elem(T x, T gy) {
  return x > T(0) ? gy : T(0);
}

// y[i] = sum_k w[k] * ys[k][i] over the `kn` option outputs; options whose weight is exactly
// zero are skipped (GDAS / ProxylessNAS hard sampling: their outputs need not exist).
template <typename T>
NAS_HD T mixed_fwd_elem(const T* const* ys, const T* w, int kn, long i) {
  T acc = T(0);
  for (int k = 0; k < kn; ++k)
    if (w[k] != T(0)) acc += w[k] * ys[k][i];
  return acc;
}

// Partial sum over elements i0..i1 of gy[i] * y_k[i]: the gradient of one mixing weight.
template <typename T>
NAS_HD T mixed_weight_grad_partial(const T* gy, const T* yk, long i0, long i1) {
  T acc = T(0);
  for (long i = i0; i < i1; ++i) acc += gy[i] * yk[i];
  return acc;
}

// ---------------------------------------------------------------------------------------
// Gathering many tensors into one f64 buffer (the weights and gradients of an optimizer step
// going to the host in one copy)
// ---------------------------------------------------------------------------------------

// One tensor of a gather or scatter: `len` values at `ptr`, at [offset .. offset + len] of
// the flat f64 buffer (P: `const T*` for a gather's source, `T*` for a scatter's target).
template <typename P>
struct FlatSpan {
  P ptr;
  long len;
  long offset;
};

// Element `i` of source `s`, converted to double, into its place in `out`.
template <typename T>
NAS_HD void gather_elem(const FlatSpan<const T*>& s, long i, double* out) {
  out[s.offset + i] = (double)s.ptr[i];
}

// Element `i` of target `t`, converted from double to T (rounded to nearest).
template <typename T>
NAS_HD void scatter_elem(const double* in, const FlatSpan<T*>& t, long i) {
  t.ptr[i] = (T)in[t.offset + i];
}

// ---------------------------------------------------------------------------------------
// The optimizer step of many tensors at once (a weight update on the device: SGD, Adam and
// AdamW, RMSprop), and the sum of squares of many tensors (the global gradient norm that
// clipping needs)
// ---------------------------------------------------------------------------------------

// One tensor of a step: `len` parameters at `param`, their gradient at `grad` (null: zeros, a
// parameter the loss does not reach, which weight decay and momentum still move, as nas_optim
// does) and the optimizer's f64 state: buffer b of the rule (see each rule) at
// `state + b * stride`, `len` values each (null when the rule keeps none). `step_size` and
// `bc2_sqrt` are Adam's per-tensor bias corrections (they depend on the tensor's own step
// count; nas_optim::adam_bias_corrections), `first` says that SGD's momentum buffer holds
// nothing yet and starts with this step.
template <typename T>
struct StepSpan {
  T* param;
  const T* grad;
  double* state;
  long stride;
  long len;
  double step_size;
  double bc2_sqrt;
  int first;
};

// The gradient value of element `i` of span `s` (0 without one), times the clipping factor.
template <typename T>
NAS_HD double scaled_grad(const StepSpan<T>& s, double grad_scale, long i) {
  return (s.grad ? (double)s.grad[i] : 0.0) * grad_scale;
}

// torch.optim.SGD with dampening 0, as nas_optim::Sgd computes it in double (every gradient
// value multiplied by grad_scale, the clipping factor, first; the weight decay coupled; the
// momentum buffer, state buffer 0 when momentum != 0, starting as the first step's direction).
struct SgdRule {
  double lr;
  double momentum;
  double weight_decay;
  double grad_scale;
  int nesterov;
};

// Element `i` of span `s` stepped by rule `r` (nas_optim::Sgd's arithmetic, operation by
// operation).
template <typename T>
NAS_HD void sgd_elem(const StepSpan<T>& s, const SgdRule& r, long i) {
  double x = (double)s.param[i];
  double d = scaled_grad(s, r.grad_scale, i) + r.weight_decay * x;
  if (r.momentum == 0.0) {
    s.param[i] = (T)(x - r.lr * d);
    return;
  }
  double* buf = s.state;
  double b = s.first ? d : r.momentum * buf[i] + d;
  buf[i] = b;
  double dir = r.nesterov ? d + r.momentum * b : b;
  s.param[i] = (T)(x - r.lr * dir);
}

// torch.optim.Adam (coupled L2 decay) or, with `decoupled`, torch.optim.AdamW, amsgrad off,
// as nas_optim's Adam/AdamW compute it in double. State buffer 0: exp_avg, 1: exp_avg_sq
// (zeros before the first step).
struct AdamRule {
  double lr;
  double beta1;
  double beta2;
  double eps;
  double weight_decay;
  double grad_scale;
  int decoupled;
};

// Element `i` of span `s` stepped by rule `r` (nas_optim's AdamCore::update, operation by
// operation).
template <typename T>
NAS_HD void adam_elem(const StepSpan<T>& s, const AdamRule& r, long i) {
  double x = (double)s.param[i];
  double grad = scaled_grad(s, r.grad_scale, i);
  if (r.decoupled) {
    x *= 1.0 - r.lr * r.weight_decay;
  } else {
    grad += r.weight_decay * x;
  }
  double* exp_avg = s.state;
  double* exp_avg_sq = s.state + s.stride;
  double m = r.beta1 * exp_avg[i] + (1.0 - r.beta1) * grad;
  double v = r.beta2 * exp_avg_sq[i] + (1.0 - r.beta2) * grad * grad;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  s.param[i] = (T)(x - s.step_size * m / (sqrt(v) / s.bc2_sqrt + r.eps));
}

// torch.optim.RMSprop, as nas_optim::RmsProp computes it in double. State buffer 0:
// square_avg; then grad_avg when `centered`; then the momentum buffer when momentum > 0 (all
// zeros before the first step).
struct RmsPropRule {
  double lr;
  double alpha;
  double eps;
  double weight_decay;
  double momentum;
  double grad_scale;
  int centered;
};

// Element `i` of span `s` stepped by rule `r` (nas_optim::RmsProp's update, operation by
// operation; fmax ignores a NaN operand as Rust's f64::max does).
template <typename T>
NAS_HD void rmsprop_elem(const StepSpan<T>& s, const RmsPropRule& r, long i) {
  double x = (double)s.param[i];
  double g = scaled_grad(s, r.grad_scale, i);
  g = g + r.weight_decay * x;
  double* square_avg = s.state;
  double sq = r.alpha * square_avg[i] + (1.0 - r.alpha) * g * g;
  square_avg[i] = sq;
  double avg;
  long next = 1;
  if (r.centered) {
    double* grad_avg = s.state + s.stride;
    double ga = r.alpha * grad_avg[i] + (1.0 - r.alpha) * g;
    grad_avg[i] = ga;
    avg = sqrt(fmax(sq - ga * ga, 0.0)) + r.eps;
    next = 2;
  } else {
    avg = sqrt(sq) + r.eps;
  }
  double dir;
  if (r.momentum > 0.0) {
    double* buf = s.state + next * s.stride;
    double b = r.momentum * buf[i] + g / avg;
    buf[i] = b;
    dir = b;
  } else {
    dir = g / avg;
  }
  s.param[i] = (T)(x - r.lr * dir);
}

// The square of element `i` of span `s`, in double.
template <typename T>
NAS_HD double square_elem(const FlatSpan<const T*>& s, long i) {
  double v = (double)s.ptr[i];
  return v * v;
}

}  // namespace nas
