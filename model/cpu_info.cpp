#include "cpu_info.h"

#include <sched.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#define VIT_X86 1
#endif

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

bool Bf16Support::fast() const { return amx_bf16 || (avx512_bf16 && dot_vs_fma >= kFastBf16Ratio); }

bool Bf16Support::gemm_on_float_units() const {
  return !amx_bf16 && (!avx512_bf16 || dot_vs_fma < kBf16GemmOnFloatRatio);
}

std::string Bf16Support::describe() const {
  if (!any()) return "no bf16 instructions";
  std::string s;
  if (avx512_bf16) {
    char ratio[64];
    std::snprintf(ratio, sizeof ratio, "%.2fx", dot_vs_fma);
    s = std::string("AVX512_BF16 dot products at ") + ratio + " the float FMA rate";
  } else {
    s = "no AVX512_BF16";
  }
  return s + (amx_bf16 ? ", AMX-BF16" : ", no AMX");
}

namespace {

#ifdef VIT_X86

// CPUID and XGETBV directly, as GCC's __builtin_cpu_supports does (libgcc's cpuinfo.h): a feature
// counts only when the OS saves its register state (XCR0). clang 14 does not know
// __builtin_cpu_supports("amx-bf16"), and the fuzz build compiles this file with clang.
void detect(Bf16Support& s) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return;
  __cpuid(1, eax, ebx, ecx, edx);
  if (!(ecx & bit_OSXSAVE)) return;
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__(".byte 0x0f, 0x01, 0xd0" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));  // xgetbv(0)
  // SSE | YMM | opmask | ZMM_Hi256 | Hi16_ZMM: the AVX-512 state; TILECFG | TILEDATA: AMX's.
  const bool avx512_usable = (xcr0_low & 0xe6) == 0xe6;
  const bool amx_usable = (xcr0_low & 0x60000) == 0x60000;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx512f = ebx & (1u << 16);
  s.amx_bf16 = amx_usable && (edx & (1u << 22));  // CPUID.(7,0):EDX[22] AMX-BF16
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  s.avx512_bf16 = avx512_usable && avx512f && (eax & (1u << 5));  // CPUID.(7,1):EAX[5]
}

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Twelve independent accumulators (zmm0-11) against zmm12/13: enough chains to cover the latency
// of either instruction on two ports, so the loop runs at the instruction's throughput. Written in
// assembly so no compiler flag or spill changes what is measured; gas and clang's assembler both
// know VDPBF16PS without a target flag.
#define VIT_R12(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11)
#define VIT_FMA(i) "vfmadd231ps %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define VIT_DOT(i) "vdpbf16ps %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define VIT_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
                     "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "cc"

// `dot`: VDPBF16PS (16 lanes x 2 pairs x (mul + add) = 64 FLOPs), else VFMADD231PS (32 FLOPs).
double rate(bool dot, long iterations) {
  long n = iterations;
  const double t0 = seconds_now();
  if (dot)
    __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"
                     "1:\n\t" VIT_R12(VIT_DOT) "dec %0\n\tjnz 1b\n\tvzeroupper"
                     : "+r"(n) : : VIT_CLOBBERS);
  else
    __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"
                     "1:\n\t" VIT_R12(VIT_FMA) "dec %0\n\tjnz 1b\n\tvzeroupper"
                     : "+r"(n) : : VIT_CLOBBERS);
  return double(iterations) * 12 * (dot ? 64 : 32) / (seconds_now() - t0);
}

// Best of three alternations of each, after one warm-up round (the first AVX-512 instructions of a
// process may run at a lower rate while the core changes its power license).
void measure_rates(Bf16Support& s) {
  constexpr long kIterations = 50000;  // ~0.1 ms of FMAs, ~0.4 ms of dot products at 0.5x
  rate(/*dot=*/false, kIterations);
  rate(/*dot=*/true, kIterations);
  double fma = 0, dot = 0;
  for (int round = 0; round < 3; ++round) {
    const double f = rate(/*dot=*/false, kIterations), d = rate(/*dot=*/true, kIterations);
    if (f > fma) fma = f;
    if (d > dot) dot = d;
  }
  s.fma_gflops = fma / 1e9;
  s.dot_gflops = dot / 1e9;
  s.dot_vs_fma = fma > 0 ? dot / fma : 0;
}

#endif  // VIT_X86

Bf16Support probe() {
  Bf16Support s;
  if (const char* pretend = std::getenv("VIT_TEST_BF16_RATIO")) {  // test hook (cpu_info.h)
    s.avx512_bf16 = true;
    s.dot_vs_fma = std::atof(pretend);
    return s;
  }
#ifdef VIT_X86
  detect(s);
  if (s.avx512_bf16) measure_rates(s);
#endif
  return s;
}

}  // namespace

const Bf16Support& bf16_support() {
  static const Bf16Support support = probe();
  return support;
}

double measure_bf16_dot_vs_fma() {
#ifdef VIT_X86
  Bf16Support s;
  detect(s);
  if (s.avx512_bf16) measure_rates(s);
  return s.dot_vs_fma;
#else
  return 0;
#endif
}

bool cpu_has_bf16() { return bf16_support().any(); }

bool cpu_has_fast_bf16() { return bf16_support().fast(); }

}  // namespace vit
