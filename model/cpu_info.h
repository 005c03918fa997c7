// What the CPU offers, without LibTorch: the cores this process may use and whether it multiplies
// bfloat16 natively. Torch-free: the window's settings panel and the training config use it.
#pragma once

namespace vit {

// The cores this process may run on (sched_getaffinity).
int available_cores();

// Whether this CPU multiplies bfloat16 natively (AVX512_BF16 or AMX-BF16). There, LibTorch's bf16
// matrix products (oneDNN) ran 4-5x faster than float ones through OpenBLAS (1 thread, ViT-sized
// GEMMs: 230-360 against 58-75 GFLOP/s, README "Mixed precision"); elsewhere bf16 is emulated and
// gains little.
bool cpu_has_fast_bf16();

}  // namespace vit
