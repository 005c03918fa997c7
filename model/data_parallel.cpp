#include "data_parallel.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/functional/loss.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

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

Bf16AutocastScope::Bf16AutocastScope(bool on) : on_(on) {
  if (!on_) return;
  was_enabled_ = at::autocast::is_cpu_enabled();
  old_dtype_ = at::autocast::get_autocast_cpu_dtype();
  at::autocast::set_cpu_enabled(true);
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::increment_nesting();
}

Bf16AutocastScope::~Bf16AutocastScope() {
  if (!on_) return;
  // As torch.autocast's __exit__: the outermost scope drops the cached bf16 copies of weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_cpu_enabled(was_enabled_);
  at::autocast::set_autocast_cpu_dtype(old_dtype_);
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
                            double label_smoothing, int n, bool bf16) {
  namespace F = torch::nn::functional;
  const auto ce = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing);
  for (auto p : params) p.mutable_grad().reset();  // set_to_none: no memset per step
  StepOutput out;
  if (n <= 1) {
    torch::Tensor logits;
    {
      Bf16AutocastScope autocast(bf16);
      logits = model->forward(images).to(torch::kFloat);  // the loss in float
    }
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
    torch::Tensor shard_logits;
    {
      Bf16AutocastScope autocast(bf16);
      shard_logits = model->forward(images.slice(0, lo, hi)).to(torch::kFloat);  // the loss in float
    }
    auto loss = F::cross_entropy(shard_logits, labels.slice(0, lo, hi), ce) * (double(hi - lo) / B);
    grads[s] = torch::autograd::grad({loss}, params, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true);
    logits[s] = shard_logits.detach();
    losses[s] = loss.item<double>();
  });
  // Out of place: autograd may hand back one parameter's gradient as a view of another's (with a
  // 1-image shard, cls_token's is a slice of pos_embed's), so no returned tensor is written to.
  // Each parameter's sum runs on one thread, in shard order.
  std::vector<torch::Tensor> sums(params.size());
  for_each_shard(n, [&](int t) {
    torch::NoGradGuard no_grad;
    for (size_t i = size_t(t); i < params.size(); i += size_t(n)) {
      torch::Tensor sum;
      int terms = 0;
      for (int s = 0; s < n; ++s) {
        const auto& g = grads[s][i];
        if (!g.defined()) continue;
        sum = terms++ ? sum + g : g;
      }
      if (terms == 1) sum = sum.clone();
      sums[i] = sum;
    }
  });
  for (size_t i = 0; i < params.size(); ++i)
    if (sums[i].defined()) params[i].mutable_grad() = sums[i];
  out.logits = torch::cat(logits);
  for (double l : losses) out.loss += l;
  return out;
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm, int threads) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  const int n = std::max(1, std::min<int>(threads, int(grads.size())));
  std::vector<torch::Tensor> norms(grads.size());
  for_each_shard(n, [&](int t) {
    for (size_t i = size_t(t); i < grads.size(); i += size_t(n)) norms[i] = grads[i].norm(2.0);
  });
  const auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2.0);
  const auto coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for_each_shard(n, [&](int t) {
    for (size_t i = size_t(t); i < grads.size(); i += size_t(n)) grads[i].mul_(coef);
  });
  return total.item<double>();
}

void adamw_step(torch::optim::AdamW& optimizer, int threads) {
  torch::NoGradGuard no_grad;
  struct Item {
    torch::Tensor p;
    const torch::optim::AdamWOptions* options;
    torch::optim::AdamWParamState* state;
  };
  // State lookup and creation stay serial (the state map is not thread-safe).
  std::vector<Item> items;
  auto& states = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (options.amsgrad()) throw std::invalid_argument("adamw_step does not implement amsgrad");
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = states.find(key);
      if (it == states.end()) {
        auto state = std::make_unique<torch::optim::AdamWParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = states.emplace(key, std::move(state)).first;
      }
      items.push_back({p, &options, static_cast<torch::optim::AdamWParamState*>(it->second.get())});
    }
  }
  const int n = std::max(1, std::min<int>(threads, int(items.size())));
  for_each_shard(n, [&](int t) {
    torch::NoGradGuard guard;  // grad mode is thread-local
    for (size_t i = size_t(t); i < items.size(); i += size_t(n)) {
      auto& [p, options, state] = items[i];
      const auto& grad = p.grad();
      if (options->weight_decay() != 0) p.mul_(1 - options->lr() * options->weight_decay());
      state->step(state->step() + 1);
      const double beta1 = std::get<0>(options->betas()), beta2 = std::get<1>(options->betas());
      const double bias_correction1 = 1 - std::pow(beta1, state->step());
      const double bias_correction2 = 1 - std::pow(beta2, state->step());
      state->exp_avg().mul_(beta1).add_(grad, 1 - beta1);
      state->exp_avg_sq().mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const auto denom = (state->exp_avg_sq().sqrt() / std::sqrt(bias_correction2)).add_(options->eps());
      const double step_size = options->lr() / bias_correction1;
      p.addcdiv_(state->exp_avg(), denom, -step_size);
    }
  });
}

}  // namespace vit
