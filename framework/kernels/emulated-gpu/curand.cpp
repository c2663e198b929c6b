// curand.cpp: the part of cuRAND (libcurand.so) that candle's CUDA backend calls, for the
// emulated GPU driver (driver.cpp): generators, seeds, and uniform and normal draws into device
// (here: host) memory. The stream is splitmix64 with Box-Muller, not cuRAND's XORWOW: the
// emulated GPU's random numbers differ from a real one's, with the same distributions.
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace {

constexpr int kSuccess = 0;

struct Generator {
  uint64_t state = 0;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1], as cuRAND's uniform draws are.
  double uniform() { return ((next() >> 11) + 1) * (1.0 / 9007199254740992.0); }
  double normal(double mean, double std) {
    double u1 = uniform(), u2 = uniform();
    return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

}  // namespace

extern "C" {

int curandCreateGenerator(void** g, int) {
  *g = new Generator;
  return kSuccess;
}
int curandDestroyGenerator(void* g) {
  delete static_cast<Generator*>(g);
  return kSuccess;
}
int curandSetPseudoRandomGeneratorSeed(void* g, unsigned long long seed) {
  static_cast<Generator*>(g)->state = seed;
  return kSuccess;
}
int curandSetGeneratorOffset(void* g, unsigned long long offset) {
  static_cast<Generator*>(g)->state += offset;
  return kSuccess;
}
int curandSetStream(void*, void*) { return kSuccess; }
int curandGenerateUniform(void* g, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = (float)static_cast<Generator*>(g)->uniform();
  return kSuccess;
}
int curandGenerateUniformDouble(void* g, double* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<Generator*>(g)->uniform();
  return kSuccess;
}
int curandGenerateNormal(void* g, float* out, size_t n, float mean, float std) {
  for (size_t i = 0; i < n; ++i) out[i] = (float)static_cast<Generator*>(g)->normal(mean, std);
  return kSuccess;
}
int curandGenerateNormalDouble(void* g, double* out, size_t n, double mean, double std) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<Generator*>(g)->normal(mean, std);
  return kSuccess;
}

}  // extern "C"
