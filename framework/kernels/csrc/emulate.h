// emulate.h: the CUDA built-ins that device.cu uses, for a host C++ compiler, so that the
// device build's kernels (their thread and block indexing, grid-stride loops, shared-memory
// reductions and barriers) run and are tested on a machine without a GPU (csrc/emulated.cpp).
//
// Each emulated launch runs the block's threads as real threads (so __syncthreads is a real
// barrier and races inside a block can show), one block at a time in reverse order of their
// index (so a kernel whose blocks depend on each other's order shows it); `__shared__`
// variables become function-local statics, which one block at a time makes per-block
// memory. What this cannot show: warp-level timing, memory coalescing, the PTX compiler's
// own behaviour, and the launch arguments' marshalling by the Rust side.
#pragma once

#include <math.h>

#include <cstddef>
#include <type_traits>
#include <utility>

// CUDA's dim3 (x, y, z).
struct dim3 {
  unsigned x, y, z;
};

namespace nas_emu {

// The running thread's coordinates in its launch.
struct ThreadCtx {
  dim3 block_idx;
  dim3 thread_idx;
  dim3 block_dim;
  dim3 grid_dim;
};

// Set by the emulated launch for each of its threads.
extern thread_local ThreadCtx ctx;

// What __trap() throws (the launch then fails).
struct Trap {};

// __syncthreads(): waits for every thread of the block (throws when they never all arrive).
void sync_threads();

// Waits for every thread of the running thread's warp (32 threads by linear index; throws
// when they never all arrive): the barrier of the emulated warp-level built-ins.
void sync_warp();

// 1,024 slots of 8 bytes, one per thread of the running block: where the emulated warp
// shuffles exchange their values.
unsigned char (*shuffle_slots())[8];

// Calls kernel `k` with its arguments read from `args` (args[i] points at argument i, as
// for cuLaunchKernel's `kernelParams`): the one unpacking of a launch's arguments, for
// device.cu's launcher (emulated.cpp) and the emulated driver's (candle_prelude.h).
template <typename... A, std::size_t... I>
inline void call_with(void (*k)(A...), void** args, std::index_sequence<I...>) {
  k(*static_cast<typename std::remove_cv<A>::type*>(args[I])...);
}

// `call_with`'s index sequence for kernel `k`'s parameters.
template <typename... A>
constexpr std::index_sequence_for<A...> parameters_of(void (*)(A...)) {
  return {};
}

}  // namespace nas_emu

// The atomics and memory fences device.cu uses (sequentially consistent here).
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <typename T>
inline T __ldcg(const T* p) {
  T v;
  __atomic_load(p, &v, __ATOMIC_SEQ_CST);
  return v;
}

#define blockIdx (nas_emu::ctx.block_idx)
#define threadIdx (nas_emu::ctx.thread_idx)
#define blockDim (nas_emu::ctx.block_dim)
#define gridDim (nas_emu::ctx.grid_dim)
#define __syncthreads() nas_emu::sync_threads()
#define __trap() throw nas_emu::Trap {}
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define NAS_KERNEL static
