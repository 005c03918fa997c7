// Forward-pass latency of a freshly initialized ViT (inference mode, no autograd).
#pragma once

#include <cstdint>
#include <vector>

#include "vit_config.h"

namespace vit {

struct ForwardTiming {
  int batch = 0;
  int runs = 0;               // timed runs after warm-up
  double latency_ms = 0.0;    // median over runs, whole batch
  double images_per_second = 0.0;
  double gflops = 0.0;        // achieved: summary FLOPs x batch / latency
};

// Times forward passes at each batch size for at least `min_seconds` (and at least 3 runs) each.
// `bf16`: the weights are converted to bfloat16 once and the input too (how a deployed model
// runs: no per-call casts), the logits come back as float.
std::vector<ForwardTiming> benchmark_forward(const ViTConfig& config, const std::vector<int>& batches,
                                             double min_seconds = 2.0, bool bf16 = false);

}  // namespace vit
