// emulated.cpp: the device build (device.cu) compiled for the host with the CUDA built-ins of
// emulate.h, and a launcher that runs its kernels over a grid of blocks of threads the way a
// GPU would (see emulate.h for what that does and does not show). Compiled by build.rs on
// every machine; nas_kernels::emulated (Rust) calls nas_emu_launch.
#include "emulate.h"

#include "device.cu"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <sys/mman.h>
#include <ucontext.h>
#include <utility>
#include <vector>

namespace nas_emu {

thread_local ThreadCtx ctx;

namespace {

// How long a barrier waits for the rest of its block before declaring the launch divergent
// (a __syncthreads that not every thread of the block reaches).
constexpr std::chrono::seconds kBarrierTimeout(30);

// Thrown out of a kernel when its block's barrier broke.
struct Diverged {};

// A reusable barrier over the threads of one block, which gives up after kBarrierTimeout.
class Barrier {
 public:
  explicit Barrier(unsigned long n) : n_(n) {}

  // Waits for every thread; false when the barrier broke (timeout or another thread failed).
  bool wait() {
    std::unique_lock<std::mutex> lock(m_);
    if (broken_) return false;
    unsigned long gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
      return true;
    }
    bool released = cv_.wait_for(lock, kBarrierTimeout, [&] { return gen_ != gen || broken_; });
    if (!released) {
      broken_ = true;
      cv_.notify_all();
    }
    return released && !broken_;
  }

  // Releases every waiting thread with failure (a thread of the block failed).
  void break_all() {
    std::lock_guard<std::mutex> lock(m_);
    broken_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  unsigned long n_;
  unsigned long count_ = 0;
  unsigned long gen_ = 0;
  bool broken_ = false;
};

// The running thread's block barrier and its count of __syncthreads calls.
thread_local Barrier* t_barrier = nullptr;
thread_local unsigned long t_syncs = 0;

// The running thread's warp barrier (the threads of its warp of 32, by linear index): what
// the warp-level built-ins (`__shfl_xor_sync`, emulated by the emulated GPU driver for
// candle's kernels) wait on.
thread_local Barrier* t_warp = nullptr;

// Threads per warp.
constexpr unsigned long kWarpSize = 32;

// One launch at a time: the kernels' __shared__ statics are per process.
std::mutex g_launch;

// Launch results (nas_emu_launch's return values).
constexpr int kOk = 0;
constexpr int kUnknownKernel = -1;
constexpr int kBadLaunch = -2;
constexpr int kDiverged = -3;
constexpr int kFailed = -4;
constexpr int kTrapped = -5;
constexpr int kBadArguments = -6;


// ----- fibers: the threads of a block as coroutines of one OS thread -----
//
// What the emulated GPU driver runs its launches with (nas_emu_use_fibers): the same
// semantics (a block's threads all reach each __syncthreads before any goes on, a warp's
// each warp-level barrier, divergence reported), without an OS thread per CUDA thread: a
// thread runs until it reaches a barrier or ends, then the next. Much faster, and
// deterministic, so races inside a block do not show: the emulated tests of nas-kernels keep
// real threads.

bool g_fibers = false;

// The mode of the launches of the calling thread while nas_emu_launch_in runs one (-1: the
// process default, g_fibers).
thread_local int t_fibers = -1;

// Where a fiber stands.
enum FiberState { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

// A fiber's saved context: on x86-64 its stack pointer, the callee-saved registers on its
// stack (nas_emu_switch below: no system call, unlike swapcontext, whose signal-mask calls
// made it the cost of a whole launch); elsewhere a ucontext.
#if defined(__x86_64__)
#define NAS_EMU_FAST_SWITCH 1
// Saves the callee-saved registers on the running stack, its stack pointer at *save, and
// resumes the context whose stack pointer is `to` (System V AMD64).
extern "C" void nas_emu_switch(void** save, void* to);
asm(R"(
  .text
  .globl nas_emu_switch
  .type nas_emu_switch,@function
nas_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size nas_emu_switch, .-nas_emu_switch
)");
struct SavedContext {
  void* sp;
};
#else
struct SavedContext {
  ucontext_t context;
};
#endif

struct Fiber {
  SavedContext context;
  dim3 thread_idx;
  FiberState state;
  unsigned long syncs;
};

// The running block's fibers and the scheduler's context (one launch at a time).
struct FiberBlock {
  SavedContext scheduler;
  std::vector<Fiber> fibers;
  char* stacks = nullptr;  // kMaxThreads stacks of kFiberStack bytes, each above a guard page

  const std::function<void()>* body = nullptr;
  Fiber* running = nullptr;
  int status = kOk;
};

// Bytes of stack per fiber, and the bytes of the page below each that may not be touched
// (a fiber overflowing its stack faults there instead of writing over the next one's).
constexpr size_t kFiberStack = 64 * 1024;
constexpr size_t kGuard = 64 * 1024;
constexpr unsigned long kMaxThreads = 1024;

FiberBlock g_block;
thread_local Fiber* t_fiber = nullptr;

// Saves the running context in `from` and resumes `to`.
void switch_context(SavedContext* from, SavedContext* to) {
#ifdef NAS_EMU_FAST_SWITCH
  nas_emu_switch(&from->sp, to->sp);
#else
  swapcontext(&from->context, &to->context);
#endif
}

// A fiber's whole life: the kernel's body as its thread, then back to the scheduler for good.
void fiber_main() {
  Fiber* f = g_block.running;
  try {
    (*g_block.body)();
  } catch (const Diverged&) {
    if (g_block.status == kOk) g_block.status = kDiverged;
  } catch (const Trap&) {
    if (g_block.status == kOk) g_block.status = kTrapped;
  } catch (...) {
    if (g_block.status == kOk) g_block.status = kFailed;
  }
  f->state = kDone;
  switch_context(&f->context, &g_block.scheduler);
  std::abort();  // a finished fiber is never resumed
}

// Makes `f` start at fiber_main on its stack `stack` of kFiberStack bytes.
void start_fiber(Fiber& f, char* stack) {
#ifdef NAS_EMU_FAST_SWITCH
  // The top of the stack, 16-byte aligned: an empty slot (fiber_main's return address, so that
  // it starts with the stack aligned as after a call), fiber_main for nas_emu_switch's `ret`,
  // then the six callee-saved registers it pops (zeros).
  uintptr_t top = ((uintptr_t)(stack + kFiberStack)) & ~(uintptr_t)15;
  void** sp = (void**)top;
  *--sp = nullptr;
  *--sp = (void*)&fiber_main;
  for (int r = 0; r < 6; ++r) *--sp = nullptr;
  f.context.sp = sp;
#else
  getcontext(&f.context.context);
  f.context.context.uc_stack.ss_sp = stack;
  f.context.context.uc_stack.ss_size = kFiberStack;
  f.context.context.uc_link = nullptr;
  makecontext(&f.context.context, fiber_main, 0);
#endif
}

// Suspends the running fiber at a barrier of `kind` until the scheduler releases it.
void fiber_wait(FiberState kind) {
  Fiber* f = t_fiber;
  f->state = kind;
  switch_context(&f->context, &g_block.scheduler);
}

// Runs one block (ctx.block_idx set) of `threads` fibers to its end: kOk or an error code.
int run_fiber_block(dim3 block, unsigned long threads) {
  for (unsigned long t = 0; t < threads; ++t) {
    Fiber& f = g_block.fibers[t];
    f.thread_idx = dim3{(unsigned)(t % block.x), (unsigned)(t / block.x % block.y),
                        (unsigned)(t / ((unsigned long)block.x * block.y))};
    f.state = kRunnable;
    f.syncs = 0;
    start_fiber(f, g_block.stacks + t * (kGuard + kFiberStack) + kGuard);
  }
  for (;;) {
    for (unsigned long t = 0; t < threads; ++t) {
      Fiber& f = g_block.fibers[t];
      if (f.state != kRunnable) continue;
      ctx.thread_idx = f.thread_idx;
      t_fiber = &f;
      g_block.running = &f;
      switch_context(&g_block.scheduler, &f.context);
      t_fiber = nullptr;
      if (g_block.status != kOk) return g_block.status;
    }
    // Every fiber now waits at a barrier or is done: release the warps whose every thread
    // waits at the warp barrier, else the block when every thread waits at its barrier.
    bool released = false;
    unsigned long at_block = 0, done = 0;
    for (unsigned long w = 0; w < threads; w += kWarpSize) {
      unsigned long end = std::min(threads, w + kWarpSize), at_warp = 0;
      for (unsigned long t = w; t < end; ++t) at_warp += g_block.fibers[t].state == kAtWarpBarrier;
      if (at_warp == end - w) {
        for (unsigned long t = w; t < end; ++t) g_block.fibers[t].state = kRunnable;
        released = true;
      } else if (at_warp > 0) {
        return kDiverged;
      }
    }
    if (released) continue;
    for (unsigned long t = 0; t < threads; ++t) {
      at_block += g_block.fibers[t].state == kAtBlockBarrier;
      done += g_block.fibers[t].state == kDone;
    }
    if (done == threads) break;
    if (at_block != threads) return kDiverged;
    for (unsigned long t = 0; t < threads; ++t) {
      ++g_block.fibers[t].syncs;
      g_block.fibers[t].state = kRunnable;
    }
  }
  return kOk;
}

// `run` with fibers (the caller holds g_launch and has checked the geometry).
int run_fibers(dim3 grid, dim3 block, const std::function<void()>& body) {
  unsigned long threads = (unsigned long)block.x * block.y * block.z;
  unsigned long blocks = (unsigned long)grid.x * grid.y * grid.z;
  g_block.fibers.resize(threads);
  if (!g_block.stacks) {
    size_t bytes = kMaxThreads * (kGuard + kFiberStack);
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return kFailed;
    g_block.stacks = static_cast<char*>(m);
    for (unsigned long t = 0; t < kMaxThreads; ++t)
      mprotect(g_block.stacks + t * (kGuard + kFiberStack), kGuard, PROT_NONE);
  }
  g_block.body = &body;
  g_block.status = kOk;
  ctx.block_dim = block;
  ctx.grid_dim = grid;
  for (unsigned long b = blocks; b-- > 0;) {
    ctx.block_idx = dim3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                         (unsigned)(b / ((unsigned long)grid.x * grid.y))};
    int rc = run_fiber_block(block, threads);
    if (rc != kOk) return rc;
  }
  return kOk;
}

// Runs `body` as every thread of every block of (grid, block), blocks one at a time in
// reverse order of their linear index, the threads of a block concurrently (as OS threads, or
// as fibers after nas_emu_use_fibers(1)).
int run(dim3 grid, dim3 block, const std::function<void()>& body) {
  // CUDA's limits (compute capability 3.0 and later).
  unsigned long threads = (unsigned long)block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return kBadLaunch;
  std::lock_guard<std::mutex> one_at_a_time(g_launch);
  if (t_fibers >= 0 ? t_fibers != 0 : g_fibers) return run_fibers(grid, block, body);
  unsigned long blocks = (unsigned long)grid.x * grid.y * grid.z;
  Barrier barrier(threads);
  std::vector<std::unique_ptr<Barrier>> warps;
  for (unsigned long w = 0; w < threads; w += kWarpSize)
    warps.emplace_back(new Barrier(std::min(kWarpSize, threads - w)));
  // A failed thread releases every barrier its block's threads may be waiting at.
  auto break_block = [&] {
    barrier.break_all();
    for (auto& w : warps) w->break_all();
  };
  std::atomic<int> status(kOk);
  std::vector<unsigned long> syncs(threads, 0);
  auto worker = [&](unsigned long t) {
    ctx.thread_idx = dim3{(unsigned)(t % block.x), (unsigned)(t / block.x % block.y),
                          (unsigned)(t / ((unsigned long)block.x * block.y))};
    ctx.block_dim = block;
    ctx.grid_dim = grid;
    t_barrier = &barrier;
    t_warp = warps[t / kWarpSize].get();
    t_syncs = 0;
    for (unsigned long b = blocks; b-- > 0;) {
      ctx.block_idx = dim3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                           (unsigned)(b / ((unsigned long)grid.x * grid.y))};
      try {
        body();
      } catch (const Diverged&) {
        status = kDiverged;
        break_block();
        break;
      } catch (const Trap&) {
        status = kTrapped;
        break_block();
        break;
      } catch (...) {
        status = kFailed;
        break_block();
        break;
      }
      // Every thread finishes the block before the next one reuses the __shared__ memory.
      if (!barrier.wait()) {
        int expected = kOk;
        status.compare_exchange_strong(expected, kDiverged);
        break;
      }
    }
    syncs[t] = t_syncs;
    t_barrier = nullptr;
    t_warp = nullptr;
  };
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned long t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (auto& th : pool) th.join();
  if (status != kOk) return status;
  for (unsigned long t = 1; t < threads; ++t)
    if (syncs[t] != syncs[0]) return kDiverged;
  return kOk;
}

// Launches kernel `k` when `count` arguments of the byte sizes `sizes` match its parameters
// (what the PTX parameter list would require of a real launch).
template <typename... A>
int launch_kernel(void (*k)(A...), dim3 grid, dim3 block, void** args, int count,
                  const unsigned long* sizes) {
  const unsigned long want[] = {(unsigned long)sizeof(A)..., 0ul};
  if (count != (int)sizeof...(A)) return kBadArguments;
  for (int i = 0; i < count; ++i)
    if (sizes[i] != want[i]) return kBadArguments;
  return run(grid, block, [=] { call_with(k, args, parameters_of(k)); });
}

struct Entry {
  const char* name;
  int (*launch)(dim3, dim3, void**, int, const unsigned long*);
};

// Every kernel of device.cu (a test checks this list against the file).
#define NAS_EMU_ENTRY(base, S) \
  {"nas_" #base "_" #S,        \
   [](dim3 g, dim3 b, void** a, int n, const unsigned long* sz) {                   \
     return launch_kernel(&nas_##base##_##S, g, b, a, n, sz);                       \
   }},
#define NAS_EMU_ENTRIES(S)                 \
  NAS_EMU_ENTRY(conv_fwd, S)               \
  NAS_EMU_ENTRY(conv_bwd_input, S)         \
  NAS_EMU_ENTRY(conv_bwd_weight, S)        \
  NAS_EMU_ENTRY(pw_bwd_weight, S)          \
  NAS_EMU_ENTRY(unit_conv_fwd, S)          \
  NAS_EMU_ENTRY(fr_fwd, S)                 \
  NAS_EMU_ENTRY(fr_bwd_input, S)           \
  NAS_EMU_ENTRY(fr_bwd_weight, S)          \
  NAS_EMU_ENTRY(max_pool_fwd, S)           \
  NAS_EMU_ENTRY(max_pool_bwd, S)           \
  NAS_EMU_ENTRY(avg_pool_fwd, S)           \
  NAS_EMU_ENTRY(avg_pool_bwd, S)           \
  NAS_EMU_ENTRY(bn_fwd_train, S)           \
  NAS_EMU_ENTRY(bn_bwd_train, S)           \
  NAS_EMU_ENTRY(bn_moments, S)             \
  NAS_EMU_ENTRY(bn_apply, S)               \
  NAS_EMU_ENTRY(bn_grad_sums, S)           \
  NAS_EMU_ENTRY(bn_bwd_apply, S)           \
  NAS_EMU_ENTRY(relu_fwd, S)               \
  NAS_EMU_ENTRY(relu_bwd, S)               \
  NAS_EMU_ENTRY(mixed_fwd, S)              \
  NAS_EMU_ENTRY(mixed_bwd, S)              \
  NAS_EMU_ENTRY(gather_f64_from, S)        \
  NAS_EMU_ENTRY(scatter_f64_to, S)        \
  NAS_EMU_ENTRY(sgd_step, S)               \
  NAS_EMU_ENTRY(adam_step, S)              \
  NAS_EMU_ENTRY(rmsprop_step, S)           \
  NAS_EMU_ENTRY(sum_squares, S)

const Entry kEntries[] = {NAS_EMU_ENTRIES(f32) NAS_EMU_ENTRIES(f64)};

}  // namespace

void sync_threads() {
  if (t_fiber) return fiber_wait(kAtBlockBarrier);
  ++t_syncs;
  if (!t_barrier || !t_barrier->wait()) throw Diverged{};
}

void sync_warp() {
  if (t_fiber) return fiber_wait(kAtWarpBarrier);
  if (!t_warp || !t_warp->wait()) throw Diverged{};
}

unsigned char (*shuffle_slots())[8] {
  // One block runs at a time (one launch at a time), so one set of slots serves every block.
  static unsigned char slots[1024][8];
  return slots;
}

int run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  return run(grid, block, body);
}

}  // namespace nas_emu

// Runs kernel `name` of device.cu over grid x block with the `count` arguments args[0..]
// (each a pointer to the argument's value, of sizes[i] bytes). 0: done; -1: no such kernel; -2: a grid or block outside
// CUDA's limits; -3: the threads of a block did not all reach the same __syncthreads; -4: a
// kernel thread failed otherwise; -5: a thread called __trap() (a launch the kernel refuses);
// -6: not the kernel's number of arguments, or one of another size than its parameter.
extern "C" int nas_emu_launch(const char* name, const unsigned* grid, const unsigned* block,
                              void** args, int count, const unsigned long* sizes) {
  for (const auto& e : nas_emu::kEntries)
    if (std::strcmp(e.name, name) == 0)
      return e.launch(dim3{grid[0], grid[1], grid[2]}, dim3{block[0], block[1], block[2]}, args,
                      count, sizes);
  return nas_emu::kUnknownKernel;
}

// Runs the threads of each block as fibers of one OS thread (1) or as OS threads (0, the
// default): see "fibers" above.
extern "C" void nas_emu_use_fibers(int on) { nas_emu::g_fibers = on != 0; }

// nas_emu_launch with the threads of each block as fibers (fibers = 1) or OS threads (0),
// whatever the process default.
extern "C" int nas_emu_launch_in(int fibers, const char* name, const unsigned* grid,
                                 const unsigned* block, void** args, int count,
                                 const unsigned long* sizes) {
  nas_emu::t_fibers = fibers != 0;
  int rc = nas_emu_launch(name, grid, block, args, count, sizes);
  nas_emu::t_fibers = -1;
  return rc;
}

// Whether device.cu has kernel `name` in the emulator's table.
extern "C" int nas_emu_has(const char* name) {
  for (const auto& e : nas_emu::kEntries)
    if (std::strcmp(e.name, name) == 0) return 1;
  return 0;
}
