// Model summary: parameter and MAC counts against published figures, per-layer rows, JSON.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "summary.h"

#include "support/rows.h"

struct ParamsRow : vit_test::Row {
  std::string preset;
  int64_t params;
};

class ParamsMatchTimm : public testing::TestWithParam<ParamsRow> {};

TEST_P(ParamsMatchTimm, row) {
  const auto& row = GetParam();
  const auto s = vit::summarize(vit::preset(row.preset).config);
  ASSERT_EQ(int64_t(s.params), row.params);
  ASSERT_EQ(int64_t(s.trainable_params), row.params);
  int64_t sum = 0;
  for (const auto& layer : s.layers) sum += layer.params;
  ASSERT_EQ(sum, row.params);
}

// timm 0.9: sum(p.numel() for p in timm.create_model(NAME).parameters()), also printed in
// timm's model cards (vit_tiny_patch16_224: 5.7 M, vit_small: 22.1 M, vit_base: 86.6 M,
// vit_base_patch32_224: 88.2 M, vit_large_patch16_224: 304.3 M).
INSTANTIATE_TEST_SUITE_P(Summary, ParamsMatchTimm,
                         testing::ValuesIn(std::vector<ParamsRow>{
    {{"vit-ti16"}, "vit-ti16", 5'717'416},
    {{"vit-s16"}, "vit-s16", 22'050'664},
    {{"vit-b16"}, "vit-b16", 86'567'656},
    {{"vit-b32"}, "vit-b32", 88'224'232},
    {{"vit-l16"}, "vit-l16", 304'326'632},
    // The Keras example's ViT with a class token and a linear head, as the issue states it.
    {{"keras-cifar"}, "keras-cifar", 284'874},
}), vit_test::RowName());

TEST(Summary, vitB16MacsMatchTimm) {
  // timm's model card for vit_base_patch16_224: 17.6 GMACs (fvcore count: 17.58 G).
  const auto s = vit::summarize(vit::preset("vit-b16").config);
  ASSERT_TRUE(std::abs(double(s.macs) / 17.58e9 - 1.0) < 0.001) << s.macs;
  ASSERT_EQ(s.flops, 2 * s.macs);
  // The two MLP Linears alone, counted by hand: 2 layers x 12 blocks x 197 x 768 x 3072.
  int64_t mlp = 0;
  for (const auto& row : s.layers)
    if (row.name.find(".mlp.fc") != std::string::npos) mlp += row.macs;
  ASSERT_EQ(mlp, int64_t(2) * 12 * 197 * 768 * 3072);
  // The tutorial's keras_flops figure (51,955,425,272 for a batch of 8) is below even the MLPs.
  ASSERT_LT(51'955'425'272 / 8, 2 * mlp);
}

struct MacsRow : vit_test::Row {
  std::string preset;
  double gmacs;
};

class OtherTimmMacs : public testing::TestWithParam<MacsRow> {};

TEST_P(OtherTimmMacs, row) {
  const auto& row = GetParam();
  const auto s = vit::summarize(vit::preset(row.preset).config);
  ASSERT_TRUE(std::abs(double(s.macs) / 1e9 - row.gmacs) < 0.006 * row.gmacs) << s.macs;
}

// timm model cards (GMACs at 224x224).
INSTANTIATE_TEST_SUITE_P(Summary, OtherTimmMacs,
                         testing::ValuesIn(std::vector<MacsRow>{
    {{"vit-ti16"}, "vit-ti16", 1.26},
    {{"vit-s16"}, "vit-s16", 4.61},
    {{"vit-b32"}, "vit-b32", 4.41},
    {{"vit-l16"}, "vit-l16", 61.6},
}), vit_test::RowName());

TEST(Summary, attentionMatmulsAreCounted) {
  vit::ViTConfig c = vit::preset("vit-ti16").config;
  const auto s = vit::summarize(c);
  const int64_t T = 197, hd = 64, H = 3;
  int found = 0;
  for (const auto& row : s.layers) {
    if (row.name == "blocks.0.attn.qk" || row.name == "blocks.0.attn.av") {
      ASSERT_EQ(row.macs, H * T * T * hd);
      ++found;
    }
  }
  ASSERT_EQ(found, 2);
}

TEST(Summary, outputShapesFollowTheConfig) {
  vit::ViTConfig c = vit::preset("keras-cifar").config;
  const auto s = vit::summarize(c);
  auto row = [&](const std::string& name) {
    for (const auto& r : s.layers)
      if (r.name == name) return r;
    return vit::LayerSummary{};
  };
  ASSERT_EQ(row("patch_embed.proj").output_shape, (std::vector<int64_t>{64, 12, 12}));
  ASSERT_EQ(row("blocks.7.attn.qk").output_shape, (std::vector<int64_t>{4, 145, 145}));
  ASSERT_EQ(row("blocks.7.mlp.fc1").output_shape, (std::vector<int64_t>{145, 128}));
  ASSERT_EQ(row("head").output_shape, (std::vector<int64_t>{10}));

  c.pool = vit::Pool::Flatten;
  c.class_token = false;
  c.head_hidden = {2048, 1024};
  const auto flat = vit::summarize(c);
  ASSERT_EQ(flat.layers.back().name, std::string("head"));
  const auto& fc = flat.layers[flat.layers.size() - 3];
  ASSERT_EQ(fc.name, std::string("head_mlp.0"));
  ASSERT_EQ(fc.params, int64_t(144) * 64 * 2048 + 2048);  // Flatten(144 x 64) -> Dense(2048)
}

TEST(Summary, invalidConfigThrows) {
  vit::ViTConfig c;
  c.heads = 5;
  ASSERT_THROW(vit::summarize(c), std::invalid_argument);
}

// The largest config check() accepts (a config.json can hold it): its MACs exceed 2^63, and
// the flatten head's input (tokens x dim) exceeds an int. Counting used to overflow (undefined
// behaviour, found by fuzzing config.json); now the totals saturate and the parts are exact.
TEST(Summary, largestValidConfigSaturates) {
  vit::ViTConfig c;
  c.image_size = 4096;
  c.patch_size = 1;
  c.in_channels = 64;
  c.num_classes = 1000000;
  c.dim = 16384;
  c.heads = 16;
  c.depth = 256;
  c.mlp_hidden = 131072;
  c.pool = vit::Pool::Flatten;
  c.head_hidden = {131072};
  const auto s = vit::summarize(c);
  const int64_t max = std::numeric_limits<int64_t>::max();
  ASSERT_EQ(s.macs, max);
  ASSERT_EQ(s.flops, max);
  const int64_t tokens = int64_t(4096) * 4096 + 1;
  ASSERT_EQ(s.layers[2].params, tokens * 16384);  // pos_embed
  const auto& head_mlp = s.layers[s.layers.size() - 2];
  ASSERT_EQ(head_mlp.name, std::string("head_mlp.0"));
  ASSERT_EQ(head_mlp.params, tokens * 16384 * 131072 + 131072);
  ASSERT_TRUE(s.params > head_mlp.params && s.params < max);
}

TEST(Summary, jsonHasTheContractKeys) {
  const auto j = vit::to_json(vit::summarize(vit::preset("vit-ti16").config));
  for (const char* key : {"params", "trainable_params", "macs", "flops", "layers", "config"})
    ASSERT_TRUE(j.contains(key)) << key;
  ASSERT_EQ(j["params"].get<int64_t>(), int64_t(5'717'416));
  ASSERT_EQ(j["flops"].get<int64_t>(), 2 * j["macs"].get<int64_t>());
  const auto& first = j["layers"].at(0);
  for (const char* key : {"name", "type", "output_shape", "params", "macs"})
    ASSERT_TRUE(first.contains(key)) << key;
  ASSERT_EQ(first["name"].get<std::string>(), std::string("patch_embed.proj"));
  ASSERT_EQ(j["training_tokens"].get<int>(), 197);  // no patch dropout: every token
}

// PatchDropout shrinks the training steps' tokens (timm's int(N (1 - p))), not the model.
TEST(Summary, patchDropShowsTheTrainingTokens) {
  auto c = vit::preset("vit-ti16").config;
  c.patch_drop = 0.25;
  const auto j = vit::to_json(vit::summarize(c));
  ASSERT_EQ(j["num_tokens"].get<int>(), 197);
  ASSERT_EQ(j["training_tokens"].get<int>(), 1 + 147);  // int(196 * 0.75)
  ASSERT_EQ(j["params"].get<int64_t>(), int64_t(5'717'416));
  const std::string table = vit::format_table(vit::summarize(c));
  ASSERT_NE(table.find("training steps keep 147 of the patches: patch_drop 0.25"), std::string::npos) << table;
  ASSERT_EQ(vit::patches_kept(16, 0.25), 12);
  ASSERT_EQ(vit::patches_kept(16, 0.0), 16);
  ASSERT_EQ(vit::patches_kept(16, 0.99), 1);  // at least one
}

// The model FLOPs `vit train` reports its rate in (trainer.h: flops_per_second): the forward on
// the tokens a step computes, twice that for the backward, less the patch embedding's input
// gradient. Written out for the default model, fmnist-small (dim 128, 4 blocks of 4 heads, MLP
// 256, 16 patches of 7x7, class token, mean pooling, patch dropout 0.5: 8 patches + 1 token).
TEST(Summary, trainingMacsAreThreeForwardsOnTheKeptTokensLessTheImageGradient) {
  const auto c = vit::preset("fmnist-small").config;
  ASSERT_EQ(c.patch_drop, 0.5);
  const int64_t D = 128, T = 9, blocks = 4, heads = 4, hd = 32, hidden = 256;
  const int64_t patch_embed = 16 * 49 * D;              // every patch, before the drop
  const int64_t linears = T * (D * 3 * D + D * D + 2 * D * hidden);
  const int64_t attention = 2 * heads * T * T * hd;      // QK^T and AV
  const int64_t norms = 2 * 5 * T * D;
  const int64_t forward = patch_embed + blocks * (linears + attention + norms) + 5 * D + D * 10;
  ASSERT_EQ(forward, 4'949'888);
  ASSERT_EQ(vit::training_macs(c), 3 * forward - patch_embed);
  // full_token_epochs: every token, so the summary's forward
  const int64_t full = vit::summarize(c).macs;
  ASSERT_EQ(vit::training_macs(c, /*patch_drop=*/false), 3 * full - patch_embed);
  ASSERT_EQ(vit::to_json(vit::summarize(c))["training_macs"].get<int64_t>(), 3 * forward - patch_embed);
  const std::string table = vit::format_table(vit::summarize(c));
  ASSERT_NE(table.find("Training FLOPs:    29.50 M per image per step"), std::string::npos) << table;
}

TEST(Summary, formatting) {
  ASSERT_EQ(vit::with_commas(86567656), std::string("86,567,656"));
  ASSERT_EQ(vit::with_commas(999), std::string("999"));
  ASSERT_EQ(vit::with_commas(-1000), std::string("-1,000"));
  ASSERT_EQ(vit::si(17.58274e9), std::string("17.58 G"));
  const std::string table = vit::format_table(vit::summarize(vit::preset("vit-b16").config));
  ASSERT_NE(table.find("86,567,656"), std::string::npos);
  ASSERT_NE(table.find("blocks.11.mlp.fc2"), std::string::npos);
}
