// Process-wide speed settings every ViT Studio program applies at startup (CLI, GUI, benches).
//
// - malloc: glibc hands large freed buffers back to the OS and every training step page-faults
//   them in again. vit_core links Debian's jemalloc with purging off (malloc_conf in runtime.cpp):
//   measured on keras-cifar training, glibc with mallopt (or GLIBC_TUNABLES) still took ~1.1 M page
//   faults for 6 steps and ran 54-71 images/s; jemalloc without decay 101-107 (jemalloc with its
//   default 10 s decay: 11). mallopt stays as the fallback when jemalloc is not the allocator.
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
  std::string blas_path;     // resolved path of the loaded libblas.so.3 ("" if none found)
  bool blas_is_openblas = false;
  bool malloc_tuned = false;
  std::string allocator;      // "jemalloc" or "glibc"
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

// Call once at program start, before the first tensor is created. threads <= 0 means one per
// available core. Throws std::invalid_argument for an impossible thread count.
RuntimeInfo configure_runtime(int threads = 0);

// Resolved path of the libblas.so.3 loaded into this process, "" when none is loaded.
std::string loaded_blas_path();

std::string describe(const RuntimeInfo& info);

}  // namespace vit
