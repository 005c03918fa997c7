// Which of our per-instruction-set kernel sets (gelu_dropout_kernels.h, layer_norm_kernels.h)
// this CPU runs: as ATen chooses its own kernels, the best set the CPU and OS support, capped by
// ATEN_CPU_CAPABILITY (default, avx2, avx512) when set. For the dispatching files only, never
// for the kernel files themselves, and on x86-64 only (the builds with VIT_HAVE_ELTWISE_KERNELS).
#pragma once

#include <cstdlib>
#include <cstring>

#include "kernel_switch.h"

namespace vit {

enum class KernelIsa { None, Avx2, Avx512 };

inline KernelIsa choose_kernel_isa() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  if (cap && std::strcmp(cap, "default") == 0) return KernelIsa::None;
  if (cap && std::strcmp(cap, "avx2") == 0) return avx2 ? KernelIsa::Avx2 : KernelIsa::None;
  return avx512 ? KernelIsa::Avx512 : avx2 ? KernelIsa::Avx2 : KernelIsa::None;
}

inline KernelIsa kernel_isa() {
  static const KernelIsa chosen = choose_kernel_isa();
  return chosen;
}

// The set a family of our kernels runs: kernel_isa(), or none when its switch (an environment
// variable, kernel_switch.h) is "0". Callers keep the answer in a static.
inline KernelIsa kernel_isa_unless_off(const char* switch_var) {
  return switched_on(switch_var) ? kernel_isa() : KernelIsa::None;
}

// Calls `fn` of the kernel set `isa` (vit::AVX512::fn or vit::AVX2::fn, overloads resolved by the
// arguments); never with KernelIsa::None.
#define VIT_KERNEL_CALL(isa, fn, ...) \
  ((isa) == ::vit::KernelIsa::Avx512 ? ::vit::AVX512::fn(__VA_ARGS__) : ::vit::AVX2::fn(__VA_ARGS__))

// "avx512", "avx2", or why none: the kernels' switch (VIT_FUSED_ELTWISE or VIT_FUSED_LAYER_NORM)
// when `switched_off`, else the CPU or ATEN_CPU_CAPABILITY.
inline const char* kernel_isa_name(KernelIsa isa, bool switched_off, const char* off_message) {
  switch (isa) {
    case KernelIsa::Avx512: return "avx512";
    case KernelIsa::Avx2: return "avx2";
    default: break;
  }
  return switched_off ? off_message : "off (no AVX2 on this CPU, or ATEN_CPU_CAPABILITY=default)";
}

// The element-wise family (GELU/dropout/residual, bias gradients' column sums, attention's
// softmax and attention kernels), which VIT_FUSED_ELTWISE=0 turns off as one; and its name for
// logs and tests.
inline KernelIsa eltwise_kernel_isa() {
  static const KernelIsa isa = kernel_isa_unless_off("VIT_FUSED_ELTWISE");
  return isa;
}
inline const char* eltwise_kernel_isa_name() {
  return kernel_isa_name(eltwise_kernel_isa(), !switched_on("VIT_FUSED_ELTWISE"), "off (VIT_FUSED_ELTWISE=0)");
}

}  // namespace vit
