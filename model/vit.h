// Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words") in LibTorch.
//
// Modules from small to large: PatchEmbed, Attention, Mlp, Block, VisionTransformer. Every
// submodule and parameter is registered under the name it has in timm's vit_base_patch16_224
// state_dict (cls_token, pos_embed, patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,norm2,
// mlp.fc1,mlp.fc2}, norm / fc_norm, head), so weights map 1:1 to and from Python.
//
// Shape legend: B batch, C channels, S image side, P patch side, G = S / P, N = G * G patches,
// T = N (+1 with a class token) tokens, D dim, H heads, hd = D / H head dim.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <vector>

#include "dropout.h"
#include "vit_config.h"

namespace vit {

// Conv2d with kernel = stride = P: cuts the image into patches and projects each to D.
struct PatchEmbedImpl : torch::nn::Module {
  explicit PatchEmbedImpl(const ViTConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // (B, C, S, S) -> (B, N, D)
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const ViTConfig& config);
  // (B, T, D) -> (B, T, D). When `probs` is not null it receives the attention probabilities
  // (B, H, T, T) before attention dropout; the ordinary path passes null and keeps nothing. With
  // a `residual` (B, T, D), the result is residual + the attention's output, summed in the
  // output dropout's pass.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* probs = nullptr,
                        const torch::Tensor& residual = {});
  // The attention of the qkv projection's output (B, T, 3D) as ATen ops, heads concatenated
  // (B, T, D): the path for probabilities, attention dropout and devices the fused kernel
  // (fused_attention.h) does not cover.
  torch::Tensor composite(const torch::Tensor& qkv_out, torch::Tensor* probs = nullptr);
  int heads;
  double scale;
  double attn_dropout, proj_dropout;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(const ViTConfig& config);
  // (B, T, D) -> (B, T, D); with a `residual`, residual + the MLP's output (summed in its last
  // element-wise pass).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual = {});
  double dropout;
  bool act_after_fc2;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

// PatchDropout (Liu et al. 2022; timm's patch_drop_rate, with its `ordered` option): in training
// each image of x (B, T, D) keeps its first `prefix` tokens (the class token) and
// max(1, floor(N (1 - p))) of its N = T - prefix patch tokens, drawn without replacement and
// left in their order; returns (B, prefix + kept, D), x itself when not training or p = 0. One
// seed per call from the dropout streams (dropout.h), so data-parallel runs stay reproducible.
torch::Tensor patch_dropout(const torch::Tensor& x, int64_t prefix, double p, bool training);

// Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each residual branch
// with stochastic depth (drop_path).
struct BlockImpl : torch::nn::Module {
  BlockImpl(const ViTConfig& config, double drop_path);
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* probs = nullptr);
  double drop_path;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

struct ViTOutput {
  torch::Tensor logits;                  // (B, classes)
  std::vector<torch::Tensor> attentions; // per block (B, H, T, T); empty unless asked for
};

struct VisionTransformerImpl : torch::nn::Module {
  // Throws std::invalid_argument when the config is invalid (see check()).
  explicit VisionTransformerImpl(const ViTConfig& config);

  torch::Tensor forward(const torch::Tensor& images);  // (B, C, S, S) -> logits (B, classes)
  ViTOutput forward_with_attention(const torch::Tensor& images);
  // Token states after the final norm, before pooling: (B, T, D).
  torch::Tensor forward_features(const torch::Tensor& images,
                                 std::vector<torch::Tensor>* attentions = nullptr);
  torch::Tensor forward_head(const torch::Tensor& tokens);  // (B, T, D) -> (B, classes)

  const ViTConfig& config() const { return config_; }
  // Whether training steps apply the config's patch_drop (on by default). The trainer turns it
  // off for TrainConfig::full_token_epochs, the last epochs, which then see every patch.
  void enable_patch_drop(bool on) { patch_drop_on_ = on; }

  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token;  // (1, 1, D), absent without a class token
  torch::Tensor pos_embed;  // (1, T, D)
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};     // before pooling (token / flatten pooling)
  torch::nn::LayerNorm fc_norm{nullptr};  // after pooling (mean pooling, as timm)
  torch::nn::ModuleList head_mlp{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  void check_input(const torch::Tensor& images) const;
  ViTConfig config_;
  bool patch_drop_on_ = true;
};
TORCH_MODULE(VisionTransformer);

// Number of parameter elements of a module (all of them, or only those that require grad).
int64_t count_parameters(const torch::nn::Module& module, bool trainable_only = false);

}  // namespace vit
