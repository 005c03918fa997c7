// The oneDNN kernels of vit_core. Fused attention (model/fused_attention.h) against attention
// written out in float64 here: forward values and gradients, float and bfloat16, chunked batches
// with a remainder, calls from several threads at once, and the model using it against the
// model's composite path. Linear layers (model/onednn_linear.h) against at::linear, layer norms
// (model/onednn_layer_norm.h) against at::layer_norm in float64.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cpu_info.h"
#include "data_parallel.h"
#include "dropout.h"
#include "fused_attention.h"
#include "onednn_layer_norm.h"
#include "onednn_linear.h"
#include "vit.h"

namespace {

// softmax(q k^T * scale) v per head, computed in float64 from the qkv projection's layout
// (B, T, 3D): the definition the kernel must match (timm's Attention.forward).
torch::Tensor reference(const torch::Tensor& qkv, int64_t heads, double scale) {
  const auto x = qkv.to(torch::kDouble);
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2) / 3;
  auto parts = x.view({B, T, 3, heads, D / heads}).permute({2, 0, 3, 1, 4});
  auto attn = torch::softmax(torch::matmul(parts[0], parts[1].transpose(-2, -1)) * scale, -1);
  return torch::matmul(attn, parts[2]).transpose(1, 2).reshape({B, T, D});
}

struct Case {
  int64_t B, T, heads, head_dim;
};

// Shapes: tiny; a batch that splits into several chunks plus a remainder (the kernel covers as
// many images per call as fit ~512 KiB of float scores: 15 here, so 17 = 15 + 2); keras-cifar's
// attention (145 tokens, 4 heads of 16); one image of ViT-B/16's (197 tokens, 12 heads of 64).
// Our kernels (attention_kernels.h) take heads of 1-4 whole vectors of features (16-64 on
// AVX-512, 8-32 on AVX2) and up to 256 tokens: scores in registers up to 4 vectors of tokens,
// else in tiles; with attention dropout also AVX2 heads of 5-8 vectors (40-64 features, results
// in blocks of at most 4 vectors: 64 = 4 + 4, 48 = 4 + 2), which oneDNN's matmuls run faster
// without it. Among the first four: 65 and 145 tokens of 16 (tiles, both sets), 197 of 64
// (tiles; on AVX2 oneDNN's without dropout), 5 tokens of 8 (registers on AVX2; oneDNN on
// AVX-512). Then fmnist-small's 17 tokens of 32 (16 + a 1-token tail), one token, exactly one
// vector of tokens, 64 tokens of 64 (registers on AVX-512; on AVX2 tiles with dropout), 33
// tokens of 48 features (3 vectors on AVX-512; 6 on AVX2 with dropout), 20 tokens of 64 (in
// registers; 8 feature vectors on AVX2 with dropout), 300 tokens, past our kernels: oneDNN's
// matmuls on every CPU, and fmnist-small's heads at 60 images, whose 69,360 probabilities cross
// dropout's 16,384-element mask chunks in the middle of rows kept in registers.
const std::vector<Case> kCases = {{2, 5, 2, 8},   {17, 65, 2, 16}, {3, 145, 4, 16}, {1, 197, 12, 64},
                                  {3, 17, 4, 32}, {2, 1, 2, 16},   {2, 16, 2, 16},  {4, 64, 2, 64},
                                  {2, 33, 3, 48}, {2, 20, 2, 64},  {1, 300, 2, 16}, {60, 17, 4, 32}};

double max_rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  const auto w = want.to(torch::kDouble);
  return ((got.to(torch::kDouble) - w).abs().max() / w.abs().max()).item<double>();
}

// Output and d(sum(out * g))/dqkv through the fused kernel.
std::pair<torch::Tensor, torch::Tensor> fused_with_grad(const torch::Tensor& qkv0, int64_t heads,
                                                        double scale, const torch::Tensor& g) {
  auto qkv = qkv0.detach().clone().requires_grad_(true);
  auto out = vit::fused_attention(qkv, heads, scale);
  if (!out) return {};
  (*out * g.to(out->scalar_type())).sum().backward();
  return {out->detach(), qkv.grad()};
}

// The same with attention dropout p.
std::pair<torch::Tensor, torch::Tensor> fused_with_grad_dropout(const torch::Tensor& qkv0, int64_t heads,
                                                                double scale, const torch::Tensor& g, double p) {
  auto qkv = qkv0.detach().clone().requires_grad_(true);
  auto out = vit::fused_attention(qkv, heads, scale, p);
  if (!out) return {};
  (*out * g.to(out->scalar_type())).sum().backward();
  return {out->detach(), qkv.grad()};
}

std::pair<torch::Tensor, torch::Tensor> reference_with_grad(const torch::Tensor& qkv0, int64_t heads,
                                                            double scale, const torch::Tensor& g) {
  auto qkv = qkv0.detach().to(torch::kDouble).requires_grad_(true);
  auto out = reference(qkv, heads, scale);
  (out * g.to(torch::kDouble)).sum().backward();
  return {out.detach(), qkv.grad()};
}

}  // namespace

TEST(FusedAttention, IsBuiltHere) {
  // The default build has oneDNN (libdnnl-dev, scripts/setup.sh); without it every other test
  // here would only see the fallback.
  ASSERT_TRUE(vit::fused_attention_enabled())
      << "built without libdnnl-dev or run with VIT_FUSED_ATTENTION=0";
}

TEST(FusedAttention, FloatMatchesTheDefinitionForwardAndBackward) {
  torch::manual_seed(1);
  for (const auto& c : kCases) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " heads=" +
                 std::to_string(c.heads) + " head_dim=" + std::to_string(c.head_dim));
    const int64_t D = c.heads * c.head_dim;
    const double scale = 1.0 / std::sqrt(double(c.head_dim));
    const auto qkv = torch::randn({c.B, c.T, 3 * D}) * 2.0;  // scores spread enough to be peaked
    const auto g = torch::randn({c.B, c.T, D});
    const auto [out, grad] = fused_with_grad(qkv, c.heads, scale, g);
    ASSERT_TRUE(out.defined()) << "fused attention declined a float CPU tensor: "
                               << vit::fused_attention_declined();
    EXPECT_EQ(out.scalar_type(), torch::kFloat);
    EXPECT_EQ(out.sizes(), torch::IntArrayRef({c.B, c.T, D}));
    const auto [want, want_grad] = reference_with_grad(qkv, c.heads, scale, g);
    EXPECT_LT(max_rel_err(out, want), 1e-5);
    EXPECT_LT(max_rel_err(grad, want_grad), 1e-5);
    // Without autograd (inference) the same numbers, through the path that keeps no probabilities.
    torch::NoGradGuard no_grad;
    const auto plain = vit::fused_attention(qkv, c.heads, scale);
    ASSERT_TRUE(plain.has_value());
    EXPECT_TRUE(torch::equal(*plain, out));
  }
}

TEST(FusedAttention, Bfloat16IsAsCloseAsATensBfloat16Path) {
  torch::manual_seed(2);
  for (const auto& c : kCases) {
    SCOPED_TRACE("T=" + std::to_string(c.T) + " heads=" + std::to_string(c.heads));
    const int64_t D = c.heads * c.head_dim;
    const double scale = 1.0 / std::sqrt(double(c.head_dim));
    const auto qkv = (torch::randn({c.B, c.T, 3 * D}) * 2.0).to(torch::kBFloat16);
    const auto g = torch::randn({c.B, c.T, D}).to(torch::kBFloat16);
    const auto [out, grad] = fused_with_grad(qkv, c.heads, scale, g);
    // Without AVX-512 oneDNN has no bf16 matmul and the products run in float on the bf16 values
    // (fused_attention.cpp); either way a bf16 result, never a decline.
    ASSERT_TRUE(out.defined()) << "declined bf16 attention: " << vit::fused_attention_declined();
    EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(grad.scalar_type(), torch::kBFloat16);
    const auto [want, want_grad] = reference_with_grad(qkv, c.heads, scale, g);
    // What LibTorch's own bfloat16 ops give for the same inputs (the composite path under
    // autocast): the fused kernel is allowed its error, plus a little.
    vit::ViTConfig cfg;
    cfg.dim = int(D), cfg.heads = int(c.heads), cfg.depth = 1, cfg.mlp_hidden = 4;
    vit::Attention composite(cfg);
    auto qkv_b = qkv.detach().clone().requires_grad_(true);
    auto aten = composite->composite(qkv_b);
    (aten * g).sum().backward();
    const double fused_err = max_rel_err(out, want), aten_err = max_rel_err(aten, want);
    const double fused_gerr = max_rel_err(grad, want_grad), aten_gerr = max_rel_err(qkv_b.grad(), want_grad);
    EXPECT_LT(fused_err, 1.5 * aten_err + 2e-3) << "ATen's bf16 error " << aten_err;
    EXPECT_LT(fused_gerr, 1.5 * aten_gerr + 2e-3) << "ATen's bf16 gradient error " << aten_gerr;
    EXPECT_LT(fused_err, 0.03);
    EXPECT_LT(fused_gerr, 0.05);
  }
}

TEST(FusedAttention, ShortHeadsRunOnOurKernels) {
  // Our kernels and our row softmax share a switch (VIT_FUSED_ELTWISE) and a build condition;
  // where the softmax is ours, fmnist-small's heads must not fall back to oneDNN's matmuls (else
  // the tests above would check oneDNN's path only for them).
  const std::string softmax = vit::fused_attention_softmax();
  const std::string fmnist = vit::fused_attention_kernels(17, 32, torch::kFloat);
  if (softmax.rfind("oneDNN", 0) == 0) {
    EXPECT_EQ(fmnist.rfind("oneDNN", 0), 0u) << fmnist;
    GTEST_SKIP() << "our kernels are off here: softmax " << softmax;
  }
  EXPECT_EQ(fmnist, "ours (" + softmax + ")");
  EXPECT_EQ(vit::fused_attention_kernels(17, 32, torch::kBFloat16), fmnist) << "bfloat16 heads too";
  EXPECT_EQ(vit::fused_attention_kernels(145, 16, torch::kFloat), fmnist) << "keras-cifar's heads";
  EXPECT_EQ(vit::fused_attention_kernels(257, 16, torch::kFloat).rfind("oneDNN", 0), 0u)
      << "more than 256 tokens";
  EXPECT_EQ(vit::fused_attention_kernels(17, 12, torch::kFloat).rfind("oneDNN", 0), 0u)
      << "heads of 12 features are not whole vectors";
  // Attention dropout runs on ours for every head they cover, ViT-B/16's included (on AVX2 those
  // run on oneDNN's matmuls without dropout), and on nothing else.
  EXPECT_TRUE(vit::fused_attention_drops_out(17, 32, torch::kBFloat16));
  EXPECT_TRUE(vit::fused_attention_drops_out(145, 16, torch::kFloat));
  EXPECT_TRUE(vit::fused_attention_drops_out(197, 64, torch::kFloat));
  EXPECT_FALSE(vit::fused_attention_drops_out(257, 16, torch::kFloat));
  EXPECT_FALSE(vit::fused_attention_drops_out(17, 12, torch::kFloat));
  EXPECT_FALSE(vit::fused_attention_drops_out(197, 80, torch::kFloat)) << "more than 64 features";
}

TEST(FusedAttention, ANaNStaysInItsOwnHeadAndImage) {
  // fmnist-small's shape (our kernels where they run): a NaN in one query of image 1, head 0
  // makes that token's output for head 0 NaN, and nothing in the other images or heads; its
  // gradient reaches image 1 only.
  const int64_t B = 3, T = 17, heads = 4, hd = 32, D = heads * hd;
  torch::manual_seed(5);
  auto qkv = torch::randn({B, T, 3 * D});
  qkv[1][5][3] = std::numeric_limits<float>::quiet_NaN();  // q, head 0, token 5
  const auto [out, grad] = fused_with_grad(qkv, heads, 1.0 / std::sqrt(double(hd)), torch::ones({B, T, D}));
  ASSERT_TRUE(out.defined());
  const auto nan = out.isnan();
  EXPECT_TRUE(nan[1][5].slice(0, 0, hd).all().item<bool>()) << "the token's head-0 output";
  EXPECT_EQ(nan.sum().item<int64_t>(), hd) << "only that token's head-0 output";
  EXPECT_TRUE(grad[0].isfinite().all().item<bool>());
  EXPECT_TRUE(grad[2].isfinite().all().item<bool>());
}

TEST(FusedAttention, ThreadsRuningAtOnceGetTheirOwnResults) {
  // Data-parallel shards call the kernel from several threads at once, each with its own cache
  // of kernels and its own stream.
  torch::manual_seed(3);
  const int64_t D = 64, heads = 4;
  std::vector<torch::Tensor> inputs, outputs(4), grads(4);
  for (int i = 0; i < 4; ++i) inputs.push_back(torch::randn({6 + i, 33, 3 * D}));
  const auto g = torch::ones({1});
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int repeat = 0; repeat < 3; ++repeat) {
        auto qkv = inputs[i].clone().requires_grad_(true);
        auto out = vit::fused_attention(qkv, heads, 0.25);
        if (!out) return;
        out->pow(2).sum().backward();
        outputs[i] = out->detach(), grads[i] = qkv.grad();
      }
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(outputs[i].defined());
    auto qkv = inputs[i].to(torch::kDouble).requires_grad_(true);
    auto want = reference(qkv, heads, 0.25);
    want.pow(2).sum().backward();
    EXPECT_LT(max_rel_err(outputs[i], want), 1e-5) << "thread " << i;
    EXPECT_LT(max_rel_err(grads[i], qkv.grad()), 1e-5) << "thread " << i;
  }
}

namespace {

// dropout(softmax(q k^T * scale), mask) v in float64, `mask` (B, H, T, T) of multipliers.
torch::Tensor reference_dropout(const torch::Tensor& qkv, int64_t heads, double scale, const torch::Tensor& mask) {
  const auto x = qkv.to(torch::kDouble);
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2) / 3;
  auto parts = x.view({B, T, 3, heads, D / heads}).permute({2, 0, 3, 1, 4});
  auto attn = torch::softmax(torch::matmul(parts[0], parts[1].transpose(-2, -1)) * scale, -1);
  return torch::matmul(attn * mask.to(torch::kDouble), parts[2]).transpose(1, 2).reshape({B, T, D});
}


// The model's logits and parameter gradients (of the logits' logsumexp) through forward(), which
// runs fused attention, and forward_with_attention(), which needs the probabilities and runs the
// composite ATen path, each pass drawing from the random stream `seed` (so that dropout drops
// alike): they must agree. Returns forward()'s logits.
torch::Tensor expect_fused_matches_composite(vit::VisionTransformer& model, const torch::Tensor& images,
                                             uint64_t seed) {
  auto grads_of = [&](bool fused) {
    model->zero_grad();
    vit::RandomStreamScope stream(seed);
    auto logits = fused ? model->forward(images) : model->forward_with_attention(images).logits;
    logits.logsumexp(1).sum().backward();
    std::vector<torch::Tensor> g;
    for (const auto& p : model->parameters()) g.push_back(p.grad().clone());
    return std::make_pair(logits.detach(), g);
  };
  const auto [fused_logits, fused_grads] = grads_of(true);
  const auto [composite_logits, composite_grads] = grads_of(false);
  EXPECT_LT(max_rel_err(fused_logits, composite_logits), 1e-5);
  EXPECT_EQ(fused_grads.size(), composite_grads.size());
  for (size_t i = 0; i < std::min(fused_grads.size(), composite_grads.size()); ++i)
    EXPECT_LT(max_rel_err(fused_grads[i], composite_grads[i]), 1e-4) << "parameter " << i;
  return fused_logits;
}

}  // namespace

TEST(FusedAttention, DropoutDropsWhatTheCompositePathsMaskDrops) {
  // Attention dropout inside our kernels (attention_kernels.h) takes one seed and drops exactly
  // the probabilities dropout_mask({B, H, T, T}, p) drops from that seed (what the composite path
  // multiplies by): against float64 with that mask, forward and gradients, float and bfloat16.
  // The shapes cover rows that start mid-draw (odd T) and cross a 16,384-element mask chunk
  // (3 x 4 x 145 x 145 probabilities), scores in registers (17, 16, 5 tokens) and in tiles (65,
  // 145, 197). Where our kernels do not run (300 tokens), fused attention declines dropout without
  // taking a seed.
  const double p = 0.3;
  int ran = 0;
  for (const auto& c : kCases) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " heads=" +
                 std::to_string(c.heads) + " head_dim=" + std::to_string(c.head_dim));
    torch::manual_seed(6);
    const int64_t D = c.heads * c.head_dim;
    const double scale = 1.0 / std::sqrt(double(c.head_dim));
    const auto qkv = torch::randn({c.B, c.T, 3 * D}) * 2.0;
    const auto g = torch::randn({c.B, c.T, D});
    for (auto type : {torch::kFloat, torch::kBFloat16}) {
      SCOPED_TRACE(c10::toString(type));
      const auto x = qkv.to(type);
      std::pair<torch::Tensor, torch::Tensor> got;
      uint64_t next_seed = 0;
      {
        vit::RandomStreamScope stream(1234);
        got = fused_with_grad_dropout(x, c.heads, scale, g, p);
        next_seed = vit::next_dropout_seed();
      }
      uint64_t seed = 0, second = 0;
      torch::Tensor mask;
      {
        vit::RandomStreamScope stream(1234);
        seed = vit::next_dropout_seed();
        second = vit::next_dropout_seed();
      }
      {
        vit::RandomStreamScope stream(1234);
        mask = vit::dropout_mask({c.B, c.heads, c.T, c.T}, p);
      }
      if (!vit::fused_attention_drops_out(c.T, c.head_dim, type)) {
        EXPECT_FALSE(got.first.defined()) << "dropout where our kernels do not run";
        EXPECT_EQ(next_seed, seed) << "declined, yet took a seed";
        continue;
      }
      ++ran;
      ASSERT_TRUE(got.first.defined()) << vit::fused_attention_declined();
      EXPECT_EQ(next_seed, second) << "one seed per call";
      EXPECT_EQ(got.first.scalar_type(), type);
      auto ref_qkv = x.to(torch::kDouble).requires_grad_(true);
      auto want = reference_dropout(ref_qkv, c.heads, scale, mask);
      (want * g.to(type).to(torch::kDouble)).sum().backward();
      const double tol = type == torch::kFloat ? 1e-5 : 0.03, gtol = type == torch::kFloat ? 1e-5 : 0.05;
      EXPECT_LT(max_rel_err(got.first, want), tol);
      EXPECT_LT(max_rel_err(got.second, ref_qkv.grad()), gtol);
      // The mask matters: without dropout the output is another one.
      EXPECT_GT(max_rel_err(got.first, reference(x, c.heads, scale)), 0.05);
      if (type == torch::kFloat) {
        // Without autograd (training mode under no_grad) the same numbers from the same seed.
        torch::NoGradGuard no_grad;
        vit::RandomStreamScope stream(1234);
        const auto plain = vit::fused_attention(x, c.heads, scale, p);
        ASSERT_TRUE(plain.has_value());
        EXPECT_TRUE(torch::equal(*plain, got.first));
      }
    }
  }
  // 11 of the shapes on AVX2, 10 on AVX-512, each in both types; none where our kernels are off.
  if (vit::fused_attention_drops_out(17, 32, torch::kFloat)) EXPECT_GE(ran, 20) << "too few shapes ran on our kernels";
}

TEST(FusedAttention, ModelWithAttentionDropoutTrainsAsItsCompositePath) {
  // In training, forward() now runs attention dropout inside the fused kernel, and
  // forward_with_attention() (which needs the probabilities) the composite expression: from the
  // same random stream both drop the same probabilities (and the same activations elsewhere), so
  // logits and gradients agree. keras-cifar's layout: 145 tokens, heads of 16.
  vit::ViTConfig c;
  c.image_size = 24, c.patch_size = 2, c.in_channels = 3, c.num_classes = 5;
  c.dim = 32, c.depth = 2, c.heads = 2, c.mlp_hidden = 48;
  c.attn_dropout = 0.2, c.dropout = 0.1;
  torch::manual_seed(7);
  vit::VisionTransformer model(c);
  model->train();
  const auto images = torch::randn({3, 3, 24, 24});
  const auto fused_logits = expect_fused_matches_composite(model, images, 99);
  // And the dropout is there: another stream gives other logits.
  vit::RandomStreamScope other(100);
  EXPECT_GT(max_rel_err(model->forward(images).detach(), fused_logits), 1e-3);
}

TEST(FusedAttention, DeclinesWhatItDoesNotCover) {
  EXPECT_FALSE(vit::fused_attention(torch::randn({2, 5, 3 * 10}), 4, 0.5))
      << "3*D not a multiple of 3*heads";
  EXPECT_FALSE(vit::fused_attention(torch::randn({2, 5, 24}).to(torch::kDouble), 2, 0.5));
  EXPECT_FALSE(vit::fused_attention(torch::randn({5, 24}), 2, 0.5)) << "no batch dimension";
  EXPECT_FALSE(vit::fused_attention(torch::randn({0, 5, 24}), 2, 0.5)) << "empty batch";
  EXPECT_FALSE(vit::fused_attention(torch::randn({2, 17, 3 * 64}), 2, 0.5, 1.0)) << "attention dropout 1";
  EXPECT_FALSE(vit::fused_attention(torch::randn({2, 17, 3 * 64}), 2, 0.5, -0.1)) << "attention dropout < 0";
}

TEST(FusedAttention, ModelGivesTheSameLogitsAndGradientsAsItsCompositePath) {
  // forward() runs the fused kernel; forward_with_attention() needs the probabilities and runs
  // the composite ATen path: the same model must give the same logits and gradients both ways.
  torch::manual_seed(4);
  vit::ViTConfig c;
  // 17 tokens and heads of 32 features, fmnist-small's: our kernels where they run.
  c.image_size = 24, c.patch_size = 6, c.in_channels = 3, c.num_classes = 7;
  c.dim = 64, c.depth = 2, c.heads = 2, c.mlp_hidden = 64;
  vit::VisionTransformer model(c);
  model->eval();  // no dropout, so both passes see identical networks
  const auto images = torch::randn({5, 3, 24, 24});
  expect_fused_matches_composite(model, images, 0);
}

namespace {

// The layer through oneDNN (nullopt where it declines) or through LibTorch's at::linear.
std::optional<torch::Tensor> linear(bool ours, const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (ours) return vit::onednn_linear(x, w, b);
  return torch::nn::functional::linear(x, w, b);
}

}  // namespace

TEST(OneDnnLinear, MatchesLibTorchsLinearValuesAndGradients) {
  torch::manual_seed(5);
  struct Shape { std::vector<int64_t> x; int64_t out; bool bias; };
  // (tokens of a batch, features): ViT-B/16's qkv at batch 1, a 3-d activation, a 2-d head
  // without bias, a single row.
  const std::vector<Shape> shapes = {{{1, 197, 768}, 2304, true}, {{3, 17, 128}, 256, true},
                                     {{5, 64}, 10, false}, {{1, 7}, 3, true}};
  for (const auto& sh : shapes) {
    SCOPED_TRACE("x " + std::to_string(sh.x.size()) + "-d, out " + std::to_string(sh.out));
    const int64_t in = sh.x.back();
    const auto x0 = torch::randn(sh.x), w0 = torch::randn({sh.out, in}) * 0.05;
    const auto b0 = sh.bias ? torch::randn({sh.out}) : torch::Tensor();
    auto run = [&](bool ours) {
      auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
      auto b = sh.bias ? b0.clone().requires_grad_(true) : torch::Tensor();
      const auto got = linear(ours, x, w, b);
      if (!got) return std::vector<torch::Tensor>{};
      const auto& y = *got;
      (y * y.detach().sin()).sum().backward();  // a gradient that differs per element
      return std::vector<torch::Tensor>{y.detach(), x.grad(), w.grad(), sh.bias ? b.grad() : torch::Tensor()};
    };
    const auto ours = run(true), want = run(false);
    ASSERT_EQ(ours.size(), 4u) << "declined a float CPU linear layer";
    EXPECT_EQ(ours[0].sizes(), want[0].sizes());
    const char* names[] = {"output", "input gradient", "weight gradient", "bias gradient"};
    for (int i = 0; i < (sh.bias ? 4 : 3); ++i) EXPECT_LT(max_rel_err(ours[i], want[i]), 1e-5) << names[i];
    torch::NoGradGuard no_grad;  // inference: the path that saves nothing, same numbers
    EXPECT_TRUE(torch::allclose(*vit::onednn_linear(x0, w0, b0), ours[0], 1e-6, 1e-6));
  }
}

TEST(OneDnnLinear, LeavesOtherTypesToLibTorch) {
  const auto x = torch::randn({4, 8}), w = torch::randn({3, 8}), b = torch::randn({3});
  EXPECT_FALSE(vit::onednn_linear(x.to(torch::kDouble), w.to(torch::kDouble), b.to(torch::kDouble)));
  EXPECT_FALSE(vit::onednn_linear(x, torch::randn({3, 9}), b)) << "inner sizes differ";
  EXPECT_FALSE(vit::onednn_linear(x, w, torch::randn({4}))) << "bias of the wrong length";
  EXPECT_FALSE(vit::onednn_linear(x, w.to(torch::kBFloat16), b)) << "mixed types outside autocast";
  EXPECT_TRUE(vit::onednn_linear(x, w, b));
}

TEST(OneDnnLinear, UnderAutocastComputesWhatAutocastsLinearDoes) {
  // Mixed-precision training (vit::forward_backward): float weights, float or bf16 activations,
  // bf16 autocast on. LibTorch's autocast casts all three to bf16 and returns bf16; ours must
  // too, with gradients back in float. Both round to bf16 (LibTorch twice: after the product and
  // after the bias), so they agree to bf16's precision, not bit for bit.
  torch::manual_seed(9);
  const auto x0 = torch::randn({3, 29, 64}), w0 = torch::randn({96, 64}) * 0.1, b0 = torch::randn({96});
  auto run = [&](bool ours) {
    auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
    std::optional<torch::Tensor> got;
    {
      vit::Bf16AutocastScope autocast(true);
      got = linear(ours, x, w, b);
    }
    if (!got) return std::vector<torch::Tensor>{};
    const auto& y = *got;
    (y.to(torch::kFloat) * y.detach().to(torch::kFloat).sin()).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), x.grad(), w.grad(), b.grad()};
  };
  const auto want = run(false), got = run(true);
  if (got.empty()) GTEST_SKIP() << "no bfloat16 matmul on this CPU";
  const char* names[] = {"output", "input gradient", "weight gradient", "bias gradient"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(got[i].scalar_type(), want[i].scalar_type()) << names[i];
    EXPECT_LT(max_rel_err(got[i], want[i]), 2e-2) << names[i];
  }
  EXPECT_EQ(got[0].scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got[2].scalar_type(), torch::kFloat);
  // And the result is a bf16 product at all: against float64 it is off by bf16's rounding.
  const auto exact = torch::nn::functional::linear(x0.to(torch::kDouble), w0.to(torch::kDouble), b0.to(torch::kDouble));
  EXPECT_GT(max_rel_err(got[0], exact), 1e-4);
  EXPECT_LT(max_rel_err(got[0], exact), 2e-2);
}

TEST(OneDnnLinear, Bfloat16WeightsMatchLibTorchsBfloat16Linear) {
  // A model converted to bf16 (vit summary --benchmark --precision bf16, inference with bf16
  // weights): x, W and b all bf16, no autocast. Both sides round to bf16; compare against float64.
  torch::manual_seed(6);
  const auto x0 = torch::randn({2, 33, 96}).to(torch::kBFloat16);
  const auto w0 = (torch::randn({80, 96}) * 0.1).to(torch::kBFloat16);
  const auto b0 = torch::randn({80}).to(torch::kBFloat16);
  auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
  auto got = vit::onednn_linear(x, w, b);
  if (!got)  // oneDNN's bf16 matmul needs AVX-512; every machine CI runs on has it
    GTEST_SKIP() << "no bfloat16 matmul on this CPU";
  EXPECT_EQ(got->scalar_type(), torch::kBFloat16);
  got->sum().backward();
  auto xd = x0.to(torch::kDouble).requires_grad_(true), wd = w0.to(torch::kDouble).requires_grad_(true);
  auto bd = b0.to(torch::kDouble).requires_grad_(true);
  auto want = torch::nn::functional::linear(xd, wd, bd);
  want.sum().backward();
  EXPECT_LT(max_rel_err(*got, want), 1e-2);
  EXPECT_LT(max_rel_err(x.grad(), xd.grad()), 1e-2);
  EXPECT_LT(max_rel_err(w.grad(), wd.grad()), 1e-2);
  EXPECT_LT(max_rel_err(b.grad(), bd.grad()), 1e-2);
}

TEST(OneDnnLinear, Bfloat16GemmsRunOnTheUnitsChosenForThisCpu) {
  // VIT_BF16_GEMM=float|bf16 decides (the test_onednn_kernels_*_units variants run both), else
  // the measured rates (cpu_info.h).
  const char* v = std::getenv("VIT_BF16_GEMM");
  const std::string forced = v ? v : "";
  const bool want = forced == "float" ? true : forced == "bf16" ? false : vit::bf16_support().gemm_on_float_units();
  EXPECT_EQ(vit::bf16_gemms_on_float_units(), want) << "VIT_BF16_GEMM=" << forced << ", " << vit::bf16_support().describe();
}

TEST(OneDnnLinear, Bfloat16OnFloatUnitsIsTheExactProductRoundedOnce) {
  // bf16 layers on the float units (onednn_linear.h): blocks of rows widened to float, a float
  // matmul, one rounding to bf16. 2,100 rows of 64 -> 64 go in blocks of 682 and a tail of 54, so
  // the weight gradient is summed over four blocks. Each result must be the float64 result of the
  // same bf16 values rounded once: at most one bf16 step (2^-8 to 2^-7 of the value) from it, and
  // almost all values exactly it (float sums in another order flip a rounding only near a tie:
  // 7 of 134,400 outputs here). Forgetting a block's share of dW, or rounding a partial sum to
  // bf16, fails this.
  if (!vit::bf16_gemms_on_float_units()) GTEST_SKIP() << "bf16 GEMMs run on bf16 units here (VIT_BF16_GEMM=float runs this)";
  torch::manual_seed(10);
  const auto x0 = torch::randn({3, 700, 64}).to(torch::kBFloat16);
  const auto w0 = (torch::randn({64, 64}) * 0.1).to(torch::kBFloat16);
  const auto b0 = torch::randn({64}).to(torch::kBFloat16);
  const auto g = torch::randn({3, 700, 64}).to(torch::kBFloat16);  // d loss / d y
  auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
  const auto y = vit::onednn_linear(x, w, b);
  ASSERT_TRUE(y) << "declined a bf16 layer on the float units";
  ASSERT_EQ(y->scalar_type(), torch::kBFloat16);
  (*y * g).sum().backward();
  auto xd = x0.to(torch::kDouble).requires_grad_(true), wd = w0.to(torch::kDouble).requires_grad_(true);
  auto bd = b0.to(torch::kDouble).requires_grad_(true);
  (torch::nn::functional::linear(xd, wd, bd) * g.to(torch::kDouble)).sum().backward();
  const auto yd = torch::nn::functional::linear(x0.to(torch::kDouble), w0.to(torch::kDouble), b0.to(torch::kDouble));
  const std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs = {
      {*y, yd}, {x.grad(), xd.grad()}, {w.grad(), wd.grad()}};
  const char* names[] = {"output", "input gradient", "weight gradient"};
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& [got, exact] = pairs[i];
    ASSERT_EQ(got.scalar_type(), torch::kBFloat16) << names[i];
    const auto rounded = exact.to(torch::kFloat).to(torch::kBFloat16).to(torch::kDouble);
    const auto step = exact.abs().clamp_min(1e-30) * std::ldexp(1.0, -7);
    const auto diff = (got.to(torch::kDouble) - rounded).abs();
    const auto bad = (diff > step * 1.0001);
    EXPECT_FALSE(bad.any().item<bool>()) << names[i] << ": more than one bf16 step from the exact result at "
        << bad.sum().item<int64_t>() << " of " << bad.numel() << ", e.g. got " << got.masked_select(bad).slice(0, 0, 3)
        << " exact " << exact.masked_select(bad).slice(0, 0, 3) << " zero-diff share " << (diff == 0).to(torch::kDouble).mean().item<double>();
    EXPECT_GT((diff == 0).to(torch::kDouble).mean().item<double>(), 0.999) << names[i];
  }
}

TEST(OneDnnLinear, Bfloat16OnFloatUnitsRoundsTiesToEvenAndKeepsInfAndNaN) {
  // The widening and rounding around the float matmul (our kernels where they run,
  // transpose_kernels.h, else oneDNN's reorders) must be c10::BFloat16's: round to nearest even,
  // inf stays inf, NaN stays NaN. y = x I + 2^-8 is exact in float, so its rounding is all that
  // differs from at::linear in float rounded by c10: 1 + 2^-8 is the tie between 1 and 1 + 2^-7
  // (even: 1), 1 + 3 * 2^-8 the tie between 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6), which
  // truncation gets wrong. 37 columns and 301 rows leave tails at every vector width.
  if (!vit::bf16_gemms_on_float_units()) GTEST_SKIP() << "bf16 GEMMs run on bf16 units here (VIT_BF16_GEMM=float runs this)";
  torch::manual_seed(11);
  const int64_t rows = 301, n = 37;
  auto x = torch::randn({rows, n}) * 4.0;
  const float ties[] = {1.0f, 1.0f + std::ldexp(1.0f, -7), -1.0f - std::ldexp(1.0f, -7), 2.0f};
  for (int64_t r = 0; r < 200; ++r) x[r][r % n] = ties[r % 4];
  x[201][5] = std::numeric_limits<float>::infinity();
  x[202][36] = -std::numeric_limits<float>::infinity();
  x[203][0] = std::numeric_limits<float>::quiet_NaN();
  x[204][1] = 3.0e38f;  // + 2^-8 rounds to the same finite value, not to inf
  x = x.to(torch::kBFloat16);
  const auto w = torch::eye(n).to(torch::kBFloat16);
  const auto b = torch::full({n}, std::ldexp(1.0f, -8)).to(torch::kBFloat16);
  const auto y = vit::onednn_linear(x, w, b);
  ASSERT_TRUE(y) << "declined a bf16 layer on the float units";
  const auto want = torch::nn::functional::linear(x.to(torch::kFloat), w.to(torch::kFloat), b.to(torch::kFloat))
                        .to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(y->isnan(), want.isnan())) << "NaN where c10 has none, or the reverse";
  EXPECT_TRUE(want.isnan().any().item<bool>() && want.isinf().any().item<bool>()) << "the test lost its specials";
  const auto finite_or_inf = ~want.isnan();
  const auto got_bits = y->view(torch::kShort).masked_select(finite_or_inf);
  const auto want_bits = want.view(torch::kShort).masked_select(finite_or_inf);
  const auto differ = got_bits != want_bits;
  EXPECT_EQ(differ.sum().item<int64_t>(), 0) << "bf16 values other than c10's rounding, e.g. got "
      << got_bits.masked_select(differ).slice(0, 0, 4) << " want " << want_bits.masked_select(differ).slice(0, 0, 4);
  EXPECT_EQ(y->index({0, 0}).item<float>(), 1.0f) << "1 + 2^-8 ties to even 1";
  EXPECT_EQ(y->index({1, 1}).item<float>(), 1.0f + std::ldexp(1.0f, -6)) << "1 + 3 * 2^-8 ties to even 1 + 2^-6";
}

TEST(OneDnnLinear, GeluPostOpMatchesGeluOfTheLayerForInference) {
  // fc1 followed by GELU at inference (model/vit.cpp linear_gelu): one matmul with GELU as a
  // post-op. Against at::gelu (erf form) of the layer in float64; bf16 as close as bf16 allows.
  torch::manual_seed(7);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 197, 96}), w = torch::randn({160, 96}) * 0.2, b = torch::randn({160});
  const auto want = torch::gelu(torch::nn::functional::linear(x.to(torch::kDouble), w.to(torch::kDouble),
                                                              b.to(torch::kDouble)));
  const auto got = vit::onednn_linear_gelu(x, w, b);
  ASSERT_TRUE(got) << "declined a float CPU layer";
  EXPECT_EQ(got->sizes(), want.sizes());
  EXPECT_LT(max_rel_err(*got, want), 1e-5);
  const auto no_bias = vit::onednn_linear_gelu(x, w, torch::Tensor());
  ASSERT_TRUE(no_bias);
  EXPECT_LT(max_rel_err(*no_bias, torch::gelu(torch::nn::functional::linear(x.to(torch::kDouble), w.to(torch::kDouble)))), 1e-5);
  if (const auto bf = vit::onednn_linear_gelu(x.to(torch::kBFloat16), w.to(torch::kBFloat16), b.to(torch::kBFloat16))) {
    EXPECT_EQ(bf->scalar_type(), torch::kBFloat16);
    EXPECT_LT(max_rel_err(*bf, want), 2e-2);
  }
}

TEST(OneDnnLinear, GeluPostOpDeclinesWhenAGradientIsWanted) {
  // Training needs GELU's input for its backward pass: the caller runs the layer and at::gelu.
  const auto x = torch::randn({4, 8}), b = torch::randn({3});
  const auto w = torch::randn({3, 8}).requires_grad_(true);
  EXPECT_FALSE(vit::onednn_linear_gelu(x, w, b));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(vit::onednn_linear_gelu(x, w, b));
}

namespace {

// Output and the gradients of sum(y * sin(y)) with respect to x, weight and bias through `norm`,
// from copies of the given tensors (cast to `type`; weight and bias may be undefined).
std::vector<torch::Tensor> layer_norm_with_grads(
    const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>& norm,
    const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0, torch::ScalarType type) {
  const auto leaf = [type](const torch::Tensor& t) {
    return t.defined() ? t.to(type).detach().clone().requires_grad_(true) : torch::Tensor();
  };
  auto x = leaf(x0), w = leaf(w0), b = leaf(b0);
  const auto y = norm(x, w, b);
  (y * y.detach().sin()).sum().backward();  // a gradient that differs per element
  return {y.detach(), x.grad(), w.defined() ? w.grad() : torch::Tensor(), b.defined() ? b.grad() : torch::Tensor()};
}

}  // namespace

TEST(OneDnnLayerNorm, MatchesTheDefinitionValuesAndGradients) {
  torch::manual_seed(8);
  struct Shape { std::vector<int64_t> x; bool weight, bias; };
  // ViT-B/16's tokens at batch 1, keras-cifar's (64 features), odd sizes, no affine part, weight only.
  const std::vector<Shape> shapes = {{{1, 197, 768}, true, true}, {{3, 145, 64}, true, true},
                                     {{5, 33}, true, true}, {{4, 7, 10}, false, false}, {{6, 20}, true, false}};
  const auto ours = [](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
    auto y = vit::onednn_layer_norm(x, w, b, 1e-6);
    if (!y) throw std::runtime_error("declined");
    return *y;
  };
  for (const auto& sh : shapes) {
    SCOPED_TRACE("x " + std::to_string(sh.x.size()) + "-d of " + std::to_string(sh.x.back()));
    const int64_t C = sh.x.back();
    const auto x0 = torch::randn(sh.x) * 3 + 1;
    const auto w0 = sh.weight ? torch::randn({C}) : torch::Tensor(), b0 = sh.bias ? torch::randn({C}) : torch::Tensor();
    const auto reference = [&](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
      return torch::layer_norm(x, {C}, w, b, 1e-6);
    };
    const auto want = layer_norm_with_grads(reference, x0, w0, b0, torch::kDouble);
    const auto got = layer_norm_with_grads(ours, x0, w0, b0, torch::kFloat);
    const char* names[] = {"output", "input gradient", "weight gradient", "bias gradient"};
    for (int i = 0; i < 4; ++i) {
      if (!want[i].defined()) continue;
      ASSERT_TRUE(got[i].defined()) << names[i];
      EXPECT_EQ(got[i].scalar_type(), torch::kFloat) << names[i];
      EXPECT_LT(max_rel_err(got[i], want[i]), 1e-5) << names[i];
    }
    // bf16 (a model converted to bf16): values and gradients no further from float64 than
    // LibTorch's own bf16 layer norm (+ 0.5%), the parameters' gradients in their own type.
    if (vit::onednn_layer_norm(x0.to(torch::kBFloat16), torch::Tensor(), torch::Tensor(), 1e-6)) {
      const auto bf = layer_norm_with_grads(ours, x0, w0, b0, torch::kBFloat16);
      const auto aten = layer_norm_with_grads(reference, x0, w0, b0, torch::kBFloat16);
      for (int i = 0; i < 4; ++i) {
        if (!want[i].defined()) continue;
        EXPECT_EQ(bf[i].scalar_type(), torch::kBFloat16) << names[i];
        EXPECT_LT(max_rel_err(bf[i], want[i]), max_rel_err(aten[i], want[i]) + 5e-3) << names[i] << " (bf16)";
      }
    }
    torch::NoGradGuard no_grad;  // inference: the same numbers without saving anything
    EXPECT_TRUE(torch::allclose(ours(x0, w0, b0), got[0], 1e-6, 1e-6));
  }
}

TEST(OneDnnLayerNorm, LeavesWhatItDoesNotCoverToLibTorch) {
  const auto x = torch::randn({4, 8}), w = torch::randn({8}), b = torch::randn({8});
  EXPECT_FALSE(vit::onednn_layer_norm(x.to(torch::kDouble), w, b, 1e-5));
  EXPECT_FALSE(vit::onednn_layer_norm(x, torch::randn({9}), b, 1e-5)) << "weight of the wrong length";
  {
    // Under bf16 autocast LibTorch normalizes a bf16 input in float and returns float; a float
    // input stays float either way.
    vit::Bf16AutocastScope autocast(true);
    EXPECT_FALSE(vit::onednn_layer_norm(x.to(torch::kBFloat16), w, b, 1e-5));
    const auto y = vit::onednn_layer_norm(x, w, b, 1e-5);
    ASSERT_TRUE(y);
    EXPECT_EQ(y->scalar_type(), torch::kFloat);
  }
  EXPECT_TRUE(vit::onednn_layer_norm(x, w, b, 1e-5));
}

TEST(OneDnnLayerNorm, NonFiniteRowsStayNonFinite) {
  // The trainer stops on a NaN loss (tst_trainer nanLossStopsWithAClearMessage): a row holding a
  // NaN or an infinity must not come out finite, and the other rows must be untouched by it.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto x = torch::randn({7, 8});
  x[0][3] = nan;
  x[1][5] = inf;
  x[2].fill_(inf);
  x[3].fill_(nan);
  x[4].fill_(-inf);
  x[5][0] = inf;
  x[5][1] = -inf;
  const auto w = torch::randn({8}), b = torch::randn({8});
  for (const auto type : {torch::kFloat, torch::kBFloat16}) {
    for (const bool grad : {false, true}) {
      torch::AutoGradMode mode(grad);
      const auto xi = x.to(type).requires_grad_(grad);
      const auto y = vit::onednn_layer_norm(xi, w, b, 1e-6);
      if (!y) continue;
      const auto finite = torch::isfinite(*y);
      for (int r = 0; r < 6; ++r)
        EXPECT_FALSE(finite[r].all().item<bool>()) << "row " << r << (grad ? " (training)" : "") << ": " << *y;
      EXPECT_TRUE(finite[6].all().item<bool>()) << "finite row";
    }
  }
}

TEST(OneDnnLayerNorm, ResultsDoNotDependOnTheThreadCount) {
  // Data parallelism promises the same weights from 2 processes of 1 thread as from 1 process of
  // 2 (test_distributed TwoRanksEqualTwoThreads): every kernel must give bit-identical results
  // whatever the number of OpenMP threads it may use.
  torch::manual_seed(10);
  const auto x0 = torch::randn({8 * 145, 64}), w0 = torch::randn({64}), b0 = torch::randn({64});
  const auto dy = torch::randn({8 * 145, 64});
  auto run = [&](int threads) {
    at::set_num_threads(threads);
    auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
    const auto y = *vit::onednn_layer_norm(x, w, b, 1e-6);
    const auto g = torch::autograd::grad({y}, {x, w, b}, {dy});
    return std::vector<torch::Tensor>{y, g[0], g[1], g[2]};
  };
  const int before = at::get_num_threads();
  const auto one = run(1), two = run(2), four = run(4);
  at::set_num_threads(before);
  const char* names[] = {"output", "input gradient", "weight gradient", "bias gradient"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::equal(one[i], two[i])) << names[i] << ": 1 vs 2 threads";
    EXPECT_TRUE(torch::equal(one[i], four[i])) << names[i] << ": 1 vs 4 threads";
  }
}

TEST(OneDnnLayerNorm, ThreadsRunningAtOnceGetTheirOwnResults) {
  // Data-parallel shards run the model on several threads at once.
  torch::manual_seed(11);
  const int n = 4;
  std::vector<torch::Tensor> xs, dys;
  for (int i = 0; i < n; ++i) {
    xs.push_back(torch::randn({64 * 17, 16}) * (i + 1));
    dys.push_back(torch::randn({64 * 17, 16}));
  }
  const auto w0 = torch::randn({16}), b0 = torch::randn({16});
  auto run = [&](int i) {
    auto x = xs[i].clone().requires_grad_(true), w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
    const auto y = *vit::onednn_layer_norm(x, w, b, 1e-6);
    const auto g = torch::autograd::grad({y}, {x, w, b}, {dys[i]});
    return std::vector<torch::Tensor>{y, g[0], g[1], g[2]};
  };
  std::vector<std::vector<torch::Tensor>> alone, together(n);
  for (int i = 0; i < n; ++i) alone.push_back(run(i));
  for (int round = 0; round < 20; ++round) {
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { together[i] = run(i); });
    for (auto& t : threads) t.join();
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < 4; ++k) ASSERT_TRUE(torch::equal(alone[i][k], together[i][k])) << "thread " << i << " result " << k << " round " << round;
  }
}
