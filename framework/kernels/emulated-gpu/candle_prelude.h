// candle_prelude.h: what candle's CUDA kernels (candle-kernels' .cu files) need beyond
// emulate.h to compile for the host and run under the emulated GPU driver (driver.cpp): the
// CUDA built-ins they call (warp shuffles, atomics, bit casts, fast math) and the
// registration of each kernel by name.
//
// Each candle module is compiled in its own namespace (the script generates the wrapper), so
// that the helpers every module defines do not clash; its `extern "C"` kernels keep their
// names, and are registered under them with NAS_EMU_REGISTER.
#pragma once

#define __CUDACC_VER_MAJOR__ 13
#define __CUDACC_VER_MINOR__ 0

#include "emulate.h"

#include <stdint.h>

#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <utility>

#include "cuda/std/limits"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_fp8.h"

#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)

// CUDA's vector types (vector_types.h), with its alignment.
struct __attribute__((aligned(8))) float2 {
  float x, y;
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(16))) double2 {
  double x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// CUDA's min and max over mixed integer and float types.
template <typename A, typename B>
inline typename std::common_type<A, B>::type min(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  return (C)a < (C)b ? (C)a : (C)b;
}
template <typename A, typename B>
inline typename std::common_type<A, B>::type max(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  return (C)a > (C)b ? (C)a : (C)b;
}

// Bit casts.
template <typename To, typename From>
inline To nas_emu_bits(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit cast between sizes");
  To r;
  std::memcpy(&r, &v, sizeof(To));
  return r;
}
inline unsigned int __float_as_uint(float v) { return nas_emu_bits<unsigned int>(v); }
inline int __float_as_int(float v) { return nas_emu_bits<int>(v); }
inline float __uint_as_float(unsigned int v) { return nas_emu_bits<float>(v); }
inline float __int_as_float(int v) { return nas_emu_bits<float>(v); }
inline long long __double_as_longlong(double v) { return nas_emu_bits<long long>(v); }
inline double __longlong_as_double(long long v) { return nas_emu_bits<double>(v); }

// Fast-math intrinsics (the accurate functions on the host).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752440); }
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// Atomics (sequentially consistent on the host). The value's type follows the pointer's, as
// CUDA's overloads convert the value.
template <typename T>
struct nas_emu_same {
  typedef T type;
};
template <typename T>
inline T atomicCAS(T* p, typename nas_emu_same<T>::type compare, typename nas_emu_same<T>::type value) {
  __atomic_compare_exchange_n(p, &compare, value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}
template <typename T>
inline T atomicAdd(T* p, typename nas_emu_same<T>::type v) {
  T old;
  __atomic_load(p, &old, __ATOMIC_SEQ_CST);
  T sum = old + v;
  while (!__atomic_compare_exchange(p, &old, &sum, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
    sum = old + v;
  return old;
}
template <typename T>
inline T atomicMin(T* p, typename nas_emu_same<T>::type v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v < old &&
         !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
template <typename T>
inline T atomicMax(T* p, typename nas_emu_same<T>::type v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v > old &&
         !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}

// The warp-level built-ins: every thread of the warp must call them together (the warp
// barrier of the emulator waits for its 32 threads, and reports divergence otherwise).
inline unsigned long nas_emu_linear_thread() {
  return threadIdx.x + (unsigned long)blockDim.x * (threadIdx.y + (unsigned long)blockDim.y * threadIdx.z);
}
// `xor_mode`: a butterfly (`__shfl_xor_sync`), whose source may lie in an earlier group of
// `width` lanes but not a later one; else (`__shfl_down_sync`) the source must lie in the
// lane's own group. A source out of range gives the lane its own value, as in CUDA.
template <typename T>
inline T nas_emu_shuffle(T v, unsigned long source_lane_of(unsigned long lane, unsigned arg),
                         unsigned arg, int width, bool xor_mode) {
  static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) __trap();
  unsigned long t = nas_emu_linear_thread();
  unsigned long lane = t % 32;
  unsigned long threads = (unsigned long)blockDim.x * blockDim.y * blockDim.z;
  unsigned char(*slots)[8] = nas_emu::shuffle_slots();
  std::memcpy(slots[t], &v, sizeof(T));
  nas_emu::sync_warp();
  unsigned long segment = lane / width * width;
  unsigned long src = source_lane_of(lane, arg);
  T r = v;
  if ((xor_mode || src >= segment) && src < segment + width && t - lane + src < threads)
    std::memcpy(&r, slots[t - lane + src], sizeof(T));
  nas_emu::sync_warp();
  return r;
}
inline unsigned long nas_emu_xor_lane(unsigned long lane, unsigned mask) { return lane ^ mask; }
inline unsigned long nas_emu_down_lane(unsigned long lane, unsigned delta) { return lane + delta; }
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  return nas_emu_shuffle(v, nas_emu_xor_lane, (unsigned)lane_mask & 31u, width, true);
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  return nas_emu_shuffle(v, nas_emu_down_lane, delta, width, false);
}
inline void __syncwarp(unsigned = 0xffffffffu) { nas_emu::sync_warp(); }

namespace nas_emu {

// Runs `body` as every thread of every block of (grid, block) (emulated.cpp): 0 when done,
// else the emulator's error code.
int run_grid(dim3 grid, dim3 block, const std::function<void()>& body);

// A kernel of the emulated driver: runs over (grid, block) with its arguments read from
// `args` (cuLaunchKernel's `kernelParams`).
typedef int (*GridLaunch)(dim3 grid, dim3 block, void** args);

// Makes kernel `name` launchable through the emulated driver (driver.cpp).
bool register_kernel(const char* name, GridLaunch launch);

// The launcher of kernel K.
template <auto K>
int launch_registered(dim3 grid, dim3 block, void** args) {
  return run_grid(grid, block, [=] { call_with(K, args, parameters_of(K)); });
}

}  // namespace nas_emu

#define NAS_EMU_REGISTER(ns, name)                  \
  static const bool nas_emu_registered_##name =     \
      nas_emu::register_kernel(#name, &nas_emu::launch_registered<&ns::name>);
