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
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
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

// Runs `body` as every thread of every block of (grid, block), blocks one at a time in
// reverse order of their linear index, the threads of a block concurrently.
int run(dim3 grid, dim3 block, const std::function<void()>& body) {
  // CUDA's limits (compute capability 3.0 and later).
  unsigned long threads = (unsigned long)block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return kBadLaunch;
  std::lock_guard<std::mutex> one_at_a_time(g_launch);
  unsigned long blocks = (unsigned long)grid.x * grid.y * grid.z;
  Barrier barrier(threads);
  std::atomic<int> status(kOk);
  std::vector<unsigned long> syncs(threads, 0);
  auto worker = [&](unsigned long t) {
    ctx.thread_idx = dim3{(unsigned)(t % block.x), (unsigned)(t / block.x % block.y),
                          (unsigned)(t / ((unsigned long)block.x * block.y))};
    ctx.block_dim = block;
    ctx.grid_dim = grid;
    t_barrier = &barrier;
    t_syncs = 0;
    for (unsigned long b = blocks; b-- > 0;) {
      ctx.block_idx = dim3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                           (unsigned)(b / ((unsigned long)grid.x * grid.y))};
      try {
        body();
      } catch (const Diverged&) {
        status = kDiverged;
        barrier.break_all();
        break;
      } catch (const Trap&) {
        status = kTrapped;
        barrier.break_all();
        break;
      } catch (...) {
        status = kFailed;
        barrier.break_all();
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

// Calls kernel `k` with its arguments read from `args` (args[i] points at argument i, as
// for cuLaunchKernel).
template <typename... A, std::size_t... I>
void call_with(void (*k)(A...), void** args, std::index_sequence<I...>) {
  k(*static_cast<typename std::remove_cv<A>::type*>(args[I])...);
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
  return run(grid, block, [=] { call_with(k, args, std::index_sequence_for<A...>{}); });
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
  NAS_EMU_ENTRY(conv_bwd_weight_split, S)  \
  NAS_EMU_ENTRY(fr_fwd, S)                 \
  NAS_EMU_ENTRY(fr_bwd_input, S)           \
  NAS_EMU_ENTRY(fr_bwd_weight_split, S)    \
  NAS_EMU_ENTRY(max_pool_fwd, S)           \
  NAS_EMU_ENTRY(max_pool_bwd, S)           \
  NAS_EMU_ENTRY(avg_pool_fwd, S)           \
  NAS_EMU_ENTRY(avg_pool_bwd, S)           \
  NAS_EMU_ENTRY(bn_fwd_train, S)           \
  NAS_EMU_ENTRY(bn_bwd_train, S)           \
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
  ++t_syncs;
  if (!t_barrier || !t_barrier->wait()) throw Diverged{};
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

// Whether device.cu has kernel `name` in the emulator's table.
extern "C" int nas_emu_has(const char* name) {
  for (const auto& e : nas_emu::kEntries)
    if (std::strcmp(e.name, name) == 0) return 1;
  return 0;
}
