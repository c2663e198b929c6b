// cuda_fp8.h for the emulated GPU driver: only the type (see cuda_fp16.h; the f8 kernels sit
// behind `__CUDA_ARCH__ >= 800`).
#pragma once
#include "cuda_fp16.h"
struct __nv_fp8_e4m3 {
  unsigned char __x;
};
// The fp8 conversions are not emulated: a kernel that reaches one traps.
enum __nv_fp8_interpretation_t { __NV_E4M3, __NV_E5M2 };
inline __half __nv_cvt_fp8_to_halfraw(unsigned char, __nv_fp8_interpretation_t) { __trap(); }
