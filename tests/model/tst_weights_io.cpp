// Pretrained weights: parity with an independent Python implementation on a stored fixture, the
// three containers (safetensors, .npz, .pth) and three naming schemes (timm, Hugging Face, Google)
// mapping to the same tensors, export -> import round trips, every malformed or hostile file
// refused with a message naming it, position-embedding resizing, fine-tuning (new head, frozen
// backbone, layer-wise lr decay) and the `vit import` / `vit export` / `vit train --init` CLI.
#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "config_json.h"
#include "datasets.h"
#include "npz.h"
#include "pth.h"
#include "safetensors.h"
#include "trainer.h"
#include "vit.h"
#include "weights_io.h"
#include "zip_archive.h"

#include "support/fatal.h"
#include "support/pickle.h"
#include "support/process.h"
#include "support/rows.h"
#include "support/temp_dir.h"
#include "support/text.h"


namespace fs = std::filesystem;
using vit_test::contains;
using namespace vit_test::pickle;  // le, floats_bytes, pk_*


namespace {

// tests/fixtures/parity, made by make_fixture.py there (see its docstring).
const std::string kFixtures = VIT_FIXTURES "/parity/";

vit::ViTConfig tiny(int classes = 5) {
  vit::ViTConfig c;
  c.image_size = 8;
  c.patch_size = 2;
  c.in_channels = 3;
  c.num_classes = classes;
  c.dim = 16;
  c.depth = 2;
  c.heads = 2;
  c.mlp_hidden = 32;
  return c;
}

// Every parameter random, norms included, so that a swapped scale/bias or a transposed kernel
// changes the numbers.
vit::VisionTransformer random_model(const vit::ViTConfig& c, uint64_t seed = 7) {
  torch::manual_seed(seed);
  vit::VisionTransformer m(c);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.copy_(torch::randn_like(p) * 0.3);
  m->eval();
  return m;
}

vit::NamedTensors state(vit::VisionTransformerImpl& m) {
  vit::NamedTensors out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value().detach().clone());
  return out;
}

// Same dtype, shape and bytes.
bool same(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0;
}

// Same names (any order) and bit-identical tensors; the first difference otherwise.
std::string compare_sets(const vit::NamedTensors& got, const vit::NamedTensors& want) {
  std::map<std::string, torch::Tensor> g(got.begin(), got.end());
  if (g.size() != want.size())
    return std::to_string(g.size()) + " tensors, expected " + std::to_string(want.size());
  for (const auto& [name, t] : want) {
    auto it = g.find(name);
    if (it == g.end()) return "missing " + name;
    if (!same(it->second, t)) return name + " differs";
  }
  return {};
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// timm -> Google's original ViT .npz names, written here independently of the importer (the
// inverse of timm's _load_weights): Flax kernels are (in, out), per-head (dim, heads, head_dim).
vit::NamedTensors google_npz(const vit::NamedTensors& timm, int heads, const std::string& prefix,
                             bool big_vision = false, bool scanned = false) {
  std::map<std::string, torch::Tensor> m(timm.begin(), timm.end());
  const int64_t D = m.at("pos_embed").size(2), hd = D / heads;
  vit::NamedTensors out;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    out.emplace_back(prefix + name, t.contiguous());
  };
  add("embedding/kernel", m.at("patch_embed.proj.weight").permute({2, 3, 1, 0}));
  add("embedding/bias", m.at("patch_embed.proj.bias"));
  add("cls", m.at("cls_token"));
  add(big_vision ? "pos_embedding" : "Transformer/posembed_input/pos_embedding", m.at("pos_embed"));
  add("Transformer/encoder_norm/scale", m.at("norm.weight"));
  add("Transformer/encoder_norm/bias", m.at("norm.bias"));
  add("head/kernel", m.at("head.weight").t());
  add("head/bias", m.at("head.bias"));
  const std::string mha = big_vision ? "MultiHeadDotProductAttention_0/" : "MultiHeadDotProductAttention_1/";
  const std::string mlp = big_vision ? "MlpBlock_0/" : "MlpBlock_3/";
  const std::string ln2 = big_vision ? "LayerNorm_1/" : "LayerNorm_2/";
  std::map<std::string, std::vector<torch::Tensor>> stacked;
  int depth = 0;
  while (m.count("blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;
  for (int i = 0; i < depth; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    std::vector<std::pair<std::string, torch::Tensor>> block = {
        {"LayerNorm_0/scale", m.at(p + "norm1.weight")},
        {"LayerNorm_0/bias", m.at(p + "norm1.bias")},
        {ln2 + "scale", m.at(p + "norm2.weight")},
        {ln2 + "bias", m.at(p + "norm2.bias")},
        {mha + "out/kernel", m.at(p + "attn.proj.weight").t().reshape({heads, hd, D})},
        {mha + "out/bias", m.at(p + "attn.proj.bias")},
        {mlp + "Dense_0/kernel", m.at(p + "mlp.fc1.weight").t()},
        {mlp + "Dense_0/bias", m.at(p + "mlp.fc1.bias")},
        {mlp + "Dense_1/kernel", m.at(p + "mlp.fc2.weight").t()},
        {mlp + "Dense_1/bias", m.at(p + "mlp.fc2.bias")}};
    const auto w = m.at(p + "attn.qkv.weight").chunk(3, 0), b = m.at(p + "attn.qkv.bias").chunk(3, 0);
    const char* parts[] = {"query", "key", "value"};
    for (int k = 0; k < 3; ++k) {
      block.emplace_back(mha + parts[k] + "/kernel", w[k].t().reshape({D, heads, hd}));
      block.emplace_back(mha + parts[k] + "/bias", b[k].reshape({heads, hd}));
    }
    for (const auto& [name, t] : block) {
      if (scanned) stacked[name].push_back(t);
      else add("Transformer/encoderblock_" + std::to_string(i) + "/" + name, t);
    }
  }
  for (const auto& [name, list] : stacked) add("Transformer/encoderblock/" + name, torch::stack(list));
  return out;
}

// timm -> Hugging Face transformers' ViTForImageClassification names.
vit::NamedTensors hugging_face(const vit::NamedTensors& timm) {
  std::map<std::string, torch::Tensor> m(timm.begin(), timm.end());
  vit::NamedTensors out = {
      {"vit.embeddings.cls_token", m.at("cls_token")},
      {"vit.embeddings.position_embeddings", m.at("pos_embed")},
      {"vit.embeddings.patch_embeddings.projection.weight", m.at("patch_embed.proj.weight")},
      {"vit.embeddings.patch_embeddings.projection.bias", m.at("patch_embed.proj.bias")},
      {"vit.layernorm.weight", m.at("norm.weight")},
      {"vit.layernorm.bias", m.at("norm.bias")},
      {"classifier.weight", m.at("head.weight")},
      {"classifier.bias", m.at("head.bias")},
      {"vit.pooler.dense.weight", torch::ones({2, 2})},  // ViTModel's pooler: dropped
  };
  for (int i = 0; m.count("blocks." + std::to_string(i) + ".norm1.weight"); ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".", h = "vit.encoder.layer." + std::to_string(i) + ".";
    for (const std::string kind : {"weight", "bias"}) {
      const auto qkv = m.at(p + "attn.qkv." + kind).chunk(3, 0);
      out.emplace_back(h + "attention.attention.query." + kind, qkv[0].contiguous());
      out.emplace_back(h + "attention.attention.key." + kind, qkv[1].contiguous());
      out.emplace_back(h + "attention.attention.value." + kind, qkv[2].contiguous());
      out.emplace_back(h + "attention.output.dense." + kind, m.at(p + "attn.proj." + kind));
      out.emplace_back(h + "layernorm_before." + kind, m.at(p + "norm1." + kind));
      out.emplace_back(h + "layernorm_after." + kind, m.at(p + "norm2." + kind));
      out.emplace_back(h + "intermediate.dense." + kind, m.at(p + "mlp.fc1." + kind));
      out.emplace_back(h + "output.dense." + kind, m.at(p + "mlp.fc2." + kind));
    }
  }
  return out;
}

// --- hand-made pickles, as torch.save (protocol 2) writes them ----------------------------------

// A zip archive's bytes.
std::string zip_bytes(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& entries,
                      bool deflate = false) {
  const std::string path = dir + "/scratch.zip";
  vit::write_zip(path, entries, deflate);
  const std::string bytes = read_file(path);
  fs::remove(path);
  return bytes;
}

std::string npy(const std::string& header_dict, const std::string& data, int major = 1) {
  std::string header = header_dict;
  header += std::string((64 - (10 + header.size() + 1) % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += char(major);
  out += '\0';
  out += major == 1 ? le(header.size(), 2) : le(header.size(), 4);
  return out + header + data;
}

std::string safetensors_bytes(const std::string& header, const std::string& data = "",
                              std::optional<uint64_t> length = std::nullopt) {
  return le(length.value_or(header.size()), 8) + header + data;
}

std::string vit_binary() {
  const char* binary = std::getenv("VIT_BINARY");
  return binary ? binary : "";
}

// `vit ARGS`: its exit code (-1 if it crashed), stdout and stderr; a hung vit stops the suite.
vit_test::ProcessResult run_vit(const std::vector<std::string>& args) {
  auto r = vit_test::run_process(vit_binary(), args, std::chrono::minutes(5));
  if (!r.finished())
    vit_test::fatal("vit did not finish: " + vit_test::join(args) + ": " + r.error);
  return r;
}

nlohmann::json last_json_line(const std::string& out) {
  return nlohmann::json::parse(vit_test::last_line(vit_test::trimmed(out)));
}

// Two classes of 16x16 RGB images: a bright left or right half, for `vit train --init`.
void write_image_folder(const std::string& dir) {
  for (int cls = 0; cls < 2; ++cls) {
    const std::string sub = dir + "/" + (cls ? "right" : "left");
    fs::create_directories(sub);
    for (int i = 0; i < 8; ++i) {
      cv::Mat img(16, 16, CV_8UC3, cv::Scalar(20 + i, 30, 40));
      img(cv::Rect(cls ? 8 : 0, 0, 8, 16)).setTo(cv::Scalar(220, 200 - i, 180));
      cv::imwrite(sub + "/" + std::to_string(i) + ".png", img);
    }
  }
}

// The suite's directory (the Qt suite's QTemporaryDir member).
const vit_test::TempDir& suite_dir() {
  static const vit_test::TempDir dir;
  return dir;
}
const std::string& root() { return suite_dir().path(); }

// Once, before every test (the Qt suite's initTestCase).
class SuiteSetup : public testing::Environment {
  void SetUp() override { ASSERT_TRUE(suite_dir().valid()) << suite_dir().error(); }
};
[[maybe_unused]] const auto* const kSuiteSetup = testing::AddGlobalTestEnvironment(new SuiteSetup);

}  // namespace

// ---- parity with the independent Python implementation -----------------------------------

struct ParityRow : vit_test::Row {
  std::string file;
  int heads;  // 0: the file must tell
  std::string naming;
};

class ParityWithPythonReference : public testing::TestWithParam<ParityRow> {};

TEST_P(ParityWithPythonReference, row) {
  const std::string& file = GetParam().file;
  const int heads = GetParam().heads;
  const std::string& naming = GetParam().naming;
  vit::ImportOptions options;
  if (heads) options.heads = heads;
  const auto w = vit::import_weights(kFixtures + file, options);
  ASSERT_EQ(w.naming, naming);
  ASSERT_EQ(w.config.dim, 24);
  ASSERT_EQ(w.config.depth, 2);
  ASSERT_EQ(w.config.heads, 4);
  ASSERT_EQ(w.config.patch_size, 4);
  ASSERT_EQ(w.config.image_size, 16);
  ASSERT_EQ(w.config.mlp_hidden, 48);
  ASSERT_EQ(w.config.num_classes, 10);
  ASSERT_TRUE(w.config.class_token && w.config.qkv_bias && w.config.pool == vit::Pool::Token);
  ASSERT_EQ(w.normalization.mean, (std::vector<float>{0.5f, 0.5f, 0.5f}));

  vit::VisionTransformer model(w.config);
  const auto load = vit::load_pretrained(*model, w);
  ASSERT_TRUE(!load.new_head && !load.pos_embed_resized && !load.channels_adapted);
  model->eval();
  const auto expected = vit::load_safetensors(kFixtures + "expected.safetensors");
  torch::NoGradGuard no_grad;
  const auto logits = model->forward(*expected.find("input"));
  // The reference: make_fixture.py's plain-torch ViT, float64 forward of the float32 weights.
  const double diff = (logits - *expected.find("logits")).abs().max().item<double>();
  ASSERT_TRUE(diff < 1e-4)
      << "logits differ from tests/fixtures/parity/make_fixture.py's reference by " << diff;
  std::printf("max |logits - Python reference| = %.3g\n", diff);
  ASSERT_TRUE(logits.abs().max().item<double>() > 0.5);  // not a degenerate all-zero comparison
}

INSTANTIATE_TEST_SUITE_P(WeightsIo, ParityWithPythonReference,
                         testing::ValuesIn(std::vector<ParityRow>{
    {{"safetensors, timm names"}, "weights.safetensors", 4, "timm"},
    {{"npz, Google names (numpy.savez)"}, "weights.npz", 0, "google-npz"},
    {{"pth, Hugging Face names (torch.save)"}, "weights.pth", 4, "hugging-face"},
}), vit_test::RowName());

TEST(WeightsIo, fixtureContainersHoldTheSameWeights) {
  const auto st = vit::import_weights(kFixtures + "weights.safetensors", {4});
  const auto npz = vit::import_weights(kFixtures + "weights.npz");
  const auto pth = vit::import_weights(kFixtures + "weights.pth", {4});
  ASSERT_EQ(compare_sets(npz.tensors, st.tensors), "");
  ASSERT_EQ(compare_sets(pth.tensors, st.tensors), "");
  ASSERT_EQ(npz.heads_source, std::string("the attention kernels' shape"));
  ASSERT_TRUE(npz.config == st.config && pth.config == st.config);
}

// ---- naming schemes built by the test ------------------------------------------------------

struct NamingRow : vit_test::Row {
  std::string prefix;
  bool big_vision;
  bool scanned;
  bool deflate;
};

class NpzAndHuggingFaceMapToSameWeights : public testing::TestWithParam<NamingRow> {};

TEST_P(NpzAndHuggingFaceMapToSameWeights, row) {
  const std::string& prefix = GetParam().prefix;
  const bool big_vision = GetParam().big_vision;
  const bool scanned = GetParam().scanned;
  const bool deflate = GetParam().deflate;
  const vit::ViTConfig config = tiny(5);
  auto model = random_model(config);
  const auto timm = state(*model);

  auto google = google_npz(timm, config.heads, prefix, big_vision, scanned);
  if (!prefix.empty() && !big_vision)
    google.emplace_back("opt/state/param_states/embedding/kernel/m", torch::ones({3}));
  const std::string npz_path = root() + "/google.npz", hf_path = root() + "/hf.safetensors";
  vit::save_npz(npz_path, google, deflate);
  vit::save_safetensors(hf_path, hugging_face(timm), {{"format", "pt"}});

  const auto from_npz = vit::import_weights(npz_path);
  const auto from_hf = vit::import_weights(hf_path, {config.heads});
  ASSERT_EQ(compare_sets(from_npz.tensors, timm), "");
  ASSERT_EQ(compare_sets(from_hf.tensors, timm), "");
  ASSERT_EQ(from_npz.naming, big_vision ? "big-vision" : "google-npz");
  ASSERT_EQ(from_hf.naming, std::string("hugging-face"));
  ASSERT_TRUE(from_npz.config == config);  // heads from the per-head kernels
  ASSERT_TRUE(from_hf.config == config);
}

INSTANTIATE_TEST_SUITE_P(WeightsIo, NpzAndHuggingFaceMapToSameWeights,
                         testing::ValuesIn(std::vector<NamingRow>{
    {{"vit_jax names"}, "", false, false, false},
    {{"opt/target/ prefix + optimizer state"}, "opt/target/", false, false, false},
    {{"deflated (numpy.savez_compressed)"}, "", false, false, true},
    {{"big_vision names"}, "params/", true, false, false},
    {{"big_vision, scanned blocks"}, "params/", true, true, false},
}), vit_test::RowName());

TEST(WeightsIo, timmNamesWithModulePrefix) {
  auto model = random_model(tiny(3));
  vit::NamedTensors ddp;
  for (const auto& [name, t] : state(*model)) ddp.emplace_back("module." + name, t);
  const std::string path = root() + "/ddp.safetensors";
  vit::save_safetensors(path, ddp);
  const auto w = vit::import_weights(path, {2});
  ASSERT_EQ(compare_sets(w.tensors, state(*model)), "");
  ASSERT_TRUE(w.config == tiny(3));
}

TEST(WeightsIo, inferConfigCoversPoolingAndHeads) {
  // Mean pooling without class token (fc_norm), and a standard width whose heads come from the
  // table; a headless file gives num_classes 0.
  vit::ViTConfig c = tiny(4);
  c.dim = 192;
  c.heads = 3;
  c.mlp_hidden = 384;
  c.class_token = false;
  c.pool = vit::Pool::Mean;
  auto model = random_model(c);
  vit::NamedTensors headless;
  for (const auto& [name, t] : state(*model))
    if (!vit::is_head_parameter(name)) headless.emplace_back(name, t);
  std::string source;
  const auto inferred = vit::infer_config(state(*model), "file", std::nullopt, &source);
  ASSERT_TRUE(inferred == c);
  ASSERT_EQ(source, std::string("the standard ViT table for dim 192"));
  ASSERT_EQ(vit::infer_config(headless, "file", std::nullopt).num_classes, 0);
}

// ---- export -> import ----------------------------------------------------------------------

struct VariantRow : vit_test::Row {
  int variant;
  bool timm_compatible;
};

class ExportImportRoundTripIsIdentical : public testing::TestWithParam<VariantRow> {};

TEST_P(ExportImportRoundTripIsIdentical, row) {
  const int variant = GetParam().variant;
  const bool timm_compatible = GetParam().timm_compatible;
  vit::ViTConfig c = tiny(6);
  if (variant == 1) c.class_token = false, c.pool = vit::Pool::Mean;
  if (variant == 2) c.in_channels = 1, c.qkv_bias = false;
  if (variant == 3) c.pool = vit::Pool::Flatten, c.head_hidden = {12, 8}, c.mlp_act_after_fc2 = true;
  auto model = random_model(c);
  const vit::Normalization norm{std::vector<float>(size_t(c.in_channels), 0.25f),
                                std::vector<float>(size_t(c.in_channels), 0.75f)};
  const std::string run = root() + "/run-" + std::to_string(variant);
  fs::create_directories(run + "/checkpoints");
  vit::save_checkpoint(run + "/checkpoints/best.safetensors", *model, norm);

  const std::string out = run + "/export.safetensors";
  const auto r = vit::export_weights(run, out);
  ASSERT_EQ(r.warnings.empty(), timm_compatible);
  const auto file = vit::load_safetensors(out);
  ASSERT_EQ(file.metadata.at("format"), std::string("pt"));
  const auto args = nlohmann::json::parse(file.metadata.at("timm_model_args"));
  ASSERT_EQ(args.at("embed_dim").get<int>(), c.dim);
  ASSERT_EQ(args.at("num_heads").get<int>(), c.heads);
  ASSERT_EQ(args.at("in_chans").get<int>(), c.in_channels);
  ASSERT_EQ(args.at("class_token").get<bool>(), c.class_token);
  ASSERT_EQ(args.at("global_pool").get<std::string>(), std::string(variant == 1 ? "avg" : "token"));
  const auto cfg = nlohmann::json::parse(file.metadata.at("pretrained_cfg"));
  ASSERT_EQ(cfg.at("mean").get<std::vector<float>>(), norm.mean);
  ASSERT_EQ(cfg.at("input_size").get<std::vector<int>>(),
            (std::vector<int>{c.in_channels, c.image_size, c.image_size}));

  const auto back = vit::import_weights(out);
  ASSERT_EQ(back.naming, std::string("vit-studio"));
  ASSERT_TRUE(back.config == c);
  ASSERT_EQ(back.normalization.mean, norm.mean);
  ASSERT_EQ(back.normalization.std, norm.std);
  const auto original = state(*model);
  ASSERT_EQ(back.tensors.size(), original.size());
  for (size_t i = 0; i < original.size(); ++i) {  // same order, same bits
    ASSERT_EQ(back.tensors[i].first, original[i].first);
    ASSERT_TRUE(same(back.tensors[i].second, original[i].second)) << original[i].first;
  }
}

INSTANTIATE_TEST_SUITE_P(WeightsIo, ExportImportRoundTripIsIdentical,
                         testing::ValuesIn(std::vector<VariantRow>{
    {{"token pooling"}, 0, true},
    {{"mean pooling, no class token"}, 1, true},
    {{"grayscale, no qkv bias"}, 2, true},
    {{"flatten + MLP head + GELU after fc2 (Keras style)"}, 3, false},
}), vit_test::RowName());

// ---- malformed and hostile files -------------------------------------------------------------

struct MalformedRow : vit_test::Row {
  std::string bytes;
  std::string problem;
  bool usage;  // std::invalid_argument (exit code 2) instead of runtime_error
};

// Made when the tests are registered, in the suite's directory (zip_bytes writes scratch files).
std::vector<MalformedRow> malformed_rows() {
  std::vector<MalformedRow> rows;
  auto row = [&](const char* name, const std::string& bytes, const std::string& problem,
                 bool usage = false) {
    rows.push_back({{name}, bytes, problem, usage});
  };
  const std::string d = root();
  // A valid timm checkpoint to break in one place at a time.
  auto timm = state(*random_model(tiny(3)));
  auto timm_file = [&](const std::function<void(vit::NamedTensors&)>& change) {
    vit::NamedTensors t = timm;
    change(t);
    return vit::serialize_safetensors(t);
  };

  // safetensors: the container (its full matrix is in tst_safetensors), then the ViT inside.
  row("safetensors: header above 100 MB", safetensors_bytes("{}", "", 100'000'001),
      "header length 100000001 is above the 100000000-byte limit");
  row("safetensors: header length past the end", safetensors_bytes("{}", "", 4096),
      "runs past the end of the file");
  row("safetensors: overlapping offsets",
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        std::string(12, '\0')),
      "overlap");
  row("safetensors: offsets out of range",
      safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                        std::string(8, '\0')),
      "past the end of the 8-byte data buffer");
  row("safetensors: unknown dtype",
      safetensors_bytes(R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}})",
                        std::string(4, '\0')),
      "unknown dtype");
  row("safetensors: shape/byte-count mismatch",
      safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                        std::string(12, '\0')),
      "needs 16");
  row("safetensors: truncated", timm_file([](auto&) {}).substr(0, 300), "runs past the end");
  row("weights: not a ViT", vit::serialize_safetensors({{"conv1.weight", torch::ones({2})}}),
      "no ViT weights recognized");
  row("weights: LayerScale (DeiT III)",
      timm_file([](auto& t) { t.emplace_back("blocks.0.ls1.gamma", torch::ones({16})); }),
      "belongs to LayerScale");
  row("weights: a block missing", timm_file([](auto& t) {
        for (auto& [name, x] : t)
          if (name.rfind("blocks.1.", 0) == 0) name.replace(7, 1, "2");
      }),
      "blocks are numbered 0..2 with 1 missing");
  row("weights: non-square position grid", timm_file([](auto& t) {
        for (auto& [name, x] : t)
          if (name == "pos_embed") x = torch::zeros({1, 7, 16});
      }),
      "not a square grid");
  row("weights: integer tensors", timm_file([](auto& t) {
        for (auto& [name, x] : t)
          if (name == "norm.bias") x = torch::zeros({16}, torch::kInt32);
      }),
      "weights must be floating point");
  row("weights: dim 16 without heads", timm_file([](auto&) {}), "give --heads N", true);

  // npz
  const std::string f4x2 = std::string(8, '\0');
  auto npz = [&](const std::string& entry_bytes, const std::string& name = "w.npy") {
    return zip_bytes(d, {{name, entry_bytes}});
  };
  const std::string good_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string good_npz = npz(npy(good_header, f4x2));
  row("npz: truncated archive", good_npz.substr(0, good_npz.size() / 2), "not a readable zip archive");
  row("npz: entry is not .npy",
      zip_bytes(d, {{"w.npy", npy(good_header, f4x2)}, {"readme.txt", "hello"}}),
      "holds 'readme.txt', which is not an .npy array");
  row("zip: neither npz nor pth", zip_bytes(d, {{"readme.txt", "hello"}}),
      "neither .npy arrays (an .npz file) nor '<name>/data.pkl'");
  row("npz: bad magic", npz(std::string("\x93NUMPX\x01\x00", 8) + le(2, 2) + "{}"), "not an .npy array");
  row("npz: header is code, not a literal",
      npz(npy("{'descr': __import__('os').system('id'), 'fortran_order': False, 'shape': (2,), }", f4x2)),
      "not a valid dict literal");
  row("npz: unknown header key",
      npz(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", f4x2)),
      "unknown key 'x'");
  row("npz: big-endian",
      npz(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4x2)), "big-endian");
  row("npz: object array (pickle)",
      npz(npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", f4x2)), "needs pickle");
  row("npz: unknown dtype",
      npz(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", f4x2)),
      "dtype '<c8', which is not supported");
  row("npz: data shorter than the shape", npz(npy(good_header, std::string(6, '\0'))),
      "has 6 data bytes but shape (2,) of f4 needs 8 (truncated)");
  row("npz: data longer than the shape", npz(npy(good_header, std::string(12, '\0'))),
      "has 12 data bytes but shape (2,) of f4 needs 8");
  row("npz: shape overflows",
      npz(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f4x2)),
      "overflows 64-bit sizes");
  row("npz: header length past the end", npz(std::string("\x93NUMPY\x01\x00", 8) + le(500, 2) + "{}"),
      "runs past the end of the array");
  row("npz: header above numpy's limit",
      npz(std::string("\x93NUMPY\x02\x00", 8) + le(20000, 4) + std::string(20000, ' ')), "10000-byte limit");
  row("npz: bool byte other than 0/1",
      npz(npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", std::string("\x01\x02", 2))),
      "a bool must be 0 or 1");
  {
    // A deflated entry whose directory claims 2 GB: refused before any allocation.
    std::string bomb = zip_bytes(d, {{"w.npy", npy(good_header, std::string(4096, '\0'))}}, true);
    const size_t local = bomb.find("PK\x03\x04"), central = bomb.find("PK\x01\x02");
    bomb.replace(local + 22, 4, le(2'000'000'000, 4));
    bomb.replace(central + 24, 4, le(2'000'000'000, 4));
    row("npz: zip bomb (size claim beyond deflate's ratio)", bomb, "zip bomb");
  }
  {
    std::string twice = zip_bytes(d, {{"a.npy", npy(good_header, f4x2)}, {"b.npy", npy(good_header, f4x2)}});
    for (size_t at = twice.find("b.npy"); at != std::string::npos; at = twice.find("b.npy", at + 1))
      twice[at] = 'a';
    row("npz: duplicate entry names", twice, "two entries named alike");
  }
  {
    std::string damaged = good_npz;
    damaged[damaged.find("PK\x01\x02") - 1] = '\x01';  // the last data byte
    row("npz: CRC mismatch", damaged, "CRC");
  }
  {
    auto google = google_npz(timm, 2, "");
    google.erase(std::remove_if(google.begin(), google.end(),
                                [](const auto& p) { return p.first.find("encoderblock_1/MultiHeadDotProductAttention_1/key/kernel") != std::string::npos; }),
                 google.end());
    vit::save_npz(d + "/missing.npz", google);
    row("npz: a kernel missing", read_file(d + "/missing.npz"),
        "has no array 'Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel'");
  }

  // pth
  const std::string six = floats_bytes({0, 1, 2, 3, 4, 5});
  auto pth = [&](const std::string& pickle, const std::string& storage = "",
                 std::vector<std::pair<std::string, std::string>> extra = {}) {
    std::vector<std::pair<std::string, std::string>> e = {{"archive/data.pkl", pickle},
                                                          {"archive/version", "3\n"}};
    if (!storage.empty()) e.emplace_back("archive/data/0", storage);
    e.insert(e.end(), extra.begin(), extra.end());
    return zip_bytes(d, e);
  };
  auto one_tensor = [&](int64_t numel, int64_t offset, std::vector<int64_t> size,
                        std::vector<int64_t> stride) {
    return pk_file(pk_ordered_dict(pk_str("w") + pk_tensor("0", numel, offset, size, stride)));
  };
  row("pth: os.system in the pickle",
      pth(pk_file(pk_global("os", "system") + "(" + pk_str("touch /tmp/pwned") + "tR")),
      "refers to os.system, which a weights-only reader does not load");
  row("pth: builtins.eval in the pickle",
      pth(pk_file(pk_ordered_dict(pk_str("w") + pk_global("builtins", "eval") + "(" + pk_str("1") + "tR"))),
      "refers to builtins.eval");
  row("pth: legacy (pre-1.6) format", std::string("\x80\x02}q\x00.", 6), "legacy (pre-1.6)");
  row("pth: storage size mismatch", pth(one_tensor(8, 0, {6}, {1}), six),
      "storage '0' should hold 8 FloatStorage elements but 'archive/data/0' has 24 bytes");
  row("pth: view past the storage", pth(one_tensor(6, 4, {3}, {1}), six),
      "reach outside its 6-element storage");
  row("pth: huge stride", pth(one_tensor(6, 0, {2, 2}, {1, int64_t(1) << 30}), six),
      "reach outside");
  row("pth: negative offset", pth(one_tensor(6, -1, {2}, {1}), six), "reach outside");
  row("pth: storage entry missing", pth(one_tensor(6, 0, {6}, {1})),
      "the archive has no 'archive/data/0'");
  {
    const std::string full = one_tensor(6, 0, {6}, {1});
    row("pth: truncated pickle", pth(full.substr(0, full.size() / 2), six), "truncated");
  }
  row("pth: memo entry never stored", pth(pk_file("h\x05")), "memo entry 5 was never stored");
  row("pth: stack underflow", pth(pk_file("R")), "empty stack");
  row("pth: unknown opcode", pth(pk_file("i")), "the pickle opcode 0x69");
  row("pth: no data.pkl", zip_bytes(d, {{"archive/version", "3\n"}}), "nor '<name>/data.pkl'");
  row("pth: TorchScript archive", pth(one_tensor(6, 0, {6}, {1}), six, {{"archive/code/__torch__.py", "x"}}),
      "TorchScript");
  row("pth: a list, not a state_dict", pth(pk_file("]")), "holds a list without a state_dict");

  // Hostile pickles that fuzzing found (tests/fuzz/corpus/pth keeps the original inputs).
  auto deflated_pth = [&](const std::string& pickle, const std::string& storage = "") {
    std::vector<std::pair<std::string, std::string>> e = {{"archive/data.pkl", pickle}};
    if (!storage.empty()) e.emplace_back("archive/data/0", storage);
    return zip_bytes(d, e, /*deflate=*/true);
  };
  // 200,000 tuples each wrapping the last (EMPTY_TUPLE, then TUPLE1 200,000 times): their
  // recursive destruction overflowed the stack.
  row("pth: 200,000 nested tuples", deflated_pth(pk_file(")" + std::string(200000, '\x85'))),
      "nest deeper than 100 levels");
  row("pth: a list that contains itself", pth(pk_file(std::string("]q\x00" "h\x00" "a", 6))), "into itself");
  row("pth: a list changed after it was nested", pth(pk_file(std::string("]q\x00" "]q\x01" "a0h\x01" "Na", 12))),
      "changed after it was put inside another");
  // A 1-element storage viewed with stride 0 as 2^20 x 2^20: a dense copy is 4 TB.
  row("pth: stride-0 view larger than its storage",
      deflated_pth(one_tensor(1, 0, {1 << 20, 1 << 20}, {0, 0}), floats_bytes({1})),
      "1099511627776 elements view a 1-element storage");
  {
    // The same 6 floats transposed 40 times: each copy is within the storage, together they
    // are 40 times its bytes.
    std::string items;
    for (int k = 0; k < 40; ++k)
      items += pk_str("t" + std::to_string(k)) + pk_tensor("0", 6, 0, {3, 2}, {1, 3});
    row("pth: many strided copies of one storage", pth(pk_file(pk_ordered_dict(items)), six),
        "need more memory than the file's 24 storage bytes");
  }
  row("npz: a shape whose strides overflow",
      npz(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }", "")),
      "overflows 64-bit sizes");
  return rows;
}

class RejectsMalformedFiles : public testing::TestWithParam<MalformedRow> {};

TEST_P(RejectsMalformedFiles, row) {
  static int bad = 0;
  const std::string& bytes = GetParam().bytes;
  const std::string& problem = GetParam().problem;
  const bool usage = GetParam().usage;
  const std::string& tag = GetParam().name;
  const std::string ext = vit_test::starts_with(tag, "npz")   ? ".npz"
                          : vit_test::starts_with(tag, "pth") ? ".pth"
                                                              : ".safetensors";
  const std::string path = root() + "/bad-" + std::to_string(bad++) + ext;
  write_file(path, bytes);
  try {
    vit::import_weights(path);
    FAIL() << "accepted";
  } catch (const std::invalid_argument& e) {
    ASSERT_TRUE(usage) << e.what();
    ASSERT_TRUE(contains(e.what(), path)) << e.what();
    ASSERT_TRUE(contains(e.what(), problem)) << e.what();
  } catch (const std::runtime_error& e) {
    ASSERT_FALSE(usage) << e.what();
    ASSERT_TRUE(vit_test::starts_with(e.what(), path)) << e.what();
    ASSERT_TRUE(contains(e.what(), problem)) << e.what();
  }
  ASSERT_FALSE(fs::exists("/tmp/pwned"));
}

INSTANTIATE_TEST_SUITE_P(WeightsIo, RejectsMalformedFiles, testing::ValuesIn(malformed_rows()),
                         vit_test::RowName());

// 17 MB of None opcodes deflate to ~17 KB; each became a heap value and the file took 2.9 GB.
// Now the pickle may make at most kMaxPickleValues values, and its memory stays small.
TEST(WeightsIo, pthValueFloodIsRefusedEarly) {
  const std::string path = root() + "/none-flood.pth";
  vit::write_zip(path, {{"archive/data.pkl", std::string("\x80\x02", 2) + std::string(17'000'000, 'N') + "."}},
                 /*deflate=*/true);
  ASSERT_TRUE(fs::file_size(path) < 32 * 1024);
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  try {
    vit::load_pth(path);
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), "more than 1000000 values")) << e.what();
  }
  getrusage(RUSAGE_SELF, &after);
  const long grown_mb = (after.ru_maxrss - before.ru_maxrss) / 1024;
  ASSERT_TRUE(grown_mb < 400) << "peak memory grew by " << grown_mb << " MB";
}

// Two zip entries that share compressed bytes (David Fifield's overlapping zip bomb: entry a's
// stored data quotes entry b's local header and data), so that their sizes add up to more than
// the file: refused when the archive is opened, before anything is read.
TEST(WeightsIo, zipEntriesMayNotShareBytes) {
  const std::string d = root();
  const std::string data(4096, '\0');
  auto u32 = [](const std::string& s, size_t at) {
    return uint32_t(uint8_t(s[at])) | uint32_t(uint8_t(s[at + 1])) << 8 |
           uint32_t(uint8_t(s[at + 2])) << 16 | uint32_t(uint8_t(s[at + 3])) << 24;
  };
  auto u16 = [](const std::string& s, size_t at) { return uint32_t(uint8_t(s[at])) | uint32_t(uint8_t(s[at + 1])) << 8; };
  const std::string zb = zip_bytes(d, {{"b.npy", data}});
  const size_t cd_b = zb.find("PK\x01\x02"), end_b = zb.find("PK\x05\x06");
  const std::string record_b = zb.substr(0, cd_b);  // b's local header and data
  std::string central_b = zb.substr(cd_b, end_b - cd_b);
  const std::string za = zip_bytes(d, {{"a.npy", record_b}});
  const size_t cd_a = za.find("PK\x01\x02", 30 + u16(za, 26) + u16(za, 28) + record_b.size());
  const size_t end_a = za.find("PK\x05\x06", cd_a);
  const std::string body = za.substr(0, cd_a);
  const uint32_t header_a = 30 + u16(za, 26) + u16(za, 28);  // b's record starts inside a's data
  central_b.replace(42, 4, le(header_a, 4));
  const std::string central = za.substr(cd_a, end_a - cd_a) + central_b;
  const std::string bomb = body + central + "PK\x05\x06" + le(0, 4) + le(2, 2) + le(2, 2) +
                           le(central.size(), 4) + le(body.size(), 4) + le(0, 2);
  ASSERT_TRUE(u32(bomb, 0) == 0x04034b50);
  const std::string path = root() + "/overlap.npz";
  write_file(path, bomb);
  try {
    vit::ZipReader zip(path);
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), "entries overlap")) << e.what();
  }
}

// A 256-byte checkpoint whose metadata describes a large model was built before its tensors
// were looked at (the model's memory is what a hostile file could claim): now the file's
// tensors must hold the parameters the config needs before anything is built.
TEST(WeightsIo, loadModelChecksTheFileBeforeBuilding) {
  const std::string path = root() + "/hollow.safetensors";
  const std::string bytes = vit::serialize_safetensors(
      {}, {{"format", "vit-studio"}, {"vit_config", vit::to_json(vit::preset("vit-b16").config).dump()}});
  write_file(path, bytes);
  ASSERT_TRUE(bytes.size() < 1024);
  try {
    vit::load_model(path);
    FAIL() << "accepted";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(vit_test::starts_with(e.what(), path)) << e.what();
    ASSERT_TRUE(contains(e.what(), "86567656 parameters but the file holds 0")) << e.what();
  }
  // A whole checkpoint still loads.
  auto model = random_model(tiny(3));
  vit::save_checkpoint(root() + "/whole.safetensors", *model, {{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}});
  ASSERT_EQ(vit::count_parameters(*vit::load_model(root() + "/whole.safetensors")),
            vit::count_parameters(*model));
}

TEST(WeightsIo, pthReaderAcceptsTorchSaveLayouts) {
  // Views sharing one storage (offset, strides), a checkpoint dict around the state_dict, and
  // protocol 4 opcodes (FRAME, MEMOIZE, SHORT_BINUNICODE), as newer torch.save files have.
  const std::string six = floats_bytes({0, 1, 2, 3, 4, 5});
  const std::string state = pk_ordered_dict(
      pk_str("a") + pk_tensor("0", 6, 0, {2, 3}, {3, 1}) +
      pk_str("b") + pk_tensor("0", 6, 1, {3}, {2}) +
      pk_str("c") + pk_tensor("1", 2, 0, {2}, {1}, "HalfStorage"));
  const std::string half = std::string("\x00\x3c\x00\x40", 4);  // 1.0, 2.0 in float16
  const std::string body = std::string("}q\x00(", 4) + pk_str("epoch") + pk_int(3) + pk_str("lr") +
                           "G\x3f\xb9\x99\x99\x99\x99\x99\x9a" + pk_str("model") + state + "u";
  std::string p4 = std::string("\x80\x04\x95", 3) + le(0, 8) + body + ".";
  p4.replace(p4.find(pk_str("epoch")), pk_str("epoch").size(), std::string("\x8c\x05") + "epoch\x94");
  for (const std::string& pickle : {pk_file(body), p4}) {
    const std::string path = root() + "/layouts.pth";
    vit::write_zip(path, {{"ckpt/data.pkl", pickle}, {"ckpt/data/0", six}, {"ckpt/data/1", half},
                          {"ckpt/byteorder", "little"}});
    const auto t = vit::load_pth(path);
    ASSERT_EQ(t.size(), size_t(3));
    ASSERT_EQ(t[0].first, std::string("a"));
    ASSERT_TRUE(torch::equal(t[0].second, torch::arange(6, torch::kFloat32).view({2, 3})));
    ASSERT_TRUE(torch::equal(t[1].second, torch::tensor({1.f, 3.f, 5.f})));
    ASSERT_TRUE(t[1].second.is_contiguous());
    ASSERT_TRUE(torch::equal(t[2].second, torch::tensor({1.f, 2.f}).to(torch::kHalf)));
  }
}

TEST(WeightsIo, npzReadsNumpyLayouts) {
  // Fortran order, npy format 2, 1-byte types, a 0-d array.
  const std::string data = floats_bytes({0, 1, 2, 3, 4, 5});  // column-major (2, 3)
  const std::string path = root() + "/layouts.npz";
  vit::write_zip(path, {{"f.npy", npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", data)},
                        {"v2.npy", npy("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", "abc", 2)},
                        {"s.npy", npy("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", le(7, 8))}});
  const auto t = vit::load_npz(path);
  ASSERT_EQ(t.size(), size_t(3));
  ASSERT_TRUE(torch::equal(t[0].second, torch::tensor({0.f, 2.f, 4.f, 1.f, 3.f, 5.f}).view({2, 3})));
  ASSERT_TRUE(torch::equal(t[1].second, torch::tensor({97, 98, 99}, torch::kUInt8)));
  ASSERT_EQ(t[2].second.dim(), int64_t(0));
  ASSERT_EQ(t[2].second.item<int64_t>(), int64_t(7));
  // What save_npz writes, load_npz reads back bit for bit.
  vit::NamedTensors in = {{"x", torch::randn({3, 4})}, {"y", torch::tensor({true, false})}};
  vit::save_npz(path, in, /*compressed=*/true);
  const auto back = vit::load_npz(path);
  ASSERT_TRUE(same(back[0].second, in[0].second) && same(back[1].second, in[1].second));
}

// ---- fine-tuning ------------------------------------------------------------------------------

TEST(WeightsIo, posEmbedResizeKeepsClassTokenAndIdentity) {
  torch::manual_seed(3);
  const auto pos = torch::randn({1, 1 + 16, 8});
  // At the original size the bicubic resample reproduces the input.
  const auto same_size = vit::resize_pos_embed(pos, 1, 4);
  ASSERT_TRUE(same(same_size.narrow(1, 0, 1), pos.narrow(1, 0, 1)));
  const double diff = (same_size - pos).abs().max().item<double>();
  ASSERT_TRUE(diff < 1e-6) << diff;
  for (int grid : {2, 3, 7, 14}) {
    const auto r = vit::resize_pos_embed(pos, 1, grid);
    ASSERT_EQ(r.sizes().vec(), (std::vector<int64_t>{1, 1 + grid * grid, 8}));
    ASSERT_TRUE(same(r.narrow(1, 0, 1), pos.narrow(1, 0, 1)));  // class token kept bit for bit
    ASSERT_TRUE(std::isfinite(r.abs().max().item<double>()));
  }
  // A constant grid stays constant; without a prefix token every row is grid.
  const auto flat = torch::full({1, 9, 4}, 0.75f);
  ASSERT_TRUE((vit::resize_pos_embed(flat, 0, 5) - 0.75f).abs().max().item<double>() < 1e-6);
  // A smooth ramp stays a ramp (monotone along a row) after upsampling.
  const auto ramp = torch::arange(4, torch::kFloat32).repeat({4}).view({1, 16, 1});
  const auto up = vit::resize_pos_embed(ramp, 0, 8).view({8, 8});
  ASSERT_TRUE((up.narrow(1, 1, 7) - up.narrow(1, 0, 7)).min().item<float>() >= 0);
}

TEST(WeightsIo, loadPretrainedAdaptsHeadGridAndChannels) {
  const vit::ViTConfig src = tiny(5);
  auto pretrained = random_model(src);
  const std::string path = root() + "/pretrained.safetensors";
  vit::save_checkpoint(path, *pretrained, {{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}});
  const auto w = vit::import_weights(path);

  vit::ViTConfig target = src;
  target.num_classes = 7;
  target.image_size = 12;  // 4x4 -> 6x6 patch grid
  vit::VisionTransformer model(target);
  const auto r = vit::load_pretrained(*model, w);
  ASSERT_TRUE(r.new_head && r.pos_embed_resized && !r.channels_adapted);
  const auto source = state(*pretrained);
  for (const auto& [name, t] : state(*model)) {
    if (vit::is_head_parameter(name) || name == "pos_embed") continue;
    const auto it = std::find_if(source.begin(), source.end(), [&](const auto& p) { return p.first == name; });
    ASSERT_TRUE(same(t, it->second)) << name;
  }
  ASSERT_TRUE(same(model->pos_embed.narrow(1, 0, 1), pretrained->pos_embed.narrow(1, 0, 1)));

  // Grayscale from RGB: the summed kernels see a gray image as the RGB model sees it in colour.
  vit::ViTConfig gray = src;
  gray.in_channels = 1;
  vit::VisionTransformer gray_model(gray);
  ASSERT_TRUE(vit::load_pretrained(*gray_model, w).channels_adapted);
  gray_model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 1, 8, 8});
  const double diff = (gray_model->forward(x) - pretrained->forward(x.repeat({1, 3, 1, 1}))).abs().max().item<double>();
  ASSERT_TRUE(diff < 1e-4) << diff;

  // What fine-tuning cannot change: patch size, width.
  for (int which = 0; which < 2; ++which) {
    vit::ViTConfig bad = src;
    if (which == 0) bad.patch_size = 4;
    else bad.dim = 32, bad.mlp_hidden = 64;
    vit::VisionTransformer m(bad);
    try {
      vit::load_pretrained(*m, w);
      FAIL() << "accepted";
    } catch (const std::runtime_error& e) {
      ASSERT_TRUE(contains(e.what(), which == 0 ? "patch embeddings are not resampled"
                                                : "in the file"))
          << e.what();
      ASSERT_TRUE(contains(e.what(), "does not fit the model")) << e.what();
    }
  }
}

TEST(WeightsIo, paramGroupsApplyLayerDecay) {
  auto model = random_model(tiny(3));
  const auto plain = vit::param_groups(*model, 0.05, 1.0);
  ASSERT_EQ(plain.size(), size_t(2));
  ASSERT_DOUBLE_EQ(plain[0].weight_decay, 0.05);
  ASSERT_DOUBLE_EQ(plain[1].weight_decay, 0.0);
  ASSERT_EQ(plain[0].names.front(), std::string("patch_embed.proj.weight"));
  ASSERT_TRUE(std::find(plain[1].names.begin(), plain[1].names.end(), "pos_embed") != plain[1].names.end());

  const auto layered = vit::param_groups(*model, 0.05, 0.5);  // depth 2: layers 0..3
  std::map<std::string, double> scale;
  size_t count = 0;
  for (const auto& g : layered) {
    for (const auto& n : g.names) scale[n] = g.lr_scale;
    count += g.params.size();
  }
  ASSERT_EQ(count, model->parameters().size());
  ASSERT_DOUBLE_EQ(scale.at("cls_token"), 0.125);
  ASSERT_DOUBLE_EQ(scale.at("patch_embed.proj.weight"), 0.125);
  ASSERT_DOUBLE_EQ(scale.at("blocks.0.attn.qkv.weight"), 0.25);
  ASSERT_DOUBLE_EQ(scale.at("blocks.1.mlp.fc2.bias"), 0.5);
  ASSERT_DOUBLE_EQ(scale.at("norm.weight"), 1.0);
  ASSERT_DOUBLE_EQ(scale.at("head.weight"), 1.0);

  vit::freeze_backbone(*model);
  const auto head_only = vit::param_groups(*model, 0.05, 0.5);
  ASSERT_EQ(head_only.size(), size_t(2));
  ASSERT_EQ(head_only[0].names, std::vector<std::string>{"head.weight"});
  ASSERT_EQ(head_only[1].names, std::vector<std::string>{"head.bias"});
}

struct FineTuneRow : vit_test::Row {
  bool freeze;
  double layer_decay;
};

class FreezeBackboneKeepsBackboneBitIdentical : public testing::TestWithParam<FineTuneRow> {};

TEST_P(FreezeBackboneKeepsBackboneBitIdentical, row) {
  const bool freeze = GetParam().freeze;
  const double layer_decay = GetParam().layer_decay;
  // Pretrained on 3 classes, fine-tuned on a 2-class data set: a new head, the file's mean/std.
  vit::ViTConfig c = tiny(3);
  c.in_channels = 1;
  auto pretrained = random_model(c);
  const std::string init = root() + "/init-" + std::to_string(freeze) + ".safetensors";
  vit::save_checkpoint(init, *pretrained, {{0.3f}, {0.2f}});

  vit::DataSplits data;
  torch::manual_seed(1);
  data.train.name = "bars";
  data.train.classes = {"left", "right"};
  data.train.labels = torch::randint(0, 2, {48}, torch::kInt64);
  data.train.images = torch::randint(0, 255, {48, 1, 8, 8}, torch::kInt64).to(torch::kUInt8).contiguous();
  vit::TrainConfig t;
  t.dataset = "bars";
  t.epochs = 1;
  t.batch_size = 8;
  t.lr = 1e-2;
  t.max_steps = 3;
  t.log_every = 1;
  t.seed = 5;
  t.init_weights = init;
  t.freeze_backbone = freeze;
  t.layer_decay = layer_decay;
  vit::ViTConfig model_config = c;
  model_config.num_classes = 2;
  const std::string run = root() + "/finetune-" + std::to_string(freeze);
  const auto result = vit::train(model_config, t, data, run);
  ASSERT_EQ(result.stop_reason, std::string("max_steps"));

  const auto before = vit::load_safetensors(init);
  const auto after = vit::load_safetensors(run + "/checkpoints/last.safetensors");
  int backbone = 0, changed = 0;
  for (const auto& [name, tensor] : after.tensors) {
    if (vit::is_head_parameter(name)) continue;
    ++backbone;
    if (!same(tensor, *before.find(name))) ++changed;
  }
  ASSERT_TRUE(backbone > 20);
  ASSERT_EQ(changed, freeze ? 0 : backbone);
  // The head trained: it differs from the fresh head the trainer started with.
  torch::manual_seed(t.seed);
  vit::VisionTransformer fresh(model_config);
  ASSERT_FALSE(same(*after.find("head.weight"), fresh->head->weight.detach()));
  const auto run_info = vit::read_run(run);
  ASSERT_EQ(run_info.normalization.mean, std::vector<float>{0.3f});  // the checkpoint's
  ASSERT_EQ(run_info.normalization.std, std::vector<float>{0.2f});
  ASSERT_EQ(run_info.train.init_weights, init);
  ASSERT_EQ(run_info.train.freeze_backbone, freeze);
  ASSERT_DOUBLE_EQ(run_info.train.layer_decay, layer_decay);
}

INSTANTIATE_TEST_SUITE_P(WeightsIo, FreezeBackboneKeepsBackboneBitIdentical,
                         testing::ValuesIn(std::vector<FineTuneRow>{
    {{"frozen backbone"}, true, 1.0},
    {{"layer decay 0.6, all trained"}, false, 0.6},
}), vit_test::RowName());

// A safetensors header length whose low byte is 0x80 (e.g. 384 bytes) starts the file with the
// byte a pickle's PROTO opcode has; found when CI's temp path made best.safetensors' header so
// long. The file must still read as safetensors.
TEST(WeightsIo, safetensorsHeaderLengthEndingIn0x80IsNotAPickle) {
  const std::string original = read_file(kFixtures + "weights.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(original[size_t(i)]);
  std::string header = original.substr(8, n);
  uint64_t padded = n;
  while ((padded & 0xff) != 0x80) ++padded;
  header.append(padded - n, ' ');  // trailing spaces are allowed after the JSON object
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((padded >> (8 * i)) & 0xff);
  bytes += header + original.substr(8 + n);
  ASSERT_EQ(static_cast<unsigned char>(bytes[0]), 0x80);
  const std::string path = root() + "/low-byte-0x80.safetensors";
  write_file(path, bytes);
  vit::ImportOptions options;
  options.heads = 4;
  const auto w = vit::import_weights(path, options);
  const auto reference = vit::import_weights(kFixtures + "weights.safetensors", options);
  ASSERT_EQ(compare_sets(w.tensors, reference.tensors), "");
}

// ---- the command line ---------------------------------------------------------------------------

TEST(WeightsIo, cliImportExportTrain) {
  ASSERT_FALSE(vit_binary().empty()) << "VIT_BINARY unset";
  const std::string d = root();
  const std::string npz = kFixtures + "weights.npz";
  auto r = run_vit({"import", npz, "--out", d + "/imported", "--json"});
  ASSERT_TRUE(r.code == 0) << r.err;
  const auto o = last_json_line(r.out);
  ASSERT_EQ(o.at("naming").get<std::string>(), "google-npz");
  ASSERT_EQ(o.at("config").at("heads").get<int>(), 4);
  ASSERT_EQ(o.at("params").get<int64_t>(), 11650);
  ASSERT_TRUE(fs::exists(d + "/imported/checkpoints/best.safetensors"));
  ASSERT_TRUE(fs::exists(d + "/imported/config.json"));

  r = run_vit({"import", kFixtures + "weights.safetensors", "--out", d + "/x"});
  ASSERT_EQ(r.code, 2);
  ASSERT_TRUE(contains(r.err, "give --heads N")) << r.err;
  write_file(root() + "/hostile.pth", "PK\x03\x04 not really a zip");
  r = run_vit({"import", d + "/hostile.pth", "--out", d + "/y"});
  ASSERT_EQ(r.code, 1);
  ASSERT_TRUE(vit_test::starts_with(r.err, "vit: error: " + d + "/hostile.pth")) << r.err;

  r = run_vit({"export", "--run", d + "/imported", "--out", d + "/out.safetensors", "--json"});
  ASSERT_TRUE(r.code == 0) << r.err;
  ASSERT_EQ(last_json_line(r.out).at("timm_model_args").at("embed_dim").get<int>(), 24);
  const auto exported = vit::load_safetensors(root() + "/out.safetensors");
  const auto parity = vit::import_weights(kFixtures + "weights.safetensors", {4});
  ASSERT_EQ(compare_sets(exported.tensors, parity.tensors), "");
  r = run_vit({"eval", "--run", d + "/imported"});
  ASSERT_EQ(r.code, 2);
  ASSERT_TRUE(contains(r.err, "give --dataset")) << r.err;

  write_image_folder(root() + "/images");
  r = run_vit({"train", "--init", d + "/imported", "--dataset", "folder:" + d + "/images",
               "--batch-size", "4", "--epochs", "1", "--max-steps", "2", "--freeze-backbone",
               "--threads", "1", "--out", d + "/finetuned", "--json"});
  ASSERT_TRUE(r.code == 0) << r.err;
  ASSERT_EQ(last_json_line(r.out).at("stop_reason").get<std::string>(), "max_steps");
  ASSERT_TRUE(contains(r.err, "new classification head for 2 classes")) << r.err;
  const auto info = vit::read_run(root() + "/finetuned");
  ASSERT_EQ(info.model.dim, 24);
  ASSERT_EQ(info.model.num_classes, 2);
  ASSERT_EQ(info.normalization.mean, (std::vector<float>{0.5f, 0.5f, 0.5f}));

  r = run_vit({"train", "--init", d + "/imported", "--preset", "vit-b16"});
  ASSERT_EQ(r.code, 2);
  r = run_vit(
      {"train", "--init", d + "/imported", "--dim", "32", "--dataset", "folder:" + d + "/images"});
  ASSERT_EQ(r.code, 2);
  ASSERT_TRUE(contains(r.err, "keeps the architecture")) << r.err;
  r = run_vit({"train", "--freeze-backbone", "--dataset", "folder:" + d + "/images"});
  ASSERT_EQ(r.code, 2);
  ASSERT_TRUE(contains(r.err, "freeze_backbone needs init_weights")) << r.err;
}

// bf16 inference (weights converted to bf16: `vit summary --benchmark --precision bf16`, the
// batch-1 bf16 path of issue 16) keeps the top-1 class of every fixture input (the argmax of
// make_fixture.py's float64 logits, as the float model does), with logits within bf16's rounding
// of the reference (the fixture has two inputs, so the logits carry most of the check).
TEST(ParityWithPythonReference, bfloat16ModelKeepsTheTop1) {
  vit::ImportOptions options;
  options.heads = 4;  // not in the file (see ParityRow)
  const auto w = vit::import_weights(kFixtures + "weights.safetensors", options);
  vit::VisionTransformer model(w.config);
  vit::load_pretrained(*model, w);
  model->eval();
  const auto expected = vit::load_safetensors(kFixtures + "expected.safetensors");
  const auto input = *expected.find("input");
  const auto want = expected.find("logits")->argmax(1);
  torch::NoGradGuard no_grad;
  ASSERT_TRUE(torch::equal(model->forward(input).argmax(1), want));
  model->to(torch::kBFloat16);
  const auto logits = model->forward(input.to(torch::kBFloat16));
  ASSERT_EQ(logits.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(logits.argmax(1), want)) << logits.argmax(1) << want;
  const auto reference = *expected.find("logits");
  const double diff = (logits.to(torch::kDouble) - reference).abs().max().item<double>();
  EXPECT_LT(diff, 0.03 * reference.abs().max().item<double>());
  std::printf("bf16: max |logits - Python reference| = %.3g (largest logit %.3g)\n", diff,
              reference.abs().max().item<double>());
}
