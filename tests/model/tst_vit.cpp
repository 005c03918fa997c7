// The ViT modules: timm names and counts, output shapes, attention maps, input checks, gradients.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "summary.h"
#include "vit.h"

#include "support/rows.h"
#include "support/text.h"

using vit::ViTConfig;

namespace {

ViTConfig tiny() {
  ViTConfig c;
  c.image_size = 16;
  c.patch_size = 4;
  c.in_channels = 3;
  c.num_classes = 5;
  c.dim = 16;
  c.depth = 2;
  c.heads = 2;
  c.mlp_hidden = 32;
  return c;
}

// Once, before every test (the Qt suite's initTestCase).
class SuiteSetup : public testing::Environment {
  void SetUp() override { torch::manual_seed(0); }
};
[[maybe_unused]] const auto* const kSuiteSetup = testing::AddGlobalTestEnvironment(new SuiteSetup);

}  // namespace

struct ConfigRow : vit_test::Row {
  ViTConfig config;
};

class ModuleParamsMatchSummary : public testing::TestWithParam<ConfigRow> {};

TEST_P(ModuleParamsMatchSummary, row) {
  const ViTConfig& config = GetParam().config;
  vit::VisionTransformer model(config);
  ASSERT_EQ(vit::count_parameters(*model), vit::summarize(config).params);
  // Per-layer: every summary row with parameters matches the module's tensors of that prefix.
  const auto named = model->named_parameters();
  for (const auto& row : vit::summarize(config).layers) {
    int64_t n = 0;
    for (const auto& p : named)
      if (p.key() == row.name || p.key().rfind(row.name + ".", 0) == 0) n += p.value().numel();
    ASSERT_TRUE(n == row.params) << row.name;
  }
}

std::vector<ConfigRow> module_params_rows() {
  std::vector<ConfigRow> rows;
  rows.push_back({{"tiny"}, tiny()});
  ViTConfig c = tiny();
  c.pool = vit::Pool::Mean;
  rows.push_back({{"tiny mean pool"}, c});
  c = tiny();
  c.pool = vit::Pool::Flatten;
  c.class_token = false;
  c.head_hidden = {24, 12};
  rows.push_back({{"tiny flatten + MLP head"}, c});
  c = tiny();
  c.qkv_bias = false;
  c.in_channels = 1;
  rows.push_back({{"tiny no qkv bias, gray"}, c});
  rows.push_back({{"keras-cifar"}, vit::preset("keras-cifar").config});
  rows.push_back({{"fmnist-small"}, vit::preset("fmnist-small").config});
  rows.push_back({{"vit-ti16"}, vit::preset("vit-ti16").config});
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Vit, ModuleParamsMatchSummary, testing::ValuesIn(module_params_rows()),
                         vit_test::RowName());

TEST(Vit, vitB16HasTimmNamesAndShapes) {
  // Keys and shapes of timm's vit_base_patch16_224().state_dict(), 152 tensors.
  vit::VisionTransformer model(vit::preset("vit-b16").config);
  const auto params = model->named_parameters();
  ASSERT_EQ(int(params.size()), 152);
  ASSERT_EQ(vit::count_parameters(*model), int64_t(86'567'656));  // timm
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"cls_token", {1, 1, 768}},
      {"pos_embed", {1, 197, 768}},
      {"patch_embed.proj.weight", {768, 3, 16, 16}},
      {"patch_embed.proj.bias", {768}},
      {"blocks.0.norm1.weight", {768}},
      {"blocks.0.norm1.bias", {768}},
      {"blocks.0.attn.qkv.weight", {2304, 768}},
      {"blocks.0.attn.qkv.bias", {2304}},
      {"blocks.0.attn.proj.weight", {768, 768}},
      {"blocks.0.attn.proj.bias", {768}},
      {"blocks.0.norm2.weight", {768}},
      {"blocks.0.norm2.bias", {768}},
      {"blocks.0.mlp.fc1.weight", {3072, 768}},
      {"blocks.0.mlp.fc1.bias", {3072}},
      {"blocks.0.mlp.fc2.weight", {768, 3072}},
      {"blocks.0.mlp.fc2.bias", {768}},
      {"blocks.11.mlp.fc2.bias", {768}},
      {"norm.weight", {768}},
      {"norm.bias", {768}},
      {"head.weight", {1000, 768}},
      {"head.bias", {1000}},
  };
  for (const auto& [name, shape] : expected) {
    const auto* t = params.find(name);
    ASSERT_TRUE(t != nullptr) << name;
    ASSERT_TRUE(t->sizes().vec() == shape) << name;
  }
  ASSERT_TRUE(params.find("fc_norm.weight") == nullptr);
}

TEST(Vit, meanPoolUsesFcNormLikeTimm) {
  ViTConfig c = tiny();
  c.pool = vit::Pool::Mean;
  vit::VisionTransformer model(c);
  const auto params = model->named_parameters();
  ASSERT_TRUE(params.find("fc_norm.weight") != nullptr);
  ASSERT_TRUE(params.find("norm.weight") == nullptr);
  ASSERT_TRUE(params.find("cls_token") != nullptr);  // timm keeps the class token with avg pooling
}

// A model converted to bf16 (`vit summary --benchmark --precision bf16`, bf16 inference) follows the
// float model. Its layer norms run in float and round to bf16 (model/vit.cpp normalize(): LibTorch
// 1.13's bf16 layer norm is slow); their weights and biases are made non-trivial here so that a
// norm that dropped either would show.
TEST(Vit, bfloat16ModelFollowsTheFloatModel) {
  for (const auto pool : {vit::Pool::Token, vit::Pool::Mean}) {
    ViTConfig c = tiny();
    c.pool = pool;
    vit::VisionTransformer model(c);
    model->eval();
    {
      torch::NoGradGuard no_grad;
      for (auto& item : model->named_parameters())
        if (item.key().find("norm") != std::string::npos) item.value().copy_(torch::randn_like(item.value()));
    }
    const auto x = torch::randn({3, 3, 16, 16});
    const auto want = model->forward(x);
    model->to(torch::kBFloat16);
    const auto got = model->forward(x.to(torch::kBFloat16));
    ASSERT_EQ(got.scalar_type(), torch::kBFloat16);
    const double err = (got.to(torch::kFloat) - want).abs().max().item<double>();
    const double scale = want.abs().max().item<double>();
    EXPECT_LT(err, 0.03 * scale) << "pool " << static_cast<int>(pool) << ": bf16 logits off by " << err
                                 << " (largest logit " << scale << ")";
  }
}

struct ShapeRow : vit_test::Row {
  ViTConfig config;
  int batch;
};

class OutputShapes : public testing::TestWithParam<ShapeRow> {};

TEST_P(OutputShapes, row) {
  const ViTConfig& config = GetParam().config;
  const int batch = GetParam().batch;
  vit::VisionTransformer model(config);
  model->eval();
  auto x = torch::randn({batch, config.in_channels, config.image_size, config.image_size});
  ASSERT_EQ(model->forward(x).sizes().vec(), (std::vector<int64_t>{batch, config.num_classes}));
  const auto tokens = model->forward_features(x);
  ASSERT_EQ(tokens.sizes().vec(),
            (std::vector<int64_t>{batch, config.num_tokens(), config.dim}));
  // The summary's shapes are the per-image shapes the modules really produce.
  const auto summary = vit::summarize(config);
  ASSERT_EQ(summary.layers.back().output_shape, (std::vector<int64_t>{config.num_classes}));
  ASSERT_EQ(model->patch_embed->proj(x).sizes().slice(1).vec(), summary.layers[0].output_shape);
}

std::vector<ShapeRow> output_shape_rows() {
  std::vector<ShapeRow> rows;
  rows.push_back({{"tiny b1"}, tiny(), 1});
  rows.push_back({{"tiny b3"}, tiny(), 3});
  ViTConfig c = tiny();
  c.image_size = 28; c.patch_size = 7; c.in_channels = 1; c.num_classes = 10;
  rows.push_back({{"28x28 gray, patch 7"}, c, 2});
  c = tiny();
  c.pool = vit::Pool::Flatten;
  c.class_token = false;
  c.head_hidden = {8};
  rows.push_back({{"flatten, no class token"}, c, 2});
  c = tiny();
  c.pool = vit::Pool::Mean;
  c.image_size = 24; c.patch_size = 6; c.heads = 4;
  rows.push_back({{"mean pool, 4 heads"}, c, 2});
  rows.push_back({{"keras-cifar"}, vit::preset("keras-cifar").config, 2});
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Vit, OutputShapes, testing::ValuesIn(output_shape_rows()),
                         vit_test::RowName());

TEST(Vit, attentionRowsSumToOne) {
  ViTConfig c = tiny();
  c.depth = 3;
  vit::VisionTransformer model(c);
  model->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 16, 16});
  const auto out = model->forward_with_attention(x);
  ASSERT_EQ(int(out.attentions.size()), 3);
  for (const auto& a : out.attentions) {
    ASSERT_EQ(a.sizes().vec(), (std::vector<int64_t>{2, 2, 17, 17}));  // (B, H, T, T)
    ASSERT_GE(a.min().item<float>(), 0.0f);
    ASSERT_TRUE(torch::allclose(a.sum(-1), torch::ones({2, 2, 17}), /*rtol=*/1e-5, /*atol=*/1e-5));
  }
  // Asking for attention does not change the prediction.
  ASSERT_TRUE(torch::allclose(out.logits, model->forward(x), 1e-5, 1e-6));
}

TEST(Vit, attentionMatchesAHandWrittenReference) {
  // One block's attention, recomputed head by head from the module's weights with plain
  // matrix products (no reshapes shared with the implementation).
  ViTConfig c = tiny();
  c.depth = 1;
  vit::VisionTransformer model(c);
  model->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({1, 3, 16, 16});
  const auto probs = model->forward_with_attention(x).attentions.at(0)[0];  // (H, T, T)

  auto tokens = model->patch_embed(x);
  tokens = torch::cat({model->cls_token, tokens}, 1) + model->pos_embed;  // (1, T, D)
  auto block = model->blocks->ptr<vit::BlockImpl>(0);
  auto h = torch::layer_norm(tokens[0], {16}, block->norm1->weight, block->norm1->bias, 1e-6);
  const auto& W = block->attn->qkv->weight;  // (3D, D): rows [q; k; v]
  const auto& b = block->attn->qkv->bias;
  for (int head = 0; head < 2; ++head) {
    auto q = h.matmul(W.slice(0, head * 8, head * 8 + 8).t()) + b.slice(0, head * 8, head * 8 + 8);
    auto k = h.matmul(W.slice(0, 16 + head * 8, 16 + head * 8 + 8).t()) +
             b.slice(0, 16 + head * 8, 16 + head * 8 + 8);
    auto expected = torch::softmax(q.matmul(k.t()) / std::sqrt(8.0), -1);
    ASSERT_TRUE(torch::allclose(probs[head], expected, 1e-4, 1e-5));
  }
}

TEST(Vit, evalIsDeterministicTrainIsNot) {
  ViTConfig c = tiny();
  c.dropout = 0.3;
  c.drop_path = 0.3;
  vit::VisionTransformer model(c);
  auto x = torch::randn({4, 3, 16, 16});
  model->eval();
  ASSERT_TRUE(torch::equal(model->forward(x), model->forward(x)));
  model->train();
  ASSERT_FALSE(torch::equal(model->forward(x), model->forward(x)));
}

// PatchDropout (timm's patch_drop_rate): the class token always stays, each image keeps
// int(N (1 - p)) distinct patches in their order, drawn anew per image; the gradient reaches
// exactly the kept rows; evaluation sees every patch.
TEST(Vit, patchDropoutKeepsTheClassTokenAndAShareOfPatches) {
  const int64_t B = 200, T = 17, D = 3;  // fmnist-small: [CLS] + 16 patches
  auto x = torch::arange(B * T * D, torch::kFloat).view({B, T, D}).requires_grad_(true);
  torch::manual_seed(3);
  const auto y = vit::patch_dropout(x, /*prefix=*/1, 0.25, /*training=*/true);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{B, 1 + 12, D}));
  const auto index = (y.select(2, 0) / D).to(torch::kLong) - torch::arange(B).unsqueeze(1) * T;  // token index
  ASSERT_TRUE(torch::equal(index.select(1, 0), torch::zeros({B}, torch::kLong)));  // the class token
  const auto patches = index.slice(1, 1);
  ASSERT_TRUE(patches.min().item<int64_t>() >= 1 && patches.max().item<int64_t>() <= 16);
  ASSERT_TRUE((patches.slice(1, 1) > patches.slice(1, 0, -1)).all().item<bool>()) << "distinct, in order";
  ASSERT_TRUE(torch::equal(y, x.view({B * T, D}).index_select(0, (index + torch::arange(B).unsqueeze(1) * T).flatten()).view({B, 13, D})));
  // Each patch kept in ~3/4 of the images (binomial, 200 draws: sd 0.031), and images differ.
  const auto kept = torch::zeros({B, T}).scatter_(1, index, 1.0);
  const auto share = kept.slice(1, 1).mean(0);
  ASSERT_TRUE(share.min().item<double>() > 0.6 && share.max().item<double>() < 0.9) << share;
  ASSERT_FALSE(torch::equal(kept[0], kept[1]) && torch::equal(kept[1], kept[2]));
  // Gradient: ones on the kept rows, zeros on the dropped ones.
  y.sum().backward();
  ASSERT_TRUE(torch::equal(x.grad().select(2, 0), kept));
  // The same seed draws the same patches; another call draws others.
  torch::manual_seed(3);
  ASSERT_TRUE(torch::equal(vit::patch_dropout(x, 1, 0.25, true), y));
  ASSERT_FALSE(torch::equal(vit::patch_dropout(x, 1, 0.25, true), y));
  // Not training or p = 0: x itself. At least one patch stays.
  ASSERT_TRUE(vit::patch_dropout(x, 1, 0.25, false).is_same(x));
  ASSERT_TRUE(vit::patch_dropout(x, 1, 0.0, true).is_same(x));
  ASSERT_TRUE(vit::patch_dropout(x.slice(1, 0, 2), 1, 0.5, true).size(1) == 2);  // one patch: kept
  ASSERT_EQ(vit::patch_dropout(x, 1, 0.05, true).size(1), 1 + 15);  // int(16 * 0.95)
  ASSERT_EQ(vit::patch_dropout(x, 1, 0.99, true).size(1), 2);
  ASSERT_EQ(vit::patch_dropout(x, 0, 0.5, true).size(1), 8);  // no class token: 17 patches -> 8
}

// A model with patch_drop trains on fewer tokens (mean and token pooling), and evaluates on all
// of them: in eval mode it is the same function as without.
TEST(Vit, patchDropAppliesOnlyInTraining) {
  for (auto pool : {vit::Pool::Mean, vit::Pool::Token}) {
    ViTConfig c = tiny();
    c.pool = pool;
    torch::manual_seed(4);
    vit::VisionTransformer plain(c);
    c.patch_drop = 0.5;
    torch::manual_seed(4);
    vit::VisionTransformer dropping(c);
    const auto x = torch::randn({6, 3, 16, 16});
    plain->eval(), dropping->eval();
    ASSERT_TRUE(torch::equal(plain->forward(x), dropping->forward(x)));
    plain->train(), dropping->train();
    ASSERT_TRUE(torch::equal(plain->forward(x), plain->forward(x)));  // no other randomness
    const auto logits = dropping->forward(x);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{6, 5}));
    ASSERT_FALSE(torch::equal(logits, plain->forward(x)));
    ASSERT_TRUE(torch::isfinite(logits).all().item<bool>());
  }
}

TEST(Vit, dropoutMaskHasTheRightStatistics) {
  torch::manual_seed(5);
  const auto a = vit::dropout_mask({1000, 1000}, 0.25);
  const double zeros = a.eq(0).to(torch::kFloat64).mean().item<double>();
  ASSERT_TRUE(std::abs(zeros - 0.25) < 0.003) << zeros;
  ASSERT_TRUE(a.ne(0).logical_and(a.ne(1.0f / 0.75f)).sum().item<int64_t>() == 0);  // 0 or 1/(1-p)
  ASSERT_TRUE(std::abs(a.mean().item<double>() - 1.0) < 0.005);  // expectation preserved
  torch::manual_seed(5);
  ASSERT_TRUE(torch::equal(vit::dropout_mask({1000, 1000}, 0.25), a));  // reproducible
  ASSERT_FALSE(torch::equal(vit::dropout_mask({1000, 1000}, 0.25), a));  // fresh draws differ
  // No long runs of one value: neighbours are independent (zeros of adjacent pairs ~ p^2).
  const auto flat = a.flatten().eq(0);
  const double pairs = flat.slice(0, 0, -1).logical_and(flat.slice(0, 1)).to(torch::kFloat64).mean().item<double>();
  ASSERT_TRUE(std::abs(pairs - 0.0625) < 0.003) << pairs;
  // bf16 masks (mixed precision): the same seed drops the same elements, so that x * mask
  // stays bf16 without changing which activations are dropped.
  torch::manual_seed(5);
  const auto b = vit::dropout_mask({1000, 1000}, 0.25, torch::kBFloat16);
  ASSERT_EQ(b.scalar_type(), torch::kBFloat16);
  ASSERT_TRUE(torch::equal(b.eq(0), a.eq(0)));
  ASSERT_TRUE(std::abs(b.to(torch::kFloat).max().item<double>() - 1.0 / 0.75) < 0.01);  // bf16 rounding
}

TEST(Vit, everyParameterGetsAGradient) {
  ViTConfig c = tiny();
  c.head_hidden = {8};
  vit::VisionTransformer model(c);
  auto loss = torch::cross_entropy_loss(model->forward(torch::randn({3, 3, 16, 16})),
                                        torch::tensor({0, 1, 4}));
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    ASSERT_TRUE(p.value().grad().abs().sum().item<float>() > 0.0f) << p.key();
  }
}

struct InputRow : vit_test::Row {
  std::vector<int64_t> shape;
};

class WrongInputIsRejected : public testing::TestWithParam<InputRow> {};

TEST_P(WrongInputIsRejected, row) {
  vit::VisionTransformer model(tiny());
  try {
    model->forward(torch::zeros(GetParam().shape));
    FAIL() << "accepted a wrong input";
  } catch (const std::invalid_argument& e) {
    ASSERT_TRUE(vit_test::contains(e.what(), "(batch, 3, 16, 16)")) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Vit, WrongInputIsRejected,
                         testing::ValuesIn(std::vector<InputRow>{
    {{"wrong channels"}, {1, 1, 16, 16}},
    {{"wrong size"}, {1, 3, 32, 32}},
    {{"no batch dim"}, {3, 16, 16}},
}), vit_test::RowName());

TEST(Vit, invalidConfigThrowsBeforeBuilding) {
  ViTConfig c = tiny();
  c.heads = 3;
  ASSERT_THROW(vit::VisionTransformer{c}, std::invalid_argument);
}
