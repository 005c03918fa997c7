// Patchify, head fusion, discarding, attention rollout and the maps built from them: round trips,
// invariants (rows sum to 1, identity attention rolls out to a uniform map), and small examples
// worked out by hand (cross-checked with Debian's python3-torch, see the comments).
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "attention_maps.h"
#include "patchify.h"
#include "vit.h"

#include "support/rows.h"
#include "support/text.h"

using vit::HeadFusion;
using vit::ViTConfig;

namespace {

ViTConfig tiny(vit::Pool pool = vit::Pool::Token, bool class_token = true) {
  ViTConfig c;
  c.image_size = 8;
  c.patch_size = 2;  // 4x4 grid, 16 patches
  c.in_channels = 3;
  c.num_classes = 4;
  c.dim = 16;
  c.depth = 2;
  c.heads = 2;
  c.mlp_hidden = 32;
  c.pool = pool;
  c.class_token = class_token;
  return c;
}

// The 3-token example (class token + 2 patches), 2 blocks x 2 heads, one image.
torch::Tensor block1() {
  auto h0 = torch::tensor({0.5, 0.25, 0.25, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5}).view({3, 3});
  auto h1 = torch::tensor({0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.25, 0.25, 0.5}).view({3, 3});
  return torch::stack({h0, h1}).unsqueeze(0).to(torch::kFloat32);  // (1, 2, 3, 3)
}
torch::Tensor block2() {
  auto h0 = torch::tensor({0.0, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0}).view({3, 3});
  auto h1 = torch::tensor({0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0}).view({3, 3});
  return torch::stack({h0, h1}).unsqueeze(0).to(torch::kFloat32);
}

torch::Tensor rows(std::initializer_list<double> values, int64_t n) {
  return torch::tensor(std::vector<double>(values)).view({1, n, n}).to(torch::kFloat32);
}

bool close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-6) {
  if (a.sizes() != b.sizes()) {
    std::cerr << "shapes differ" << std::endl;
    return false;
  }
  const bool ok = torch::allclose(a, b, /*rtol=*/0.0, /*atol=*/tol);
  if (!ok) std::cerr << "got\n" << a << "\nexpected\n" << b << std::endl;
  return ok;
}

std::vector<torch::Tensor> model_attention(const ViTConfig& c, int64_t batch = 2) {
  torch::manual_seed(3);
  vit::VisionTransformer model(c);
  model->eval();
  torch::NoGradGuard no_grad;
  return model->forward_with_attention(torch::randn({batch, c.in_channels, c.image_size,
                                                     c.image_size}))
      .attentions;
}

// Once, before every test (the Qt suite's initTestCase).
class SuiteSetup : public testing::Environment {
  void SetUp() override { torch::set_num_threads(1); }
};
[[maybe_unused]] const auto* const kSuiteSetup = testing::AddGlobalTestEnvironment(new SuiteSetup);

}  // namespace


// ---- patchify

TEST(AttentionMaps, patchifyRoundTrip) {
  torch::manual_seed(0);
  const auto x = torch::randn({2, 3, 8, 12});  // a 2x3 grid of 4x4 patches
  const auto p = vit::patchify(x, 4);
  ASSERT_EQ(p.sizes().vec(), (std::vector<int64_t>{2, 6, 48}));
  ASSERT_TRUE(torch::equal(vit::unpatchify(p, 4, 3, 2, 3), x));
  // Patch 4 is grid row 1, column 1, flattened in (C, P, P) order.
  ASSERT_TRUE(torch::equal(p[1][4], x[1].slice(1, 4, 8).slice(2, 4, 8).flatten()));
}

TEST(AttentionMaps, patchifyMatchesPatchEmbed) {
  // The Conv2d of PatchEmbed is a linear map of patchify's vectors: the two cuts agree.
  const ViTConfig c = tiny();
  torch::manual_seed(1);
  vit::VisionTransformer model(c);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 8, 8});
  const auto& proj = model->patch_embed->proj;
  const auto by_patchify = torch::matmul(vit::patchify(x, c.patch_size),
                                         proj->weight.flatten(1).t()) + proj->bias;  // (B, N, D)
  ASSERT_TRUE(close(by_patchify, model->patch_embed(x), 1e-5));
}

struct PatchifyRow : vit_test::Row {
  std::vector<int64_t> shape;
  int patch;
};

class PatchifyRejects : public testing::TestWithParam<PatchifyRow> {};

TEST_P(PatchifyRejects, row) {
  const std::vector<int64_t>& shape = GetParam().shape;
  const int patch = GetParam().patch;
  ASSERT_THROW(vit::patchify(torch::zeros(shape), patch), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(AttentionMaps, PatchifyRejects,
                         testing::ValuesIn(std::vector<PatchifyRow>{
    {{"side not a multiple"}, {1, 3, 10, 8}, 4},
    {{"3-d input"}, {3, 8, 8}, 4},
    {{"zero patch"}, {1, 3, 8, 8}, 0},
}), vit_test::RowName());

TEST(AttentionMaps, unpatchifyRejectsWrongGrid) {
  const auto p = torch::zeros({1, 6, 48});
  ASSERT_THROW(vit::unpatchify(p, 4, 3, 2, 2), std::invalid_argument);
  ASSERT_THROW(vit::unpatchify(p, 4, 1, 2, 3), std::invalid_argument);
}

// ---- invariants on a real model's attention

struct ConfigRow : vit_test::Row {
  ViTConfig config;
};

class AttentionRowsSumToOne : public testing::TestWithParam<ConfigRow> {};

TEST_P(AttentionRowsSumToOne, row) {
  const ViTConfig& config = GetParam().config;
  const auto att = model_attention(config);
  ASSERT_EQ(int(att.size()), config.depth);
  for (const auto& a : att) {
    ASSERT_EQ(a.sizes().vec(), (std::vector<int64_t>{2, config.heads, config.num_tokens(),
                                                     config.num_tokens()}));
    ASSERT_TRUE(close(a.sum(-1), torch::ones({2, config.heads, config.num_tokens()}), 1e-5));
    ASSERT_TRUE(close(vit::fuse_heads(a, HeadFusion::Mean).sum(-1),
                      torch::ones({2, config.num_tokens()}), 1e-5));
  }
  for (auto fusion : {HeadFusion::Mean, HeadFusion::Max, HeadFusion::Min}) {
    std::vector<torch::Tensor> fused;
    for (const auto& a : att) fused.push_back(vit::fuse_heads(a, fusion));
    for (double discard : {0.0, 0.9}) {
      const auto r = vit::attention_rollout(fused, discard, config.class_token);
      ASSERT_TRUE(close(r.sum(-1), torch::ones({2, config.num_tokens()}), 1e-5));
      ASSERT_TRUE(r.min().item<float>() >= 0.0f);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AttentionMaps, AttentionRowsSumToOne,
                         testing::ValuesIn(std::vector<ConfigRow>{
    {{"class token"}, tiny()},
    {{"mean pool, no class token"}, tiny(vit::Pool::Mean, false)},
}), vit_test::RowName());

TEST(AttentionMaps, rolloutOfIdentityIsUniform) {
  // Attention that keeps every token to itself moves nothing: the rollout is the identity, and
  // the class token's map gives every patch the same weight (none).
  const ViTConfig c = tiny();
  const int64_t T = c.num_tokens();
  const std::vector<torch::Tensor> att(c.depth, torch::eye(T).expand({1, c.heads, T, T}));
  vit::AttentionRequest r;
  r.rollout = true;
  const auto r_matrix = vit::attention_rollout({att[0].mean(1), att[1].mean(1)}, 0.0, true);
  ASSERT_TRUE(close(r_matrix, torch::eye(T).unsqueeze(0)));
  const auto map = vit::attention_map(att, c, r);  // (1, 4, 4)
  ASSERT_TRUE(close(map, torch::zeros({1, 4, 4})));
}

TEST(AttentionMaps, rolloutOfUniformAttentionIsUniform) {
  // Every token attending equally to all: patches are indistinguishable, so the map is flat
  // (and positive).
  const ViTConfig c = tiny();
  const int64_t T = c.num_tokens();
  const std::vector<torch::Tensor> att(c.depth, torch::full({1, c.heads, T, T}, 1.0 / T));
  vit::AttentionRequest r;
  r.rollout = true;
  const auto map = vit::attention_map(att, c, r);
  ASSERT_TRUE(map.min().item<float>() > 0.0f);
  ASSERT_TRUE(close(map, torch::full({1, 4, 4}, map[0][0][0].item<float>())));
}

// ---- hand-computed examples (T = 3: class token + 2 patches)

struct FusionRow : vit_test::Row {
  HeadFusion fusion;
  torch::Tensor expected;
};

class FusionByHand : public testing::TestWithParam<FusionRow> {};

TEST_P(FusionByHand, row) {
  const HeadFusion fusion = GetParam().fusion;
  const torch::Tensor& expected = GetParam().expected;
  ASSERT_TRUE(close(vit::fuse_heads(block1(), fusion), expected));
}

std::vector<FusionRow> fusion_rows() {
  return {
      {{"mean"}, HeadFusion::Mean, rows({0.5, 0.375, 0.125, 0.25, 0.75, 0, 0.125, 0.375, 0.5}, 3)},
      {{"max"}, HeadFusion::Max, rows({0.5, 0.5, 0.25, 0.5, 1, 0, 0.25, 0.5, 0.5}, 3)},
      {{"min"}, HeadFusion::Min, rows({0.5, 0.25, 0, 0, 0.5, 0, 0, 0.25, 0.5}, 3)}};
}

INSTANTIATE_TEST_SUITE_P(AttentionMaps, FusionByHand, testing::ValuesIn(fusion_rows()),
                         vit_test::RowName());

struct RolloutRow : vit_test::Row {
  HeadFusion fusion;
  torch::Tensor row0;
};

class RolloutByHand : public testing::TestWithParam<RolloutRow> {};

TEST_P(RolloutByHand, row) {
  const HeadFusion fusion = GetParam().fusion;
  const torch::Tensor& row0 = GetParam().row0;
  const auto r = vit::attention_rollout(
      {vit::fuse_heads(block1(), fusion), vit::fuse_heads(block2(), fusion)}, 0.0, true);
  ASSERT_TRUE(close(r[0][0], row0));
  if (fusion == HeadFusion::Mean)  // the whole matrix, python3-torch: the same numbers
    ASSERT_TRUE(close(r, rows({0.4296875, 0.4453125, 0.125, 0.28125, 0.703125, 0.015625, 0.078125,
                               0.359375, 0.5625},
                              3)));
}

std::vector<RolloutRow> rollout_rows() {
  // R = A2' A1' with A' = (A + I) / 2, rows re-normalized; row 0 is the class token's.
  // mean: A1' = [[.75 .1875 .0625] [.125 .875 0] [.0625 .1875 .75]],
  //       A2' = [[.5 .375 .125] [.25 .75 0] [0 .25 .75]]
  //       row 0 = .5 A1'[0] + .375 A1'[1] + .125 A1'[2] = [55 57 16] / 128.
  // max:  rows of (A + I) / 2 sum to more than 1; normalized A1'[0] = [2/3 2/9 1/9],
  //       A1'[1] = [.2 .8 0], A1'[2] = [1/9 2/9 2/3], A2'[0] = [.4 .4 .2]
  //       row 0 = [83 102 40] / 225.
  // min:  A1'[0] = [6/7 1/7 0], A1'[1] = [0 1 0]; block 2's min keeps only 0.5 at (0, 1), so
  //       A2'[0] = [2/3 1/3 0] and row 0 = [4/7 3/7 0].
  return {{{"mean"}, HeadFusion::Mean,
           torch::tensor({55.0 / 128, 57.0 / 128, 16.0 / 128}).to(torch::kFloat32)},
          {{"max"}, HeadFusion::Max,
           torch::tensor({83.0 / 225, 102.0 / 225, 40.0 / 225}).to(torch::kFloat32)},
          {{"min"}, HeadFusion::Min, torch::tensor({4.0 / 7, 3.0 / 7, 0.0}).to(torch::kFloat32)}};
}

INSTANTIATE_TEST_SUITE_P(AttentionMaps, RolloutByHand, testing::ValuesIn(rollout_rows()),
                         vit_test::RowName());

TEST(AttentionMaps, discardKeepsTheClassToken) {
  // Mean-fused block 1; with the class token kept, only the 4 patch-to-patch entries are
  // candidates: ratio 0.5 drops the 2 lowest (0 and 0.375), although the class token's row and
  // column hold the smallest values (0.125).
  const auto a = vit::fuse_heads(block1(), HeadFusion::Mean);
  ASSERT_TRUE(close(vit::discard_lowest(a, 0.5, true),
                    rows({0.5, 0.375, 0.125, 0.25, 0.75, 0, 0.125, 0, 0.5}, 3)));
  // Without a class token every entry is a candidate: floor(0.5 * 9) = 4 lowest go
  // (0, 0.125, 0.125, 0.25).
  ASSERT_TRUE(close(vit::discard_lowest(a, 0.5, false),
                    rows({0.5, 0.375, 0, 0, 0.75, 0, 0, 0.375, 0.5}, 3)));
  ASSERT_TRUE(close(vit::discard_lowest(a, 0.0, true), a));
  ASSERT_THROW(vit::discard_lowest(a, 1.0, true), std::invalid_argument);
  // Rollout of the discarded block: (A + I) / 2 row 2 = [.0625 0 .75] -> [1/13 0 12/13].
  const auto r = vit::attention_rollout({a}, 0.5, true);
  ASSERT_TRUE(close(r[0][2], torch::tensor({1.0 / 13, 0.0, 12.0 / 13}).to(torch::kFloat32)));
  ASSERT_TRUE(close(r[0][0], torch::tensor({0.75, 0.1875, 0.0625}).to(torch::kFloat32)));
}

TEST(AttentionMaps, gradientFusionByHand) {
  // mean over heads of max(0, A * dA): head 0 [.5 .5] * [2 -1] = [1 -.5] -> [1 0];
  // head 1 [.25 .75] * [-4 2] = [-1 1.5] -> [0 1.5]; mean [.5 .75].
  // (1, 2, 2, 2): the same row twice per head.
  const auto a = torch::tensor({0.5, 0.5, 0.25, 0.75}).view({1, 2, 1, 2}).to(torch::kFloat32);
  const auto g = torch::tensor({2.0, -1.0, -4.0, 2.0}).view({1, 2, 1, 2}).to(torch::kFloat32);
  const auto a2 = a.expand({1, 2, 2, 2}).contiguous(), g2 = g.expand({1, 2, 2, 2}).contiguous();
  ASSERT_TRUE(close(vit::gradient_weighted_fusion(a2, g2)[0][1],
                    torch::tensor({0.5, 0.75}).to(torch::kFloat32)));
}

// ---- rows and maps

TEST(AttentionMaps, queryRowsAndPatchMaps) {
  ViTConfig c = tiny();
  c.image_size = 4;  // 2x2 grid, T = 5
  const auto m = torch::arange(25, torch::kFloat32).view({1, 5, 5});
  auto map = [&](const ViTConfig& cfg, const torch::Tensor& mat, int query) {
    return vit::patch_map(vit::query_row(mat, cfg, query), cfg);
  };
  ASSERT_TRUE(close(map(c, m, -1), torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 2, 2})));
  ASSERT_TRUE(close(map(c, m, 2), torch::tensor({16.0f, 17.0f, 18.0f, 19.0f}).view({1, 2, 2})));
  // Mean pooling with a class token: the head reads the mean of patch rows 1..4.
  c.pool = vit::Pool::Mean;
  ASSERT_TRUE(close(map(c, m, -1), torch::tensor({13.5f, 14.5f, 15.5f, 16.5f}).view({1, 2, 2})));
  // No class token: every token is a patch, the mean runs over all rows.
  c.class_token = false;
  const auto m4 = torch::arange(16, torch::kFloat32).view({1, 4, 4});
  ASSERT_TRUE(close(map(c, m4, -1), torch::tensor({6.0f, 7.0f, 8.0f, 9.0f}).view({1, 2, 2})));
  ASSERT_TRUE(close(map(c, m4, 1), torch::tensor({4.0f, 5.0f, 6.0f, 7.0f}).view({1, 2, 2})));
}

TEST(AttentionMaps, meanPooledRolloutAveragesRows) {
  const ViTConfig c = tiny(vit::Pool::Mean, false);
  const auto att = model_attention(c, 1);
  vit::AttentionRequest r;
  r.rollout = true;
  std::vector<torch::Tensor> fused;
  for (const auto& a : att) fused.push_back(vit::fuse_heads(a, HeadFusion::Mean));
  const auto expected = vit::attention_rollout(fused, 0.0, false).mean(1).view({1, 4, 4});
  ASSERT_TRUE(close(vit::attention_map(att, c, r), expected));
  // The rows are distributions, so their mean is one too: the map sums to 1.
  ASSERT_TRUE(std::abs(expected.sum().item<float>() - 1.0f) < 1e-5);
}

TEST(AttentionMaps, singleLayerMapIsTheClassTokenRow) {
  const ViTConfig c = tiny();
  const auto att = model_attention(c, 1);
  vit::AttentionRequest r;
  r.layer = 0;
  r.head = 1;
  ASSERT_TRUE(close(vit::attention_map(att, c, r), att[0][0][1][0].narrow(0, 1, 16).view({1, 4, 4})));
  r.head = -1;
  r.fusion = HeadFusion::Max;
  r.layer = -1;  // the last block
  ASSERT_TRUE(close(vit::attention_map(att, c, r),
                    std::get<0>(att[1].max(1))[0][0].narrow(0, 1, 16).view({1, 4, 4})));
}

TEST(AttentionMaps, gradientRolloutOnModel) {
  const ViTConfig c = tiny();
  torch::manual_seed(5);
  vit::VisionTransformer model(c);
  model->train();
  const auto x = torch::randn({1, 3, 8, 8});
  const auto g = vit::attention_gradients(*model, x, {-1});
  ASSERT_TRUE(model->is_training());  // mode restored
  ASSERT_EQ(int(g.gradients.size()), c.depth);
  ASSERT_EQ(g.targets.front(), g.logits.argmax(1).item<int64_t>());
  ASSERT_EQ(g.gradients[0].sizes(), g.attentions[0].sizes());
  ASSERT_TRUE(g.gradients.back().abs().sum().item<float>() > 0.0f);
  vit::AttentionRequest r;
  r.gradient = true;
  const auto map = vit::attention_map(g.attentions, c, r, &g.gradients);
  ASSERT_EQ(map.sizes().vec(), (std::vector<int64_t>{1, 4, 4}));
  ASSERT_TRUE(torch::isfinite(map).all().item<bool>());
  ASSERT_TRUE(map.min().item<float>() >= 0.0f);
  // Another class weighs the heads differently.
  const auto other = vit::attention_gradients(*model, x, {(g.targets.front() + 1) % 4});
  ASSERT_FALSE(torch::allclose(vit::attention_map(other.attentions, c, r, &other.gradients), map));
}

TEST(AttentionMaps, positionSimilarity) {
  const ViTConfig c = tiny();
  torch::manual_seed(2);
  vit::VisionTransformer model(c);
  torch::NoGradGuard no_grad;
  const auto s = vit::position_similarity(model->pos_embed, c);  // (16, 4, 4)
  ASSERT_EQ(s.sizes().vec(), (std::vector<int64_t>{16, 4, 4}));
  const auto flat = s.view({16, 16});
  ASSERT_TRUE(close(flat.diagonal(), torch::ones({16}), 1e-5));
  ASSERT_TRUE(close(flat, flat.t(), 1e-6));
  ASSERT_TRUE(flat.abs().max().item<float>() <= 1.0f + 1e-5f);
}

struct RequestRow : vit_test::Row {
  vit::AttentionRequest request;
  std::string mentions;
};

class ImpossibleRequests : public testing::TestWithParam<RequestRow> {};

TEST_P(ImpossibleRequests, row) {
  const vit::AttentionRequest& request = GetParam().request;
  const std::string& mentions = GetParam().mentions;
  const ViTConfig c = tiny();
  const auto att = model_attention(c, 1);
  const std::string problem = vit::validate(request, c);
  ASSERT_TRUE(vit_test::contains(problem, mentions)) << problem;
  ASSERT_THROW(vit::attention_map(att, c, request), std::invalid_argument);
}

std::vector<RequestRow> request_rows() {
  std::vector<RequestRow> rows;
  auto row = [&](const char* name, const vit::AttentionRequest& r, const char* mentions) {
    rows.push_back({{name}, r, mentions});
  };
  vit::AttentionRequest r;
  r.layer = 2;
  row("layer past the end", r, "layer 2");
  r = {};
  r.head = 2;
  row("head past the end", r, "head 2");
  r = {};
  r.rollout = true;
  r.discard_ratio = 1.0;
  row("discard 1", r, "discard");
  r = {};
  r.discard_ratio = 0.5;
  row("discard without rollout", r, "rollout");
  r = {};
  r.query_patch = 16;
  row("patch past the end", r, "patch 16");
  r = {};
  r.gradient = true;
  r.head = 0;
  row("gradient with a head", r, "gradient");
  r = {};
  r.gradient = true;
  r.target_class = 4;
  row("class past the end", r, "class 4");
  return rows;
}

INSTANTIATE_TEST_SUITE_P(AttentionMaps, ImpossibleRequests, testing::ValuesIn(request_rows()),
                         vit_test::RowName());
