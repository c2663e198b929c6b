// cuda.h for the emulated GPU driver: empty. candle's cast.cu includes it for CUDA_VERSION,
// which stays undefined here, leaving out its bf16 casts (the emulated GPU has none).
#pragma once
