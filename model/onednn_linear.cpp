#include "onednn_linear.h"

#include <ATen/autocast_mode.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>

#include <map>
#include <tuple>
#include <utility>

#include "column_sums.h"
#include "data_parallel.h"  // bf16_autocast_enabled

#ifdef VIT_HAVE_ONEDNN
#include "onednn_common.h"
#endif

namespace vit {

#ifndef VIT_HAVE_ONEDNN

std::optional<at::Tensor> onednn_linear(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  return std::nullopt;
}
std::optional<at::Tensor> onednn_linear_gelu(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  return std::nullopt;
}

#else

namespace {

using namespace vit::onednn;

// (rows, cols) matrix of `type`, row-major, or read transposed.
memory::desc matrix(int64_t rows, int64_t cols, dt type) { return memory::desc({rows, cols}, type, {cols, 1}); }
memory::desc transposed(int64_t rows, int64_t cols, dt type) { return memory::desc({rows, cols}, type, {1, rows}); }

bool enabled() {
  static const bool on = switched_on("VIT_ONEDNN_LINEAR");
  return on;
}

enum class Kind { Forward, Forward_bias, Forward_gelu, Forward_bias_gelu, GradInput, GradWeight };

// The matmul for (M rows of x, K inputs, N outputs) in `type`, per thread; nullptr when oneDNN
// cannot make it (bf16 without AVX-512).
const dnnl::matmul* kernel(Kind kind, int64_t M, int64_t K, int64_t N, dt type) {
  thread_local std::map<std::tuple<Kind, int64_t, int64_t, int64_t, dt, int>, std::optional<dnnl::matmul>> cache;
  const auto key = std::make_tuple(kind, M, K, N, type, kernel_threads());
  auto it = cache.find(key);
  if (it == cache.end()) {
    std::optional<dnnl::matmul> made;
    try {
      switch (kind) {
        case Kind::Forward:       // y (M, N) = x (M, K) W^T (K, N) [+ b] [then GELU]
        case Kind::Forward_bias:
        case Kind::Forward_gelu:
        case Kind::Forward_bias_gelu: {
          const auto bias = matrix(1, N, type);
          const bool with_bias = kind == Kind::Forward_bias || kind == Kind::Forward_bias_gelu;
          const bool gelu = kind == Kind::Forward_gelu || kind == Kind::Forward_bias_gelu;
          made = make_matmul(matrix(M, K, type), transposed(K, N, type), matrix(M, N, type), 1.0f,
                             with_bias ? &bias : nullptr, gelu);
          break;
        }
        case Kind::GradInput:     // dx (M, K) = dy (M, N) W (N, K)
          made = make_matmul(matrix(M, N, type), matrix(N, K, type), matrix(M, K, type));
          break;
        case Kind::GradWeight:    // dW (N, K) = dy^T (N, M) x (M, K)
          made = make_matmul(transposed(N, M, type), matrix(M, K, type), matrix(N, K, type));
          break;
      }
    } catch (const dnnl::error&) {
    }
    it = cache.emplace(key, std::move(made)).first;
  }
  return it->second ? &*it->second : nullptr;
}

at::Tensor forward_2d(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                      const dnnl::matmul& mm) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const dt type = type_of(x);
  auto y = at::empty({M, N}, x.options());
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, mem(matrix(M, K, type), x.data_ptr())},
                                          {DNNL_ARG_WEIGHTS, mem(transposed(K, N, type), w.data_ptr())},
                                          {DNNL_ARG_DST, mem(matrix(M, N, type), y.data_ptr())}};
  if (b.defined()) args.emplace(DNNL_ARG_BIAS, mem(matrix(1, N, type), b.data_ptr()));
  run(mm, std::move(args));
  thread_stream().wait();
  return y;
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct LinearFunction : torch::autograd::Function<LinearFunction> {
  // x2: (M, K) contiguous; b: the bias, or an empty tensor for none (LibTorch 1.13's apply()
  // cannot take an undefined tensor); the kernels were checked to exist before apply().
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x2, const at::Tensor& w,
                            const at::Tensor& b) {
    const bool has_bias = b.numel() > 0;
    ctx->save_for_backward({x2, w});
    ctx->saved_data["bias"] = has_bias;
    const auto kind = has_bias ? Kind::Forward_bias : Kind::Forward;
    return forward_2d(x2, w, has_bias ? b : at::Tensor(),
                      *kernel(kind, x2.size(0), x2.size(1), w.size(0), type_of(x2)));
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
    const dt type = type_of(x);
    const auto dy = grads[0].to(x.scalar_type()).contiguous();
    at::Tensor dx, dw, db;
    const auto* gi = kernel(Kind::GradInput, M, K, N, type);
    const auto* gw = kernel(Kind::GradWeight, M, K, N, type);
    if (!gi || !gw) throw std::runtime_error("oneDNN linear: no backward kernel on this thread; run with VIT_ONEDNN_LINEAR=0");
    if (ctx->needs_input_grad(0)) {
      dx = at::empty({M, K}, x.options());
      run(*gi, {{DNNL_ARG_SRC, mem(matrix(M, N, type), dy.data_ptr())},
                {DNNL_ARG_WEIGHTS, mem(matrix(N, K, type), w.data_ptr())},
                {DNNL_ARG_DST, mem(matrix(M, K, type), dx.data_ptr())}});
    }
    if (ctx->needs_input_grad(1)) {
      dw = at::empty({N, K}, w.options());
      run(*gw, {{DNNL_ARG_SRC, mem(transposed(N, M, type), dy.data_ptr())},
                {DNNL_ARG_WEIGHTS, mem(matrix(M, K, type), x.data_ptr())},
                {DNNL_ARG_DST, mem(matrix(N, K, type), dw.data_ptr())}});
    }
    thread_stream().wait();
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) db = column_sums(dy);
    return {dx, dw, db};
  }
};

// The shapes of a linear layer oneDNN covers here: M rows of x, K inputs, N outputs; nullopt when
// the layer is not covered (see onednn_linear.h).
struct Dims {
  int64_t M, K, N;
};
std::optional<Dims> covered(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const auto st = x.scalar_type();
  if (x.dim() < 2 || weight.dim() != 2 || !x.device().is_cpu() ||
      !weight.device().is_cpu() || (st != at::kFloat && st != at::kBFloat16) || weight.scalar_type() != st)
    return std::nullopt;
  if (bias.defined() && (bias.scalar_type() != st || !bias.device().is_cpu() ||
                         bias.dim() != 1 || bias.size(0) != weight.size(0)))
    return std::nullopt;
  const int64_t K = x.size(-1), N = weight.size(0), M = x.numel() / std::max<int64_t>(K, 1);
  if (weight.size(1) != K || M == 0 || K == 0 || N == 0) return std::nullopt;
  return Dims{M, K, N};
}

// What a linear layer computes on: the tensors as given, or under bf16 autocast what LibTorch's
// autocast hands its linear (all bf16, float weights cast once per autocast scope through its
// cache); nullopt for tensors autocast would not cast (other types or devices).
struct Operands {
  at::Tensor x, weight, bias;
};
std::optional<Operands> operands(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!bf16_autocast_enabled(at::kCPU)) return Operands{x, weight, bias};
  for (const auto* t : {&x, &weight, &bias})
    if (t->defined() && (!t->device().is_cpu() || (t->scalar_type() != at::kFloat && t->scalar_type() != at::kBFloat16)))
      return std::nullopt;
  auto cast = [](const at::Tensor& t) {
    return t.defined() ? at::autocast::cached_cast(at::kBFloat16, t, c10::DeviceType::CPU) : t;
  };
  return Operands{cast(x), cast(weight), cast(bias)};
}

bool wants_grad(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::GradMode::is_enabled() &&
         (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
}

at::Tensor as_rows(const at::Tensor& y, const at::Tensor& x) {
  auto sizes = x.sizes().vec();
  sizes.back() = y.size(1);
  return y.view(sizes);
}

// A layer's operands (cast as autocast would) and shape, when oneDNN covers it.
struct Layer {
  Operands ops;
  Dims dims;
};
std::optional<Layer> layer_of(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!enabled()) return std::nullopt;
  auto ops = operands(x, weight, bias);
  if (!ops) return std::nullopt;
  const auto dims = covered(ops->x, ops->weight, ops->bias);
  if (!dims) return std::nullopt;
  return Layer{std::move(*ops), *dims};
}

}  // namespace

std::optional<at::Tensor> onednn_linear(const at::Tensor& x_in, const at::Tensor& weight_in,
                                        const at::Tensor& bias_in) {
  const auto layer = layer_of(x_in, weight_in, bias_in);
  if (!layer) return std::nullopt;
  const auto &x = layer->ops.x, &weight = layer->ops.weight, &bias = layer->ops.bias;
  const auto [M, K, N] = layer->dims;
  const dt type = type_of(x);
  const bool grad = wants_grad(x, weight, bias);
  const auto kind = bias.defined() ? Kind::Forward_bias : Kind::Forward;
  if (!kernel(kind, M, K, N, type)) return std::nullopt;
  if (grad && (!kernel(Kind::GradInput, M, K, N, type) || !kernel(Kind::GradWeight, M, K, N, type)))
    return std::nullopt;
  const auto x2 = x.reshape({M, K}).contiguous();
  const auto w = weight.contiguous();
  const auto b = bias.defined() ? bias.contiguous() : at::Tensor();
  at::Tensor y = grad ? LinearFunction::apply(x2, w, b.defined() ? b : at::empty({0}, x.options()))
                      : forward_2d(x2, w, b, *kernel(kind, M, K, N, type));
  return as_rows(y, x);
}

std::optional<at::Tensor> onednn_linear_gelu(const at::Tensor& x_in, const at::Tensor& weight_in,
                                             const at::Tensor& bias_in) {
  const auto layer = layer_of(x_in, weight_in, bias_in);
  if (!layer) return std::nullopt;
  const auto &x = layer->ops.x, &weight = layer->ops.weight, &bias = layer->ops.bias;
  if (wants_grad(x, weight, bias)) return std::nullopt;
  const auto [M, K, N] = layer->dims;
  const auto kind = bias.defined() ? Kind::Forward_bias_gelu : Kind::Forward_gelu;
  const auto* mm = kernel(kind, M, K, N, type_of(x));
  if (!mm) return std::nullopt;
  const auto b = bias.defined() ? bias.contiguous() : at::Tensor();
  return as_rows(forward_2d(x.reshape({M, K}).contiguous(), weight.contiguous(), b, *mm), x);
}

#endif  // VIT_HAVE_ONEDNN

}  // namespace vit
