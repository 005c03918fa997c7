// What the CPU offers, without LibTorch: the cores this process may use, which bfloat16
// instructions it has, and whether bf16 arithmetic is actually faster than float on it. Torch-free:
// the window's settings panel and the training config use it.
#pragma once

#include <string>

namespace vit {

// The cores this process may run on (sched_getaffinity).
int available_cores();

// The CPU's bfloat16 instructions, usable by this process (CPUID plus the OS's register state).
struct Bf16Support {
  bool avx512_bf16 = false;  // AVX512_BF16: VDPBF16PS, a dot product of bf16 pairs into floats
  bool amx_bf16 = false;     // AMX-BF16: tile matrix multiply (oneDNN's avx512_core_amx)
  // FLOPs per second of VDPBF16PS on 512-bit registers over those of VFMADD231PS (float FMA),
  // measured on this core at first use (~2-8 ms, best of 16 alternations); 0 without AVX512_BF16.
  // Measured: 0.49 on an Intel Xeon family 6 model 207 whose hypervisor hid AMX (86 against 176
  // GFLOP/s per core; bf16 training there ran at 0.65-0.8x fp32's speed), about 2 where bf16
  // pays (README, "Speed on any x86 CPU").
  double dot_vs_fma = 0;
  // GFLOP/s on one core of float FMAs (VFMADD231PS on the widest registers the CPU and OS allow:
  // 512-bit with AVX-512, else 256-bit with AVX2/FMA; 0 without FMA) and of VDPBF16PS (0 without
  // AVX512_BF16): what a float and a bf16 GEMM can reach at best on this core, the peak that
  // `vit train` states its FLOP rate against. Measured: 176 on the Intel model 207, 93-103 on an
  // AMD EPYC family 25 (Zen 3: two 256-bit FMAs a cycle at ~3.0 GHz).
  double fma_gflops = 0, dot_gflops = 0;
  int fma_bits = 0;  // the register width fma_gflops was measured on: 512, 256, or 0

  bool any() const { return avx512_bf16 || amx_bf16; }
  // Whether bf16 mixed precision beats float here: AMX, or bf16 dot products at least
  // kFastBf16Ratio times the float FMA rate. The ratio, not the instruction's presence, decides:
  // the same model number has come with and without AMX from one day to the next.
  bool fast() const;
  // Whether a bf16 GEMM is better run on the float units (bf16 values widened to float, a float
  // matmul, the result rounded to bf16 once): no AMX, and no bf16 dot products or ones below
  // kBf16GemmOnFloatRatio times the float FMA rate. onednn_linear.h does this.
  bool gemm_on_float_units() const;
  // One line for logs: "AVX512_BF16 dot products at 0.49x the float FMA rate, no AMX".
  std::string describe() const;
};

// Below this dot-product/FMA ratio (and without AMX) auto precision picks fp32. Halving the bytes
// moved buys something, the casts cost something; 1.3 sits between the measured 0.49 (fp32 clearly
// faster) and ~2 (bf16 clearly faster).
inline constexpr double kFastBf16Ratio = 1.3;

// Below this dot-product/FMA ratio (and without AMX) bf16 GEMMs run on the float units. At 0.51
// (the Intel model 207 without AMX) oneDNN's float matmul ran keras-cifar's and ViT-B/16's linear
// shapes 1.6-1.8x faster than its bf16 one, and 1.4-1.5x faster with the widening and rounding in
// L2-sized blocks (README, "Speed on any x86 CPU"); at 1 the two GEMMs would take the same time and
// the conversions would be pure cost.
inline constexpr double kBf16GemmOnFloatRatio = 0.8;

// Measures Bf16Support::dot_vs_fma again on the calling core (0 without AVX512_BF16): for tests
// and benches; everything else reads bf16_support()'s one measurement.
double measure_bf16_dot_vs_fma();

// This CPU's bf16 support, probed once per process (thread-safe). For tests of what depends on it
// (distributed ranks on different CPUs): VIT_TEST_BF16_RATIO=X in the environment reports
// AVX512_BF16 without AMX at a dot-product/FMA ratio of X instead of what the probe measures.
const Bf16Support& bf16_support();

// Whether this CPU has bf16 instructions at all (AVX512_BF16 or AMX-BF16), fast or not.
bool cpu_has_bf16();

// Whether bf16 mixed precision is faster than float on this CPU: bf16_support().fast().
bool cpu_has_fast_bf16();

}  // namespace vit
