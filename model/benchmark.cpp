#include <torch/torch.h>

#include "benchmark.h"

#include <algorithm>
#include <chrono>

#include "summary.h"
#include "vit.h"

namespace vit {

std::vector<ForwardTiming> benchmark_forward(const ViTConfig& config, const std::vector<int>& batches,
                                             double min_seconds, bool bf16) {
  const double flops = static_cast<double>(summarize(config).flops);
  VisionTransformer model(config);
  model->eval();
  const auto dtype = bf16 ? torch::kBFloat16 : torch::kFloat32;
  model->to(dtype);
  torch::InferenceMode inference;
  std::vector<ForwardTiming> out;
  for (int batch : batches) {
    auto input = torch::randn({batch, config.in_channels, config.image_size, config.image_size}).to(dtype);
    model->forward(input);  // warm-up: first-touch allocations, OpenMP pool start
    std::vector<double> times;
    const auto start = std::chrono::steady_clock::now();
    while (times.size() < 3 ||
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
               min_seconds) {
      const auto t0 = std::chrono::steady_clock::now();
      auto logits = model->forward(input).to(torch::kFloat32);
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    ForwardTiming t;
    t.batch = batch;
    t.runs = static_cast<int>(times.size());
    t.latency_ms = median * 1e3;
    t.images_per_second = batch / median;
    t.gflops = flops * batch / median / 1e9;
    out.push_back(t);
  }
  return out;
}

}  // namespace vit
