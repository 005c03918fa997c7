#include "data_parallel.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/functional/loss.h>
#include <torch/version.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#ifndef _OPENMP
#error "data_parallel.cpp must be compiled with OpenMP (-fopenmp, see model/CMakeLists.txt): without it at::parallel_for runs the shards one after another"
#endif

namespace vit {

int shard_count(bool data_parallel, int64_t batch, c10::Device device) {
  if (!data_parallel || !device.is_cpu()) return 1;  // a GPU runs one shard, in its own streams
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

namespace {

// LibTorch 2.4 replaced the per-device autocast functions (is_cpu_enabled, set_enabled for CUDA,
// get/set_autocast_cpu_dtype, ...) by ones that take the device type, and 2.6 prints a
// deprecation warning on every call of the old ones: one spelling per release, chosen here.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(at::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
void set_autocast(at::DeviceType d, bool on) { at::autocast::set_autocast_enabled(d, on); }
at::ScalarType autocast_dtype(at::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
void set_autocast_dtype(at::DeviceType d, at::ScalarType t) { at::autocast::set_autocast_dtype(d, t); }
#else
bool autocast_enabled(at::DeviceType d) {
  return d == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast(at::DeviceType d, bool on) {
  if (d == at::kCUDA) at::autocast::set_enabled(on);
  else at::autocast::set_cpu_enabled(on);
}
at::ScalarType autocast_dtype(at::DeviceType d) {
  return d == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(at::DeviceType d, at::ScalarType t) {
  if (d == at::kCUDA) at::autocast::set_autocast_gpu_dtype(t);
  else at::autocast::set_autocast_cpu_dtype(t);
}
#endif

}  // namespace

bool bf16_autocast_enabled(at::DeviceType device) { return autocast_enabled(device); }

Bf16AutocastScope::Bf16AutocastScope(bool on, at::DeviceType device) : on_(on), device_(device) {
  if (!on_) return;
  was_enabled_ = autocast_enabled(device_);
  old_dtype_ = autocast_dtype(device_);
  set_autocast(device_, true);
  set_autocast_dtype(device_, at::kBFloat16);
  at::autocast::increment_nesting();
}

Bf16AutocastScope::~Bf16AutocastScope() {
  if (!on_) return;
  // As torch.autocast's __exit__: the outermost scope drops the cached bf16 copies of weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(device_, was_enabled_);
  set_autocast_dtype(device_, old_dtype_);
}

std::pair<int64_t, int64_t> shard_rows(int64_t batch, int s, int n) {
  return {batch * s / n, batch * (s + 1) / n};
}

torch::Tensor predict_logits(VisionTransformer& model, const torch::Tensor& images, bool data_parallel,
                             bool bf16) {
  const int64_t B = images.size(0);
  const int n = shard_count(data_parallel, B, images.device());
  std::vector<torch::Tensor> parts(n);
  for_each_shard(n, [&](int s) {
    torch::NoGradGuard no_grad;
    const auto [lo, hi] = shard_rows(B, s, n);
    Bf16AutocastScope autocast(bf16, images.device().type());  // per thread: autocast is thread-local
    parts[s] = model->forward(images.slice(0, lo, hi)).to(torch::kFloat);
  });
  return n == 1 ? parts[0] : torch::cat(parts);
}

std::pair<int64_t, int64_t> ShardLayout::rows() const {
  return {global_batch * first / total, global_batch * (first + count) / total};
}

namespace {

// The gradient of parameter i: the sum of the shards' gradients in shard order, written into
// `slot` when it is defined (a view of the flat all-reduce buffer stays one), else a new tensor.
// Out of place either way for autograd's tensors: it may hand back one parameter's gradient as a
// view of another's (with a 1-image shard, cls_token's is a slice of pos_embed's).
void store_gradient(torch::Tensor& slot, const std::vector<const torch::Tensor*>& terms) {
  if (slot.defined()) {
    if (terms.empty()) slot.zero_();
    else if (terms.size() == 1) slot.copy_(*terms[0]);
    else at::add_out(slot, *terms[0], *terms[1]);
    for (size_t k = 2; k < terms.size(); ++k) slot.add_(*terms[k]);
    return;
  }
  if (terms.empty()) return;  // unused: stays undefined, as with backward()
  torch::Tensor sum = terms.size() == 1 ? terms[0]->clone() : *terms[0] + *terms[1];
  for (size_t k = 2; k < terms.size(); ++k) sum = sum + *terms[k];
  slot = sum;
}

}  // namespace

StepOutput forward_backward(VisionTransformer& model, const std::vector<torch::Tensor>& params,
                            const torch::Tensor& images, const torch::Tensor& labels,
                            double label_smoothing, int n, bool bf16) {
  return forward_backward(model, params, images, labels, label_smoothing,
                          ShardLayout::whole(images.size(0), std::max(1, n)), bf16);
}

namespace {

// Which items each of `n` threads takes: the largest first, each to the least loaded thread (ties
// to the lower thread), then in index order within a thread; the same for the same sizes. Round
// robin by index put every weight matrix of a ViT on one thread and every bias on the other
// (parameters alternate weight, bias), so the second core idled through the step's serial end.
std::vector<std::vector<size_t>> balance(const std::vector<int64_t>& sizes, int n) {
  std::vector<size_t> order(sizes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  std::vector<std::vector<size_t>> out(size_t(std::max(1, n)));
  std::vector<int64_t> load(out.size(), 0);
  for (size_t i : order) {
    const size_t t = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    out[t].push_back(i);
    load[t] += std::max<int64_t>(sizes[i], 1);
  }
  for (auto& items : out) std::sort(items.begin(), items.end());
  return out;
}

template <class T>
std::vector<int64_t> numels(const std::vector<T>& tensors) {
  std::vector<int64_t> n;
  for (const auto& t : tensors) n.push_back(t.numel());
  return n;
}

}  // namespace

// Every shard computes the gradient of its share of the batch-mean loss (its mean x rows / B)
// with autograd::grad on its own thread; the sums happen here, in shard order. Dropout masks
// come from per-shard seed streams (RandomStreamScope).
StepOutput forward_backward(VisionTransformer& model, const std::vector<torch::Tensor>& params,
                            const torch::Tensor& images, const torch::Tensor& labels,
                            double label_smoothing, const ShardLayout& layout, bool bf16) {
  namespace F = torch::nn::functional;
  const auto ce = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing);
  StepOutput out;
  for (auto p : params) {
    if (!layout.into_grads) p.mutable_grad().reset();  // set_to_none: no memset per step
    else if (layout.total <= 1) p.mutable_grad().zero_();  // backward() accumulates into it
  }
  if (layout.total <= 1) {
    torch::Tensor logits;
    {
      Bf16AutocastScope autocast(bf16);
      logits = model->forward(images).to(torch::kFloat);  // the loss in float
    }
    auto loss = F::cross_entropy(logits, labels, ce);
    loss.backward();
    out.logits = logits.detach();
    out.loss_tensor = loss.detach();
    if (images.is_cpu()) out.loss = loss.item<double>();
    return out;
  }
  const int64_t B = layout.global_batch, offset = layout.rows().first;
  std::vector<uint64_t> seeds(size_t(layout.total));
  // Every rank draws all, in shard order: from the caller's stream (the trainer's per-step one)
  // when it has one, else from LibTorch's generator.
  for (auto& seed : seeds) seed = next_dropout_seed();
  const int n = layout.count;
  std::vector<torch::Tensor> logits(static_cast<size_t>(n));
  std::vector<torch::Tensor> losses(static_cast<size_t>(n));
  std::vector<std::vector<torch::Tensor>> grads(static_cast<size_t>(n));
  for_each_shard(n, [&](int s) {
    torch::AutoGradMode grad_mode(true);
    const int global = layout.first + s;
    RandomStreamScope stream(seeds[size_t(global)]);
    const int64_t lo = B * global / layout.total - offset, hi = B * (global + 1) / layout.total - offset;
    torch::Tensor shard_logits;
    {
      Bf16AutocastScope autocast(bf16);
      shard_logits = model->forward(images.slice(0, lo, hi)).to(torch::kFloat);  // the loss in float
    }
    auto loss = F::cross_entropy(shard_logits, labels.slice(0, lo, hi), ce) * (double(hi - lo) / B);
    grads[size_t(s)] = torch::autograd::grad({loss}, params, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                             /*create_graph=*/false, /*allow_unused=*/true);
    logits[size_t(s)] = shard_logits.detach();
    losses[size_t(s)] = loss.detach();
  });
  // Each parameter's sum runs on one thread, in shard order.
  std::vector<torch::Tensor> slots(params.size());
  for (size_t i = 0; i < params.size(); ++i) slots[i] = params[i].grad();
  const auto sum_owners = balance(numels(params), n);
  // The clipping norms while each sum is in cache, where they are final: every shard ran here.
  const bool norms = layout.count == layout.total && images.is_cpu();
  if (norms) out.grad_norms.resize(params.size());
  for_each_shard(n, [&](int t) {
    torch::NoGradGuard no_grad;
    for (size_t i : sum_owners[size_t(t)]) {
      std::vector<const torch::Tensor*> terms;
      for (int s = 0; s < n; ++s)
        if (grads[size_t(s)][i].defined()) terms.push_back(&grads[size_t(s)][i]);
      store_gradient(slots[i], terms);
      if (norms && slots[i].defined()) out.grad_norms[i] = slots[i].norm(2.0);
    }
  });
  for (size_t i = 0; i < params.size(); ++i)
    if (!params[i].grad().defined() && slots[i].defined()) params[i].mutable_grad() = slots[i];
  out.logits = n == 1 ? logits[0] : torch::cat(logits);
  out.loss_tensor = n == 1 ? losses[0] : torch::stack(losses).sum();
  if (images.is_cpu()) out.loss = out.loss_tensor.item<double>();
  return out;
}

namespace {

// fn(i) for each of `tensors`, spread over up to `threads` threads by size (balance()), each
// tensor on one thread.
template <class F>
void for_each_balanced(const std::vector<torch::Tensor>& tensors, int threads, F&& fn) {
  const int n = std::max(1, std::min<int>(threads, int(tensors.size())));
  const auto owners = balance(numels(tensors), n);
  for_each_shard(n, [&](int t) {
    torch::NoGradGuard no_grad;  // grad mode is thread-local
    for (size_t i : owners[size_t(t)]) fn(i);
  });
}

}  // namespace

GradClip grad_clip(const std::vector<torch::Tensor>& params, double max_norm, int threads,
                   const std::vector<torch::Tensor>& given) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads, norms;
  const bool have = given.size() == params.size();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].grad().defined()) continue;
    grads.push_back(params[i].grad());
    norms.push_back(have ? given[i] : torch::Tensor());
  }
  if (grads.empty()) return {};
  if (std::any_of(norms.begin(), norms.end(), [](const torch::Tensor& t) { return !t.defined(); }))
    for_each_balanced(grads, threads, [&](size_t i) { norms[i] = grads[i].norm(2.0); });
  const auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2.0);
  const auto coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  return {total.item<double>(), coef.item<float>()};
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm, int threads) {
  const auto clip = grad_clip(params, max_norm, threads);
  // A factor of exactly 1 (the norm is within the limit) changes no gradient: skip the passes.
  if (clip.scale != 1.0f) {
    std::vector<torch::Tensor> grads;
    for (const auto& p : params)
      if (p.grad().defined()) grads.push_back(p.grad());
    const auto coef = torch::scalar_tensor(clip.scale, grads[0].options().dtype(torch::kFloat));
    for_each_balanced(grads, threads, [&](size_t i) { grads[i].mul_(coef); });
  }
  return clip.total_norm;
}

namespace {

// The state of `p` in the optimizer's map, created (zero, step 0) when missing. The map is keyed
// by the parameter's TensorImpl: as a string in LibTorch 1.13, as the pointer since 2.2.
auto state_key(const torch::Tensor& p) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
  return static_cast<void*>(p.unsafeGetTensorImpl());
#else
  return c10::guts::to_string(p.unsafeGetTensorImpl());
#endif
}

torch::optim::AdamWParamState* adamw_state(torch::optim::AdamW& optimizer, const torch::Tensor& p) {
  auto& states = optimizer.state();
  const auto key = state_key(p);
  auto it = states.find(key);
  if (it == states.end()) {
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(0);
    state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    it = states.emplace(key, std::move(state)).first;
  }
  return static_cast<torch::optim::AdamWParamState*>(it->second.get());
}

}  // namespace

bool adamw_states_fit(torch::optim::AdamW& optimizer) {
  const auto& states = optimizer.state();
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) {
      const auto it = states.find(state_key(p));
      if (it == states.end()) continue;
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      if ((s.exp_avg().defined() && s.exp_avg().sizes() != p.sizes()) ||
          (s.exp_avg_sq().defined() && s.exp_avg_sq().sizes() != p.sizes()))
        return false;
    }
  return true;
}

std::vector<torch::optim::AdamWParamState*> adamw_states(torch::optim::AdamW& optimizer) {
  std::vector<torch::optim::AdamWParamState*> out;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) out.push_back(adamw_state(optimizer, p));
  return out;
}

namespace {

// One AdamW update of a float parameter in one pass over its four arrays: the arithmetic of
// LibTorch 1.13's AdamW::step element by element, in float and in its order (scalars rounded to
// float as ATen rounds them for a float tensor). LibTorch's ~10 ATen ops per parameter cost ~1.3 ms
// a step for fmnist-small's 56 parameters on 2 threads (a dispatch, a TensorIterator and, for
// every double scalar, a 0-dim float tensor each; Intel Xeon model 207, 2026-12-06), ~5% of its
// step. No FMA contraction here (x86-64's baseline has none; -ffp-contract=off elsewhere), so the
// result does not depend on the CPU it runs on; ATen's own kernels use FMAs in some ISAs, hence
// agreement with AdamW::step to float rounding, not bit for bit (test
// parallelClipAndAdamWMatchLibTorch).
struct AdamWScalars {
  float decay;      // 1 - lr x weight decay (1: none)
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float sqrt_bias_correction2, eps, minus_step_size;
};

// Vectorised (omp simd) at the baseline ISA: sqrt and division 4 lanes at a time; the file is
// built with -fno-math-errno (sqrt needs no errno path) and -ffp-contract=off (model/CMakeLists.txt).
// Scaled: g is first multiplied by `gs` and written back (clip_grad_norm_'s mul_, in this pass).
template <bool Scaled>
void adamw_update(float* __restrict p, float* __restrict g, float* __restrict m,
                  float* __restrict v, int64_t n, const AdamWScalars& s, float gs) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if constexpr (Scaled) {
      gi = gi * gs;
      g[i] = gi;
    }
    const float pi = p[i] * s.decay;                                      // p.mul_(1 - lr wd); x 1 is exact
    const float mi = m[i] * s.beta1 + s.one_minus_beta1 * gi;             // exp_avg.mul_(b1).add_(g, 1 - b1)
    const float vi = v[i] * s.beta2 + s.one_minus_beta2 * gi * gi;        // exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)
    const float denom = std::sqrt(vi) / s.sqrt_bias_correction2 + s.eps;  // (sqrt(v) / sqrt(bc2)).add_(eps)
    p[i] = pi + s.minus_step_size * (mi / denom);                         // p.addcdiv_(m, denom, -lr / bc1)
    m[i] = mi;
    v[i] = vi;
  }
}

bool fusable(const torch::Tensor& p, const torch::Tensor& g, const torch::optim::AdamWParamState& state) {
  auto plain = [&](const torch::Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous() &&
           t.numel() == p.numel() && !t.requires_grad();
  };
  return p.device().is_cpu() && p.scalar_type() == torch::kFloat && p.is_contiguous() && plain(g) &&
         plain(state.exp_avg()) && plain(state.exp_avg_sq());
}

// a += w (v - a) without FMA contraction (-ffp-contract=off): the same numbers on every CPU.
void lerp_float(float* __restrict a, const float* __restrict v, int64_t n, float w) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) a[i] = a[i] + w * (v[i] - a[i]);
}

}  // namespace

double ema_decay_at(double decay, int64_t updates) {
  return std::min(decay, (1.0 + double(updates)) / (10.0 + double(updates)));
}

void update_average(const std::vector<torch::Tensor>& average, const std::vector<torch::Tensor>& values,
                    double decay, int threads) {
  if (average.size() != values.size())
    throw std::invalid_argument("update_average: " + std::to_string(average.size()) + " averages for " +
                                std::to_string(values.size()) + " tensors");
  const double weight = 1.0 - decay;
  for_each_balanced(average, threads, [&](size_t i) {
    const auto& a = average[i];
    const auto& v = values[i];
    if (a.device().is_cpu() && v.device().is_cpu() && a.scalar_type() == torch::kFloat &&
        v.scalar_type() == torch::kFloat && a.is_contiguous() && v.is_contiguous() && a.numel() == v.numel()) {
      lerp_float(a.data_ptr<float>(), v.data_ptr<float>(), a.numel(), float(weight));
      a.unsafeGetTensorImpl()->bump_version();
    } else {
      a.lerp_(v.to(a.options()), weight);
    }
  });
}

void adamw_step(torch::optim::AdamW& optimizer, int threads, float grad_scale) {
  torch::NoGradGuard no_grad;
  struct Item {
    torch::Tensor p;
    const torch::optim::AdamWOptions* options;
    torch::optim::AdamWParamState* state;
  };
  // State lookup and creation stay serial (the state map is not thread-safe).
  std::vector<Item> items;
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (options.amsgrad()) throw std::invalid_argument("adamw_step does not implement amsgrad");
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      items.push_back({p, &options, adamw_state(optimizer, p)});
    }
  }
  const int n = std::max(1, std::min<int>(threads, int(items.size())));
  std::vector<int64_t> sizes;
  for (const auto& item : items) sizes.push_back(item.p.numel());
  const auto owners = balance(sizes, n);
  for_each_shard(n, [&](int t) {
    torch::NoGradGuard guard;  // grad mode is thread-local
    for (size_t i : owners[size_t(t)]) {
      auto& [p, options, state] = items[i];
      const auto& grad = p.grad();
      state->step(state->step() + 1);
      const double beta1 = std::get<0>(options->betas()), beta2 = std::get<1>(options->betas());
      const double bias_correction1 = 1 - std::pow(beta1, state->step());
      const double bias_correction2 = 1 - std::pow(beta2, state->step());
      if (fusable(p, grad, *state)) {
        const AdamWScalars scalars{
            options->weight_decay() != 0 ? float(1 - options->lr() * options->weight_decay()) : 1.0f,
            float(beta1), float(1 - beta1), float(beta2), float(1 - beta2),
            float(std::sqrt(bias_correction2)), float(options->eps()),
            float(-(options->lr() / bias_correction1))};
        float *pp = p.data_ptr<float>(), *gp = grad.data_ptr<float>();
        float *mp = state->exp_avg().data_ptr<float>(), *vp = state->exp_avg_sq().data_ptr<float>();
        if (grad_scale != 1.0f) adamw_update<true>(pp, gp, mp, vp, p.numel(), scalars, grad_scale);
        else adamw_update<false>(pp, gp, mp, vp, p.numel(), scalars, 1.0f);
        // Written through pointers: tell autograd's checks, as an in-place op would.
        for (const auto* t : {&p, &state->exp_avg(), &state->exp_avg_sq()}) t->unsafeGetTensorImpl()->bump_version();
        if (grad_scale != 1.0f) grad.unsafeGetTensorImpl()->bump_version();
        continue;
      }
      if (grad_scale != 1.0f) grad.mul_(torch::scalar_tensor(grad_scale, grad.options()));
      if (options->weight_decay() != 0) p.mul_(1 - options->lr() * options->weight_decay());
      state->exp_avg().mul_(beta1).add_(grad, 1 - beta1);
      state->exp_avg_sq().mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const auto denom = (state->exp_avg_sq().sqrt() / std::sqrt(bias_correction2)).add_(options->eps());
      const double step_size = options->lr() / bias_correction1;
      p.addcdiv_(state->exp_avg(), denom, -step_size);
    }
  });
}

}  // namespace vit
