// Float linear layers: oneDNN's matmul (model/onednn_linear.h) against LibTorch's at::linear
// (the system BLAS, Debian's OpenBLAS), forward only, on ViT-B/16's four linear shapes at batch 1
// (197 tokens: qkv, proj, fc1, fc2) and keras-cifar's at a shard of 128 images. Figures only.
//
//   build/bench/linear_bench [threads=all cores] [repeats=20]
//   OPENBLAS_CORETYPE=Haswell|SkylakeX|Cooperlake build/bench/linear_bench   (OpenBLAS's kernels)
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "onednn_linear.h"
#include "median_ms.h"
#include "runtime.h"

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");
  const auto runtime = vit::configure_runtime(argc > 1 ? std::atoi(argv[1]) : 0);
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  std::printf("linear_bench: %s, %d thread(s), OpenBLAS %s (%s), oneDNN %s\n", runtime.cpu.c_str(),
              runtime.threads, runtime.blas_core.c_str(), runtime.blas_core_source.c_str(),
              runtime.onednn_isa.c_str());
  torch::NoGradGuard no_grad;
  struct Shape { const char* name; int64_t rows, in, out; };
  const std::vector<Shape> shapes = {
      {"vit-b16 qkv", 197, 768, 2304}, {"vit-b16 proj", 197, 768, 768},
      {"vit-b16 fc1", 197, 768, 3072}, {"vit-b16 fc2", 197, 3072, 768},
      {"keras-cifar qkv", 128 * 145, 64, 192}, {"keras-cifar fc1", 128 * 145, 64, 128}};
  std::printf("  %-16s %8s %8s %8s %10s %10s %7s\n", "layer", "rows", "in", "out", "LibTorch", "oneDNN", "ratio");
  for (const auto& s : shapes) {
    const auto x = torch::randn({s.rows, s.in}), w = torch::randn({s.out, s.in}), b = torch::randn({s.out});
    if (!vit::onednn_linear(x, w, b)) {
      std::printf("  %-16s oneDNN linear not available in this build\n", s.name);
      continue;
    }
    const double aten = median_ms([&] { (void)torch::nn::functional::linear(x, w, b); }, repeats, 2);
    const double ours = median_ms([&] { (void)*vit::onednn_linear(x, w, b); }, repeats, 2);
    std::printf("  %-16s %8lld %8lld %8lld %7.3f ms %7.3f ms %6.2fx\n", s.name, (long long)s.rows,
                (long long)s.in, (long long)s.out, aten, ours, aten / ours);
  }
  return 0;
}
