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
// The widest float FMA the CPU and OS allow (512, 256 or 0 bits), for measure_rates.
int detect(Bf16Support& s) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return 0;
  __cpuid(1, eax, ebx, ecx, edx);
  if (!(ecx & bit_OSXSAVE)) return 0;
  const bool fma_avx = (ecx & bit_FMA) && (ecx & bit_AVX);
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__(".byte 0x0f, 0x01, 0xd0" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));  // xgetbv(0)
  // SSE | YMM: the AVX state; with opmask | ZMM_Hi256 | Hi16_ZMM: AVX-512's; TILECFG | TILEDATA: AMX's.
  const bool avx_usable = (xcr0_low & 0x6) == 0x6;
  const bool avx512_usable = (xcr0_low & 0xe6) == 0xe6;
  const bool amx_usable = (xcr0_low & 0x60000) == 0x60000;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx512f = avx512_usable && (ebx & (1u << 16));
  s.amx_bf16 = amx_usable && (edx & (1u << 22));  // CPUID.(7,0):EDX[22] AMX-BF16
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  s.avx512_bf16 = avx512f && (eax & (1u << 5));  // CPUID.(7,1):EAX[5]
  return avx512f ? 512 : avx_usable && fma_avx ? 256 : 0;
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
#define VIT_FMA256(i) "vfmadd231ps %%ymm12, %%ymm13, %%ymm" #i "\n\t"
#define VIT_DOT(i) "vdpbf16ps %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define VIT_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
                     "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "cc"

enum class Op { Fma256, Fma512, Dot512 };

// VDPBF16PS on zmm (16 lanes x 2 pairs x (mul + add) = 64 FLOPs), VFMADD231PS on zmm (32 FLOPs) or
// on ymm (16 FLOPs; needs only AVX + FMA).
double rate(Op op, long iterations) {
  long n = iterations;
  const double t0 = seconds_now();
  if (op == Op::Fma256)
    __asm__ volatile("vpxor %%ymm12, %%ymm12, %%ymm12\n\tvpxor %%ymm13, %%ymm13, %%ymm13\n\t"
                     "1:\n\t" VIT_R12(VIT_FMA256) "dec %0\n\tjnz 1b\n\tvzeroupper"
                     : "+r"(n) : : VIT_CLOBBERS);
  else if (op == Op::Dot512)
    __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"
                     "1:\n\t" VIT_R12(VIT_DOT) "dec %0\n\tjnz 1b\n\tvzeroupper"
                     : "+r"(n) : : VIT_CLOBBERS);
  else
    __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"
                     "1:\n\t" VIT_R12(VIT_FMA) "dec %0\n\tjnz 1b\n\tvzeroupper"
                     : "+r"(n) : : VIT_CLOBBERS);
  const int flops = op == Op::Dot512 ? 64 : op == Op::Fma512 ? 32 : 16;
  return double(iterations) * 12 * flops / (seconds_now() - t0);
}

// Best of 16 alternations of each, after one warm-up round (the first AVX-512 instructions of a
// process may run at a lower rate while the core changes its power license): the float FMA on the
// widest registers there are (`fma_bits`), and the bf16 dot product where the CPU has it. Best of
// three gave 55-95 GFLOP/s from one process to the next on a 2-core Zen 3 VM (a neighbour's burst
// costs a 0.1 ms round half its rate); best of 16, ~2 ms of FMAs, gave 93-103 over six processes,
// the machine's own drift.
void measure_rates(Bf16Support& s, int fma_bits) {
  if (fma_bits == 0) return;
  constexpr long kIterations = 50000;  // ~0.1 ms of FMAs, ~0.4 ms of dot products at 0.5x (~8 ms in all)
  const Op fma_op = fma_bits == 512 ? Op::Fma512 : Op::Fma256;
  const bool dots = s.avx512_bf16;
  rate(fma_op, kIterations);
  if (dots) rate(Op::Dot512, kIterations);
  double fma = 0, dot = 0;
  for (int round = 0; round < 16; ++round) {
    const double f = rate(fma_op, kIterations), d = dots ? rate(Op::Dot512, kIterations) : 0;
    if (f > fma) fma = f;
    if (d > dot) dot = d;
  }
  s.fma_bits = fma_bits;
  s.fma_gflops = fma / 1e9;
  s.dot_gflops = dot / 1e9;
  s.dot_vs_fma = dots && fma > 0 ? dot / fma : 0;
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
  measure_rates(s, detect(s));
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
  const int fma_bits = detect(s);
  if (s.avx512_bf16) measure_rates(s, fma_bits);
  return s.dot_vs_fma;
#else
  return 0;
#endif
}

bool cpu_has_bf16() { return bf16_support().any(); }

bool cpu_has_fast_bf16() { return bf16_support().fast(); }

}  // namespace vit
