#include "fused_layer_norm.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <tuple>

#include "kernel_switch.h"
#include "layer_norm_operands.h"
#include "tensor_rows.h"
#ifdef VIT_HAVE_ELTWISE_KERNELS
#include "layer_norm_kernels.h"
#include "kernel_isa.h"  // x86 only: __builtin_cpu_supports
#endif

namespace vit {

#ifndef VIT_HAVE_ELTWISE_KERNELS

std::optional<at::Tensor> fused_layer_norm(const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                           std::optional<at::ScalarType>, at::Tensor*) {
  return std::nullopt;
}
std::string fused_layer_norm_isa() { return "off (built without the element-wise kernels: libsleef-dev)"; }

#else

namespace {

using Isa = KernelIsa;

Isa isa() {
  static const Isa chosen = kernel_isa_unless_off("VIT_FUSED_LAYER_NORM");
  return chosen;
}

// Rows per block of the backward pass: each block sums its rows' share of the parameters'
// gradients on its own, and the blocks are added in order afterwards.
constexpr int64_t kRowBlock = 128;

LayerNormArgs args_of(int64_t C, double eps, const at::Tensor& w, const at::Tensor& b) {
  LayerNormArgs a;
  a.C = C;
  a.eps = float(eps);
  a.w = w.numel() ? w.data_ptr<float>() : nullptr;
  a.b = b.numel() ? b.data_ptr<float>() : nullptr;
  return a;
}

template <typename TX, typename TY>
void run_forward(const at::Tensor& x, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd, const LayerNormArgs& a) {
  const TX* xp = x.data_ptr<TX>();
  TY* yp = y.data_ptr<TY>();
  float *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
  at::parallel_for(0, rows_of(x), 64, [&](int64_t r0, int64_t r1) {
    VIT_KERNEL_CALL(isa(), layer_norm_forward, xp, yp, mp, rp, r0, r1, a);
  });
}

// x2: (..., C) contiguous, M rows of C; w, b: float (C) or empty. Returns y (x2's shape, type
// `out`), mean and rstd (M).
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_rows(const at::Tensor& x2, const at::Tensor& w,
                                                            const at::Tensor& b, double eps, at::ScalarType out) {
  const int64_t M = rows_of(x2), C = x2.size(-1);
  auto y = at::empty(x2.sizes(), x2.options().dtype(out));
  const auto f32 = x2.options().dtype(at::kFloat);
  auto mean = at::empty({M}, f32), rstd = at::empty({M}, f32);
  const auto a = args_of(C, eps, w, b);
  if (x2.scalar_type() == at::kBFloat16)
    run_forward<c10::BFloat16, c10::BFloat16>(x2, y, mean, rstd, a);
  else if (out == at::kBFloat16)
    run_forward<float, c10::BFloat16>(x2, y, mean, rstd, a);
  else
    run_forward<float, float>(x2, y, mean, rstd, a);
  return {y, mean, rstd};
}

template <typename TD, typename TX>
void run_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& dr, const at::Tensor& mean,
                  const at::Tensor& rstd, at::Tensor& dx, float* dw_parts, float* db_parts, const LayerNormArgs& a) {
  const TD* dyp = dy.data_ptr<TD>();
  const TX* xp = x.data_ptr<TX>();
  const TX* drp = dr.defined() ? dr.data_ptr<TX>() : nullptr;
  const float *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
  TX* dxp = dx.data_ptr<TX>();
  const int64_t M = rows_of(x), blocks = (M + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      VIT_KERNEL_CALL(isa(), layer_norm_backward, dyp, xp, drp, mp, rp, dxp, dw_parts ? dw_parts + k * a.C : nullptr,
                      db_parts ? db_parts + k * a.C : nullptr, k * kRowBlock, std::min(M, (k + 1) * kRowBlock), a);
  });
}

// The blocks' partial sums (blocks, C) added in block order.
at::Tensor sum_parts(const at::Tensor& parts) {
  const int64_t blocks = parts.size(0), C = parts.size(1);
  auto total = at::zeros({C}, parts.options());
  float* t = total.data_ptr<float>();
  const float* p = parts.data_ptr<float>();
  for (int64_t k = 0; k < blocks; ++k)
    for (int64_t c = 0; c < C; ++c) t[c] += p[k * C + c];
  return total;
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Outputs: the normalized rows, and x itself passed through (LibTorch returns an input as a view
// with this function as its gradient's source): a block uses that as its residual, and the
// residual's gradient is added into x's inside the backward pass instead of by autograd's own
// add afterwards.
struct FusedLayerNormFunction : torch::autograd::Function<FusedLayerNormFunction> {
  // x2: (..., C) contiguous, normalized over its last dimension (any leading shape: no reshape,
  // so no view nodes in the graph around it); w, b: float (C), or empty tensors for none
  // (LibTorch 1.13's apply() cannot take undefined tensors); out: the result's scalar type.
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& x2, const at::Tensor& w, const at::Tensor& b,
                             double eps, int64_t out) {
    auto [y, mean, rstd] = forward_rows(x2, w, b, eps, at::ScalarType(out));
    ctx->save_for_backward({x2, w, b, mean, rstd});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["out"] = out;
    return {y, x2};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &b = saved[2], &mean = saved[3], &rstd = saved[4];
    const int64_t M = rows_of(x), C = x.size(-1), blocks = (M + kRowBlock - 1) / kRowBlock;
    const auto a = args_of(C, ctx->saved_data["eps"].toDouble(), w, b);
    const auto f32 = x.options().dtype(at::kFloat);
    const bool want_dw = w.numel() > 0 && ctx->needs_input_grad(1), want_db = b.numel() > 0 && ctx->needs_input_grad(2);
    auto dw_parts = want_dw ? at::zeros({blocks, C}, f32) : at::Tensor();
    auto db_parts = want_db ? at::zeros({blocks, C}, f32) : at::Tensor();
    auto dr = grads[1].defined() ? as_type(grads[1], x.scalar_type()).contiguous() : at::Tensor();
    if (!grads[0].defined()) {  // only the passed-through x was used
      return {dr.defined() ? dr : at::zeros_like(x), want_dw ? at::zeros({C}, f32) : at::Tensor(),
              want_db ? at::zeros({C}, f32) : at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const auto dy = as_type(grads[0], at::ScalarType(ctx->saved_data["out"].toInt())).contiguous();
    auto dx = at::empty(x.sizes(), x.options());
    float* dwp = want_dw ? dw_parts.data_ptr<float>() : nullptr;
    float* dbp = want_db ? db_parts.data_ptr<float>() : nullptr;
    if (x.scalar_type() == at::kBFloat16)
      run_backward<c10::BFloat16, c10::BFloat16>(dy, x, dr, mean, rstd, dx, dwp, dbp, a);
    else if (dy.scalar_type() == at::kBFloat16)
      run_backward<c10::BFloat16, float>(dy, x, dr, mean, rstd, dx, dwp, dbp, a);
    else
      run_backward<float, float>(dy, x, dr, mean, rstd, dx, dwp, dbp, a);
    return {dx, want_dw ? sum_parts(dw_parts) : at::Tensor(), want_db ? sum_parts(db_parts) : at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::string fused_layer_norm_isa() {
  return kernel_isa_name(isa(), !switched_on("VIT_FUSED_LAYER_NORM"), "off (VIT_FUSED_LAYER_NORM=0)");
}

std::optional<at::Tensor> fused_layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                           double eps, std::optional<at::ScalarType> out_in, at::Tensor* residual) {
  const auto st = x.scalar_type();
  const auto out = out_in.value_or(st);
  if (isa() == Isa::None || (out != st && !(st == at::kFloat && out == at::kBFloat16)) || !(eps >= 0.0))
    return std::nullopt;
  const auto shape = layer_norm_operands(x, weight, bias);
  if (!shape) return std::nullopt;
  const auto x2 = x.contiguous();
  const auto w = layer_norm_param_f32(weight, x), b = layer_norm_param_f32(bias, x);
  const bool grad = at::GradMode::is_enabled() &&
                    (x.requires_grad() || (weight.defined() && weight.requires_grad()) ||
                     (bias.defined() && bias.requires_grad()));
  if (!grad) {
    if (residual) *residual = x;
    return std::get<0>(forward_rows(x2, w, b, eps, out));
  }
  const auto outputs = FusedLayerNormFunction::apply(x2, w, b, eps, int64_t(out));
  if (residual) *residual = outputs[1];
  return outputs[0];
}

#endif  // VIT_HAVE_ELTWISE_KERNELS

}  // namespace vit
