// driver.cpp: an emulated CUDA driver (libcuda.so.1) for testing the CUDA build of nas on a
// machine without a GPU (scripts/emulated-gpu.sh, docs/gpu.md).
//
// The CUDA binary loads libcuda at run time (cudarc's dynamic loading); pointed at this
// library instead, it runs unchanged: device memory is host memory, and each kernel launch runs
// the kernel's host build (device.cu and candle's kernels compiled with emulate.h) over its
// grid of blocks of threads (emulated.cpp). What this exercises that the emulated tests of
// nas-kernels do not: the Rust side of every launch (argument order, types and sizes, buffer
// lengths, offsets into packed buffers, the launch geometry it picks) and candle's own CUDA
// path around nas' ops, in the real binary.
//
// Device memory is checked the way a debugging allocator would: every allocation ends at a
// page that may not be touched (an overrun stops the process with the running kernel's name),
// its slack and the rest of its first page are filled with a canary checked at free, a fresh
// allocation is filled with 0xFF bytes (NaN) so that reading memory nobody wrote shows, a
// freed one is unmapped, and every copy is checked against the allocations it touches. What
// this cannot show: timing, races between blocks (they run one after another), the PTX
// compiler, and half-precision kernels (not emulated; they trap).
//
// With NAS_EMULATED_GPU_HOST_ONLY set, nothing runs on the emulated device: launches (whose
// kernel must be in the PTX; their geometry is not checked), memsets, device-to-device copies
// (both still checked against the allocations) and cuBLAS' products are counted but not
// carried out,
// and freed memory is kept for the next allocation of its size (no fill, no canary), as a real
// pool does. What is left is the host's side of every step (nas', candle's and cudarc's work
// per launch, and the copies between host and device), which can then be timed and profiled
// on its own (docs/performance.md, thirteenth session). Results are meaningless in that mode.
#include "emulated.cpp"

#include "candle_prelude.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

// The driver API's types, as cuda.h declares them (only what this file implements).
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void (*CUhostFn)(void* user_data);

namespace {

// cuda.h's CUresult values used here.
constexpr CUresult kSuccess = 0;
constexpr CUresult kInvalidValue = 1;
constexpr CUresult kNotInitialized = 3;
constexpr CUresult kInvalidDevice = 101;
constexpr CUresult kInvalidHandle = 400;
constexpr CUresult kNotFound = 500;
constexpr CUresult kIllegalAddress = 700;
constexpr CUresult kLaunchFailed = 719;
constexpr CUresult kNotSupported = 801;

// What the emulated device reports: an H100's figures, as far as a caller may ask.
constexpr const char* kDeviceName = "nas emulated GPU (device.cu and candle's kernels on CPU threads)";
constexpr size_t kTotalMemory = 80ull << 30;

// The page size, the canary byte and the fill of a fresh allocation.
constexpr unsigned char kCanary = 0xA5;
constexpr unsigned char kFreshFill = 0xFF;
constexpr size_t kAlignment = 16;

bool g_initialized = false;

// Whether NAS_EMULATED_GPU_HOST_ONLY is set (see the header): read once.
bool host_only() {
  static const bool set = std::getenv("NAS_EMULATED_GPU_HOST_ONLY") != nullptr;
  return set;
}

// Prints a failure's message to stderr.
void report(const std::string& what) {
  std::fprintf(stderr, "emulated GPU driver: %s\n", what.c_str());
}

// ----- device memory -----

struct Allocation {
  unsigned char* map;  // the mapping: `pages` readable pages, then one that may not be touched
  size_t pages_bytes;  // the readable part of the mapping
  size_t bytes;        // what the caller asked for
};

std::mutex g_memory;
std::map<uintptr_t, Allocation> g_allocations;  // by the address handed out
size_t g_live_bytes = 0;
size_t g_peak_bytes = 0;

size_t page_size() {
  static size_t p = (size_t)sysconf(_SC_PAGESIZE);
  return p;
}

// Host-only mode's pool: freed mappings by their readable size, taken again by the next
// allocation of that size (under g_memory).
std::map<size_t, std::vector<unsigned char*>> g_kept_mappings;

CUresult allocate(CUdeviceptr* out, size_t bytes) {
  if (!out) return kInvalidValue;
  size_t usable = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (usable == 0) usable = kAlignment;
  size_t pages_bytes = (usable + page_size() - 1) / page_size() * page_size();
  unsigned char* m = nullptr;
  if (host_only()) {
    std::lock_guard<std::mutex> lock(g_memory);
    auto kept = g_kept_mappings.find(pages_bytes);
    if (kept != g_kept_mappings.end() && !kept->second.empty()) {
      m = kept->second.back();
      kept->second.pop_back();
    }
  }
  if (!m) {
    void* map = mmap(nullptr, pages_bytes + page_size(), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return 2;  // CUDA_ERROR_OUT_OF_MEMORY
    m = static_cast<unsigned char*>(map);
    mprotect(m + pages_bytes, page_size(), PROT_NONE);
  }
  unsigned char* user = m + pages_bytes - usable;
  if (!host_only()) {
    std::memset(m, kCanary, pages_bytes);
    std::memset(user, kFreshFill, bytes);
  }
  std::lock_guard<std::mutex> lock(g_memory);
  g_allocations[(uintptr_t)user] = Allocation{m, pages_bytes, bytes};
  g_live_bytes += bytes;
  if (g_live_bytes > g_peak_bytes) g_peak_bytes = g_live_bytes;
  *out = (CUdeviceptr)(uintptr_t)user;
  return kSuccess;
}

// Whether every canary byte of `a` (outside the caller's bytes) is intact.
bool canaries_intact(uintptr_t user, const Allocation& a) {
  for (unsigned char* p = a.map; p < (unsigned char*)user; ++p)
    if (*p != kCanary) return false;
  for (unsigned char* p = (unsigned char*)user + a.bytes; p < a.map + a.pages_bytes; ++p)
    if (*p != kCanary) return false;
  return true;
}

CUresult release(CUdeviceptr ptr) {
  if (ptr == 0) return kSuccess;
  std::lock_guard<std::mutex> lock(g_memory);
  auto it = g_allocations.find((uintptr_t)ptr);
  if (it == g_allocations.end()) {
    report("free of " + std::to_string(ptr) + ", which is not the start of a live allocation");
    return kInvalidValue;
  }
  if (host_only()) {
    g_kept_mappings[it->second.pages_bytes].push_back(it->second.map);
  } else {
    if (!canaries_intact(it->first, it->second)) {
      report("a kernel wrote outside an allocation of " + std::to_string(it->second.bytes) +
             " bytes (its canary is overwritten; found at free)");
      std::abort();
    }
    munmap(it->second.map, it->second.pages_bytes + page_size());
  }
  g_live_bytes -= it->second.bytes;
  g_allocations.erase(it);
  return kSuccess;
}

// Whether [ptr, ptr + bytes) lies inside one live allocation (reported when not).
bool inside_allocation(CUdeviceptr ptr, size_t bytes, const char* what) {
  if (bytes == 0) return true;
  std::lock_guard<std::mutex> lock(g_memory);
  auto it = g_allocations.upper_bound((uintptr_t)ptr);
  if (it != g_allocations.begin()) {
    --it;
    uintptr_t start = it->first;
    // Written so that no sum can wrap around: the offset, then the bytes left after it.
    uintptr_t at = (uintptr_t)ptr;
    if (at >= start && at - start <= it->second.bytes && bytes <= it->second.bytes - (at - start))
      return true;
    if ((uintptr_t)ptr >= start && (uintptr_t)ptr < start + it->second.bytes) {
      report(std::string(what) + " of " + std::to_string(bytes) + " bytes at offset " +
             std::to_string((uintptr_t)ptr - start) + " of an allocation of " +
             std::to_string(it->second.bytes) + " bytes runs past its end");
      return false;
    }
  }
  report(std::string(what) + " of " + std::to_string(bytes) + " bytes at " +
         std::to_string(ptr) + ", which is in no live allocation");
  return false;
}

// ----- kernels and modules -----

std::map<std::string, nas_emu::GridLaunch>& registry() {
  static std::map<std::string, nas_emu::GridLaunch> r;
  return r;
}

struct Function {
  std::string name;
  nas_emu::GridLaunch launch;
};

struct Module {
  std::set<std::string> entries;  // the `.entry` names of its PTX
  std::map<std::string, Function*> functions;
};

// The PTX's entry points (`.entry name(`): a real driver finds only these in the module.
std::set<std::string> ptx_entries(const char* ptx) {
  std::set<std::string> names;
  const char* p = ptx;
  while ((p = std::strstr(p, ".entry ")) != nullptr) {
    p += 7;
    while (*p == ' ' || *p == '\t') ++p;
    const char* end = p;
    while (*end && *end != '(' && *end != ' ' && *end != '\n' && *end != '\r' && *end != '\t') ++end;
    names.insert(std::string(p, end));
    p = end;
  }
  return names;
}

// The kernel the calling thread runs now (for the report of a fault inside one; fibers run a
// launch on the launching thread). Initial-exec TLS: read in the signal handler without an
// allocation.
__attribute__((tls_model("initial-exec"))) thread_local const char* volatile t_running = nullptr;
std::mutex g_statistics;
std::map<std::string, unsigned long> g_launches;
unsigned long g_total_launches = 0;
// The stream operations that are not launches: memsets (candle's zero-filled tensors) and
// copies between host and device or within the device.
unsigned long g_memsets = 0;
unsigned long g_copies = 0;
// The copies by direction (a copy from the device makes the host wait for the stream on a GPU)
// and their bytes.
unsigned long g_copies_to = 0, g_copies_from = 0, g_copies_within = 0;
unsigned long long g_bytes_to = 0, g_bytes_from = 0;

// Counts one memset.
void count(unsigned long& counter) {
  std::lock_guard<std::mutex> lock(g_statistics);
  ++counter;
}

// Counts one copy of `bytes` in its direction's counter (and bytes, when given).
void count_copy(unsigned long& direction, unsigned long long* total, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_statistics);
  ++g_copies;
  ++direction;
  if (total) *total += bytes;
}

// The handlers the process had before (Rust's stack-overflow report among them): a fault
// outside every kernel is theirs.
struct sigaction g_previous_segv, g_previous_bus;

void on_fault(int sig, siginfo_t* info, void*) {
  if (!t_running) {
    // Not in a kernel: back to the previous handler, which the faulting instruction meets
    // when it runs again.
    sigaction(sig, sig == SIGSEGV ? &g_previous_segv : &g_previous_bus, nullptr);
    return;
  }
  char buf[512];
  int n = std::snprintf(buf, sizeof buf,
                        "emulated GPU driver: %s at address %p in kernel `%s` (outside every "
                        "allocation, past the end of one, or a fiber's stack overflowing)\n",
                        sig == SIGSEGV ? "illegal memory access" : "bus error", info->si_addr,
                        t_running);
  if (n > 0) {
    ssize_t ignored = write(2, buf, (size_t)n);
    (void)ignored;
  }
  _exit(139);
}

// At exit: the canaries of what was never freed, then the statistics when asked for.
void at_exit() {
  {
    std::lock_guard<std::mutex> lock(g_memory);
    for (const auto& kv : g_allocations)
      if (!host_only() && !canaries_intact(kv.first, kv.second)) {
        report("a kernel wrote outside an allocation of " + std::to_string(kv.second.bytes) +
               " bytes (its canary is overwritten; found at exit, the allocation never freed)");
        _exit(134);
      }
  }
  if (!std::getenv("NAS_EMULATED_GPU_STATS")) return;
  std::lock_guard<std::mutex> lock(g_statistics);
  std::fprintf(stderr,
               "emulated GPU driver: %lu launches, %lu memsets, %lu copies, peak %zu bytes "
               "allocated\n",
               g_total_launches, g_memsets, g_copies, g_peak_bytes);
  std::fprintf(stderr,
               "  copies: %lu to the device (%llu bytes), %lu from the device (%llu bytes), %lu "
               "within it\n",
               g_copies_to, g_bytes_to, g_copies_from, g_bytes_from, g_copies_within);
  for (const auto& kv : g_launches)
    std::fprintf(stderr, "  %8lu  %s\n", kv.second, kv.first.c_str());
}

struct Installer {
  Installer() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, &g_previous_segv);
    sigaction(SIGBUS, &sa, &g_previous_bus);
    std::atexit(at_exit);
    // A block's threads as fibers (fast), unless NAS_EMULATED_GPU_THREADS asks for OS threads
    // (slow; races inside a block can then show).
    nas_emu_use_fibers(std::getenv("NAS_EMULATED_GPU_THREADS") == nullptr);
  }
} g_installer;

int g_handle_dummy;  // the address every opaque handle but modules and functions points at
int g_default_pool;  // the default memory pool's handle
unsigned long long g_release_threshold = 0;

}  // namespace

namespace nas_emu {

bool register_kernel(const char* name, GridLaunch launch) {
  registry()[name] = launch;
  return true;
}

}  // namespace nas_emu

// device.cu's kernels, registered under their entry names.
#undef NAS_EMU_ENTRY
#define NAS_EMU_ENTRY(base, S) NAS_EMU_REGISTER_DEVICE(nas_##base##_##S)
#define NAS_EMU_REGISTER_DEVICE(name)               \
  static const bool nas_emu_registered_##name =     \
      nas_emu::register_kernel(#name, &nas_emu::launch_registered<&name>);
NAS_EMU_ENTRIES(f32)
NAS_EMU_ENTRIES(f64)

extern "C" {

// ----- initialisation, devices, contexts -----

CUresult cuInit(unsigned int) {
  g_initialized = true;
  return kSuccess;
}

CUresult cuDriverGetVersion(int* v) {
  if (!v) return kInvalidValue;
  *v = 13000;
  return kSuccess;
}

CUresult cuDeviceGetCount(int* count) {
  if (!count) return kInvalidValue;
  *count = 1;
  return kSuccess;
}

CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
  if (!g_initialized) return kNotInitialized;
  if (!dev) return kInvalidValue;
  if (ordinal != 0) return kInvalidDevice;
  *dev = 0;
  return kSuccess;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (dev != 0) return kInvalidDevice;
  if (!name || len <= 0) return kInvalidValue;
  std::snprintf(name, (size_t)len, "%s", kDeviceName);
  return kSuccess;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  if (dev != 0) return kInvalidDevice;
  *bytes = kTotalMemory;
  return kSuccess;
}

CUresult cuDeviceGetAttribute(int* v, int attribute, CUdevice dev) {
  if (dev != 0) return kInvalidDevice;
  if (!v) return kInvalidValue;
  switch (attribute) {
    case 1:  // MAX_THREADS_PER_BLOCK
    case 2:  // MAX_BLOCK_DIM_X
    case 3:  // MAX_BLOCK_DIM_Y
      *v = 1024;
      break;
    case 4:  // MAX_BLOCK_DIM_Z
      *v = 64;
      break;
    case 5:  // MAX_GRID_DIM_X
      *v = 2147483647;
      break;
    case 6:  // MAX_GRID_DIM_Y
    case 7:  // MAX_GRID_DIM_Z
      *v = 65535;
      break;
    case 8:  // MAX_SHARED_MEMORY_PER_BLOCK
      *v = 49152;
      break;
    case 10:  // WARP_SIZE
      *v = 32;
      break;
    case 16:  // MULTIPROCESSOR_COUNT
      *v = 132;
      break;
    case 41:  // UNIFIED_ADDRESSING
      *v = 1;
      break;
    case 75:  // COMPUTE_CAPABILITY_MAJOR
      *v = 9;
      break;
    case 76:  // COMPUTE_CAPABILITY_MINOR
      *v = 0;
      break;
    case 115:  // MEMORY_POOLS_SUPPORTED: as an H100, unless NAS_EMULATED_GPU_NO_POOLS is set
      *v = std::getenv("NAS_EMULATED_GPU_NO_POOLS") ? 0 : 1;
      break;
    default:
      *v = 0;
  }
  return kSuccess;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
  if (dev != 0) return kInvalidDevice;
  *ctx = &g_handle_dummy;
  return kSuccess;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return kSuccess; }
CUresult cuCtxSetCurrent(CUcontext) { return kSuccess; }
CUresult cuCtxGetCurrent(CUcontext* ctx) {
  *ctx = &g_handle_dummy;
  return kSuccess;
}
CUresult cuCtxGetDevice(CUdevice* dev) {
  *dev = 0;
  return kSuccess;
}
CUresult cuCtxSynchronize() { return kSuccess; }
CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
  if (least) *least = 0;
  if (greatest) *greatest = -5;
  return kSuccess;
}

// ----- streams and events: work runs when it is issued, so every wait is already over -----

CUresult cuStreamCreate(CUstream* s, unsigned int) {
  *s = &g_handle_dummy;
  return kSuccess;
}
CUresult cuStreamCreateWithPriority(CUstream* s, unsigned int, int) {
  *s = &g_handle_dummy;
  return kSuccess;
}
CUresult cuStreamDestroy_v2(CUstream) { return kSuccess; }
CUresult cuStreamSynchronize(CUstream) { return kSuccess; }
CUresult cuStreamQuery(CUstream) { return kSuccess; }
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned int) { return kSuccess; }
CUresult cuStreamIsCapturing(CUstream, int* status) {
  *status = 0;  // CU_STREAM_CAPTURE_STATUS_NONE
  return kSuccess;
}
CUresult cuStreamBeginCapture_v2(CUstream, int) { return kNotSupported; }
CUresult cuLaunchHostFunc(CUstream, CUhostFn fn, void* data) {
  fn(data);
  return kSuccess;
}
CUresult cuEventCreate(CUevent* e, unsigned int) {
  *e = &g_handle_dummy;
  return kSuccess;
}
CUresult cuEventDestroy_v2(CUevent) { return kSuccess; }
CUresult cuEventRecord(CUevent, CUstream) { return kSuccess; }
CUresult cuEventSynchronize(CUevent) { return kSuccess; }
CUresult cuEventQuery(CUevent) { return kSuccess; }
CUresult cuEventElapsedTime(float* ms, CUevent, CUevent) {
  *ms = 0;
  return kSuccess;
}
CUresult cuEventElapsedTime_v2(float* ms, CUevent, CUevent) {
  *ms = 0;
  return kSuccess;
}

// ----- memory -----

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) { return allocate(p, bytes); }
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream) { return allocate(p, bytes); }
CUresult cuMemFree_v2(CUdeviceptr p) { return release(p); }
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return release(p); }
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
  std::lock_guard<std::mutex> lock(g_memory);
  *free_bytes = g_live_bytes < kTotalMemory ? kTotalMemory - g_live_bytes : 0;
  *total = kTotalMemory;
  return kSuccess;
}
// The default memory pool: every allocation of the emulated device, whichever call made it.
// Its statistics are the bytes the callers asked for (a real pool's are rounded up to its
// granularity).
CUresult cuDeviceGetDefaultMemPool(void** pool, CUdevice dev) {
  if (dev != 0) return kInvalidDevice;
  *pool = &g_default_pool;
  return kSuccess;
}
CUresult cuMemPoolSetAttribute(void* pool, int attribute, void* value) {
  if (pool != &g_default_pool || !value) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_memory);
  switch (attribute) {
    case 4:  // RELEASE_THRESHOLD
      g_release_threshold = *static_cast<unsigned long long*>(value);
      return kSuccess;
    case 6:  // RESERVED_MEM_HIGH: only reset to 0
    case 8:  // USED_MEM_HIGH: only reset to 0
      if (*static_cast<unsigned long long*>(value) != 0) return kInvalidValue;
      g_peak_bytes = g_live_bytes;
      return kSuccess;
    case 1:
    case 2:
    case 3:  // the reuse policies: accepted, there is nothing to reuse out of order
      return kSuccess;
    default:
      return kInvalidValue;
  }
}
CUresult cuMemPoolGetAttribute(void* pool, int attribute, void* value) {
  if (pool != &g_default_pool || !value) return kInvalidValue;
  std::lock_guard<std::mutex> lock(g_memory);
  unsigned long long* out = static_cast<unsigned long long*>(value);
  switch (attribute) {
    case 4:  // RELEASE_THRESHOLD
      *out = g_release_threshold;
      return kSuccess;
    case 5:  // RESERVED_MEM_CURRENT
    case 7:  // USED_MEM_CURRENT
      *out = g_live_bytes;
      return kSuccess;
    case 6:  // RESERVED_MEM_HIGH
    case 8:  // USED_MEM_HIGH
      *out = g_peak_bytes;
      return kSuccess;
    case 1:
    case 2:
    case 3:
      *static_cast<int*>(value) = 1;
      return kSuccess;
    default:
      return kInvalidValue;
  }
}
CUresult cuMemPoolTrimTo(void*, size_t) { return kSuccess; }
CUresult cuMemAllocFromPoolAsync(CUdeviceptr* p, size_t bytes, void* pool, CUstream) {
  if (pool != &g_default_pool) return kInvalidValue;
  return allocate(p, bytes);
}

CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned int) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? kSuccess : 2;
}
CUresult cuMemFreeHost(void* p) {
  std::free(p);
  return kSuccess;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
  count_copy(g_copies_to, &g_bytes_to, bytes);
  if (!inside_allocation(dst, bytes, "a copy to the device")) return kIllegalAddress;
  std::memcpy((void*)(uintptr_t)dst, src, bytes);
  return kSuccess;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, CUstream) {
  return cuMemcpyHtoD_v2(dst, src, bytes);
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
  count_copy(g_copies_from, &g_bytes_from, bytes);
  if (!inside_allocation(src, bytes, "a copy from the device")) return kIllegalAddress;
  std::memcpy(dst, (const void*)(uintptr_t)src, bytes);
  return kSuccess;
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, CUstream) {
  return cuMemcpyDtoH_v2(dst, src, bytes);
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  count_copy(g_copies_within, nullptr, bytes);
  if (!inside_allocation(src, bytes, "the source of a device copy") ||
      !inside_allocation(dst, bytes, "the destination of a device copy"))
    return kIllegalAddress;
  if (!host_only()) std::memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, bytes);
  return kSuccess;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream) {
  return cuMemcpyDtoD_v2(dst, src, bytes);
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
  count(g_memsets);
  if (!inside_allocation(dst, n, "a memset")) return kIllegalAddress;
  if (!host_only()) std::memset((void*)(uintptr_t)dst, v, n);
  return kSuccess;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream) {
  return cuMemsetD8_v2(dst, v, n);
}
CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned int v, size_t n) {
  count(g_memsets);
  if (n > SIZE_MAX / 4 || !inside_allocation(dst, n * 4, "a memset")) return kIllegalAddress;
  unsigned int* p = (unsigned int*)(uintptr_t)dst;
  if (!host_only())
    for (size_t i = 0; i < n; ++i) p[i] = v;
  return kSuccess;
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream) {
  return cuMemsetD32_v2(dst, v, n);
}

// ----- modules and launches -----

CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  if (!module || !image) return kInvalidValue;
  Module* m = new Module;
  m->entries = ptx_entries(static_cast<const char*>(image));
  *module = m;
  return kSuccess;
}

CUresult cuModuleUnload(CUmodule module) {
  Module* m = static_cast<Module*>(module);
  for (auto& kv : m->functions) delete kv.second;
  delete m;
  return kSuccess;
}

CUresult cuModuleGetFunction(CUfunction* f, CUmodule module, const char* name) {
  Module* m = static_cast<Module*>(module);
  if (!m || !f || !name) return kInvalidValue;
  if (!m->entries.count(name)) {
    report(std::string("no kernel `") + name + "` in the module's PTX");
    return kNotFound;
  }
  auto known = registry().find(name);
  if (known == registry().end()) {
    report(std::string("kernel `") + name +
           "` is in the PTX but not emulated (a half-precision or sorting kernel?)");
    return kNotFound;
  }
  auto it = m->functions.find(name);
  if (it == m->functions.end())
    it = m->functions.emplace(name, new Function{name, known->second}).first;
  *f = it->second;
  return kSuccess;
}

CUresult cuModuleGetGlobal_v2(CUdeviceptr*, size_t*, CUmodule, const char*) { return kNotFound; }

CUresult cuFuncGetAttribute(int* v, int attribute, CUfunction) {
  *v = attribute == 0 ? 1024 : 0;  // MAX_THREADS_PER_BLOCK; no static shared memory reported
  return kSuccess;
}
CUresult cuFuncSetAttribute(CUfunction, int, int) { return kSuccess; }
CUresult cuFuncSetCacheConfig(CUfunction, int) { return kSuccess; }

CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                        unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared,
                        CUstream, void** params, void** extra) {
  Function* fn = static_cast<Function*>(f);
  if (!fn) return kInvalidHandle;
  if (extra) {
    report("launch of `" + fn->name + "` with `extra` parameters (not emulated)");
    return kNotSupported;
  }
  if (!params) return kInvalidValue;  // every kernel here takes parameters
  if (shared != 0) {
    report("launch of `" + fn->name + "` with dynamic shared memory (not emulated)");
    return kNotSupported;
  }
  {
    std::lock_guard<std::mutex> lock(g_statistics);
    ++g_total_launches;
    ++g_launches[fn->name];
  }
  if (host_only()) return kSuccess;
  // t_running names the kernel to the fault handler (with OS threads instead of fibers, a
  // fault on a worker thread goes to the previous handler, unnamed).
  t_running = fn->name.c_str();
  int rc = fn->launch(dim3{gx, gy, gz}, dim3{bx, by, bz}, params);
  t_running = nullptr;
  if (rc == 0) return kSuccess;
  const char* why = rc == -2   ? "a grid or block outside CUDA's limits"
                    : rc == -3 ? "the threads of a block did not all reach the same barrier"
                    : rc == -5 ? "a thread trapped"
                               : "a thread failed";
  report("launch of `" + fn->name + "` over grid (" + std::to_string(gx) + ", " +
         std::to_string(gy) + ", " + std::to_string(gz) + ") x block (" + std::to_string(bx) +
         ", " + std::to_string(by) + ", " + std::to_string(bz) + ") failed: " + why);
  return kLaunchFailed;
}

CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, CUfunction, int block_size,
                                                     size_t) {
  *blocks = block_size > 0 ? 2048 / block_size : 0;
  return kSuccess;
}

// ----- errors -----

CUresult cuGetErrorName(CUresult e, const char** s) {
  switch (e) {
    case kSuccess: *s = "CUDA_SUCCESS"; break;
    case kInvalidValue: *s = "CUDA_ERROR_INVALID_VALUE"; break;
    case 2: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case kNotInitialized: *s = "CUDA_ERROR_NOT_INITIALIZED"; break;
    case kInvalidDevice: *s = "CUDA_ERROR_INVALID_DEVICE"; break;
    case kInvalidHandle: *s = "CUDA_ERROR_INVALID_HANDLE"; break;
    case kNotFound: *s = "CUDA_ERROR_NOT_FOUND"; break;
    case kIllegalAddress: *s = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
    case kLaunchFailed: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
    case kNotSupported: *s = "CUDA_ERROR_NOT_SUPPORTED"; break;
    default: *s = "CUDA_ERROR_UNKNOWN";
  }
  return kSuccess;
}
CUresult cuGetErrorString(CUresult e, const char** s) { return cuGetErrorName(e, s); }

}  // extern "C"
