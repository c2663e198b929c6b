// cuda_bf16.h for the emulated GPU driver: only the type (see cuda_fp16.h; the bf16 kernels sit
// behind `__CUDA_ARCH__ >= 800`).
#pragma once
struct __nv_bfloat16 {
  unsigned short __x;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
