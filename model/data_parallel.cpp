#include "data_parallel.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/functional/loss.h>

#include <omp.h>

#include <algorithm>

#ifndef _OPENMP
#error "data_parallel.cpp must be compiled with OpenMP (-fopenmp, see model/CMakeLists.txt): without it at::parallel_for runs the shards one after another"
#endif

namespace vit {

int shard_count(bool data_parallel, int64_t batch) {
  if (!data_parallel) return 1;
  return int(std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), batch)));
}

void for_each_shard(int n, const std::function<void(int)>& fn) {
  if (n <= 1) {
    fn(0);
    return;
  }
  // at::parallel_for opens one OpenMP region of min(threads, n) threads and rethrows the first
  // exception; a grain of 1 gives each thread its own contiguous run of shards.
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    // Libraries that size their own nested regions from omp_get_max_threads() (oneDNN does, and
    // its convolution deadlocked in a nested region of 2) must see 1 here. The setting belongs
    // to this implicit task only: the calling thread keeps its count after the region.
    omp_set_num_threads(1);
    for (int64_t s = begin; s < end; ++s) fn(int(s));
  });
}

std::pair<int64_t, int64_t> shard_rows(int64_t batch, int s, int n) {
  return {batch * s / n, batch * (s + 1) / n};
}

torch::Tensor predict_logits(VisionTransformer& model, const torch::Tensor& images, bool data_parallel) {
  const int64_t B = images.size(0);
  const int n = shard_count(data_parallel, B);
  std::vector<torch::Tensor> parts(n);
  for_each_shard(n, [&](int s) {
    torch::NoGradGuard no_grad;
    const auto [lo, hi] = shard_rows(B, s, n);
    parts[s] = model->forward(images.slice(0, lo, hi));
  });
  return n == 1 ? parts[0] : torch::cat(parts);
}

// With n > 1 shards every shard computes the gradient of its share of the batch-mean loss (its
// mean x rows / B) with autograd::grad on its own thread; the sums happen here, in shard order.
// Dropout masks come from per-shard seed streams (RandomStreamScope).
StepOutput forward_backward(VisionTransformer& model, const std::vector<torch::Tensor>& params,
                            const torch::Tensor& images, const torch::Tensor& labels,
                            double label_smoothing, int n) {
  namespace F = torch::nn::functional;
  const auto ce = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing);
  for (auto p : params) p.mutable_grad().reset();  // set_to_none: no memset per step
  StepOutput out;
  if (n <= 1) {
    auto logits = model->forward(images);
    auto loss = F::cross_entropy(logits, labels, ce);
    loss.backward();
    out.logits = logits.detach();
    out.loss = loss.item<double>();
    return out;
  }
  const int64_t B = images.size(0);
  std::vector<uint64_t> seeds(n);
  for (auto& seed : seeds) seed = draw_seed();
  std::vector<torch::Tensor> logits(n);
  std::vector<double> losses(n);
  std::vector<std::vector<torch::Tensor>> grads(n);
  for_each_shard(n, [&](int s) {
    torch::AutoGradMode grad_mode(true);
    RandomStreamScope stream(seeds[s]);
    const auto [lo, hi] = shard_rows(B, s, n);
    auto shard_logits = model->forward(images.slice(0, lo, hi));
    auto loss = F::cross_entropy(shard_logits, labels.slice(0, lo, hi), ce) * (double(hi - lo) / B);
    grads[s] = torch::autograd::grad({loss}, params, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
    logits[s] = shard_logits.detach();
    losses[s] = loss.item<double>();
  });
  // Out of place: autograd may hand back one parameter's gradient as a view of another's (with a
  // 1-image shard, cls_token's is a slice of pos_embed's), so no returned tensor is written to.
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor sum;
    int terms = 0;
    for (int s = 0; s < n; ++s) {
      const auto& g = grads[s][i];
      if (!g.defined()) continue;
      sum = terms++ ? sum + g : g;
    }
    if (terms == 1) sum = sum.clone();
    if (terms > 0) params[i].mutable_grad() = sum;
  }
  out.logits = torch::cat(logits);
  for (double l : losses) out.loss += l;
  return out;
}

}  // namespace vit
