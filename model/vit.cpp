#include "vit.h"

#include "data_parallel.h"  // bf16_autocast_enabled
#include "dropout.h"
#include "dropout_stream.h"
#include "fused_attention.h"
#include "fused_layer_norm.h"
#include "gelu_dropout.h"
#include "onednn_layer_norm.h"
#include "onednn_linear.h"
#include "patchify.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/dropout.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace vit {

namespace F = torch::nn::functional;

namespace {

torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  if (auto y = gelu_dropout(x, /*gelu=*/false, p)) return *y;  // one pass each way, mask not kept
  return x * dropout_mask(x.sizes(), p, x.scalar_type(), x.device());  // a constant: autograd scales the gradient
}

// residual + dropout(gelu(x)) (gelu: the GELU or not; residual: undefined for none) in one pass
// each way where gelu_dropout.h covers it, else ATen's GELU, the mask above and an add.
torch::Tensor act_dropout_add(const torch::Tensor& x, bool gelu, double p, bool training,
                              const torch::Tensor& residual = {}) {
  if (auto y = gelu_dropout(x, gelu, training ? p : 0.0, residual)) return *y;
  auto y = maybe_dropout(gelu ? F::gelu(x) : x, p, training);
  return residual.defined() ? residual + y : y;
}

// Stochastic depth (Huang et al. 2016): drop a whole residual branch per sample, scale the rest.
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  return x * dropout_mask({x.size(0), 1, 1}, p, x.scalar_type(), x.device());  // (B, 1, 1): 0 or 1 / (1 - p) per sample
}

// Normal(mean, std) truncated to [a, b] by inverse-CDF sampling, as timm's trunc_normal_ (which
// LibTorch 1.13's torch::nn::init lacks).
void trunc_normal_(torch::Tensor t, double mean, double std, double a, double b) {
  torch::NoGradGuard no_grad;
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double lo = cdf((a - mean) / std), hi = cdf((b - mean) / std);
  t.uniform_(2 * lo - 1, 2 * hi - 1).erfinv_().mul_(std * std::sqrt(2.0)).add_(mean).clamp_(a, b);
}

torch::nn::LayerNorm layer_norm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

// A layer norm's output: through our kernels (fused_layer_norm.h) or oneDNN's where they cover
// the case (LibTorch 1.13's CPU layer norm has no fast kernel for bf16 and is slower in float
// too), else LibTorch's. A bf16 input neither covers is normalized in float and rounded to bf16
// rather than taking LibTorch's slow bf16 path. `to_bf16_matmul`: the result feeds a linear layer
// only, so under bf16 autocast it may come back as bf16, the type autocast would cast it to.
// `residual`: x for the caller's residual sum, from fused_layer_norm() when it ran (its gradient
// then joins x's inside the norm's backward pass), else x itself.
torch::Tensor normalize(torch::nn::LayerNormImpl& norm, const torch::Tensor& x, bool to_bf16_matmul = false,
                        torch::Tensor* residual = nullptr) {
  const double eps = norm.options.eps();
  if (residual) *residual = x;
  std::optional<at::ScalarType> out;
  if (to_bf16_matmul && x.scalar_type() == torch::kFloat && bf16_autocast_enabled(x.device().type()))
    out = torch::kBFloat16;
  // bf16 rows in and out: oneDNN's first (ours ran 0.63-0.90x as fast there, 1.3-2.1x as fast
  // in float and float -> bf16: build/bench/layer_norm_bench, AMD EPYC Zen 5).
  const bool bf16_rows = x.scalar_type() == torch::kBFloat16;
  if (bf16_rows)
    if (auto y = onednn_layer_norm(x, norm.weight, norm.bias, eps)) return *y;
  if (auto y = fused_layer_norm(x, norm.weight, norm.bias, eps, out, residual)) return *y;
  if (!bf16_rows)
    if (auto y = onednn_layer_norm(x, norm.weight, norm.bias, eps)) return *y;
  if (x.scalar_type() != torch::kBFloat16 || !x.is_cpu()) return norm.forward(x);
  auto as_float = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat) : t; };
  return at::layer_norm(x.to(torch::kFloat), norm.options.normalized_shape(), as_float(norm.weight),
                        as_float(norm.bias), eps)
      .to(torch::kBFloat16);
}

// timm's init_weights_vit_timm: Linear weights ~ trunc_normal(std=.02), biases zero.
void init_linear(torch::nn::Linear& linear) {
  torch::NoGradGuard no_grad;
  trunc_normal_(linear->weight, /*mean=*/0.0, /*std=*/0.02, /*a=*/-2.0, /*b=*/2.0);
  if (linear->bias.defined()) linear->bias.zero_();
}

// A linear layer's output: through oneDNN where it covers the case (float or bf16 tensors outside
// autocast, onednn_linear.h), else LibTorch's own.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (auto y = onednn_linear(x, weight, bias)) return *y;
  return F::linear(x, weight, bias);
}
torch::Tensor linear(torch::nn::LinearImpl& layer, const torch::Tensor& x) {
  return linear(x, layer.weight, layer.bias);
}

// dropout(gelu(layer(x)), p) (erf form, timm's nn.GELU): one oneDNN matmul with GELU as its
// post-op where no gradient is wanted (inference), else the layer and then GELU fused with the
// dropout. (oneDNN's element-wise GELU, forward and backward on keras-cifar's fc1 output, was no
// faster than ATen's: 4.47 vs 4.58 ms float, 3.14 vs 2.88 ms bf16; AMD EPYC Zen 5, 1 thread.)
torch::Tensor linear_gelu(torch::nn::LinearImpl& layer, const torch::Tensor& x, double p = 0.0,
                          bool training = false) {
  if (auto y = onednn_linear_gelu(x, layer.weight, layer.bias)) return maybe_dropout(*y, p, training);
  return act_dropout_add(linear(layer, x), /*gelu=*/true, p, training);
}

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias = true) {
  torch::nn::Linear linear(torch::nn::LinearOptions(in, out).bias(bias));
  init_linear(linear);
  return linear;
}

}  // namespace

// The kept patches of image b: the first places of a Fisher-Yates shuffle drawn from a splitmix64
// stream started at (seed, b), sorted.
torch::Tensor patch_dropout(const torch::Tensor& x, int64_t prefix, double p, bool training) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2), N = T - prefix;
  if (!training || p <= 0.0 || N <= 1) return x;
  const int64_t keep = patches_kept(N, p);
  if (keep >= N) return x;
  const uint64_t seed = next_dropout_seed();
  auto rows = torch::empty({B * (prefix + keep)}, torch::kLong);
  int64_t* r = rows.data_ptr<int64_t>();
  std::vector<int64_t> order(static_cast<size_t>(N));
  for (int64_t b = 0; b < B; ++b) {
    uint64_t state = dropout_chunk_start(seed, b);
    for (int64_t i = 0; i < N; ++i) order[size_t(i)] = i;
    for (int64_t i = 0; i < keep; ++i) {
      state += kGolden;
      const int64_t j = i + static_cast<int64_t>(splitmix64_mix(state) % uint64_t(N - i));
      std::swap(order[size_t(i)], order[size_t(j)]);
    }
    std::sort(order.begin(), order.begin() + keep);
    for (int64_t i = 0; i < prefix; ++i) *r++ = b * T + i;
    for (int64_t i = 0; i < keep; ++i) *r++ = b * T + prefix + order[size_t(i)];
  }
  return x.reshape({B * T, D}).index_select(0, rows.to(x.device())).view({B, prefix + keep, D});
}

PatchEmbedImpl::PatchEmbedImpl(const ViTConfig& c) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.in_channels, c.dim, c.patch_size)
                                    .stride(c.patch_size)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& x) {
  // The convolution has kernel = stride = patch, so it is one matrix product of the flattened
  // patches with the kernel: the same numbers as proj(x) up to summation order, without oneDNN's
  // convolution (which deadlocked inside data-parallel shards, model/data_parallel.h).
  const auto& w = proj->weight;  // (D, C, P, P)
  auto patches = patchify(x, int(w.size(2)));                                          // (B, N, C*P*P)
  return linear(patches, w.flatten(1), proj->bias);  // (B, N, D)
}

AttentionImpl::AttentionImpl(const ViTConfig& c)
    : heads(c.heads),
      scale(1.0 / std::sqrt(static_cast<double>(c.head_dim()))),
      attn_dropout(c.attn_dropout),
      proj_dropout(c.dropout) {
  qkv = register_module("qkv", make_linear(c.dim, 3 * c.dim, c.qkv_bias));
  proj = register_module("proj", make_linear(c.dim, c.dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, torch::Tensor* probs, const torch::Tensor& residual) {
  auto qkv_out = linear(*qkv, x);  // (B, T, 3D)
  std::optional<torch::Tensor> out;
  // One fused CPU operation (fused_attention.h), attention dropout included where it covers it,
  // unless the probabilities are wanted.
  if (!probs) out = fused_attention(qkv_out, heads, scale, is_training() ? attn_dropout : 0.0);
  if (!out) out = composite(qkv_out, probs);
  return act_dropout_add(linear(*proj, *out), /*gelu=*/false, proj_dropout, is_training(), residual);
}

torch::Tensor AttentionImpl::composite(const torch::Tensor& qkv_out, torch::Tensor* probs) {
  const int64_t B = qkv_out.size(0), T = qkv_out.size(1), D = qkv_out.size(2) / 3, H = heads;
  // unbind, not qkv[0..2]: indexing makes backward zero-fill a full-size gradient per slice.
  auto parts = qkv_out.view({B, T, 3, H, D / H}).permute({2, 0, 3, 1, 4}).unbind(0);  // 3 x (B, H, T, hd)
  auto attn = torch::matmul(parts[0] * scale, parts[1].transpose(-2, -1));  // (B, H, T, T)
  attn = attn.softmax(-1);
  if (probs) *probs = attn;
  attn = maybe_dropout(attn, attn_dropout, is_training());
  auto out = torch::matmul(attn, parts[2]);  // (B, H, T, hd)
  return out.transpose(1, 2).reshape({B, T, D});  // (B, T, D)
}

MlpImpl::MlpImpl(const ViTConfig& c) : dropout(c.dropout), act_after_fc2(c.mlp_act_after_fc2) {
  fc1 = register_module("fc1", make_linear(c.dim, c.mlp_hidden));
  fc2 = register_module("fc2", make_linear(c.mlp_hidden, c.dim));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  auto h = linear_gelu(*fc1, x, dropout, is_training());  // (B, T, hidden)
  h = linear(*fc2, h);                                   // (B, T, D)
  return act_dropout_add(h, act_after_fc2, dropout, is_training(), residual);
}

BlockImpl::BlockImpl(const ViTConfig& c, double drop_path_rate) : drop_path(drop_path_rate) {
  norm1 = register_module("norm1", layer_norm(c.dim, c.ln_eps));
  attn = register_module("attn", Attention(c));
  norm2 = register_module("norm2", layer_norm(c.dim, c.ln_eps));
  mlp = register_module("mlp", Mlp(c));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, torch::Tensor* probs) {
  if (is_training() && drop_path > 0.0) {  // stochastic depth: a per-sample mask between branch and sum
    auto y = x + vit::drop_path(attn(normalize(*norm1, x, true), probs), drop_path, true);
    return y + vit::drop_path(mlp(normalize(*norm2, y, true)), drop_path, true);
  }
  // The residual sums happen inside the branches' last element-wise pass (gelu_dropout.h), and
  // their gradients join x's and y's inside the norms' backward passes (fused_layer_norm.h).
  torch::Tensor x_res, y_res;
  const auto h = normalize(*norm1, x, true, &x_res);
  auto y = attn->forward(h, probs, x_res);
  const auto u = normalize(*norm2, y, true, &y_res);
  return mlp->forward(u, y_res);
}

VisionTransformerImpl::VisionTransformerImpl(const ViTConfig& c) : config_(c) {
  check(c);
  torch::NoGradGuard no_grad;
  patch_embed = register_module("patch_embed", PatchEmbed(c));
  if (c.class_token) {
    cls_token = register_parameter("cls_token", torch::empty({1, 1, c.dim}));
    torch::nn::init::normal_(cls_token, /*mean=*/0.0, /*std=*/1e-6);  // timm
  }
  pos_embed = register_parameter("pos_embed", torch::empty({1, c.num_tokens(), c.dim}));
  trunc_normal_(pos_embed, /*mean=*/0.0, /*std=*/0.02, /*a=*/-2.0, /*b=*/2.0);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.depth; ++i) {
    const double rate = c.depth > 1 ? c.drop_path * i / (c.depth - 1) : c.drop_path;
    blocks->push_back(Block(c, rate));
  }
  if (c.pool == Pool::Mean)
    fc_norm = register_module("fc_norm", layer_norm(c.dim, c.ln_eps));
  else
    norm = register_module("norm", layer_norm(c.dim, c.ln_eps));
  int64_t features = c.pooled_dim();
  if (!c.head_hidden.empty()) {
    head_mlp = register_module("head_mlp", torch::nn::ModuleList());
    for (int width : c.head_hidden) {
      head_mlp->push_back(make_linear(features, width));
      features = width;
    }
  }
  head = register_module("head", make_linear(features, c.num_classes));
}

void VisionTransformerImpl::check_input(const torch::Tensor& x) const {
  const auto& c = config_;
  const bool ok = x.dim() == 4 && x.size(1) == c.in_channels && x.size(2) == c.image_size &&
                  x.size(3) == c.image_size && x.is_floating_point();
  if (ok) return;
  std::ostringstream out;
  out << "ViT input must be a float tensor of shape (batch, " << c.in_channels << ", "
      << c.image_size << ", " << c.image_size << ") for this config, got " << x.sizes() << " of "
      << x.dtype() << "; resize the images to " << c.image_size << "x" << c.image_size
      << " with " << c.in_channels << " channel(s)";
  throw std::invalid_argument(out.str());
}

torch::Tensor VisionTransformerImpl::forward_features(const torch::Tensor& images,
                                                      std::vector<torch::Tensor>* attentions) {
  check_input(images);
  auto x = patch_embed(images);  // (B, N, D)
  if (cls_token.defined())
    x = torch::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1);  // (B, T, D)
  x = maybe_dropout(x + pos_embed, config_.dropout, is_training());
  x = patch_dropout(x, cls_token.defined() ? 1 : 0, patch_drop_on_ ? config_.patch_drop : 0.0, is_training());
  for (const auto& module : *blocks) {
    auto block = module->as<BlockImpl>();
    if (attentions) {
      torch::Tensor probs;
      x = block->forward(x, &probs);
      attentions->push_back(probs);  // (B, H, T, T)
    } else {
      x = block->forward(x);
    }
  }
  return norm ? normalize(*norm, x) : x;  // (B, T, D)
}

torch::Tensor VisionTransformerImpl::forward_head(const torch::Tensor& tokens) {
  torch::Tensor x;
  switch (config_.pool) {
    case Pool::Token: x = tokens.select(1, 0); break;                   // (B, D)
    case Pool::Mean: {  // (B, D); in training patch_drop may have left fewer patches
      const int64_t prefix = cls_token.defined() ? 1 : 0;
      x = normalize(*fc_norm, tokens.narrow(1, prefix, tokens.size(1) - prefix).mean(1));
      break;
    }
    case Pool::Flatten: x = tokens.flatten(1); break;                   // (B, T * D)
  }
  if (head_mlp) {
    for (const auto& module : *head_mlp) {
      x = maybe_dropout(x, config_.head_dropout, is_training());
      x = linear_gelu(*module->as<torch::nn::LinearImpl>(), x);
    }
    x = maybe_dropout(x, config_.head_dropout, is_training());
  }
  return linear(*head, x);  // (B, classes)
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& images) {
  return forward_head(forward_features(images));
}

ViTOutput VisionTransformerImpl::forward_with_attention(const torch::Tensor& images) {
  ViTOutput out;
  out.logits = forward_head(forward_features(images, &out.attentions));
  return out;
}

int64_t count_parameters(const torch::nn::Module& module, bool trainable_only) {
  int64_t total = 0;
  for (const auto& p : module.parameters(/*recurse=*/true))
    if (!trainable_only || p.requires_grad()) total += p.numel();
  return total;
}

}  // namespace vit
