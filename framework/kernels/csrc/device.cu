// device.cu: the CUDA launch side of the kernel bodies in nas_kernels.cuh. One thread per
// output element (per input element for the gathered backward passes); the reductions are
// blocks that add their threads' partial sums by a shared-memory tree: batch norm one block
// per channel (or per chunk and channel, then one thread per value), the weight gradients one
// block per weight element and chunk of positions (the pointwise ones per 16 x 16 tile and
// chunk), the chunks added by the launch's last block.
//
// Compiled to PTX by scripts/build-cuda.sh (nvcc -ptx -arch=sm_XX); the PTX is loaded at run
// time through the driver API (cudarc), so the binary needs libcuda but no toolkit.
// The bodies are the ones the host build tests against PyTorch's goldens on every machine;
// what runs only here is the indexing of threads and blocks below.
#include "nas_kernels.cuh"

using nas::Geom;

// The linkage of a kernel: an exported entry point of the PTX; emulate.h makes them private
// to the emulation's translation unit instead (its host build shares no symbol with host.cpp).
#ifndef NAS_KERNEL
#define NAS_KERNEL extern "C" __global__
#endif

#define NAS_GRID_STRIDE(i, total)                                                                  \
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (long)blockDim.x * gridDim.x)

// The most options a weighted sum launches with (more go through candle's element-wise ops);
// nas_ops' device.rs has the same number (MAX_OPTIONS).
#define NAS_MAX_OPTIONS 32

// The options' outputs (or their gradients) as a kernel argument passed by value.
template <typename T>
struct Operands {
  const T* p[NAS_MAX_OPTIONS];
};
template <typename T>
struct Outputs {
  T* p[NAS_MAX_OPTIONS];
};

// Sums *a and *b over the threads of the block, into every thread's *a and *b. The block
// must have exactly NAS_REDUCTION_THREADS threads (launch::REDUCTION_THREADS on the Rust side):
// with fewer, the tree would read shared cells nobody wrote; a wrong launch traps.
template <typename T>
__device__ void block_sum2(T* a, T* b) {
  if (blockDim.x != NAS_REDUCTION_THREADS || blockDim.y != 1 || blockDim.z != 1) __trap();
  __syncthreads();  // every thread has read the result of an earlier call of the block
  __shared__ T sa[NAS_REDUCTION_THREADS];
  __shared__ T sb[NAS_REDUCTION_THREADS];
  sa[threadIdx.x] = *a;
  sb[threadIdx.x] = *b;
  __syncthreads();
  for (int s = NAS_REDUCTION_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      sa[threadIdx.x] += sa[threadIdx.x + s];
      sb[threadIdx.x] += sb[threadIdx.x + s];
    }
    __syncthreads();
  }
  *a = sa[0];
  *b = sb[0];
}

// Sums *a over the threads of the block, into every thread's *a, by block_sum2's tree (the
// order of nas::tree_sum); the same launch shape is required.
template <typename T>
__device__ void block_sum(T* a) {
  if (blockDim.x != NAS_REDUCTION_THREADS || blockDim.y != 1 || blockDim.z != 1) __trap();
  __syncthreads();  // every thread has read the result of an earlier call of the block
  __shared__ T sa[NAS_REDUCTION_THREADS];
  sa[threadIdx.x] = *a;
  __syncthreads();
  for (int s = NAS_REDUCTION_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sa[threadIdx.x] += sa[threadIdx.x + s];
    __syncthreads();
  }
  *a = sa[0];
}

// The launches that end with a sum over every block's partial results (CUDA's
// threadFenceReduction pattern) count their finished blocks in `*done`, a counter that is 0
// before the launch: each block counts itself in when its results are written, and the block
// that counts last does the sum and sets the counter back to 0 for the next such launch. The
// Rust side keeps one counter per host thread and device (the launches of one thread run one
// after another on its stream), so no two launches in flight share one.
//
// Called by every thread of every block of the launch, after the block's results are written:
// true, in every thread of the block, for the one block that finished last (whose threads
// then see every other block's results, read with __ldcg past the SM's cache).
//
// The fences follow cooperative groups' grid barrier: every thread's results are ordered
// before thread 0's by the block barrier, and thread 0's fence (cumulative: it covers what
// the barrier ordered before it) makes them visible to the whole GPU before its atomic counts
// the block in (a release); the last block's thread 0 fences again after reading the count
// (an acquire) before the barrier that lets its threads read the other blocks' results. Each
// thread's own fence first is not needed by that argument; it is kept, one per thread and
// launch, so that the order does not rest on the fence's cumulativity alone.
__device__ bool last_block_done(unsigned int* done) {
  __shared__ bool last;
  __threadfence();  // this thread's results are visible to the whole GPU ...
  __syncthreads();  // ... and ordered before thread 0's count, for every thread of the block
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    unsigned long long total = (unsigned long long)gridDim.x * gridDim.y * gridDim.z;
    if (total > 0xffffffffull) __trap();
    __threadfence();  // release: the block's results before its count
    unsigned int before = atomicAdd(done, 1u);
    last = before + 1ull == total;
    if (last) {
      __threadfence();  // acquire: every other block's results after their counts
      *done = 0;        // every other block has counted itself in already
    }
  }
  __syncthreads();
  return last;
}

// Where a weight-gradient block (grid: weight elements or tiles x chunks of positions) leaves
// its element i's sum `acc` over chunk blockIdx.y (`mine`: whether this thread holds one):
// with one chunk (gridDim.y == 1) in gw[i], else in part[blockIdx.y * nw + i], and the block
// that finishes last adds every element's chunks in chunk order into gw (nas::sum_splits_elem's
// order, the host build's). Called by every thread of the block.
template <typename T>
__device__ void weight_chunk_store(T acc, long i, bool mine, long nw, T* part, T* gw,
                                   unsigned int* done) {
  if (gridDim.y == 1) {
    if (mine) gw[i] = acc;
    return;
  }
  if (mine) part[(long)blockIdx.y * nw + i] = acc;
  if (last_block_done(done))
    for (long e = threadIdx.x; e < nw; e += blockDim.x) {
      T sum = T(0);
      for (unsigned s = 0; s < gridDim.y; ++s) sum += __ldcg(&part[(long)s * nw + e]);
      gw[e] = sum;
    }
}

// The end of a block-per-element weight-gradient block (grid: weight elements x chunks): adds
// the threads' partial sums `acc` by the tree of nas::tree_sum, then weight_chunk_store.
template <typename T>
__device__ void weight_grad_finish(T acc, T* part, T* gw, unsigned int* done) {
  block_sum(&acc);
  weight_chunk_store(acc, (long)blockIdx.x, threadIdx.x == 0, (long)gridDim.x, part, gw, done);
}

// The end of a block of a per-channel reduction over chunks (grid: chunks x channels, the
// batch norm's nas_bn_moments and nas_bn_grad_sums): adds the threads' two partial sums
// (block_sum2), stores them as chunk blockIdx.x of channel blockIdx.y in part (two values per
// chunk, channel-major), and is true, in every thread of the block, for the block that
// finishes last (last_block_done).
template <typename T>
__device__ bool channel_chunk_done(T s1, T s2, T* part, unsigned int* done) {
  block_sum2(&s1, &s2);
  if (threadIdx.x == 0) {
    long at = ((long)blockIdx.y * gridDim.x + blockIdx.x) * 2;
    part[at] = s1;
    part[at + 1] = s2;
  }
  return last_block_done(done);
}

// Channel k's two sums over its chunks, added in chunk order (read by the last block of
// channel_chunk_done, past the SM's cache).
template <typename T>
__device__ void channel_sums(const T* part, int k, T* a, T* b) {
  T s1 = T(0), s2 = T(0);
  for (unsigned j = 0; j < gridDim.x; ++j) {
    s1 += __ldcg(&part[((long)k * gridDim.x + j) * 2]);
    s2 += __ldcg(&part[((long)k * gridDim.x + j) * 2 + 1]);
  }
  *a = s1;
  *b = s2;
}

#define NAS_DEVICE_EXPORT(T, S)                                                                    \
  /* relu_in: the convolution reads max(x, 0) (a fused input ReLU); relu_x: the input of  */       \
  /* that ReLU, whose gradient mask the input gradient then applies (null: none).         */       \
  NAS_KERNEL void nas_conv_fwd_##S(const T* x, const T* w, T* y, Geom g,                           \
                                              int relu_in) {                                       \
    NAS_GRID_STRIDE(i, (long)g.n * g.cout * g.oh * g.ow)                                           \
    y[i] = nas::conv_fwd_elem(x, w, g, i, relu_in);                                                \
  }                                                                                                \
  NAS_KERNEL void nas_conv_bwd_input_##S(const T* gy, const T* w, T* gx, Geom g,                   \
                                                    const T* relu_x) {                             \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.h * g.w) {                                            \
      T v = nas::conv_bwd_input_elem(gy, w, g, i);                                                 \
      gx[i] = relu_x ? nas::relu_bwd_elem(relu_x[i], v) : v;                                       \
    }                                                                                              \
  }                                                                                                \
  /* The weight gradient as block reductions (nas_kernels.cuh): block (i, s) sums weight */        \
  /* element i over chunk s of the output positions; with one chunk it writes gw[i], else */        \
  /* part[s * nw + i], and the block that finishes last adds the chunks in order into gw */        \
  /* (one launch; `done`: see last_block_done, not read with one chunk). */                        \
  NAS_KERNEL void nas_conv_bwd_weight_##S(const T* x, const T* gy, T* part, Geom g, long per,       \
                                          int relu_in, T* gw, unsigned int* done) {                \
    long i = blockIdx.x;                                                                           \
    long positions = (long)g.n * g.oh * g.ow;                                                      \
    long p0 = (long)blockIdx.y * per;                                                              \
    long p1 = p0 + per < positions ? p0 + per : positions;                                         \
    T acc = nas::conv_bwd_weight_partial(x, gy, g, i, p0, p1, threadIdx.x, blockDim.x, relu_in);   \
    weight_grad_finish(acc, part, gw, done);                                                       \
  }                                                                                                \
  /* The pointwise weight gradient in tiles (nas_kernels.cuh): grid (tiles of co x tiles */       \
  /* of ci, chunks of nas::pw_weight_chunks), NAS_PW_TILE^2 threads; thread (r, c) of the   */     \
  /* block owns element (tile co + r, tile ci + c) and adds its products position after    */     \
  /* position; the chunks as nas_conv_bwd_weight's (one chunk: gw written directly).        */     \
  NAS_KERNEL void nas_pw_bwd_weight_##S(const T* x, const T* gy, T* part, Geom g, long per,        \
                                        int relu_in, T* gw, unsigned int* done) {                  \
    if (blockDim.x != NAS_PW_TILE * NAS_PW_TILE || blockDim.y != 1 || blockDim.z != 1) __trap();   \
    __shared__ T sg[NAS_PW_TILE][NAS_PW_TILE + 1];                                                 \
    __shared__ T sx[NAS_PW_TILE][NAS_PW_TILE + 1];                                                 \
    int tiles_ci = (g.cin + NAS_PW_TILE - 1) / NAS_PW_TILE;                                        \
    int co0 = (int)(blockIdx.x / tiles_ci) * NAS_PW_TILE;                                          \
    int ci0 = (int)(blockIdx.x % tiles_ci) * NAS_PW_TILE;                                          \
    int r = threadIdx.x / NAS_PW_TILE, c = threadIdx.x % NAS_PW_TILE;                              \
    long positions = (long)g.n * g.oh * g.ow;                                                      \
    long p0 = (long)blockIdx.y * per;                                                              \
    long p1 = p0 + per < positions ? p0 + per : positions;                                         \
    T acc = T(0);                                                                                  \
    for (long pb = p0; pb < p1; pb += NAS_PW_TILE) {                                               \
      long p = pb + c; /* thread (r, c) loads row r of both tiles at position pb + c */            \
      T gv = T(0), xv = T(0);                                                                      \
      if (p < p1) {                                                                                \
        if (co0 + r < g.cout) gv = gy[nas::pw_output_offset(g, p, co0 + r)];                       \
        if (ci0 + r < g.cin) xv = nas::conv_input(x[nas::pw_input_offset(g, p, ci0 + r)], relu_in); \
      }                                                                                            \
      sg[r][c] = gv;                                                                               \
      sx[r][c] = xv;                                                                               \
      __syncthreads();                                                                             \
      int len = p1 - pb < NAS_PW_TILE ? (int)(p1 - pb) : NAS_PW_TILE;                              \
      for (int j = 0; j < len; ++j) acc += sg[r][j] * sx[c][j];                                    \
      __syncthreads();                                                                             \
    }                                                                                              \
    bool mine = co0 + r < g.cout && ci0 + c < g.cin;                                               \
    long i = (long)(co0 + r) * g.cin + ci0 + c;                                                    \
    weight_chunk_store(acc, i, mine, (long)g.cout * g.cin, part, gw, done);                        \
  }                                                                                                \
  /* The separable unit's convolutions, a = depthwise(relu x) (geometry gd) and b =      */     \
  /* pointwise(a) (gp), in one launch (nas_kernels.cuh, NAS_UNIT_SHARED_BYTES): grid     */     \
  /* (tiles of `tile` positions of oh * ow, examples); block (t, n) computes a over its   */     \
  /* tile for every channel into shared memory and a, then b over the tile from them.    */     \
  NAS_KERNEL void nas_unit_conv_fwd_##S(const T* x, const T* wd, const T* wp, T* a, T* b,       \
                                        Geom gd, Geom gp, int tile) {                          \
    __shared__ T sa[NAS_UNIT_SHARED_BYTES / sizeof(T)];                                        \
    if (blockDim.y != 1 || blockDim.z != 1 || tile < 1 ||                                      \
        (long)tile * gd.cout > (long)(NAS_UNIT_SHARED_BYTES / sizeof(T)) || gp.cin != gd.cout) \
      __trap();                                                                                \
    long positions = (long)gd.oh * gd.ow;                                                      \
    long p0 = (long)blockIdx.x * tile;                                                         \
    long n = blockIdx.y;                                                                       \
    int len = positions - p0 < tile ? (int)(positions - p0) : tile;                            \
    for (int e = threadIdx.x; e < gd.cout * tile; e += blockDim.x) {                           \
      int ci = e / tile, pl = e % tile;                                                        \
      if (pl < len) {                                                                          \
        long i = (n * gd.cout + ci) * positions + p0 + pl;                                     \
        T v = nas::conv_fwd_elem(x, wd, gd, i, 1);                                             \
        a[i] = v;                                                                              \
        sa[e] = v;                                                                             \
      }                                                                                        \
    }                                                                                          \
    __syncthreads();                                                                           \
    for (int e = threadIdx.x; e < gp.cout * tile; e += blockDim.x) {                           \
      int co = e / tile, pl = e % tile;                                                        \
      if (pl < len)                                                                            \
        b[(n * gp.cout + co) * positions + p0 + pl] =                                          \
            nas::pw_dot(sa + pl, tile, wp + (long)co * gp.cin, gp.cin);                        \
    }                                                                                          \
  }                                                                                            \
  /* FactorizedReduce without its batch norm: z = [conv_1(relu x), conv_2(relu x shifted)]. */     \
  NAS_KERNEL void nas_fr_fwd_##S(const T* x, const T* wa, const T* wb, T* z, Geom g) {            \
    NAS_GRID_STRIDE(i, (long)g.n * g.cout * g.oh * g.ow)                                           \
    z[i] = nas::fr_fwd_elem(x, wa, wb, g, i);                                                      \
  }                                                                                                \
  /* Its input gradient through the ReLU (masked where x <= 0). */                                 \
  NAS_KERNEL void nas_fr_bwd_input_##S(const T* gz, const T* wa, const T* wb, const T* x, T* gx,  \
                                       Geom g) {                                                   \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.h * g.w)                                              \
    gx[i] = nas::relu_bwd_elem(x[i], nas::fr_bwd_input_elem(gz, wa, wb, g, i));                    \
  }                                                                                                \
  /* The gradient of [wa, wb] as block reductions, as nas_conv_bwd_weight's. */                     \
  NAS_KERNEL void nas_fr_bwd_weight_##S(const T* x, const T* gz, T* part, Geom g, long per, T* gw, \
                                        unsigned int* done) {                                      \
    long i = blockIdx.x;                                                                           \
    long positions = (long)g.n * g.oh * g.ow;                                                      \
    long p0 = (long)blockIdx.y * per;                                                              \
    long p1 = p0 + per < positions ? p0 + per : positions;                                         \
    T acc = nas::fr_bwd_weight_partial(x, gz, g, i, p0, p1, threadIdx.x, blockDim.x);              \
    weight_grad_finish(acc, part, gw, done);                                                       \
  }                                                                                                \
  /* y or arg may be null: the forward needs only y, the backward only the winners.         */     \
  NAS_KERNEL void nas_max_pool_fwd_##S(const T* x, T* y, int* arg, Geom g) {                       \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.oh * g.ow) {                                          \
      int a;                                                                                       \
      T v = nas::max_pool_fwd_elem(x, g, i, &a);                                                   \
      if (y) y[i] = v;                                                                             \
      if (arg) arg[i] = a;                                                                         \
    }                                                                                              \
  }                                                                                                \
  NAS_KERNEL void nas_max_pool_bwd_##S(const T* gy, const int* arg, T* gx, Geom g) {               \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.h * g.w) gx[i] = nas::max_pool_bwd_elem(gy, arg, g, i); \
  }                                                                                                \
  NAS_KERNEL void nas_avg_pool_fwd_##S(const T* x, T* y, Geom g, int include_pad) {                \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.oh * g.ow)                                            \
    y[i] = nas::avg_pool_fwd_elem(x, g, i, include_pad);                                           \
  }                                                                                                \
  NAS_KERNEL void nas_avg_pool_bwd_##S(const T* gy, T* gx, Geom g, int include_pad) {              \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.h * g.w)                                              \
    gx[i] = nas::avg_pool_bwd_elem(gy, g, i, include_pad);                                         \
  }                                                                                                \
  /* One block per channel (gridDim.x == c, blockDim.x == NAS_REDUCTION_THREADS). The batch mean */       \
  /* and 1/sqrt(var + eps) stay on the device (save_*) for the backward; when run_mean is */       \
  /* not null, the running statistics (f64, as on the CPU) are folded in the same launch */        \
  /* with the running-average factor `factor` (PyTorch's update, the unbiased variance). */        \
  /* Nothing is copied back to the host. */                                                        \
  NAS_KERNEL void nas_bn_fwd_train_##S(const T* x, const T* gamma, const T* beta, int n, int c,    \
                                       long hw, T eps, T* y, T* save_mean, T* save_invstd,         \
                                       double factor, double* run_mean, double* run_var) {         \
    int ch = blockIdx.x;                                                                           \
    T shift = x[(long)ch * hw];                                                                    \
    long m = (long)n * hw;                                                                         \
    T s1 = T(0), s2 = T(0);                                                                        \
    nas::bn_partial_moments(x, ch, c, hw, m, threadIdx.x, blockDim.x, shift, &s1, &s2);            \
    block_sum2(&s1, &s2);                                                                          \
    T mean, var;                                                                                   \
    nas::bn_moments(s1, s2, shift, m, &mean, &var);                                                \
    T invstd = T(1) / sqrt(var + eps);                                                             \
    if (threadIdx.x == 0) {                                                                        \
      save_mean[ch] = mean;                                                                        \
      save_invstd[ch] = invstd;                                                                    \
      if (run_mean) nas::bn_update_running(mean, var, m, factor, &run_mean[ch], &run_var[ch]);     \
    }                                                                                              \
    T ga = gamma ? gamma[ch] : T(1);                                                               \
    T be = beta ? beta[ch] : T(0);                                                                 \
    for (long e = threadIdx.x; e < m; e += blockDim.x) {                                           \
      long o = nas::bn_offset(ch, c, hw, e);                                                       \
      y[o] = nas::bn_fwd_elem(x[o], mean, invstd, ga, be);                                         \
    }                                                                                              \
  }                                                                                                \
  NAS_KERNEL void nas_bn_bwd_train_##S(const T* x, const T* gy, const T* gamma,                    \
                                                  int n, int c, long hw, const T* save_mean,       \
                                                  const T* save_invstd, T* gx, T* ggamma,          \
                                                  T* gbeta) {                                      \
    int ch = blockIdx.x;                                                                           \
    long m = (long)n * hw;                                                                         \
    T sg = T(0), sgx = T(0);                                                                       \
    nas::bn_partial_grad_sums(x, gy, ch, c, hw, m, threadIdx.x, blockDim.x, save_mean[ch],         \
                              save_invstd[ch], &sg, &sgx);                                         \
    block_sum2(&sg, &sgx);                                                                         \
    if (threadIdx.x == 0) {                                                                        \
      if (ggamma) ggamma[ch] = sgx;                                                                \
      if (gbeta) gbeta[ch] = sg;                                                                   \
    }                                                                                              \
    T ga = gamma ? gamma[ch] : T(1);                                                               \
    for (long e = threadIdx.x; e < m; e += blockDim.x) {                                           \
      long o = nas::bn_offset(ch, c, hw, e);                                                       \
      gx[o] = nas::bn_bwd_elem(x[o], gy[o], save_mean[ch], save_invstd[ch], ga, sg, sgx, m);       \
    }                                                                                              \
  }                                                                                                \
  /* Batch norm over several blocks per channel, for channels of many values: grid       */ \
  /* (chunks, c) over nas::reduction_chunks(n * hw). Block (b, ch) adds chunk b of channel */ \
  /* ch's shifted moments into part[(ch * chunks + b) * 2 ..]; the block that finishes     */ \
  /* last adds each channel's chunks in order and writes save_mean / save_invstd, folding   */ \
  /* the running statistics as nas_bn_fwd_train does; nas_bn_apply then normalizes, one     */ \
  /* thread per value (two launches where nas_bn_fwd_train's one block per channel would   */ \
  /* leave most of a GPU idle).                                                            */ \
  NAS_KERNEL void nas_bn_moments_##S(const T* x, int n, int c, long hw, long per, T eps, T* part,  \
                                     T* save_mean, T* save_invstd, double factor,                  \
                                     double* run_mean, double* run_var, unsigned int* done) {      \
    int b = blockIdx.x, ch = blockIdx.y;                                                           \
    long m = (long)n * hw;                                                                         \
    long e0 = (long)b * per;                                                                       \
    long e1 = e0 + per < m ? e0 + per : m;                                                         \
    T s1 = T(0), s2 = T(0);                                                                        \
    nas::bn_partial_moments(x, ch, c, hw, e1, e0 + threadIdx.x, blockDim.x, x[(long)ch * hw], &s1, \
                            &s2);                                                                  \
    if (channel_chunk_done(s1, s2, part, done))                                                    \
      for (int k = threadIdx.x; k < c; k += blockDim.x) {                                          \
        T a, q;                                                                                    \
        channel_sums(part, k, &a, &q);                                                             \
        T mean, var;                                                                               \
        nas::bn_moments(a, q, x[(long)k * hw], m, &mean, &var);                                    \
        save_mean[k] = mean;                                                                       \
        save_invstd[k] = T(1) / sqrt(var + eps);                                                   \
        if (run_mean) nas::bn_update_running(mean, var, m, factor, &run_mean[k], &run_var[k]);     \
      }                                                                                            \
  }                                                                                                \
  /* y = (x - mean) * invstd * gamma + beta over x [n, c, hw]. */                                  \
  NAS_KERNEL void nas_bn_apply_##S(const T* x, const T* gamma, const T* beta, int n, int c,        \
                                   long hw, const T* mean, const T* invstd, T* y) {                \
    NAS_GRID_STRIDE(i, (long)n * c * hw) {                                                         \
      int ch = (int)((i / hw) % c);                                                                \
      T ga = gamma ? gamma[ch] : T(1);                                                             \
      T be = beta ? beta[ch] : T(0);                                                               \
      y[i] = nas::bn_fwd_elem(x[i], mean[ch], invstd[ch], ga, be);                                 \
    }                                                                                              \
  }                                                                                                \
  /* The backward's channel sums over several blocks per channel, as nas_bn_moments: the   */     \
  /* last block writes sums[ch] = sum gy and sums[c + ch] = sum gy * xhat (and ggamma,    */      \
  /* gbeta when not null); nas_bn_bwd_apply then writes dL/dx, one thread per value.       */     \
  NAS_KERNEL void nas_bn_grad_sums_##S(const T* x, const T* gy, int n, int c, long hw, long per,   \
                                       const T* save_mean, const T* save_invstd, T* part,          \
                                       T* sums, T* ggamma, T* gbeta, unsigned int* done) {         \
    int b = blockIdx.x, ch = blockIdx.y;                                                           \
    long m = (long)n * hw;                                                                         \
    long e0 = (long)b * per;                                                                       \
    long e1 = e0 + per < m ? e0 + per : m;                                                         \
    T sg = T(0), sgx = T(0);                                                                       \
    nas::bn_partial_grad_sums(x, gy, ch, c, hw, e1, e0 + threadIdx.x, blockDim.x, save_mean[ch],   \
                              save_invstd[ch], &sg, &sgx);                                         \
    if (channel_chunk_done(sg, sgx, part, done))                                                  \
      for (int k = threadIdx.x; k < c; k += blockDim.x) {                                          \
        T a, q;                                                                                    \
        channel_sums(part, k, &a, &q);                                                             \
        sums[k] = a;                                                                               \
        sums[c + k] = q;                                                                           \
        if (ggamma) ggamma[k] = q;                                                                 \
        if (gbeta) gbeta[k] = a;                                                                   \
      }                                                                                            \
  }                                                                                                \
  NAS_KERNEL void nas_bn_bwd_apply_##S(const T* x, const T* gy, const T* gamma, int n, int c,      \
                                       long hw, const T* save_mean, const T* save_invstd,          \
                                       const T* sums, T* gx) {                                     \
    long m = (long)n * hw;                                                                         \
    NAS_GRID_STRIDE(i, m * c) {                                                                    \
      int ch = (int)((i / hw) % c);                                                                \
      T ga = gamma ? gamma[ch] : T(1);                                                             \
      gx[i] = nas::bn_bwd_elem(x[i], gy[i], save_mean[ch], save_invstd[ch], ga, sums[ch],          \
                               sums[c + ch], m);                                                   \
    }                                                                                              \
  }                                                                                                \
  NAS_KERNEL void nas_relu_fwd_##S(const T* x, T* y, long len) {                                   \
    NAS_GRID_STRIDE(i, len) y[i] = nas::relu_fwd_elem(x[i]);                                       \
  }                                                                                                \
  NAS_KERNEL void nas_relu_bwd_##S(const T* x, const T* gy, T* gx, long len) {                     \
    NAS_GRID_STRIDE(i, len) gx[i] = nas::relu_bwd_elem(x[i], gy[i]);                               \
  }                                                                                                \
  /* The options' outputs travel by value (Operands: no pointer array to upload). */               \
  NAS_KERNEL void nas_mixed_fwd_##S(Operands<T> ys, const T* w, int kn, long len,                  \
                                               T* y) {                                             \
    NAS_GRID_STRIDE(i, len) y[i] = nas::mixed_fwd_elem(ys.p, w, kn, i);                            \
  }                                                                                                \
  /* Grid (chunks, kn): block (b, k) writes dL/dys[k] = w[k] * gy over its share of the */         \
  /* elements (gys.p[k] null: not needed) and, when part is not null, its partial sum of */        \
  /* gy * ys[k] into part[k * chunks + b]; the block that finishes last then adds each */          \
  /* option's partial sums in order into gw[k] (deterministic, one launch; `done`: see */          \
  /* last_block_done; part, gw and done are null together when dL/dw is not wanted). */            \
  NAS_KERNEL void nas_mixed_bwd_##S(const T* gy, Operands<T> ys, const T* w, int kn, long len,     \
                                    Outputs<T> gys, T* part, T* gw, unsigned int* done) {          \
    if ((int)gridDim.y != kn) __trap();                                                            \
    int k = blockIdx.y;                                                                            \
    int chunks = (int)gridDim.x;                                                                   \
    long per = (len + chunks - 1) / chunks;                                                        \
    long i0 = (long)blockIdx.x * per;                                                              \
    long i1 = i0 + per < len ? i0 + per : len;                                                     \
    T* gk = gys.p[k];                                                                              \
    if (gk)                                                                                        \
      for (long i = i0 + threadIdx.x; i < i1; i += blockDim.x) gk[i] = w[k] * gy[i];               \
    if (!part) return; /* the whole launch: no block takes part in the sum */                      \
    T acc = T(0), unused = T(0);                                                                   \
    if (ys.p[k]) /* an absent option (null, weight 0): gradient 0 as on the host */                \
      for (long i = i0 + threadIdx.x; i < i1; i += blockDim.x)                                     \
        acc += nas::mixed_weight_grad_partial(gy, ys.p[k], i, i + 1);                              \
    block_sum2(&acc, &unused);                                                                     \
    if (threadIdx.x == 0) part[(long)k * chunks + blockIdx.x] = acc;                               \
    if (last_block_done(done))                                                                     \
      for (int o = threadIdx.x; o < kn; o += blockDim.x) {                                         \
        T sum = T(0);                                                                              \
        for (int b = 0; b < chunks; ++b) sum += __ldcg(&part[(long)o * chunks + b]);               \
        gw[o] = sum;                                                                               \
      }                                                                                            \
  }

/* Grid (chunks, count): block (b, t) copies its share of source t (grid-stride over b). */
#define NAS_GATHER_EXPORT(T, S)                                                                    \
  NAS_KERNEL void nas_gather_f64_from_##S(const nas::FlatSpan<const T*>* sources,                  \
                                                     double* out) {                                \
    const nas::FlatSpan<const T*> s = sources[blockIdx.y];                                         \
    NAS_GRID_STRIDE(i, s.len) nas::gather_elem(s, i, out);                                         \
  }

/* The reverse: block (b, t) writes its share of target t from the flat f64 buffer. */
#define NAS_SCATTER_EXPORT(T, S)                                                                   \
  NAS_KERNEL void nas_scatter_f64_to_##S(const nas::FlatSpan<T*>* targets,                         \
                                                    const double* in) {                            \
    const nas::FlatSpan<T*> t = targets[blockIdx.y];                                               \
    NAS_GRID_STRIDE(i, t.len) nas::scatter_elem(in, t, i);                                         \
  }

/* The optimizer step of many tensors: block (b, t) steps its share of span t. */
#define NAS_STEP_KERNEL(T, S, NAME, RULE, ELEM)                                                    \
  NAS_KERNEL void nas_##NAME##_step_##S(const nas::StepSpan<T>* spans, nas::RULE rule) {           \
    const nas::StepSpan<T> s = spans[blockIdx.y];                                                  \
    NAS_GRID_STRIDE(i, s.len) nas::ELEM(s, rule, i);                                               \
  }
#define NAS_SGD_EXPORT(T, S)                                                                       \
  NAS_STEP_KERNEL(T, S, sgd, SgdRule, sgd_elem)                                                    \
  NAS_STEP_KERNEL(T, S, adam, AdamRule, adam_elem)                                                 \
  NAS_STEP_KERNEL(T, S, rmsprop, RmsPropRule, rmsprop_elem)                                        \
  /* The sum of squares of many tensors (the squared global gradient norm), in double: block */    \
  /* (b, t) sums its share of span t into part[t * gridDim.x + b]; the last block to finish */     \
  /* adds them in that order into out[0] (deterministic; `done`: see last_block_done). */          \
  NAS_KERNEL void nas_sum_squares_##S(const nas::FlatSpan<const T*>* spans, double* part,          \
                                      double* out, unsigned int* done) {                           \
    const nas::FlatSpan<const T*> s = spans[blockIdx.y];                                           \
    double acc = 0.0, unused = 0.0;                                                                \
    NAS_GRID_STRIDE(i, s.len) acc += nas::square_elem(s, i);                                       \
    block_sum2(&acc, &unused);                                                                     \
    long parts = (long)gridDim.x * gridDim.y;                                                      \
    if (threadIdx.x == 0) part[(long)blockIdx.y * gridDim.x + blockIdx.x] = acc;                   \
    if (last_block_done(done)) {                                                                   \
      /* every thread a fixed strided share of the partial sums, then the block's tree: */         \
      /* the same order of addition on every run (deterministic) */                                \
      double total = 0.0;                                                                          \
      for (long p = threadIdx.x; p < parts; p += blockDim.x) total += __ldcg(&part[p]);            \
      block_sum2(&total, &unused);                                                                 \
      if (threadIdx.x == 0) out[0] = total;                                                        \
    }                                                                                              \
  }

NAS_SGD_EXPORT(float, f32)
NAS_SGD_EXPORT(double, f64)

NAS_SCATTER_EXPORT(float, f32)
NAS_SCATTER_EXPORT(double, f64)
NAS_GATHER_EXPORT(float, f32)
NAS_GATHER_EXPORT(double, f64)

NAS_DEVICE_EXPORT(float, f32)
NAS_DEVICE_EXPORT(double, f64)
