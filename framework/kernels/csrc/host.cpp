// host.cpp: the kernel bodies of nas_kernels.cuh looped over on the host, behind a C ABI.
// Built by build.rs with the `cc` crate; the Rust side (src/host.rs) checks every length
// before calling in. One function per operation and dtype (suffix _f32 / _f64).
#include "nas_kernels.cuh"

#include <cmath>
#include <vector>

using nas::Geom;

namespace {

template <typename T>
void conv_fwd(const T* x, const T* w, T* y, const Geom* g, int relu_in) {
  long total = (long)g->n * g->cout * g->oh * g->ow;
  for (long i = 0; i < total; ++i) y[i] = nas::conv_fwd_elem(x, w, *g, i, relu_in);
}

// With relu_x (the input of a fused input ReLU), the gradient is masked where relu_x <= 0.
template <typename T>
void conv_bwd_input(const T* gy, const T* w, T* gx, const Geom* g, const T* relu_x) {
  long total = (long)g->n * g->cin * g->h * g->w;
  for (long i = 0; i < total; ++i) {
    T v = nas::conv_bwd_input_elem(gy, w, *g, i);
    gx[i] = relu_x ? nas::relu_bwd_elem(relu_x[i], v) : v;
  }
}

// A weight gradient of `nw` elements over `positions` output positions as the device
// computes it (nas_kernels.cuh, "Weight gradients as block reductions"): per element and
// chunk of nas::weight_chunks, the strided partial sums of the block's threads added by
// nas::tree_sum, then the chunks' sums in chunk order. `partial(i, p0, p1, t, step)` is
// thread t's share of element i over the chunk p0 .. p1.
template <typename T, typename Partial>
void block_weight_grad(long nw, long positions, T* gw, Partial partial) {
  long chunks = 1, per = 1;
  nas::weight_chunks(positions, nw, &chunks, &per);
  std::vector<T> part(chunks == 1 ? 0 : (size_t)chunks * nw);
  T v[NAS_REDUCTION_THREADS];
  for (long s = 0; s < chunks; ++s) {
    long p0 = s * per;
    long p1 = p0 + per < positions ? p0 + per : positions;
    for (long i = 0; i < nw; ++i) {
      for (int t = 0; t < NAS_REDUCTION_THREADS; ++t)
        v[t] = partial(i, p0, p1, t, NAS_REDUCTION_THREADS);
      T sum = nas::tree_sum(v);
      if (chunks == 1)
        gw[i] = sum;  // the device's single chunk writes its block's sum directly
      else
        part[(size_t)s * nw + i] = sum;
    }
  }
  if (chunks > 1)
    for (long i = 0; i < nw; ++i) gw[i] = nas::sum_splits_elem(part.data(), (int)chunks, nw, i);
}

// The number of output positions (example, row, column) of a geometry.
inline long positions_of(const Geom* g) { return (long)g->n * g->oh * g->ow; }

// The pointwise weight gradient as the device's tiles compute it (nas_kernels.cuh): per
// chunk of nas::pw_weight_chunks, each element's products added position after position,
// then the chunks' sums in chunk order.
template <typename T>
void pw_bwd_weight(const T* x, const T* gy, T* gw, const Geom* g, int relu_in) {
  long nw = (long)g->cout * g->cin;
  long positions = positions_of(g), chunks = 1, per = 1;
  nas::pw_weight_chunks(positions, nw, &chunks, &per);
  std::vector<T> part((size_t)chunks * nw);
  for (long s = 0; s < chunks; ++s) {
    long p0 = s * per;
    long p1 = p0 + per < positions ? p0 + per : positions;
    for (int co = 0; co < g->cout; ++co)
      for (int ci = 0; ci < g->cin; ++ci) {
        T acc = T(0);
        for (long p = p0; p < p1; ++p)
          acc += gy[nas::pw_output_offset(*g, p, co)] *
                 nas::conv_input(x[nas::pw_input_offset(*g, p, ci)], relu_in);
        part[(size_t)s * nw + (long)co * g->cin + ci] = acc;
      }
  }
  if (chunks == 1)
    for (long i = 0; i < nw; ++i) gw[i] = part[i];  // the device's single chunk writes directly
  else
    for (long i = 0; i < nw; ++i) gw[i] = nas::sum_splits_elem(part.data(), (int)chunks, nw, i);
}

template <typename T>
void conv_bwd_weight(const T* x, const T* gy, T* gw, const Geom* g, int relu_in) {
  if (nas::is_pointwise(*g)) return pw_bwd_weight(x, gy, gw, g, relu_in);
  long nw = (long)g->cout * (g->cin / g->groups) * g->k * g->k;
  block_weight_grad(nw, positions_of(g), gw, [&](long i, long p0, long p1, int t, int step) {
    return nas::conv_bwd_weight_partial(x, gy, *g, i, p0, p1, t, step, relu_in);
  });
}

// FactorizedReduce without its batch norm (nas::fr_fwd_elem).
template <typename T>
void fr_fwd(const T* x, const T* wa, const T* wb, T* z, const Geom* g) {
  long total = (long)g->n * g->cout * g->oh * g->ow;
  for (long i = 0; i < total; ++i) z[i] = nas::fr_fwd_elem(x, wa, wb, *g, i);
}

// Its backward: dL/dx through the ReLU, and dL/d[wa, wb] as the device computes it
// (block_weight_grad).
template <typename T>
void fr_bwd(const T* x, const T* wa, const T* wb, const T* gz, T* gx, T* gw, const Geom* g) {
  long total = (long)g->n * g->cin * g->h * g->w;
  for (long i = 0; i < total; ++i)
    gx[i] = nas::relu_bwd_elem(x[i], nas::fr_bwd_input_elem(gz, wa, wb, *g, i));
  long nw = (long)g->cout * g->cin;
  block_weight_grad(nw, positions_of(g), gw, [&](long i, long p0, long p1, int t, int step) {
    return nas::fr_bwd_weight_partial(x, gz, *g, i, p0, p1, t, step);
  });
}

template <typename T>
void max_pool_fwd(const T* x, T* y, int* arg, const Geom* g) {
  long total = (long)g->n * g->cin * g->oh * g->ow;
  for (long i = 0; i < total; ++i) y[i] = nas::max_pool_fwd_elem(x, *g, i, &arg[i]);
}

template <typename T>
void max_pool_bwd(const T* gy, const int* arg, T* gx, const Geom* g) {
  long total = (long)g->n * g->cin * g->h * g->w;
  for (long i = 0; i < total; ++i) gx[i] = nas::max_pool_bwd_elem(gy, arg, *g, i);
}

template <typename T>
void avg_pool_fwd(const T* x, T* y, const Geom* g, int include_pad) {
  long total = (long)g->n * g->cin * g->oh * g->ow;
  for (long i = 0; i < total; ++i) y[i] = nas::avg_pool_fwd_elem(x, *g, i, include_pad);
}

template <typename T>
void avg_pool_bwd(const T* gy, T* gx, const Geom* g, int include_pad) {
  long total = (long)g->n * g->cin * g->h * g->w;
  for (long i = 0; i < total; ++i) gx[i] = nas::avg_pool_bwd_elem(gy, *g, i, include_pad);
}

// Training-mode batch norm: y, the saved mean and 1/sqrt(var + eps) per channel, and the
// running statistics updated in place. gamma/beta may be null (affine=False).
template <typename T>
void bn_fwd_train(const T* x, const T* gamma, const T* beta, int n, int c, long hw, T eps,
                  T momentum, T* run_mean, T* run_var, T* y, T* save_mean, T* save_invstd) {
  long m = (long)n * hw;
  for (int ch = 0; ch < c; ++ch) {
    T shift = x[(long)ch * hw];
    T s1 = T(0), s2 = T(0);
    nas::bn_partial_moments(x, ch, c, hw, m, 0, 1, shift, &s1, &s2);
    T mean, var;
    nas::bn_moments(s1, s2, shift, m, &mean, &var);
    T invstd = T(1) / std::sqrt(var + eps);
    save_mean[ch] = mean;
    save_invstd[ch] = invstd;
    if (run_mean && run_var)
      nas::bn_update_running(mean, var, m, momentum, &run_mean[ch], &run_var[ch]);
    T ga = gamma ? gamma[ch] : T(1);
    T be = beta ? beta[ch] : T(0);
    for (int b = 0; b < n; ++b) {
      long o = ((long)b * c + ch) * hw;
      for (long j = 0; j < hw; ++j) y[o + j] = nas::bn_fwd_elem(x[o + j], mean, invstd, ga, be);
    }
  }
}

// Its backward: gx, and when gamma is given dL/dgamma and dL/dbeta (may be null otherwise).
template <typename T>
void bn_bwd_train(const T* x, const T* gy, const T* gamma, int n, int c, long hw,
                  const T* save_mean, const T* save_invstd, T* gx, T* ggamma, T* gbeta) {
  long m = (long)n * hw;
  for (int ch = 0; ch < c; ++ch) {
    T sg = T(0), sgx = T(0);
    nas::bn_partial_grad_sums(x, gy, ch, c, hw, m, 0, 1, save_mean[ch], save_invstd[ch], &sg, &sgx);
    if (ggamma) ggamma[ch] = sgx;
    if (gbeta) gbeta[ch] = sg;
    T ga = gamma ? gamma[ch] : T(1);
    for (int b = 0; b < n; ++b) {
      long o = ((long)b * c + ch) * hw;
      for (long j = 0; j < hw; ++j)
        gx[o + j] = nas::bn_bwd_elem(x[o + j], gy[o + j], save_mean[ch], save_invstd[ch], ga, sg,
                                     sgx, m);
    }
  }
}

template <typename T>
void relu_fwd(const T* x, T* y, long len) {
  for (long i = 0; i < len; ++i) y[i] = nas::relu_fwd_elem(x[i]);
}

template <typename T>
void relu_bwd(const T* x, const T* gy, T* gx, long len) {
  for (long i = 0; i < len; ++i) gx[i] = nas::relu_bwd_elem(x[i], gy[i]);
}

template <typename T>
void mixed_fwd(const T* const* ys, const T* w, int kn, long len, T* y) {
  for (long i = 0; i < len; ++i) y[i] = nas::mixed_fwd_elem(ys, w, kn, i);
}

// dL/dy_k = w_k * gy (for every k whose gys[k] is not null) and dL/dw_k = sum gy * y_k
// (for every k whose ys[k] is not null; 0 otherwise).
template <typename T>
void mixed_bwd(const T* gy, const T* const* ys, const T* w, int kn, long len, T* const* gys,
               T* gw) {
  for (int k = 0; k < kn; ++k) {
    gw[k] = ys[k] ? nas::mixed_weight_grad_partial(gy, ys[k], 0, len) : T(0);
    if (gys[k])
      for (long i = 0; i < len; ++i) gys[k][i] = w[k] * gy[i];
  }
}

template <typename T>
void gather_f64(const T* const* srcs, const long* lens, int count, double* out) {
  long offset = 0;
  for (int t = 0; t < count; ++t) {
    nas::FlatSpan<const T*> s{srcs[t], lens[t], offset};
    for (long i = 0; i < s.len; ++i) nas::gather_elem(s, i, out);
    offset += lens[t];
  }
}

template <typename T>
void scatter_f64(const double* in, T* const* dsts, const long* lens, int count) {
  long offset = 0;
  for (int t = 0; t < count; ++t) {
    nas::FlatSpan<T*> s{dsts[t], lens[t], offset};
    for (long i = 0; i < s.len; ++i) nas::scatter_elem(in, s, i);
    offset += lens[t];
  }
}

// The optimizer step of `count` spans by rule `r`, element by element through `elem`.
template <typename T, typename R>
void step_all(const nas::StepSpan<T>* spans, int count, const R& r,
              void (*elem)(const nas::StepSpan<T>&, const R&, long)) {
  for (int t = 0; t < count; ++t)
    for (long i = 0; i < spans[t].len; ++i) elem(spans[t], r, i);
}

}  // namespace

#define NAS_HOST_STEP(NAME, RULE, ELEM)                                                        \
  extern "C" void nas_##NAME##_step_f32(const nas::StepSpan<float>* spans, int count,          \
                                        const nas::RULE* rule) {                               \
    step_all<float, nas::RULE>(spans, count, *rule, &nas::ELEM<float>);                       \
  }                                                                                            \
  extern "C" void nas_##NAME##_step_f64(const nas::StepSpan<double>* spans, int count,         \
                                        const nas::RULE* rule) {                               \
    step_all<double, nas::RULE>(spans, count, *rule, &nas::ELEM<double>);                      \
  }
NAS_HOST_STEP(sgd, SgdRule, sgd_elem)
NAS_HOST_STEP(adam, AdamRule, adam_elem)
NAS_HOST_STEP(rmsprop, RmsPropRule, rmsprop_elem)

extern "C" void nas_scatter_f64_to_f32(const double* in, float* const* dsts, const long* lens,
                                       int count) {
  scatter_f64(in, dsts, lens, count);
}
extern "C" void nas_scatter_f64_to_f64(const double* in, double* const* dsts, const long* lens,
                                       int count) {
  scatter_f64(in, dsts, lens, count);
}

extern "C" void nas_gather_f64_from_f32(const float* const* srcs, const long* lens, int count,
                                        double* out) {
  gather_f64(srcs, lens, count, out);
}
extern "C" void nas_gather_f64_from_f64(const double* const* srcs, const long* lens, int count,
                                        double* out) {
  gather_f64(srcs, lens, count, out);
}

#define NAS_EXPORT(T, S)                                                                        \
  extern "C" void nas_conv_fwd_##S(const T* x, const T* w, T* y, const Geom* g, int relu_in) {   \
    conv_fwd(x, w, y, g, relu_in);                                                               \
  }                                                                                              \
  extern "C" void nas_conv_bwd_input_##S(const T* gy, const T* w, T* gx, const Geom* g,          \
                                         const T* relu_x) {                                      \
    conv_bwd_input(gy, w, gx, g, relu_x);                                                        \
  }                                                                                              \
  extern "C" void nas_conv_bwd_weight_##S(const T* x, const T* gy, T* gw, const Geom* g,         \
                                          int relu_in) {                                         \
    conv_bwd_weight(x, gy, gw, g, relu_in);                                                      \
  }                                                                                              \
  extern "C" void nas_fr_fwd_##S(const T* x, const T* wa, const T* wb, T* z, const Geom* g) {    \
    fr_fwd(x, wa, wb, z, g);                                                                     \
  }                                                                                              \
  extern "C" void nas_fr_bwd_##S(const T* x, const T* wa, const T* wb, const T* gz, T* gx, T* gw, \
                                 const Geom* g) {                                                \
    fr_bwd(x, wa, wb, gz, gx, gw, g);                                                            \
  }                                                                                              \
  extern "C" void nas_max_pool_fwd_##S(const T* x, T* y, int* arg, const Geom* g) {              \
    max_pool_fwd(x, y, arg, g);                                                                  \
  }                                                                                              \
  extern "C" void nas_max_pool_bwd_##S(const T* gy, const int* arg, T* gx, const Geom* g) {      \
    max_pool_bwd(gy, arg, gx, g);                                                                \
  }                                                                                              \
  extern "C" void nas_avg_pool_fwd_##S(const T* x, T* y, const Geom* g, int include_pad) {       \
    avg_pool_fwd(x, y, g, include_pad);                                                          \
  }                                                                                              \
  extern "C" void nas_avg_pool_bwd_##S(const T* gy, T* gx, const Geom* g, int include_pad) {     \
    avg_pool_bwd(gy, gx, g, include_pad);                                                        \
  }                                                                                              \
  extern "C" void nas_bn_fwd_train_##S(const T* x, const T* gamma, const T* beta, int n, int c,  \
                                       long hw, T eps, T momentum, T* run_mean, T* run_var,       \
                                       T* y, T* save_mean, T* save_invstd) {                      \
    bn_fwd_train(x, gamma, beta, n, c, hw, eps, momentum, run_mean, run_var, y, save_mean,       \
                 save_invstd);                                                                   \
  }                                                                                              \
  extern "C" void nas_bn_bwd_train_##S(const T* x, const T* gy, const T* gamma, int n, int c,    \
                                       long hw, const T* save_mean, const T* save_invstd, T* gx,  \
                                       T* ggamma, T* gbeta) {                                     \
    bn_bwd_train(x, gy, gamma, n, c, hw, save_mean, save_invstd, gx, ggamma, gbeta);             \
  }                                                                                              \
  extern "C" void nas_relu_fwd_##S(const T* x, T* y, long len) { relu_fwd(x, y, len); }          \
  extern "C" void nas_relu_bwd_##S(const T* x, const T* gy, T* gx, long len) {                   \
    relu_bwd(x, gy, gx, len);                                                                    \
  }                                                                                              \
  extern "C" void nas_mixed_fwd_##S(const T* const* ys, const T* w, int kn, long len, T* y) {    \
    mixed_fwd(ys, w, kn, len, y);                                                                \
  }                                                                                              \
  extern "C" void nas_mixed_bwd_##S(const T* gy, const T* const* ys, const T* w, int kn,         \
                                    long len, T* const* gys, T* gw) {                            \
    mixed_bwd(gy, ys, w, kn, len, gys, gw);                                                      \
  }

NAS_EXPORT(float, f32)
NAS_EXPORT(double, f64)

// NAS_UNIT_SHARED_BYTES, for the Rust side's launch::UNIT_SHARED_BYTES to be checked against.
extern "C" long nas_unit_shared_bytes() { return NAS_UNIT_SHARED_BYTES; }

extern "C" void nas_weight_chunks(long positions, long nw, long* chunks, long* per) {
  nas::weight_chunks(positions, nw, chunks, per);
}

extern "C" void nas_reduction_chunks(long count, long* chunks, long* per) {
  nas::reduction_chunks(count, chunks, per);
}

extern "C" void nas_pw_weight_chunks(long positions, long nw, long* chunks, long* per) {
  nas::pw_weight_chunks(positions, nw, chunks, per);
}
