// The settings schema (model/settings_schema.h): one table per config drives config.json, the
// range checks and the `vit` flags. The extension test adds a field to a copy of the model's
// schema and checks that JSON, the command line and validation all see it, with no other edit.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <set>
#include <string>

#include "config_json.h"
#include "schema_flags.h"
#include "settings_schema.h"
#include "train_config.h"
#include "vit_config.h"

namespace {

// A config that is ViTConfig plus one new setting.
struct Extended {
  vit::ViTConfig model;
  int warp = 2;  // the new field
};

vit::Schema<Extended> extended_schema() {
  vit::Schema<Extended> s = vit::lift(vit::vit_schema(), &Extended::model);
  vit::FieldSpec spec;
  spec.name = "warp";
  spec.kind = vit::FieldKind::Int;
  spec.label = "Warp";
  spec.doc = "How much to warp (a test field).";
  spec.min = 1;
  spec.max = 8;
  spec.example = "3";
  s.push_back(vit::member_field(&Extended::warp, spec));
  return s;
}

// Parses `args` (without the program name) with the schema's flags into `config`.
std::set<std::string> parse(const vit::Schema<Extended>& schema, std::vector<std::string> args,
                            Extended& config) {
  CLI::App app{"test"};
  vit::cli::SchemaFlags<Extended> flags;
  flags.add(app, schema, &config);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  app.parse(args);
  flags.apply(config);
  return flags.given();
}

}  // namespace

TEST(SettingsSchema, AFieldAddedToTheTableReachesJsonFlagsAndValidation) {
  const auto schema = extended_schema();
  Extended c;
  c.model = vit::preset("vit-ti16").config;
  c.warp = 5;

  // JSON: written, read back, a wrong type named.
  const nlohmann::json j = vit::to_json(schema, c);
  ASSERT_EQ(j.at("warp"), 5);
  ASSERT_EQ(j.at("dim"), 192);
  const Extended back = vit::from_json(schema, j, Extended{}, /*strict=*/true);
  EXPECT_EQ(back.warp, 5);
  EXPECT_EQ(back.model, c.model);
  try {
    vit::from_json(schema, nlohmann::json{{"warp", "lots"}}, Extended{}, true);
    FAIL() << "a string was accepted for an Int field";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("warp"), std::string::npos) << e.what();
  }

  // The command line: --warp exists, is parsed and reported as given; the old flags still work.
  Extended parsed;
  const auto given = parse(schema, {"--warp", "7", "--heads", "4", "--no-qkv-bias"}, parsed);
  EXPECT_EQ(parsed.warp, 7);
  EXPECT_EQ(parsed.model.heads, 4);
  EXPECT_FALSE(parsed.model.qkv_bias);
  EXPECT_EQ(given, (std::set<std::string>{"warp", "heads", "qkv_bias"}));
  Extended wrong;
  EXPECT_THROW(parse(schema, {"--warp", "x"}, wrong), vit::cli::UsageError);

  // Validation: the range comes from the table, the message names the field and an example.
  Extended bad = c;
  bad.warp = 9;
  const auto errors = vit::check_ranges(schema, bad);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "warp");
  EXPECT_NE(errors[0].message.find("warp 9 is too large (at most 8)"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("for example 3"), std::string::npos) << errors[0].message;
  EXPECT_TRUE(vit::check_ranges(schema, c).empty());
}

TEST(SettingsSchema, EveryFieldHasAFlagADocAndAUniqueName) {
  for (const auto* fields : {&vit::train_schema()}) {
    std::set<std::string> names, flags;
    for (const auto& f : *fields) {
      EXPECT_TRUE(names.insert(f.spec.name).second) << f.spec.name;
      EXPECT_FALSE(f.spec.doc.empty()) << f.spec.name;
      for (const auto& flag : f.spec.cli_flags()) EXPECT_TRUE(flags.insert(flag).second) << flag;
    }
  }
  std::set<std::string> names;
  for (const auto& f : vit::vit_schema()) {
    EXPECT_TRUE(names.insert(f.spec.name).second) << f.spec.name;
    EXPECT_FALSE(f.spec.doc.empty()) << f.spec.name;
  }
  // The flags the issue found missing.
  std::set<std::string> model_flags;
  for (const auto& f : vit::vit_schema())
    for (const auto& flag : f.spec.cli_flags()) model_flags.insert(flag);
  for (const char* flag : {"--qkv-bias", "--class-token", "--head-hidden", "--head-dropout",
                           "--mlp-act-after-fc2", "--ln-eps", "--classes", "--channels"})
    EXPECT_TRUE(model_flags.count(flag)) << flag;
}

TEST(SettingsSchema, JsonOfEveryFieldRoundTrips) {
  vit::TrainConfig t;
  t.epochs = 7;
  t.augment.crop = 3;
  t.augment.hflip = true;
  t.mean = {0.25f};
  t.std = {0.5f};
  t.threads = 3;
  t.checkpoint_every = 40;
  t.precision = "bf16";
  const nlohmann::json j = vit::to_json(t);
  EXPECT_EQ(j.at("augment").at("crop"), 3);  // config.json keeps its nested layout
  const vit::TrainConfig back = vit::train_config_from_json(j);
  EXPECT_TRUE(vit::differences(vit::train_schema(), t, back).empty());
  // Runs from before the precision setting trained in fp32.
  nlohmann::json old = j;
  old.erase("precision");
  EXPECT_EQ(vit::train_config_from_json(old).precision, "fp32");
}

TEST(SettingsSchema, OutOfRangeNumbersInFilesAreErrorsNotOverflow) {
  // A whole-number field given 1e300 (or 2.5) in a file is refused, not converted with undefined
  // behaviour.
  EXPECT_THROW(vit::config_from_json(nlohmann::json{{"depth", 1e300}}), std::invalid_argument);
  EXPECT_THROW(vit::config_from_json(nlohmann::json{{"depth", 2.5}}), std::invalid_argument);
  EXPECT_THROW(vit::train_config_from_json(nlohmann::json{{"max_steps", -1e30}}), std::invalid_argument);
  EXPECT_EQ(vit::config_from_json(nlohmann::json{{"depth", 3.0}}).depth, 3);
  // 2^63 as a double: int64's max rounds up to it, so a `v > max` check let it through.
  EXPECT_THROW(vit::json_to<int64_t>(nlohmann::json(9223372036854775808.0)), std::invalid_argument);
  EXPECT_EQ(vit::json_to<int64_t>(nlohmann::json(-9223372036854775808.0)), INT64_MIN);
  // double to float above FLT_MAX is undefined behaviour too (a normalization mean of 1e+40,
  // found by fuzz_config_json, tests/fuzz/corpus/config_json/huge-number.json).
  EXPECT_THROW(vit::json_to<std::vector<float>>(nlohmann::json{0.5, 1e40}), std::invalid_argument);
  EXPECT_EQ(vit::json_to<std::vector<float>>(nlohmann::json{0.5, -2.0}), (std::vector<float>{0.5f, -2.0f}));
}

TEST(SettingsSchema, TrainingMessagesNameTheirField) {
  vit::TrainConfig t;
  t.augment.crop = 99;
  t.augment.erase = 2;
  t.warmup_epochs = 100;
  t.epochs = 10;
  t.freeze_backbone = true;
  t.min_lr = 1;
  t.full_token_epochs = 11;  // more than the epochs is allowed: every epoch on every patch
  std::set<std::string> fields;
  for (const auto& e : vit::validate(t)) {
    fields.insert(e.field);
    EXPECT_EQ(e.message.rfind(e.field, 0), 0u) << "message does not start with its field: " << e.message;
    EXPECT_EQ(e.message.find("0.000000"), std::string::npos) << e.message;
  }
  EXPECT_EQ(fields, (std::set<std::string>{"crop", "erase", "warmup_epochs", "freeze_backbone", "min_lr"}));
}

TEST(SettingsSchema, FineTuningKeepsThePretrainedArchitecture) {
  vit::ViTConfig pretrained = vit::preset("vit-ti16").config;
  vit::ViTConfig requested = vit::preset(vit::kDefaultPreset).config;
  requested.image_size = 112;
  requested.dropout = 0.2;
  requested.dim = 64;  // not given: ignored
  const auto c = vit::finetuned_config(pretrained, requested, {"image_size", "dropout"}, "w.safetensors");
  EXPECT_EQ(c.dim, 192);
  EXPECT_EQ(c.image_size, 112);
  EXPECT_EQ(c.dropout, 0.2);
  try {
    vit::finetuned_config(pretrained, requested, {"dim"}, "w.safetensors");
    FAIL() << "a different dim was accepted";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--dim"), std::string::npos) << m;
    EXPECT_NE(m.find("w.safetensors"), std::string::npos) << m;
  }
}

TEST(SettingsSchema, OneTableOfStandardViTs) {
  EXPECT_EQ(vit::standard_heads(768), 12);
  EXPECT_EQ(vit::standard_heads(1280), 16);
  EXPECT_FALSE(vit::standard_heads(100).has_value());
  for (const auto& v : vit::standard_vits()) {
    if (v.preset.empty()) continue;
    const auto& p = vit::preset(v.preset).config;
    EXPECT_EQ(p.dim, v.dim);
    EXPECT_EQ(p.heads, v.heads);
    EXPECT_EQ(p.patch_size, v.patch_size);
  }
}
