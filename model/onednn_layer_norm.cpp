#include "onednn_layer_norm.h"

#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>

#include <map>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "layer_norm_operands.h"

#ifdef VIT_HAVE_ONEDNN
#include "onednn_common.h"
#endif

namespace vit {

#ifndef VIT_HAVE_ONEDNN

std::optional<at::Tensor> onednn_layer_norm(const at::Tensor&, const at::Tensor&, const at::Tensor&, double) {
  return std::nullopt;
}

#else

namespace {

using namespace vit::onednn;
using dnnl::normalization_flags;

bool enabled() {
  static const bool on = switched_on("VIT_ONEDNN_LAYER_NORM");
  return on;
}

// The forward (training: it also writes the statistics the backward pass reads) and backward
// primitives for M rows of C features of `type`, with scale and/or shift, per thread.
struct Kernels {
  dnnl::layer_normalization_forward forward;
  dnnl::layer_normalization_backward backward;
};

memory::desc rows(int64_t M, int64_t C, dt type) { return memory::desc({M, C}, type, memory::format_tag::ab); }
memory::desc stats(int64_t M) { return memory::desc({M}, dt::f32, memory::format_tag::a); }
memory::desc vec(int64_t C) { return memory::desc({C}, dt::f32, memory::format_tag::a); }

normalization_flags flags_for(bool scale, bool shift) {
  auto f = normalization_flags::none;
  if (scale) f = f | normalization_flags::use_scale;
  if (shift) f = f | normalization_flags::use_shift;
  return f;
}

const Kernels* kernels(int64_t M, int64_t C, dt type, float eps, bool scale, bool shift) {
  thread_local std::map<std::tuple<int64_t, int64_t, dt, float, bool, bool>, std::optional<Kernels>> cache;
  const auto key = std::make_tuple(M, C, type, eps, scale, shift);
  auto it = cache.find(key);
  if (it == cache.end()) {
    std::optional<Kernels> made;
    try {
      const auto md = rows(M, C, type);
      const auto flags = flags_for(scale, shift);
      using Fwd = dnnl::layer_normalization_forward;
      using Bwd = dnnl::layer_normalization_backward;
      const auto attr = user_scratchpad();
      // Made for 1 thread: oneDNN splits the weight and bias gradients' sums over rows by the
      // threads a layer norm is made for, so results would depend on the thread count (test
      // OneDnnLayerNorm.ResultsDoNotDependOnTheThreadCount); one thread normalizes ViT-B/16's
      // 197 tokens in ~0.03 ms, and data-parallel shards run one thread each anyway.
      struct OneThread {
        int before = omp_get_max_threads();
        OneThread() { omp_set_num_threads(1); }
        ~OneThread() { omp_set_num_threads(before); }
      } one_thread;
#if DNNL_VERSION_MAJOR >= 3
      const Fwd::primitive_desc fwd(cpu_engine(), dnnl::prop_kind::forward_training, md, md, stats(M), eps, flags, attr);
      const Bwd::primitive_desc bwd(cpu_engine(), dnnl::prop_kind::backward, md, md, md, stats(M), eps, flags, fwd, attr);
#else
      const Fwd::primitive_desc fwd(Fwd::desc(dnnl::prop_kind::forward_training, md, stats(M), eps, flags), attr, cpu_engine());
      const Bwd::primitive_desc bwd(Bwd::desc(dnnl::prop_kind::backward, md, md, stats(M), eps, flags), attr, cpu_engine(), fwd);
#endif
      made = Kernels{Fwd(fwd), Bwd(bwd)};
    } catch (const dnnl::error&) {
    }
    it = cache.emplace(key, std::move(made)).first;
  }
  return it->second ? &*it->second : nullptr;
}

// x2 (M, C) contiguous; w, b float (C) or empty for none. Returns y and the row statistics.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_2d(const at::Tensor& x2, const at::Tensor& w,
                                                          const at::Tensor& b, float eps) {
  const int64_t M = x2.size(0), C = x2.size(1);
  const dt type = type_of(x2);
  const bool scale = w.numel() > 0, shift = b.numel() > 0;
  const auto* k = kernels(M, C, type, eps, scale, shift);
  if (!k) throw std::runtime_error("oneDNN layer norm: no kernel on this thread; run with VIT_ONEDNN_LAYER_NORM=0");
  auto y = at::empty({M, C}, x2.options());
  auto mean = at::empty({M}, x2.options().dtype(at::kFloat));
  auto var = at::empty({M}, x2.options().dtype(at::kFloat));
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, mem(rows(M, C, type), x2.data_ptr())},
                                          {DNNL_ARG_DST, mem(rows(M, C, type), y.data_ptr())},
                                          {DNNL_ARG_MEAN, mem(stats(M), mean.data_ptr())},
                                          {DNNL_ARG_VARIANCE, mem(stats(M), var.data_ptr())}};
  if (scale) args.emplace(DNNL_ARG_SCALE, mem(vec(C), w.data_ptr()));
  if (shift) args.emplace(DNNL_ARG_SHIFT, mem(vec(C), b.data_ptr()));
  run(k->forward, std::move(args));
  thread_stream().wait();
  return {y, mean, var};
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct LayerNormFunction : torch::autograd::Function<LayerNormFunction> {
  // x2: (M, C) contiguous; w, b: float (C), or empty tensors for none (LibTorch 1.13's apply()
  // cannot take undefined tensors).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x2, const at::Tensor& w,
                            const at::Tensor& b, double eps) {
    auto [y, mean, var] = forward_2d(x2, w, b, float(eps));
    ctx->save_for_backward({x2, w, b, mean, var});
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &b = saved[2], &mean = saved[3], &var = saved[4];
    const int64_t M = x.size(0), C = x.size(1);
    const dt type = type_of(x);
    const float eps = float(ctx->saved_data["eps"].toDouble());
    const bool scale = w.numel() > 0, shift = b.numel() > 0;
    const auto* k = kernels(M, C, type, eps, scale, shift);
    if (!k) throw std::runtime_error("oneDNN layer norm: no kernel on this thread; run with VIT_ONEDNN_LAYER_NORM=0");
    const auto dy = grads[0].to(x.scalar_type()).contiguous();
    auto dx = at::empty({M, C}, x.options());
    const auto f32 = x.options().dtype(at::kFloat);
    auto dw = scale ? at::empty({C}, f32) : at::Tensor();
    auto db = shift ? at::empty({C}, f32) : at::Tensor();
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, mem(rows(M, C, type), x.data_ptr())},
                                            {DNNL_ARG_MEAN, mem(stats(M), mean.data_ptr())},
                                            {DNNL_ARG_VARIANCE, mem(stats(M), var.data_ptr())},
                                            {DNNL_ARG_DIFF_DST, mem(rows(M, C, type), dy.data_ptr())},
                                            {DNNL_ARG_DIFF_SRC, mem(rows(M, C, type), dx.data_ptr())}};
    if (scale) {
      args.emplace(DNNL_ARG_SCALE, mem(vec(C), w.data_ptr()));
      args.emplace(DNNL_ARG_DIFF_SCALE, mem(vec(C), dw.data_ptr()));
    }
    if (shift) {
      args.emplace(DNNL_ARG_SHIFT, mem(vec(C), b.data_ptr()));
      args.emplace(DNNL_ARG_DIFF_SHIFT, mem(vec(C), db.data_ptr()));
    }
    run(k->backward, std::move(args));
    thread_stream().wait();
    return {dx, dw, db, at::Tensor()};
  }
};

}  // namespace

std::optional<at::Tensor> onednn_layer_norm(const at::Tensor& x, const at::Tensor& weight,
                                            const at::Tensor& bias, double eps) {
  if (!enabled()) return std::nullopt;
  const auto shape = layer_norm_operands(x, weight, bias);
  if (!shape) return std::nullopt;
  const auto [M, C] = *shape;
  if (!kernels(M, C, type_of(x), float(eps), weight.defined(), bias.defined())) return std::nullopt;
  const auto x2 = x.reshape({M, C}).contiguous();
  const auto w = layer_norm_param_f32(weight, x), b = layer_norm_param_f32(bias, x);
  const bool grad = at::GradMode::is_enabled() &&
                    (x.requires_grad() || (weight.defined() && weight.requires_grad()) ||
                     (bias.defined() && bias.requires_grad()));
  at::Tensor y = grad ? LayerNormFunction::apply(x2, w, b, eps) : std::get<0>(forward_2d(x2, w, b, float(eps)));
  return y.view(x.sizes());
}

#endif  // VIT_HAVE_ONEDNN

}  // namespace vit
