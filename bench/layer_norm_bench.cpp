// Layer norms: oneDNN's layer_normalization (model/onednn_layer_norm.h) against LibTorch's
// at::layer_norm, on ViT-B/16's tokens at batch 1 (197 x 768; inference, float and bf16) and
// keras-cifar's at a shard of 128 images (18,560 x 64; training, forward and backward, float as
// under autocast and bf16). Figures only.
//
//   build/bench/layer_norm_bench [threads=1] [repeats=20]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

#include "median_ms.h"
#include "onednn_layer_norm.h"
#include "runtime.h"

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");
  const auto runtime = vit::configure_runtime(argc > 1 ? std::atoi(argv[1]) : 1);
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  std::printf("layer_norm_bench: %s, %d thread(s), oneDNN %s\n", runtime.cpu.c_str(), runtime.threads,
              runtime.onednn_isa.c_str());
  std::printf("  %-28s %6s %10s %10s %7s\n", "shape", "type", "LibTorch", "oneDNN", "ratio");
  struct Case { const char* name; int64_t rows, features; bool backward; };
  const Case cases[] = {{"vit-b16 tokens, forward", 197, 768, false},
                        {"keras-cifar shard, f+b", 128 * 145, 64, true}};
  for (const auto& c : cases) {
    for (const auto type : {torch::kFloat, torch::kBFloat16}) {
      const char* tname = type == torch::kFloat ? "float" : "bf16";
      const auto x = torch::randn({c.rows, c.features}).to(type).requires_grad_(c.backward);
      const auto w = torch::randn({c.features}).to(type).requires_grad_(c.backward);
      const auto b = torch::randn({c.features}).to(type).requires_grad_(c.backward);
      const auto dy = torch::randn({c.rows, c.features}).to(type);
      if (!vit::onednn_layer_norm(x, w, b, 1e-6)) {
        std::printf("  %-28s %6s  oneDNN layer norm not available here\n", c.name, tname);
        continue;
      }
      auto time = [&](auto&& norm) {
        return median_ms([&] {
          torch::AutoGradMode grad(c.backward);
          const auto y = norm();
          if (c.backward) torch::autograd::grad({y}, {x, w, b}, {dy});
        }, repeats, 2);
      };
      const double aten = time([&] { return torch::layer_norm(x, {c.features}, w, b, 1e-6); });
      const double ours = time([&] { return *vit::onednn_layer_norm(x, w, b, 1e-6); });
      std::printf("  %-28s %6s %7.3f ms %7.3f ms %6.2fx\n", c.name, tname, aten, ours, aten / ours);
    }
  }
  return 0;
}
