// cublas.cpp: the part of cuBLAS (libcublas.so) that candle's CUDA backend calls, for the
// emulated GPU driver (driver.cpp): handles, streams, and the f32/f64 matrix products candle's
// matmul issues, computed on the host in column-major order as cuBLAS defines them (plain loops
// with a double accumulator: the reference, not a fast path). Anything else is refused with
// CUBLAS_STATUS_NOT_SUPPORTED and a message naming it. With NAS_EMULATED_GPU_HOST_ONLY set
// (driver.cpp) the products are not computed (only their sizes checked).
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// cublas_api.h's values used here.
constexpr int kSuccess = 0;
constexpr int kInvalidValue = 7;
constexpr int kNotSupported = 15;
constexpr int kOpN = 0;
constexpr int kDataF32 = 0;  // CUDA_R_32F
constexpr int kDataF64 = 1;  // CUDA_R_64F

int g_handle;

// C[m x n] = alpha op(A) op(B) + beta C for `batch` matrices at the given strides.
template <typename T>
int gemm(int transa, int transb, int m, int n, int k, double alpha, const T* a, int lda,
         long long stride_a, const T* b, int ldb, long long stride_b, double beta, T* c, int ldc,
         long long stride_c, int batch) {
  if (m < 0 || n < 0 || k < 0 || batch < 0) return kInvalidValue;
  static const bool host_only = std::getenv("NAS_EMULATED_GPU_HOST_ONLY") != nullptr;
  if (host_only) return kSuccess;
  for (int p = 0; p < batch; ++p) {
    const T* ap = a + p * stride_a;
    const T* bp = b + p * stride_b;
    T* cp = c + p * stride_c;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int l = 0; l < k; ++l) {
          T av = transa == kOpN ? ap[i + (long long)l * lda] : ap[l + (long long)i * lda];
          T bv = transb == kOpN ? bp[l + (long long)j * ldb] : bp[j + (long long)l * ldb];
          acc += (double)av * (double)bv;
        }
        T& out = cp[i + (long long)j * ldc];
        out = (T)(alpha * acc + (beta == 0 ? 0.0 : beta * (double)out));
      }
  }
  return kSuccess;
}

int refuse(const char* what) {
  std::fprintf(stderr, "emulated GPU driver (cuBLAS): %s is not emulated\n", what);
  return kNotSupported;
}

}  // namespace

extern "C" {

int cublasCreate_v2(void** handle) {
  *handle = &g_handle;
  return kSuccess;
}
int cublasDestroy_v2(void*) { return kSuccess; }
int cublasSetStream_v2(void*, void*) { return kSuccess; }
int cublasSetWorkspace_v2(void*, void*, size_t) { return kSuccess; }
int cublasSetMathMode(void*, int) { return kSuccess; }
int cublasGetMathMode(void*, int* mode) {
  *mode = 0;
  return kSuccess;
}

int cublasSgemm_v2(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* a,
                   int lda, const float* b, int ldb, const float* beta, float* c, int ldc) {
  return gemm<float>(ta, tb, m, n, k, *alpha, a, lda, 0, b, ldb, 0, *beta, c, ldc, 0, 1);
}
int cublasDgemm_v2(void*, int ta, int tb, int m, int n, int k, const double* alpha,
                   const double* a, int lda, const double* b, int ldb, const double* beta,
                   double* c, int ldc) {
  return gemm<double>(ta, tb, m, n, k, *alpha, a, lda, 0, b, ldb, 0, *beta, c, ldc, 0, 1);
}
int cublasSgemmStridedBatched(void*, int ta, int tb, int m, int n, int k, const float* alpha,
                              const float* a, int lda, long long sa, const float* b, int ldb,
                              long long sb, const float* beta, float* c, int ldc, long long sc,
                              int batch) {
  return gemm<float>(ta, tb, m, n, k, *alpha, a, lda, sa, b, ldb, sb, *beta, c, ldc, sc, batch);
}
int cublasDgemmStridedBatched(void*, int ta, int tb, int m, int n, int k, const double* alpha,
                              const double* a, int lda, long long sa, const double* b, int ldb,
                              long long sb, const double* beta, double* c, int ldc, long long sc,
                              int batch) {
  return gemm<double>(ta, tb, m, n, k, *alpha, a, lda, sa, b, ldb, sb, *beta, c, ldc, sc, batch);
}

// The typed products: f32 data with an f32 compute type (alpha and beta as floats), or f64.
int cublasGemmStridedBatchedEx(void*, int ta, int tb, int m, int n, int k, const void* alpha,
                               const void* a, int atype, int lda, long long sa, const void* b,
                               int btype, int ldb, long long sb, const void* beta, void* c,
                               int ctype, int ldc, long long sc, int batch, int, int) {
  if (atype == kDataF32 && btype == kDataF32 && ctype == kDataF32)
    return gemm<float>(ta, tb, m, n, k, *(const float*)alpha, (const float*)a, lda, sa,
                       (const float*)b, ldb, sb, *(const float*)beta, (float*)c, ldc, sc, batch);
  if (atype == kDataF64 && btype == kDataF64 && ctype == kDataF64)
    return gemm<double>(ta, tb, m, n, k, *(const double*)alpha, (const double*)a, lda, sa,
                        (const double*)b, ldb, sb, *(const double*)beta, (double*)c, ldc, sc,
                        batch);
  return refuse("cublasGemmStridedBatchedEx of a type other than f32 or f64");
}
int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a,
                 int atype, int lda, const void* b, int btype, int ldb, const void* beta, void* c,
                 int ctype, int ldc, int compute, int algo) {
  return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, atype, lda, 0, b, btype, ldb, 0,
                                    beta, c, ctype, ldc, 0, 1, compute, algo);
}

}  // extern "C"
