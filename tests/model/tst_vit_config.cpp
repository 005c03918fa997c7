// ViTConfig validation, presets and JSON round trip (torch-free).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "config_json.h"
#include "vit_config.h"

#include "support/rows.h"
#include "support/text.h"

using vit::ViTConfig;
using vit_test::contains;

TEST(VitConfig, presetsAreValid) {
  ASSERT_GE(vit::presets().size(), 7u);
  for (const auto& p : vit::presets()) {
    const auto errors = vit::validate(p.config);
    ASSERT_TRUE(errors.empty()) << p.name << ": " << (errors.empty() ? "" : errors[0].message);
  }
  ASSERT_EQ(vit::preset(vit::kDefaultPreset).config.in_channels, 1);  // Fashion-MNIST is gray
  ASSERT_EQ(vit::preset(vit::kDefaultPreset).config.image_size, 28);
}

TEST(VitConfig, unknownPresetNamesTheKnownOnes) {
  try {
    vit::preset("vit-h14");
    FAIL() << "unknown preset accepted";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    ASSERT_TRUE(contains(msg, "vit-h14")) << msg;
    ASSERT_TRUE(contains(msg, "vit-b16")) << msg;
    ASSERT_TRUE(contains(msg, "keras-cifar")) << msg;
  }
}

struct InvalidConfigRow : vit_test::Row {
  ViTConfig config;
  std::string field;
  std::string hint;  // part of the valid alternative the message must offer
};

std::vector<InvalidConfigRow> invalid_config_rows() {
  std::vector<InvalidConfigRow> rows;
  auto base = [] { return vit::preset("vit-ti16").config; };
  auto row = [&](const char* name, const ViTConfig& c, const char* field, const char* hint) {
    rows.push_back({{name}, c, field, hint});
  };
  ViTConfig c;
  c = base(); c.dim = 100; c.heads = 3;
  row("dim not divisible by heads", c, "dim", "use dim 99 or 102");
  c = base(); c.image_size = 30; c.patch_size = 4;
  row("image not divisible by patch", c, "image_size", "use image_size 28 or 32");
  c = base(); c.image_size = 28; c.patch_size = 32;
  row("patch larger than image", c, "patch_size", "1, 2, 4, 7, 14, 28");
  c = base(); c.dim = 0;
  row("zero dim", c, "dim", "positive");
  c = base(); c.depth = -1;
  row("negative depth", c, "depth", "positive");
  c = base(); c.heads = 0;
  row("zero heads", c, "heads", "positive");
  c = base(); c.patch_size = 0;
  row("zero patch", c, "patch_size", "positive");
  c = base(); c.image_size = -224;
  row("negative image", c, "image_size", "positive");
  c = base(); c.num_classes = 0;
  row("zero classes", c, "num_classes", "positive");
  c = base(); c.in_channels = 0;
  row("zero channels", c, "in_channels", "positive");
  c = base(); c.mlp_hidden = 0;
  row("zero mlp", c, "mlp_hidden", "positive");
  c = base(); c.dim = 1 << 20;
  row("absurd dim", c, "dim", "too large");
  c = base(); c.dropout = 1.0;
  row("dropout 1", c, "dropout", "[0, 1)");
  c = base(); c.dropout = -0.1;
  row("negative dropout", c, "dropout", "[0, 1)");
  c = base(); c.attn_dropout = std::nan("");
  row("NaN attention dropout", c, "attn_dropout", "[0, 1)");
  c = base(); c.drop_path = 1.5;
  row("drop_path 1.5", c, "drop_path", "[0, 1)");
  c = base(); c.patch_drop = 1.0;
  row("patch_drop 1", c, "patch_drop", "[0, 1)");
  c = base(); c.pool = vit::Pool::Flatten; c.patch_drop = 0.25;
  row("patch_drop with a flatten head", c, "patch_drop", "pool 'mean'");
  c = base(); c.head_dropout = 1.0;
  row("head_dropout 1", c, "head_dropout", "[0, 1)");
  c = base(); c.ln_eps = 0.0;
  row("zero eps", c, "ln_eps", "1e-6");
  c = base(); c.class_token = false;
  row("token pool without token", c, "pool", "mean");
  c = base(); c.head_hidden = {2048, 0};
  row("zero head width", c, "head_hidden", "2048,1024");
  return rows;
}

class InvalidConfigIsRejected : public testing::TestWithParam<InvalidConfigRow> {};

TEST_P(InvalidConfigIsRejected, row) {
  const auto& row = GetParam();
  const auto errors = vit::validate(row.config);
  ASSERT_FALSE(errors.empty());
  ASSERT_EQ(errors.front().field, row.field);
  const std::string& message = errors.front().message;
  ASSERT_TRUE(vit_test::starts_with(message, row.field)) << message;  // names the field first
  ASSERT_TRUE(contains(message, row.hint)) << message;
  ASSERT_THROW(vit::check(row.config), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(VitConfig, InvalidConfigIsRejected,
                         testing::ValuesIn(invalid_config_rows()), vit_test::RowName());

TEST(VitConfig, everyBrokenRuleIsReported) {
  ViTConfig c = vit::preset("vit-ti16").config;
  c.dim = 100; c.heads = 3; c.dropout = 2.0; c.depth = 0;
  std::vector<std::string> fields;
  for (const auto& e : vit::validate(c)) fields.push_back(e.field);
  auto has = [&](const char* f) {
    return std::find(fields.begin(), fields.end(), f) != fields.end();
  };
  ASSERT_TRUE(has("dim"));
  ASSERT_TRUE(has("dropout"));
  ASSERT_TRUE(has("depth"));
}

TEST(VitConfig, jsonRoundTrip) {
  for (const auto& p : vit::presets()) {
    ViTConfig c = p.config;
    c.head_hidden = {32, 16};
    c.pool = vit::Pool::Mean;
    c.drop_path = 0.125;
    const ViTConfig back = vit::config_from_json(vit::to_json(c));
    ASSERT_TRUE(back == c) << p.name;
  }
}

TEST(VitConfig, jsonRejectsUnknownFieldsAndWrongTypes) {
  ASSERT_THROW(vit::config_from_json(nlohmann::json{{"dimm", 3}}), std::invalid_argument);
  ASSERT_THROW(vit::config_from_json(nlohmann::json{{"dim", "wide"}}), std::invalid_argument);
  ASSERT_THROW(vit::config_from_json(nlohmann::json{{"pool", "max"}}), std::invalid_argument);
  ASSERT_THROW(vit::config_from_json(nlohmann::json::array()), std::invalid_argument);
  // Missing fields keep the base values.
  const ViTConfig c = vit::config_from_json(nlohmann::json{{"depth", 3}});
  ASSERT_EQ(c.depth, 3);
  ASSERT_EQ(c.dim, ViTConfig{}.dim);
}
