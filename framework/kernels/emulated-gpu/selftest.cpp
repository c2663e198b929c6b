// selftest.cpp: checks of the emulated GPU driver itself, through the driver API as cudarc
// calls it (scripts/emulated-gpu.sh runs each case after building the driver and checks its
// exit status and message).
//
//   selftest ok          ReLU over 99 values: the right values back, exit 0
//   selftest overrun     ReLU writing 5,000 values into 99: faults, exit 139 naming the kernel
//   selftest slack       ReLU writing 100 values into 99: the canary catches it at free (abort)
//   selftest missing     a kernel the PTX lacks: CUDA_ERROR_NOT_FOUND (500), exit 0
//   selftest overcopy    a copy of 800 bytes into 396: CUDA_ERROR_ILLEGAL_ADDRESS (700), exit 0
//   selftest fresh       a fresh allocation reads as NaN (0xFF bytes), exit 0
//   selftest hostonly    (run with NAS_EMULATED_GPU_HOST_ONLY=1) the overrunning ReLU launch
//                        succeeds without running: the output keeps what was copied in, exit 0
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

extern "C" {
int cuInit(unsigned int flags);
int cuMemAlloc_v2(unsigned long long* p, size_t bytes);
int cuMemFree_v2(unsigned long long p);
int cuMemcpyHtoD_v2(unsigned long long dst, const void* src, size_t bytes);
int cuMemcpyDtoH_v2(void* dst, unsigned long long src, size_t bytes);
int cuModuleLoadData(void** module, const void* image);
int cuModuleGetFunction(void** f, void* module, const char* name);
int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void* stream, void** params, void** extra);
}

namespace {

// A PTX text whose only entry is the f32 ReLU (the driver reads the entry names).
const char* kPtx = ".version 9.0\n.target sm_90\n.visible .entry nas_relu_fwd_f32(\n"
                   "  .param .u64 x, .param .u64 y, .param .u64 len\n)\n{\n  ret;\n}\n";

int fail(const char* what) {
  std::printf("selftest: %s\n", what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage: selftest ok|overrun|slack|missing|overcopy|fresh|hostonly");
  std::string mode = argv[1];
  if (cuInit(0) != 0) return fail("cuInit");
  void* module = nullptr;
  if (cuModuleLoadData(&module, kPtx) != 0) return fail("cuModuleLoadData");
  void* relu = nullptr;
  if (mode == "missing") {
    int rc = cuModuleGetFunction(&relu, module, "nas_relu_bwd_f32");
    std::printf("missing kernel: %d\n", rc);
    return rc == 500 ? 0 : 1;
  }
  if (cuModuleGetFunction(&relu, module, "nas_relu_fwd_f32") != 0) return fail("get function");
  const int n = 99;
  float host[200];
  for (int i = 0; i < 200; ++i) host[i] = (float)(i - 50);
  unsigned long long x = 0, y = 0;
  if (cuMemAlloc_v2(&x, 200 * sizeof(float)) != 0 || cuMemAlloc_v2(&y, n * sizeof(float)) != 0)
    return fail("cuMemAlloc");
  if (mode == "fresh") {
    float out[n];
    cuMemcpyDtoH_v2(out, y, sizeof out);
    for (float v : out)
      if (!std::isnan(v)) return fail("a fresh allocation reads as a number");
    std::printf("fresh allocation: NaN\n");
    return 0;
  }
  if (mode == "overcopy") {
    int rc = cuMemcpyHtoD_v2(y, host, sizeof host);
    std::printf("over-long copy: %d\n", rc);
    return rc == 700 ? 0 : 1;
  }
  if (cuMemcpyHtoD_v2(x, host, sizeof host) != 0) return fail("copy to the device");
  if (mode == "hostonly") {
    if (cuMemcpyHtoD_v2(y, host, n * sizeof(float)) != 0) return fail("copy to the device");
    long over = 5000;
    void* args[] = {&x, &y, &over};
    if (cuLaunchKernel(relu, 1, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr) != 0)
      return fail("launch");
    float out[n];
    if (cuMemcpyDtoH_v2(out, y, sizeof out) != 0) return fail("copy from the device");
    for (int i = 0; i < n; ++i)
      if (out[i] != host[i]) return fail("the launch ran in host-only mode");
    std::printf("host only: launch not run\n");
    return 0;
  }
  long len = mode == "overrun" ? 5000 : mode == "slack" ? n + 1 : n;
  void* args[] = {&x, &y, &len};
  int rc = cuLaunchKernel(relu, 1, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr);
  if (rc != 0) return fail("launch");
  float out[n];
  if (cuMemcpyDtoH_v2(out, y, sizeof out) != 0) return fail("copy from the device");
  for (int i = 0; i < n; ++i)
    if (out[i] != std::fmax(host[i], 0.0f)) return fail("ReLU's values");
  if (cuMemFree_v2(y) != 0) return fail("free");
  std::printf("relu over %d values: right\n", n);
  return 0;
}
