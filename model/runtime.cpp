#include <ATen/Parallel.h>

#include "runtime.h"

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

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

std::string loaded_blas_path() {
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("libblas.so") != std::string::npos) {
          *static_cast<std::string*>(data) = name;
          return 1;
        }
        return 0;
      },
      &found);
  if (found.empty()) return found;
  std::error_code ec;
  auto resolved = std::filesystem::canonical(found, ec);
  return ec ? found : resolved.string();
}

void relaunch_with_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (::setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0) != 0) return;
  ::execv("/proc/self/exe", argv);  // only returns on failure: carry on with the default policy
}

RuntimeInfo configure_runtime(int threads) {
  RuntimeInfo info;
  // Same effect as GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=<huge>:
  // keep freed tensor buffers in the heap instead of unmapping and faulting them back each step.
  info.malloc_tuned = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;

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
      << (info.malloc_tuned ? ", malloc tuned" : ", malloc NOT tuned");
  return out.str();
}

}  // namespace vit
