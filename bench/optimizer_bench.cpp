// The serial end of a training step for a preset's parameters: vit::adamw_step (one fused pass per
// float parameter) and vit::clip_grad_norm against LibTorch's AdamW::step and clip_grad_norm_, on
// 1 and 2 threads, in one process (median of 5 rounds of 200 calls). Figures only.
//
//   build/bench/optimizer_bench [preset=fmnist-small]
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

#include "data_parallel.h"
#include "median_ms.h"
#include "runtime.h"
#include "vit.h"
#include "vit_config.h"

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");  // as the `vit` CLI runs
  const std::string preset = argc > 1 ? argv[1] : "fmnist-small";
  const auto runtime = vit::configure_runtime(0);
  torch::NoGradGuard no_grad;
  vit::VisionTransformer model(vit::preset(preset).config);
  std::vector<torch::Tensor> params = model->parameters();
  int64_t count = 0;
  for (auto& p : params) {
    p.mutable_grad() = torch::randn_like(p) * 0.01;
    count += p.numel();
  }
  std::printf("optimizer_bench: %s, %zu parameter tensors, %lld values, %s\n", preset.c_str(),
              params.size(), static_cast<long long>(count), runtime.cpu.c_str());
  auto options = torch::optim::AdamWOptions(1e-3).weight_decay(0.05);
  torch::optim::AdamW ours(params, options), theirs(params, options);
  constexpr int kCalls = 200;
  auto per_call = [&](const std::function<void()>& fn) {
    return median_ms([&] { for (int i = 0; i < kCalls; ++i) fn(); }, 5) / kCalls;
  };
  const double torch_adamw = per_call([&] { theirs.step(); });
  const double torch_clip = per_call([&] { torch::nn::utils::clip_grad_norm_(params, 1.0); });
  std::printf("  LibTorch AdamW::step      %7.3f ms   clip_grad_norm_        %7.3f ms\n", torch_adamw, torch_clip);
  for (int threads : {1, 2}) {
    const double adamw = per_call([&] { vit::adamw_step(ours, threads); });
    const double clip = per_call([&] { vit::clip_grad_norm(params, 1.0, threads); });
    std::printf("  vit::adamw_step, %d thr   %7.3f ms   vit::clip_grad_norm    %7.3f ms  (%.1fx, %.1fx)\n",
                threads, adamw, clip, torch_adamw / adamw, torch_clip / clip);
  }
}
