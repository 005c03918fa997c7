// Layer norms: our kernels (model/fused_layer_norm.h) and oneDNN's layer_normalization
// (model/onednn_layer_norm.h) against LibTorch's at::layer_norm, on ViT-B/16's tokens at batch 1
// (197 x 768; inference, float and bf16) and keras-cifar's at a shard of 128 images (18,560 x 64;
// training, forward and backward: float, bf16, and float in -> bf16 out as a block's norms run
// under bf16 autocast, where LibTorch and oneDNN normalize in float and the result is cast).
// Figures only.
//
//   build/bench/layer_norm_bench [threads=1] [repeats=20]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "fused_layer_norm.h"
#include "median_ms.h"
#include "onednn_layer_norm.h"
#include "runtime.h"

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");
  const auto runtime = vit::configure_runtime(argc > 1 ? std::atoi(argv[1]) : 1);
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  std::printf("layer_norm_bench: %s, %d thread(s), oneDNN %s, our kernels %s\n", runtime.cpu.c_str(),
              runtime.threads, runtime.onednn_isa.c_str(), vit::fused_layer_norm_isa().c_str());
  std::printf("  %-28s %12s %10s %10s %10s %8s %8s\n", "shape", "type", "LibTorch", "oneDNN", "ours",
              "/oneDNN", "/LibTorch");
  struct Case { const char* name; int64_t rows, features; bool backward; };
  const Case cases[] = {{"vit-b16 tokens, forward", 197, 768, false},
                        {"keras-cifar shard, f+b", 128 * 145, 64, true}};
  struct Types { torch::ScalarType in, out; const char* name; };
  const Types types[] = {{torch::kFloat, torch::kFloat, "float"},
                         {torch::kBFloat16, torch::kBFloat16, "bf16"},
                         {torch::kFloat, torch::kBFloat16, "float->bf16"}};
  for (const auto& c : cases) {
    for (const auto& t : types) {
      const auto x = torch::randn({c.rows, c.features}).to(t.in).requires_grad_(c.backward);
      const auto w = torch::randn({c.features}).to(t.in).requires_grad_(c.backward);
      const auto b = torch::randn({c.features}).to(t.in).requires_grad_(c.backward);
      const auto dy = torch::randn({c.rows, c.features}).to(t.out);
      const std::optional<at::ScalarType> out = t.out;
      auto cast = [&](const torch::Tensor& y) { return y.to(t.out); };
      auto time = [&](auto&& norm) {
        return median_ms([&] {
          torch::AutoGradMode grad(c.backward);
          const auto y = norm();
          if (c.backward) torch::autograd::grad({y}, {x, w, b}, {dy});
        }, repeats, 2);
      };
      const double aten = time([&] { return cast(torch::layer_norm(x, {c.features}, w, b, 1e-6)); });
      const bool have_onednn = vit::onednn_layer_norm(x, w, b, 1e-6).has_value();
      const bool have_ours = vit::fused_layer_norm(x, w, b, 1e-6, out).has_value();
      const double onednn = have_onednn ? time([&] { return cast(*vit::onednn_layer_norm(x, w, b, 1e-6)); }) : 0;
      const double ours = have_ours ? time([&] { return *vit::fused_layer_norm(x, w, b, 1e-6, out); }) : 0;
      std::printf("  %-28s %12s %7.3f ms", c.name, t.name, aten);
      if (have_onednn) std::printf(" %7.3f ms", onednn); else std::printf(" %10s", "n/a");
      if (have_ours) std::printf(" %7.3f ms", ours); else std::printf(" %10s", "n/a");
      if (have_ours && have_onednn) std::printf(" %7.2fx", onednn / ours); else std::printf(" %8s", "");
      if (have_ours) std::printf(" %7.2fx", aten / ours);
      std::printf("\n");
    }
  }
  return 0;
}
