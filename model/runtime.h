// Process-wide speed settings every ViT Studio program applies at startup (CLI, GUI, benches).
//
// - malloc: glibc hands large freed buffers back to the OS and every training step page-faults
//   them in again. vit_core links Debian's jemalloc with purging off (malloc_conf in runtime.cpp):
//   measured on keras-cifar training, glibc with mallopt (or GLIBC_TUNABLES) still took ~1.1 M page
//   faults for 6 steps and ran 54-71 images/s; jemalloc without decay 101-107 (jemalloc with its
//   default 10 s decay: 11). mallopt stays as the fallback when jemalloc is not the allocator.
//   jemalloc also backs its memory with transparent huge pages (thp:always: keras-cifar steps
//   ~3.5% faster, paid once by a slower first step), reported as RuntimeInfo::huge_pages.
// - threads: LibTorch starts with 1 intra-op thread here; we use every core we may run on.
// - BLAS: LibTorch's float GEMM goes through libblas.so.3; Debian's reference BLAS is ~30x slower
//   than OpenBLAS, so we report which one is loaded and warn when it is the reference one.
#pragma once

#include <string>

#include "cpu_info.h"

namespace vit {

struct RuntimeInfo {
  int threads = 1;           // intra-op threads now in use
  int cores = 1;             // cores this process may run on (sched_getaffinity)
  std::string cpu;           // "AMD EPYC (family 26, model 2)"
  std::string blas_path;     // resolved path of the loaded libblas.so.3 ("" if none found)
  bool blas_is_openblas = false;
  std::string blas_core;     // OpenBLAS's kernel set ("SkylakeX"), "" for another BLAS
  std::string blas_core_source;  // who chose it: OpenBLAS, the environment, or ViT Studio
  double blas_check_error = 0;   // relative error of the startup GEMM self-check (< 1e-5 expected)
  std::string onednn_isa;    // the instruction set oneDNN (bf16 GEMMs) uses, "" when unknown
  bool malloc_tuned = false;
  std::string allocator;      // "jemalloc" or "glibc"
  std::string huge_pages;     // jemalloc's transparent huge page mode ("always" unless
                              // MALLOC_CONF says otherwise), "" for glibc
  std::string warning;       // non-empty when something will make training slow
};

// libgomp reads OMP_WAIT_POLICY once, when it loads, so a program that wants a policy for its
// users must re-execute itself with the variable set. Measured on keras-cifar training (batch 256,
// 2 threads, idle machine): ACTIVE 101-107 images/s, unset (spin then sleep) 88, PASSIVE 59-65,
// because a small ViT runs thousands of short parallel regions a step and PASSIVE pays a futex
// wake-up for each. ACTIVE keeps idle worker threads spinning, which suits a batch program that
// exits when done (the `vit` CLI), not a desktop window idling between runs. Call first thing in
// main(); it returns when the user already chose a policy or the relaunch failed.
void relaunch_with_openmp_policy(char** argv, const char* policy);

// OpenBLAS picks its kernels from the CPU's model number, and an OpenBLAS older than the CPU falls
// back to its generic SSE3 kernels ("Prescott"): Debian 12's 0.3.21 did so on an Intel family 6
// model 207, where fp32 training ran 2.2-2.5x faster with its SkylakeX/Cooperlake kernels and
// ViT-B/16 inference 3.4-5.9x (FACTS.md). When the user has not set OPENBLAS_CORETYPE and the core
// OpenBLAS chose is below what the CPU supports (AVX-512 with bf16: Cooperlake; AVX-512:
// SkylakeX; AVX2 + FMA: Haswell), the program re-executes itself with the better one, together
// with `omp_policy` for OMP_WAIT_POLICY when not null. configure_runtime() then checks a GEMM
// against a double-precision reference and falls back to OpenBLAS's own choice if it fails.
// Call first thing in main(); returns when nothing needs to change or the relaunch failed.
void relaunch_with_best_settings(char** argv, const char* omp_policy);
// The OpenBLAS kernel set this CPU supports best ("" when the CPU has no AVX2).
std::string best_openblas_core();

// Call once at program start, before the first tensor is created. threads <= 0 means one per
// available core. Throws std::invalid_argument for an impossible thread count.
RuntimeInfo configure_runtime(int threads = 0);

// Resolved path of the libblas.so.3 loaded into this process, "" when none is loaded.
std::string loaded_blas_path();

std::string describe(const RuntimeInfo& info);
// The last configure_runtime() of this process as JSON (cpu, threads, blas, blas_core, ...): what
// a run's config.json records of the machine it ran on.
std::string runtime_json();

}  // namespace vit
