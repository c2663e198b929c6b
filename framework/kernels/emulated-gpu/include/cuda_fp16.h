// cuda_fp16.h for the emulated GPU driver: only the type, so that candle's kernels compile for
// the host. Their half-precision instantiations sit behind `__CUDA_ARCH__ >= 530`, which the
// host build leaves out; the emulated GPU has no f16 kernels.
#pragma once
struct __half {
  unsigned short __x;
};
struct __half2 {
  __half x, y;
};
inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
inline unsigned short __half_as_ushort(__half v) { return v.__x; }
// Half-precision arithmetic is not emulated: a kernel that reaches it traps (fails its launch).
inline __half __hmax_nan(__half, __half) { __trap(); }
inline __half __hmin_nan(__half, __half) { __trap(); }
inline float __half2float(__half) { __trap(); }
inline __half __float2half(float) { __trap(); }
