#include <ATen/Parallel.h>

#include "runtime.h"

#include <cpuid.h>
#include <link.h>
#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace vit {

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

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

namespace {

std::string loaded_library(const char* fragment) {
  std::pair<const char*, std::string> query{fragment, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        auto* q = static_cast<std::pair<const char*, std::string>*>(data);
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find(q->first) != std::string::npos) {
          q->second = name;
          return 1;
        }
        return 0;
      },
      &query);
  return query.second;
}

}  // namespace

std::string loaded_blas_path() {
  std::string found = loaded_library("libblas.so");
  if (found.empty()) return found;
  std::error_code ec;
  auto resolved = std::filesystem::canonical(found, ec);
  return ec ? found : resolved.string();
}

// Read by jemalloc at its initialization: never purge freed pages back to the OS, so tensor
// buffers are reused across training steps instead of being page-faulted in again.
extern "C" {
__attribute__((used, visibility("default"))) const char* malloc_conf =
    "dirty_decay_ms:-1,muzzy_decay_ms:-1";
}

void relaunch_with_openmp_policy(char** argv, const char* policy) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (::setenv("OMP_WAIT_POLICY", policy, /*overwrite=*/0) != 0) return;
  ::execv("/proc/self/exe", argv);  // only returns on failure: carry on with the default policy
}

RuntimeInfo configure_runtime(int threads) {
  RuntimeInfo info;
  // Same effect as GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=<huge>:
  // keep freed tensor buffers in the heap instead of unmapping and faulting them back each step.
  info.allocator = loaded_library("libjemalloc").empty() ? "glibc" : "jemalloc";
  info.malloc_tuned = info.allocator == "jemalloc" ||
                      (mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1);

  info.cores = available_cores();
  if (threads < 0 || threads > 1024)
    throw std::invalid_argument("--threads must be between 1 and 1024 (got " +
                                std::to_string(threads) + "); 0 or no flag uses every core (" +
                                std::to_string(info.cores) + ")");
  at::set_num_threads(threads > 0 ? threads : info.cores);
  info.threads = at::get_num_threads();

  info.blas_path = loaded_blas_path();
  info.blas_is_openblas = info.blas_path.find("openblas") != std::string::npos;
  if (!info.blas_is_openblas) {
    info.warning =
        "LibTorch is using " + (info.blas_path.empty() ? std::string("no BLAS") : info.blas_path) +
        ", not OpenBLAS: matrix products will be ~30x slower. Fix: run scripts/setup.sh as root, "
        "or: update-alternatives --set libblas.so.3-x86_64-linux-gnu "
        "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3";
  }
  return info;
}

std::string describe(const RuntimeInfo& info) {
  std::ostringstream out;
  out << "threads " << info.threads << " of " << info.cores << " cores, BLAS "
      << (info.blas_path.empty() ? "none" : info.blas_path)
      << ", allocator " << info.allocator << (info.malloc_tuned ? "" : " (NOT tuned)");
  return out.str();
}

}  // namespace vit
