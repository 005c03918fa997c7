#include "cpu_info.h"

#include <cpuid.h>
#include <sched.h>

namespace vit {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

// CPUID and XGETBV directly, as GCC's __builtin_cpu_supports does (libgcc's cpuinfo.h): a feature
// counts only when the OS saves its register state (XCR0). clang 14 does not know
// __builtin_cpu_supports("amx-bf16"), and the fuzz build compiles this file with clang.
bool cpu_has_fast_bf16() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid(1, eax, ebx, ecx, edx);
  if (!(ecx & bit_OSXSAVE)) return false;
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__(".byte 0x0f, 0x01, 0xd0" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));  // xgetbv(0)
  // SSE | YMM | opmask | ZMM_Hi256 | Hi16_ZMM: the AVX-512 state; TILECFG | TILEDATA: AMX's.
  const bool avx512_usable = (xcr0_low & 0xe6) == 0xe6;
  const bool amx_usable = (xcr0_low & 0x60000) == 0x60000;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool amx_bf16 = amx_usable && (edx & (1u << 22));  // CPUID.(7,0):EDX[22] AMX-BF16
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  const bool avx512_bf16 = avx512_usable && (eax & (1u << 5));  // CPUID.(7,1):EAX[5]
  return avx512_bf16 || amx_bf16;
}

}  // namespace vit
