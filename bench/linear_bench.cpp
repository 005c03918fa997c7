// Linear layers: oneDNN's matmul (model/onednn_linear.h) against LibTorch's at::linear, forward
// only, float (LibTorch: the system BLAS, Debian's OpenBLAS) and bf16 (LibTorch's own oneDNN
// path), on ViT-B/16's four linear shapes at batch 1 (197 tokens: qkv, proj, fc1, fc2) and
// keras-cifar's at a shard of 128 images. Then keras-cifar's layers forward and backward under
// bf16 autocast (mixed-precision training), and the GELU after fc1 (float and bf16): LibTorch's
// at::gelu after the oneDNN layer against the layer with GELU as its post-op (onednn_linear_gelu,
// inference); then fmnist-small's layers forward and backward in float, as GFLOP/s and a share of
// the float FMA peak. Figures only.
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

#include "cpu_info.h"       // bf16_support: the FMA peak
#include "data_parallel.h"  // Bf16AutocastScope
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
  std::printf("  %-16s %8s %8s %8s %6s %10s %10s %7s\n", "layer", "rows", "in", "out", "type", "LibTorch", "oneDNN", "ratio");
  for (const auto type : {torch::kFloat, torch::kBFloat16}) {
    for (const auto& s : shapes) {
      const auto x = torch::randn({s.rows, s.in}).to(type), w = torch::randn({s.out, s.in}).to(type);
      const auto b = torch::randn({s.out}).to(type);
      const char* tname = type == torch::kFloat ? "float" : "bf16";
      if (!vit::onednn_linear(x, w, b)) {
        std::printf("  %-16s %6s oneDNN linear not available here\n", s.name, tname);
        continue;
      }
      const double aten = median_ms([&] { (void)torch::nn::functional::linear(x, w, b); }, repeats, 2);
      const double ours = median_ms([&] { (void)*vit::onednn_linear(x, w, b); }, repeats, 2);
      std::printf("  %-16s %8lld %8lld %8lld %6s %7.3f ms %7.3f ms %6.2fx\n", s.name, (long long)s.rows,
                  (long long)s.in, (long long)s.out, tname, aten, ours, aten / ours);
    }
  }
  // Mixed-precision training: float weights and activations of keras-cifar's (B, T, C) shape under
  // bf16 autocast, forward and backward, LibTorch's autocast linear against ours.
  std::printf("\n  bf16 autocast, f+b   LibTorch     oneDNN   ratio\n");
  for (const auto& s : {shapes[4], shapes[5]}) {
    auto x = torch::randn({128, 145, s.in}).requires_grad_(true);
    auto w = (torch::randn({s.out, s.in}) * 0.1).requires_grad_(true), b = torch::randn({s.out}).requires_grad_(true);
    const auto dy = torch::randn({128, 145, s.out}).to(torch::kBFloat16);
    torch::GradMode::set_enabled(true);
    auto step = [&](bool ours) {
      torch::Tensor y;
      {
        vit::Bf16AutocastScope autocast(true);
        y = ours ? *vit::onednn_linear(x, w, b) : torch::nn::functional::linear(x, w, b);
      }
      torch::autograd::grad({y}, {x, w, b}, {dy});
    };
    {
      vit::Bf16AutocastScope autocast(true);
      if (!vit::onednn_linear(x, w, b)) {
        std::printf("  %-16s oneDNN bf16 linear not available here\n", s.name);
        continue;
      }
    }
    const double aten = median_ms([&] { step(false); }, repeats, 2);
    const double ours = median_ms([&] { step(true); }, repeats, 2);
    std::printf("  %-16s %8.3f ms %7.3f ms %6.2fx\n", s.name, aten, ours, aten / ours);
    torch::GradMode::set_enabled(false);
  }

  // The default model in training: fmnist-small's four layers on one data-parallel shard (32 images
  // x 13 tokens = 416 rows), float, forward and backward (dx and dW: 3 GEMMs of 2 x rows x in x out
  // FLOPs), as GFLOP/s and their share of the float FMA peak of the threads (cpu_info.h). With
  // `linear_bench 1` this is one core, as each shard runs on one (README, Speed on any x86 CPU).
  {
    const double peak = vit::bf16_support().fma_gflops * runtime.threads;
    std::printf("\n  fmnist-small f+b, 416 rows, float: GFLOP/s (share of the %.0f GFLOP/s FMA peak)\n", peak);
    std::printf("  %-16s %18s %18s\n", "layer", "LibTorch", "oneDNN");
    const std::vector<Shape> small = {{"fmnist qkv", 416, 128, 384}, {"fmnist proj", 416, 128, 128},
                                      {"fmnist fc1", 416, 128, 256}, {"fmnist fc2", 416, 256, 128}};
    torch::GradMode::set_enabled(true);
    for (const auto& s : small) {
      auto x = torch::randn({s.rows, s.in}).requires_grad_(true);
      auto w = (torch::randn({s.out, s.in}) * 0.1).requires_grad_(true), b = torch::randn({s.out}).requires_grad_(true);
      const auto dy = torch::randn({s.rows, s.out});
      if (!vit::onednn_linear(x, w, b)) {
        std::printf("  %-16s oneDNN float linear not available here\n", s.name);
        continue;
      }
      auto step = [&](bool ours) {
        const auto y = ours ? *vit::onednn_linear(x, w, b) : torch::nn::functional::linear(x, w, b);
        torch::autograd::grad({y}, {x, w, b}, {dy});
      };
      const double flops = 3.0 * 2 * s.rows * s.in * s.out;
      auto cell = [&](double ms) {
        char buf[64];
        const double gflops = flops / ms / 1e6;
        std::snprintf(buf, sizeof buf, "%6.1f (%3.0f%%)", gflops, peak > 0 ? 100 * gflops / peak : 0.0);
        return std::string(buf);
      };
      const double aten = median_ms([&] { step(false); }, repeats, 2);
      const double ours = median_ms([&] { step(true); }, repeats, 2);
      std::printf("  %-16s %18s %18s\n", s.name, cell(aten).c_str(), cell(ours).c_str());
    }
    torch::GradMode::set_enabled(false);
  }

  std::printf("\n  GELU after fc1     type  at::gelu after  fused post-op   ratio   (ms)\n");
  for (const auto type : {torch::kFloat, torch::kBFloat16}) {
    for (const auto& s : {shapes[2], shapes[5]}) {
      const auto x = torch::randn({s.rows, s.in}).to(type), w = (torch::randn({s.out, s.in}) * 0.05).to(type);
      const auto b = torch::randn({s.out}).to(type);
      if (!vit::onednn_linear_gelu(x, w, b)) {
        std::printf("  %-16s %6s  not available here\n", s.name, type == torch::kFloat ? "float" : "bf16");
        continue;
      }
      const double aten = median_ms([&] { (void)torch::gelu(*vit::onednn_linear(x, w, b)); }, repeats, 2);
      const double fused = median_ms([&] { (void)*vit::onednn_linear_gelu(x, w, b); }, repeats, 2);
      std::printf("  %-16s %6s  %14.3f  %13.3f  %6.2fx\n", s.name, type == torch::kFloat ? "float" : "bf16",
                  aten, fused, aten / fused);
    }
  }
  return 0;
}
