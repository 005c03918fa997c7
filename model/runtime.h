// Process-wide speed settings every ViT Studio program applies at startup (CLI, GUI, benches).
//
// - malloc: glibc hands large freed buffers back to the OS and every training step page-faults
//   them in again (measured in the Python peer: 16.5 s -> 5.2 s a step with mmap disabled and trim
//   off). We set the same two knobs with mallopt so no user has to set GLIBC_TUNABLES.
// - threads: LibTorch starts with 1 intra-op thread here; we use every core we may run on.
// - BLAS: LibTorch's float GEMM goes through libblas.so.3; Debian's reference BLAS is ~30x slower
//   than OpenBLAS, so we report which one is loaded and warn when it is the reference one.
#pragma once

#include <string>

namespace vit {

struct RuntimeInfo {
  int threads = 1;           // intra-op threads now in use
  int cores = 1;             // cores this process may run on (sched_getaffinity)
  std::string blas_path;     // resolved path of the loaded libblas.so.3 ("" if none found)
  bool blas_is_openblas = false;
  bool malloc_tuned = false;
  std::string warning;       // non-empty when something will make training slow
};

// OpenMP threads that spin while waiting steal the core from anything else running (the GUI, the
// data thread, another program): measured here with one core busy, `vit train` on fmnist-small
// fell from 623 images/s (1 thread) to 265 (2 threads, default policy); with
// OMP_WAIT_POLICY=PASSIVE it kept 571, at a 7% cost on an idle machine (735 -> 685). libgomp reads
// the variable once when it loads, so the only way to set it for the user is to re-execute the
// program with it set. Call first thing in main(); it returns when no relaunch is needed or it
// failed, and never returns otherwise. A user's own OMP_WAIT_POLICY is respected.
void relaunch_with_passive_openmp(char** argv);

// Call once at program start, before the first tensor is created. threads <= 0 means one per
// available core. Throws std::invalid_argument for an impossible thread count.
RuntimeInfo configure_runtime(int threads = 0);

// The cores this process may run on.
int available_cores();
// Resolved path of the libblas.so.3 loaded into this process, "" when none is loaded.
std::string loaded_blas_path();

std::string describe(const RuntimeInfo& info);

}  // namespace vit
