#include <ATen/Parallel.h>

#include "runtime.h"

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "onednn_linear.h"  // bf16_gemms_on_float_units

namespace vit {

namespace {

// jemalloc's opt.thp, asked through its mallctl (looked up at run time: the symbol is there only
// when jemalloc is the allocator); "" when it cannot say.
std::string jemalloc_thp() {
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  const auto mallctl = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
  const char* mode = nullptr;
  size_t size = sizeof(mode);
  if (!mallctl || mallctl("opt.thp", &mode, &size, nullptr, 0) != 0 || !mode) return "";
  return mode;
}

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

// "AMD EPYC (family 26, model 2)" from /proc/cpuinfo.
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name, family, model;
  auto value = [](const std::string& l) {
    const auto colon = l.find(':');
    return colon == std::string::npos ? std::string() : l.substr(l.find_first_not_of(" \t", colon + 1));
  };
  while (std::getline(in, line) && (name.empty() || family.empty() || model.empty())) {
    if (line.rfind("model name", 0) == 0 && name.empty()) name = value(line);
    else if (line.rfind("cpu family", 0) == 0 && family.empty()) family = value(line);
    else if (line.rfind("model", 0) == 0 && line.rfind("model name", 0) != 0 && model.empty()) model = value(line);
  }
  return name + (family.empty() ? "" : " (family " + family + ", model " + model + ")");
}

// A float GEMM through LibTorch (and so the BLAS) against a double-precision loop: the largest
// relative error. Odd sizes exercise the kernels' edge handling.
double gemm_self_check() {
  const int64_t m = 67, k = 93, n = 51;
  at::Tensor a = at::rand({m, k}) - 0.5, b = at::rand({k, n}) - 0.5;
  const at::Tensor c = at::mm(a, b).contiguous();
  a = a.contiguous(), b = b.contiguous();
  const float *pa = a.data_ptr<float>(), *pb = b.data_ptr<float>(), *pc = c.data_ptr<float>();
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0;
      for (int64_t l = 0; l < k; ++l) ref += double(pa[i * k + l]) * double(pb[l * n + j]);
      worst = std::max(worst, std::fabs(ref - double(pc[i * n + j])));
      scale = std::max(scale, std::fabs(ref));
    }
  return worst / std::max(scale, 1e-30);
}

// The instruction set oneDNN dispatches to (dnnl_get_effective_cpu_isa), "" when not loaded.
std::string onednn_isa() {
  using Fn = int (*)();
  void* handle = ::dlopen(nullptr, RTLD_NOW);
  auto* fn = handle ? reinterpret_cast<Fn>(::dlsym(handle, "dnnl_get_effective_cpu_isa")) : nullptr;
  if (!fn) return "";
  // dnnl_cpu_isa_t (oneDNN 2.x/3.x): bit flags, named by the largest set they contain.
  const int isa = fn();
  struct Named { int bits; const char* name; };
  static const Named names[] = {{0x3e7, "avx512_core_amx"}, {0xe7, "avx512_core_bf16"},
                                {0x67, "avx512_core_vnni"}, {0x27, "avx512_core"},
                                {0x7, "avx2"}, {0x3, "avx"}, {0x1, "sse41"}};
  for (const auto& n : names)
    if ((isa & n.bits) == n.bits) return n.name;
  return "isa " + std::to_string(isa);
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
// buffers are reused across training steps instead of being page-faulted in again; and back its
// memory with transparent huge pages (madvise, which Debian's default THP mode "madvise"
// honours), so that streaming keras-cifar's attention probabilities (43 MB a layer at batch 128)
// and activations walks 2 MB pages instead of 4 KB ones: keras-cifar bf16 steps ~3.5% faster,
// fmnist-small's unchanged, peak memory +4% and +11%. The price is paid once, when the first step
// touches its memory: the kernel clears 2 MB pages (in this VM keras-cifar's first step took
// 1.3-2.7 s longer, 3.7-6.2 s of system time instead of 0.7-0.8), repaid within its first epoch
// (195 steps at batch 256). MALLOC_CONF in the environment overrides either (e.g.
// MALLOC_CONF=thp:default).
extern "C" {
__attribute__((used, visibility("default"))) const char* malloc_conf =
    "dirty_decay_ms:-1,muzzy_decay_ms:-1,thp:always";
}

void relaunch_with_openmp_policy(char** argv, const char* policy) {
  relaunch_with_best_settings(argv, policy);
}

namespace {

// OpenBLAS's name of the kernel set it uses (openblas_get_corename), "" for another BLAS.
std::string openblas_core() {
  using Fn = char* (*)();
  void* handle = ::dlopen(nullptr, RTLD_NOW);
  auto* fn = handle ? reinterpret_cast<Fn>(::dlsym(handle, "openblas_get_corename")) : nullptr;
  const char* name = fn ? fn() : nullptr;
  return name ? name : "";
}

// A rough order of OpenBLAS's x86 kernel sets by the instructions they use.
int core_rank(const std::string& core) {
  std::string c = core;
  for (auto& ch : c) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (c == "cooperlake" || c == "sapphirerapids") return 4;
  if (c == "skylakex") return 3;
  if (c == "haswell" || c == "zen" || c == "skylake") return 2;
  if (c == "sandybridge") return 1;
  return 0;  // Prescott, Core2, Nehalem, Barcelona, ...: SSE only
}

// Runs this program again with the same arguments and the current environment (from
// /proc/self/cmdline, for callers without argv). Returns only when that failed.
void reexecute_self() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t start = 0; start < all.size();) {
    const size_t end = all.find('\0', start);
    args.push_back(all.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (args.empty()) return;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  ::execv("/proc/self/exe", argv.data());
}

}  // namespace

std::string best_openblas_core() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (avx512) return cpu_has_bf16() ? "Cooperlake" : "SkylakeX";  // Cooperlake adds bf16 kernels
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

void relaunch_with_best_settings(char** argv, const char* omp_policy) {
  bool change = false;
  if (omp_policy && !std::getenv("OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", omp_policy, 0);
    change = true;
  }
  if (!std::getenv("OPENBLAS_CORETYPE") && !std::getenv("VIT_BLAS_CORE_CHECKED")) {
    const std::string chosen = openblas_core(), best = best_openblas_core();
    if (!chosen.empty() && !best.empty() && core_rank(chosen) < core_rank(best)) {
      ::setenv("OPENBLAS_CORETYPE", best.c_str(), 1);
      ::setenv("VIT_BLAS_CORE_SELECTED", chosen.c_str(), 1);  // what OpenBLAS chose, for the log
      change = true;
    }
  }
  if (change) ::execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

namespace {
RuntimeInfo g_last;  // what runtime_json() reports
}  // namespace

RuntimeInfo configure_runtime(int threads) {
  RuntimeInfo info;
  // Same effect as GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=<huge>:
  // keep freed tensor buffers in the heap instead of unmapping and faulting them back each step.
  info.allocator = loaded_library("libjemalloc").empty() ? "glibc" : "jemalloc";
  if (info.allocator == "jemalloc") info.huge_pages = jemalloc_thp();
  info.malloc_tuned = info.allocator == "jemalloc" ||
                      (mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1);

  info.cores = available_cores();
  if (threads < 0 || threads > 1024)
    throw std::invalid_argument("--threads must be between 1 and 1024 (got " +
                                std::to_string(threads) + "); 0 or no flag uses every core (" +
                                std::to_string(info.cores) + ")");
  at::set_num_threads(threads > 0 ? threads : info.cores);
  info.threads = at::get_num_threads();

  info.cpu = cpu_model();
  info.blas_path = loaded_blas_path();
  info.blas_is_openblas = info.blas_path.find("openblas") != std::string::npos;
  info.blas_core = openblas_core();
  if (!info.blas_core.empty()) {
    if (const char* before = std::getenv("VIT_BLAS_CORE_SELECTED"))
      info.blas_core_source = std::string("selected by ViT Studio for this CPU (OpenBLAS chose ") + before + ")";
    else if (const char* rejected = std::getenv("VIT_BLAS_CORE_REJECTED"))
      info.blas_core_source = std::string("chosen by OpenBLAS; ViT Studio's ") + rejected;
    else if (std::getenv("OPENBLAS_CORETYPE"))
      info.blas_core_source = "OPENBLAS_CORETYPE in the environment";
    else
      info.blas_core_source = "chosen by OpenBLAS";
  }
  info.blas_check_error = gemm_self_check();
  // Fault injection for tests: the self-check fails, as it would with a kernel set that computes
  // wrong results on this CPU.
  if (std::getenv("VIT_TEST_BLAS_CHECK_FAIL")) info.blas_check_error = INFINITY;
  if (!(info.blas_check_error < 1e-4)) {
    if (const char* before = std::getenv("VIT_BLAS_CORE_SELECTED")) {
      // Our choice of kernel set computed a wrong product: run again on OpenBLAS's own choice.
      std::ostringstream why;
      why << info.blas_core << " failed the GEMM self-check (relative error " << info.blas_check_error << ")";
      ::setenv("VIT_BLAS_CORE_REJECTED", why.str().c_str(), 1);
      ::setenv("VIT_BLAS_CORE_CHECKED", before, 1);  // relaunch_with_best_settings: no second try
      ::unsetenv("VIT_BLAS_CORE_SELECTED");
      ::unsetenv("OPENBLAS_CORETYPE");
      reexecute_self();  // returns only if it failed: keep going with the warning below
    }
    std::ostringstream w;
    w << "the BLAS (" << info.blas_core << ") failed a GEMM self-check (relative error "
      << info.blas_check_error << "): results may be wrong";
    if (std::getenv("VIT_BLAS_CORE_SELECTED"))
      w << "; ViT Studio selected that kernel set: set OPENBLAS_CORETYPE="
        << std::getenv("VIT_BLAS_CORE_SELECTED") << " to use OpenBLAS's own choice";
    info.warning += (info.warning.empty() ? "" : "; ") + w.str();
  } else if (const char* rejected = std::getenv("VIT_BLAS_CORE_REJECTED")) {
    info.warning += (info.warning.empty() ? "" : "; ") + std::string("ViT Studio's choice of BLAS kernels, ") +
                    rejected + ", was dropped: running on OpenBLAS's own " + info.blas_core +
                    " (slower on this CPU; a newer OpenBLAS may know it)";
  }
  info.onednn_isa = onednn_isa();
  if (!info.blas_is_openblas) {
    info.warning =
        "LibTorch is using " + (info.blas_path.empty() ? std::string("no BLAS") : info.blas_path) +
        ", not OpenBLAS: matrix products will be ~30x slower. Fix: run scripts/setup.sh as root, "
        "or: update-alternatives --set libblas.so.3-x86_64-linux-gnu "
        "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3";
  }
  g_last = info;
  return info;
}

std::string describe(const RuntimeInfo& info) {
  std::ostringstream out;
  out << "threads " << info.threads << " of " << info.cores << " cores, BLAS "
      << (info.blas_path.empty() ? "none" : info.blas_path);
  if (!info.blas_core.empty()) out << " (" << info.blas_core << ", " << info.blas_core_source << ")";
  if (!info.onednn_isa.empty()) out << ", oneDNN " << info.onednn_isa;
  out << ", allocator " << info.allocator << (info.malloc_tuned ? "" : " (NOT tuned)");
  if (!info.huge_pages.empty()) out << " (huge pages " << info.huge_pages << ")";
  if (bf16_support().any()) out << ", bf16: " << bf16_support().describe();
  if (bf16_gemms_on_float_units()) out << ", bf16 GEMMs on the float units";
  return out.str();
}

std::string runtime_json() {
  std::ostringstream out;
  auto quoted = [](const std::string& v) {
    std::string q = "\"";
    for (char c : v) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  };
  out << "{\"cpu\":" << quoted(g_last.cpu) << ",\"cores\":" << g_last.cores << ",\"threads\":"
      << g_last.threads << ",\"blas\":" << quoted(g_last.blas_path) << ",\"blas_core\":"
      << quoted(g_last.blas_core) << ",\"blas_core_source\":" << quoted(g_last.blas_core_source)
      << ",\"onednn_isa\":" << quoted(g_last.onednn_isa) << ",\"allocator\":" << quoted(g_last.allocator)
      << ",\"huge_pages\":" << quoted(g_last.huge_pages)
      << ",\"bf16\":" << quoted(bf16_support().describe()) << ",\"bf16_dot_vs_fma\":"
      << bf16_support().dot_vs_fma << ",\"core_fp32_fma_gflops\":" << bf16_support().fma_gflops
      << ",\"core_bf16_dot_gflops\":" << bf16_support().dot_gflops << ",\"bf16_faster_than_fp32\":" << (bf16_support().fast() ? "true" : "false")
      << ",\"bf16_gemms_on_float_units\":" << (bf16_gemms_on_float_units() ? "true" : "false") << "}";
  return out.str();
}

}  // namespace vit
