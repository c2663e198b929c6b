// device.cu: the CUDA launch side of the kernel bodies in nas_kernels.cuh. One thread per
// output element (per input element for the gathered backward passes, per weight element for
// the weight gradient); batch norm uses one block per channel with a shared-memory tree
// reduction over the partial sums of its threads.
//
// Compiled to PTX by scripts/build-cuda.sh (nvcc -ptx -arch=sm_XX); the PTX is loaded at run
// time through the driver API (cudarc), so the binary needs libcuda but no toolkit.
// The bodies are the ones the host build tests against PyTorch's goldens on every machine;
// what runs only here is the indexing of threads and blocks below.
#include "nas_kernels.cuh"

using nas::Geom;

#define NAS_GRID_STRIDE(i, total) \
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (long)blockDim.x * gridDim.x)

// Threads per block of the batch-norm reductions (a power of two).
#define NAS_BN_THREADS 256

template <typename T>
__device__ void block_sum2(T* a, T* b) {
  __shared__ T sa[NAS_BN_THREADS];
  __shared__ T sb[NAS_BN_THREADS];
  sa[threadIdx.x] = *a;
  sb[threadIdx.x] = *b;
  __syncthreads();
  for (int s = NAS_BN_THREADS / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      sa[threadIdx.x] += sa[threadIdx.x + s];
      sb[threadIdx.x] += sb[threadIdx.x + s];
    }
    __syncthreads();
  }
  *a = sa[0];
  *b = sb[0];
}

#define NAS_DEVICE_EXPORT(T, S)                                                                 \
  extern "C" __global__ void nas_conv_fwd_##S(const T* x, const T* w, T* y, Geom g) {           \
    NAS_GRID_STRIDE(i, (long)g.n * g.cout * g.oh * g.ow) y[i] = nas::conv_fwd_elem(x, w, g, i);  \
  }                                                                                              \
  extern "C" __global__ void nas_conv_bwd_input_##S(const T* gy, const T* w, T* gx, Geom g) {    \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.h * g.w) gx[i] = nas::conv_bwd_input_elem(gy, w, g, i); \
  }                                                                                              \
  extern "C" __global__ void nas_conv_bwd_weight_##S(const T* x, const T* gy, T* gw, Geom g) {   \
    NAS_GRID_STRIDE(i, (long)g.cout * (g.cin / g.groups) * g.k * g.k)                            \
    gw[i] = nas::conv_bwd_weight_elem(x, gy, g, i, 0, g.n);                                      \
  }                                                                                              \
  /* The weight gradient split over the batch (nas::weight_splits): blockIdx.y = group s */  \
  /* into part[s * nw + i]; nas_sum_splits adds the groups. */                                \
  extern "C" __global__ void nas_conv_bwd_weight_split_##S(const T* x, const T* gy, T* part,    \
                                                           Geom g, int per) {                  \
    long nw = (long)g.cout * (g.cin / g.groups) * g.k * g.k;                                     \
    int s = (int)blockIdx.y;                                                                     \
    NAS_GRID_STRIDE(i, nw) part[(long)s * nw + i] = nas::conv_bwd_weight_split_elem(x, gy, g, i, s, per); \
  }                                                                                              \
  extern "C" __global__ void nas_sum_splits_##S(const T* part, T* out, int splits, long len) {   \
    NAS_GRID_STRIDE(i, len) out[i] = nas::sum_splits_elem(part, splits, len, i);                 \
  }                                                                                              \
  extern "C" __global__ void nas_max_pool_fwd_##S(const T* x, T* y, int* arg, Geom g) {          \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.oh * g.ow) y[i] = nas::max_pool_fwd_elem(x, g, i, &arg[i]); \
  }                                                                                              \
  extern "C" __global__ void nas_max_pool_bwd_##S(const T* gy, const int* arg, T* gx, Geom g) {  \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.h * g.w) gx[i] = nas::max_pool_bwd_elem(gy, arg, g, i); \
  }                                                                                              \
  extern "C" __global__ void nas_avg_pool_fwd_##S(const T* x, T* y, Geom g) {                    \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.oh * g.ow) y[i] = nas::avg_pool_fwd_elem(x, g, i);  \
  }                                                                                              \
  extern "C" __global__ void nas_avg_pool_bwd_##S(const T* gy, T* gx, Geom g) {                  \
    NAS_GRID_STRIDE(i, (long)g.n * g.cin * g.h * g.w) gx[i] = nas::avg_pool_bwd_elem(gy, g, i);  \
  }                                                                                              \
  /* One block per channel (gridDim.x == c, blockDim.x == NAS_BN_THREADS). */                    \
  extern "C" __global__ void nas_bn_fwd_train_##S(const T* x, const T* gamma, const T* beta,     \
                                                  int n, int c, long hw, T eps, T momentum,      \
                                                  T* run_mean, T* run_var, T* y, T* save_mean,   \
                                                  T* save_invstd) {                              \
    int ch = blockIdx.x;                                                                         \
    T shift = x[(long)ch * hw];                                                                  \
    T s1 = T(0), s2 = T(0);                                                                      \
    for (int b = threadIdx.x; b < n; b += blockDim.x)                                            \
      nas::bn_partial_moments(x, ch, c, hw, b, b + 1, shift, &s1, &s2);                          \
    block_sum2(&s1, &s2);                                                                        \
    long m = (long)n * hw;                                                                       \
    T mean, var;                                                                                 \
    nas::bn_moments(s1, s2, shift, m, &mean, &var);                                              \
    T invstd = T(1) / sqrt(var + eps);                                                           \
    if (threadIdx.x == 0) {                                                                      \
      save_mean[ch] = mean;                                                                      \
      save_invstd[ch] = invstd;                                                                  \
      if (run_mean && run_var)                                                                   \
        nas::bn_update_running(mean, var, m, momentum, &run_mean[ch], &run_var[ch]);             \
    }                                                                                            \
    T ga = gamma ? gamma[ch] : T(1);                                                             \
    T be = beta ? beta[ch] : T(0);                                                               \
    for (long e = threadIdx.x; e < m; e += blockDim.x) {                                         \
      long o = ((e / hw) * c + ch) * hw + e % hw;                                                \
      y[o] = nas::bn_fwd_elem(x[o], mean, invstd, ga, be);                                       \
    }                                                                                            \
  }                                                                                              \
  extern "C" __global__ void nas_bn_bwd_train_##S(const T* x, const T* gy, const T* gamma,       \
                                                  int n, int c, long hw, const T* save_mean,     \
                                                  const T* save_invstd, T* gx, T* ggamma,        \
                                                  T* gbeta) {                                    \
    int ch = blockIdx.x;                                                                         \
    T sg = T(0), sgx = T(0);                                                                     \
    for (int b = threadIdx.x; b < n; b += blockDim.x)                                            \
      nas::bn_partial_grad_sums(x, gy, ch, c, hw, b, b + 1, save_mean[ch], save_invstd[ch], &sg, \
                                &sgx);                                                           \
    block_sum2(&sg, &sgx);                                                                       \
    if (threadIdx.x == 0) {                                                                      \
      if (ggamma) ggamma[ch] = sgx;                                                              \
      if (gbeta) gbeta[ch] = sg;                                                                 \
    }                                                                                            \
    T ga = gamma ? gamma[ch] : T(1);                                                             \
    long m = (long)n * hw;                                                                       \
    for (long e = threadIdx.x; e < m; e += blockDim.x) {                                         \
      long o = ((e / hw) * c + ch) * hw + e % hw;                                                \
      gx[o] = nas::bn_bwd_elem(x[o], gy[o], save_mean[ch], save_invstd[ch], ga, sg, sgx, m);     \
    }                                                                                            \
  }                                                                                              \
  extern "C" __global__ void nas_relu_fwd_##S(const T* x, T* y, long len) {                      \
    NAS_GRID_STRIDE(i, len) y[i] = nas::relu_fwd_elem(x[i]);                                     \
  }                                                                                              \
  extern "C" __global__ void nas_relu_bwd_##S(const T* x, const T* gy, T* gx, long len) {        \
    NAS_GRID_STRIDE(i, len) gx[i] = nas::relu_bwd_elem(x[i], gy[i]);                             \
  }                                                                                              \
  extern "C" __global__ void nas_mixed_fwd_##S(const T* const* ys, const T* w, int kn, long len, \
                                               T* y) {                                           \
    NAS_GRID_STRIDE(i, len) y[i] = nas::mixed_fwd_elem(ys, w, kn, i);                            \
  }                                                                                              \
  /* One block per option (gridDim.x == kn, blockDim.x == NAS_BN_THREADS); null ys[k] or */      \
  /* gys[k] mark an option that was not computed or needs no input gradient. */                 \
  extern "C" __global__ void nas_mixed_bwd_##S(const T* gy, const T* const* ys, const T* w,      \
                                               int kn, long len, T* const* gys, T* gw) {         \
    int k = blockIdx.x;                                                                          \
    T acc = T(0), unused = T(0);                                                                 \
    if (ys[k])                                                                                   \
      for (long i = threadIdx.x; i < len; i += blockDim.x)                                       \
        acc += nas::mixed_weight_grad_partial(gy, ys[k], i, i + 1);                              \
    block_sum2(&acc, &unused);                                                                   \
    if (threadIdx.x == 0) gw[k] = acc;                                                           \
    if (gys[k])                                                                                  \
      for (long i = threadIdx.x; i < len; i += blockDim.x) gys[k][i] = w[k] * gy[i];             \
  }

NAS_DEVICE_EXPORT(float, f32)
NAS_DEVICE_EXPORT(double, f64)
