#include "gelu_dropout.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include "dropout.h"
#include "dropout_stream.h"
#include "kernel_switch.h"
#include "tensor_rows.h"  // as_type
#ifdef VIT_HAVE_ELTWISE_KERNELS
#include "gelu_dropout_kernels.h"
#include "kernel_isa.h"  // x86 only: __builtin_cpu_supports
#endif

namespace vit {

#ifndef VIT_HAVE_ELTWISE_KERNELS

std::optional<at::Tensor> gelu_dropout(const at::Tensor&, bool, double, const at::Tensor&) { return std::nullopt; }
std::string gelu_dropout_isa() { return "off (built without SLEEF's headers, libsleef-dev)"; }

#else

namespace {

using Isa = KernelIsa;

// The kernel set the CPU runs (kernel_isa.h); VIT_FUSED_ELTWISE=0 turns ours off.
Isa isa() { return eltwise_kernel_isa(); }

// Ranges of whole blocks, in parallel where the caller allows threads (data-parallel shards run
// with one); each element's result is the same at any thread count.
template <typename F>
void for_blocks(int64_t n, F&& f) {
  const int64_t blocks = (n + kGeluDropoutBlock - 1) / kGeluDropoutBlock;
  at::parallel_for(0, blocks, 16, [&](int64_t b, int64_t e) {
    f(b * kGeluDropoutBlock, std::min(n, e * kGeluDropoutBlock));
  });
}

// r + dropout(gelu(x)) has r's type (x's without r).
at::Tensor output_for(const at::Tensor& x, const at::Tensor& r) {
  return at::empty_like(r.defined() ? r : x, at::MemoryFormat::Contiguous);
}

// Float GELU for training: y = r + dropout(gelu(x)) and g = gelu'(x), which backward_from_saved reads.
at::Tensor forward_saving_grad(const at::Tensor& x, const at::Tensor& r, at::Tensor& g, const GeluDropoutArgs& a) {
  auto y = output_for(x, r);
  g = at::empty_like(x, at::MemoryFormat::Contiguous);
  const float* xp = x.data_ptr<float>();
  const float* rp = r.defined() ? r.data_ptr<float>() : nullptr;
  float *yp = y.data_ptr<float>(), *gp = g.data_ptr<float>();
  for_blocks(x.numel(), [&](int64_t lo, int64_t hi) { VIT_KERNEL_CALL(isa(), forward, xp, rp, yp, gp, lo, hi, a); });
  return y;
}

at::Tensor backward_from_saved(const at::Tensor& dy_in, const at::Tensor& g, const GeluDropoutArgs& a) {
  const auto dy = as_type(dy_in, at::kFloat).contiguous();
  auto dx = at::empty(dy.sizes(), dy.options());
  const float* dyp = dy.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
  for_blocks(dy.numel(), [&](int64_t lo, int64_t hi) { VIT_KERNEL_CALL(isa(), backward_saved, dyp, gp, dxp, lo, hi, a); });
  return dx;
}

template <typename TX, typename TY>
void run_forward(const at::Tensor& x, const at::Tensor& r, at::Tensor& y, const GeluDropoutArgs& a) {
  const TX* xp = x.data_ptr<TX>();
  const TY* rp = r.defined() ? r.data_ptr<TY>() : nullptr;
  TY* yp = y.data_ptr<TY>();
  for_blocks(x.numel(), [&](int64_t lo, int64_t hi) { VIT_KERNEL_CALL(isa(), forward, xp, rp, yp, lo, hi, a); });
}

template <typename TD, typename TX>
void run_backward(const at::Tensor& dy, const at::Tensor& x, at::Tensor& dx, const GeluDropoutArgs& a) {
  const TD* dyp = dy.data_ptr<TD>();
  const TX* xp = x.defined() ? x.data_ptr<TX>() : nullptr;
  TX* dxp = dx.data_ptr<TX>();
  for_blocks(dy.numel(), [&](int64_t lo, int64_t hi) { VIT_KERNEL_CALL(isa(), backward, dyp, xp, dxp, lo, hi, a); });
}

// r + dropout(gelu(x)).
at::Tensor forward(const at::Tensor& x, const at::Tensor& r, const GeluDropoutArgs& a) {
  auto y = output_for(x, r);
  const bool xb = x.scalar_type() == at::kBFloat16, yb = y.scalar_type() == at::kBFloat16;
  if (xb && yb)
    run_forward<c10::BFloat16, c10::BFloat16>(x, r, y, a);
  else if (xb)
    run_forward<c10::BFloat16, float>(x, r, y, a);
  else
    run_forward<float, float>(x, r, y, a);
  return y;
}

// The gradient of x (type `type`) from dy (float, or `type`).
at::Tensor backward(const at::Tensor& dy_in, const at::Tensor& x, at::ScalarType type, const GeluDropoutArgs& a) {
  auto dy = dy_in.contiguous();
  if (dy.scalar_type() != at::kFloat) dy = dy.to(type);
  auto dx = at::empty(dy.sizes(), dy.options().dtype(type));
  if (type == at::kFloat)
    run_backward<float, float>(dy, x, dx, a);
  else if (dy.scalar_type() == at::kFloat)
    run_backward<float, c10::BFloat16>(dy, x, dx, a);
  else
    run_backward<c10::BFloat16, c10::BFloat16>(dy, x, dx, a);
  return dx;
}

GeluDropoutArgs args_for(bool gelu, double p, uint64_t seed) {
  GeluDropoutArgs a;
  a.gelu = gelu;
  a.dropout = p > 0.0;
  a.threshold = dropout_threshold(p);
  a.scale = a.dropout ? float(1.0 / (1.0 - p)) : 1.0f;
  a.seed = seed;
  return a;
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The forward and backward shared by the two autograd functions below (with and without a
// residual; custom functions take no undefined tensors).
// GELU's derivative needs x, or for float x gelu'(x) itself, made by the forward pass (float x,
// float residual); the mask needs only its seed.
at::Tensor save_and_run(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& r, bool gelu, double p,
                        int64_t seed) {
  const auto a = args_for(gelu, p, uint64_t(seed));
  const bool save_grad = gelu && x.scalar_type() == at::kFloat;
  ctx->saved_data["gelu"] = gelu;
  ctx->saved_data["saved_grad"] = save_grad;
  ctx->saved_data["p"] = p;
  ctx->saved_data["seed"] = seed;
  ctx->saved_data["type"] = int64_t(x.scalar_type());
  if (save_grad) {
    at::Tensor g;
    auto y = forward_saving_grad(x, r, g, a);
    ctx->save_for_backward({g});
    return y;
  }
  if (gelu) ctx->save_for_backward({x});
  return forward(x, r, a);
}
at::Tensor gradient_of_x(AutogradContext* ctx, const at::Tensor& dy) {
  const bool gelu = ctx->saved_data["gelu"].toBool();
  const double p = ctx->saved_data["p"].toDouble();
  const auto type = at::ScalarType(ctx->saved_data["type"].toInt());
  // A plain residual sum (no GELU, no dropout): x's gradient is dy itself, as for ATen's add.
  if (!gelu && !(p > 0.0) && dy.scalar_type() == type) return dy;
  const auto a = args_for(gelu, p, uint64_t(ctx->saved_data["seed"].toInt()));
  if (ctx->saved_data["saved_grad"].toBool()) return backward_from_saved(dy, ctx->get_saved_variables()[0], a);
  return backward(dy, gelu ? ctx->get_saved_variables()[0] : at::Tensor(), type, a);
}

struct GeluDropoutFunction : torch::autograd::Function<GeluDropoutFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, bool gelu, double p, int64_t seed) {
    return save_and_run(ctx, x, at::Tensor(), gelu, p, seed);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    return {gradient_of_x(ctx, grads[0]), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct GeluDropoutAddFunction : torch::autograd::Function<GeluDropoutAddFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& r, bool gelu, double p,
                            int64_t seed) {
    return save_and_run(ctx, x, r, gelu, p, seed);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    // The residual's gradient is dy itself (autograd casts it, should the types differ).
    return {gradient_of_x(ctx, grads[0]), grads[0], at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::string gelu_dropout_isa() {
  return eltwise_kernel_isa_name();
}

std::optional<at::Tensor> gelu_dropout(const at::Tensor& x_in, bool gelu, double p, const at::Tensor& residual) {
  if (isa() == Isa::None || !x_in.device().is_cpu() || !(p >= 0.0 && p < 1.0)) return std::nullopt;
  const auto type = x_in.scalar_type();
  if (type != at::kFloat && type != at::kBFloat16) return std::nullopt;
  if (residual.defined()) {
    const auto rtype = residual.scalar_type();
    if (!residual.device().is_cpu() || residual.sizes() != x_in.sizes()) return std::nullopt;
    // float + float, bf16 + bf16, or a bf16 branch on a float stream (the type ATen's add promotes to).
    if (!(rtype == at::kFloat || (rtype == at::kBFloat16 && type == at::kBFloat16))) return std::nullopt;
  }
  if (!gelu && p == 0.0 && !residual.defined()) return x_in;
  const uint64_t seed = p > 0.0 ? next_dropout_seed() : 0;
  const auto x = x_in.contiguous();
  const auto r = residual.defined() ? residual.contiguous() : residual;
  if (at::GradMode::is_enabled() && (x.requires_grad() || (r.defined() && r.requires_grad()))) {
    if (r.defined()) return GeluDropoutAddFunction::apply(x, r, gelu, p, int64_t(seed));
    return GeluDropoutFunction::apply(x, gelu, p, int64_t(seed));
  }
  return forward(x, r, args_for(gelu, p, seed));
}

#endif  // VIT_HAVE_ELTWISE_KERNELS

}  // namespace vit
