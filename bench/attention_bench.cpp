// One attention layer, forward and backward, fused (model/fused_attention.h, oneDNN) against the
// composite ATen expression the model used before (and uses where the kernel declines), on the
// same inputs in the same process. Figures only.
//
//   build/bench/attention_bench [batch=256] [tokens=145] [heads=4] [head_dim=16] [repeats=5] [dropout=0]
//   (defaults: keras-cifar's attention at its training batch)
//
// dropout > 0: attention dropout on the probabilities, as training runs it (the fused kernel
// drops inside ours where they cover the heads; the composite side multiplies by a mask).
//
// One thread, as each data-parallel shard runs. Prints ms per call (median of repeats) for float
// and bfloat16, the ratios, and whose kernels the fused side ran (ours or oneDNN's,
// fused_attention_kernels()).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "fused_attention.h"
#include "median_ms.h"
#include "runtime.h"
#include "vit.h"

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");
  const int64_t B = argc > 1 ? std::atoll(argv[1]) : 256, T = argc > 2 ? std::atoll(argv[2]) : 145;
  const int64_t H = argc > 3 ? std::atoll(argv[3]) : 4, hd = argc > 4 ? std::atoll(argv[4]) : 16;
  const int repeats = argc > 5 ? std::atoi(argv[5]) : 5;
  const double dropout = argc > 6 ? std::atof(argv[6]) : 0.0;
  const auto runtime = vit::configure_runtime(1);
  std::printf("attention_bench: batch %lld, %lld tokens, %lld heads of %lld, attention dropout %g, 1 thread, %s, "
              "oneDNN %s\n",
              (long long)B, (long long)T, (long long)H, (long long)hd, dropout, runtime.cpu.c_str(),
              runtime.onednn_isa.c_str());
  if (!vit::fused_attention_enabled()) {
    std::printf("  fused attention is off: a build without libdnnl-dev, or VIT_FUSED_ATTENTION=0\n");
    return 0;
  }
  vit::ViTConfig cfg;
  cfg.dim = int(H * hd), cfg.heads = int(H), cfg.depth = 1, cfg.mlp_hidden = 4;
  cfg.attn_dropout = dropout;  // the composite side drops in training mode (a module's default)
  vit::Attention layer(cfg);
  const double scale = 1.0 / std::sqrt(double(hd));
  std::printf("  %-9s %12s %12s %12s %12s %9s %9s\n", "", "fused fwd", "ATen fwd", "fused f+b",
              "ATen f+b", "fwd x", "f+b x");
  for (auto type : {torch::kFloat, torch::kBFloat16}) {
    const auto input = torch::randn({B, T, 3 * H * hd}).to(type);
    const auto g = torch::randn({B, T, H * hd}).to(type);
    auto both = [&](bool fused) {
      return [&, fused] {
        auto qkv = input.clone().requires_grad_(true);
        auto out = fused ? *vit::fused_attention(qkv, H, scale, dropout) : layer->composite(qkv);
        out.backward(g);
      };
    };
    if (!vit::fused_attention(input, H, scale, dropout)) {
      std::printf("  %-9s declined: %s\n", c10::toString(type), vit::fused_attention_declined().c_str());
      continue;
    }
    double f_fwd, a_fwd;
    {
      torch::NoGradGuard no_grad;
      f_fwd = median_ms([&] { (void)vit::fused_attention(input, H, scale, dropout); }, repeats);
      a_fwd = median_ms([&] { (void)layer->composite(input); }, repeats);
    }
    const double f_all = median_ms(both(true), repeats), a_all = median_ms(both(false), repeats);
    std::printf("  %-9s %9.3f ms %9.3f ms %9.3f ms %9.3f ms %8.2fx %8.2fx  fused: %s\n", c10::toString(type),
                f_fwd, a_fwd, f_all, a_all, a_fwd / f_fwd, a_all / f_all,
                dropout > 0 && vit::fused_attention_drops_out(T, hd, type)
                    ? "ours, dropout inside"
                    : vit::fused_attention_kernels(T, hd, type).c_str());
  }
  return 0;
}
