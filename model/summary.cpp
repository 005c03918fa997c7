#include "summary.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "config_json.h"

namespace vit {

namespace {

struct Builder {
  std::vector<LayerSummary> rows;
  void add(std::string name, std::string type, std::vector<int64_t> shape, int64_t params,
           int64_t macs) {
    rows.push_back({std::move(name), std::move(type), std::move(shape), params, macs});
  }
};

// Counts saturate at INT64_MAX instead of overflowing (undefined behaviour): check() accepts
// configs far beyond any real model (4096 x 4096 images in 1-pixel patches, dim 16384, 256
// blocks: over 2^63 MACs), whose summary then shows 9,223,372,036,854,775,807. Every operand is
// non-negative.
int64_t mul(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
template <class... Rest>
int64_t mul(int64_t a, int64_t b, Rest... rest) {
  return mul(mul(a, b), rest...);
}
int64_t add(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

int64_t linear_params(int64_t in, int64_t out, bool bias = true) {
  return add(mul(in, out), bias ? out : 0);
}

// The tokens a training step computes: the class token (if any) and the patches patch dropout keeps.
int64_t training_tokens(const ViTConfig& c) { return c.num_tokens() - c.num_patches() + c.training_patches(); }

// The layers of `c` on T tokens: num_tokens() for the summary; fewer for a training step with
// patch dropout (the patch embedding still sees every patch: tokens are dropped after it).
std::vector<LayerSummary> layer_rows(const ViTConfig& c, int64_t T) {
  const int64_t D = c.dim, N = c.num_patches(), H = c.heads;
  const int64_t hd = c.head_dim(), P = c.patch_size, C = c.in_channels, G = c.grid();
  const int64_t hidden = c.mlp_hidden;
  const int64_t kNormMacs = 5;  // fvcore: LayerNorm with affine = 5 ops per element
  Builder b;

  b.add("patch_embed.proj", "Conv2d", {D, G, G}, linear_params(C * P * P, D), mul(N, D, C, P, P));
  if (c.class_token) b.add("cls_token", "ClassToken", {T, D}, D, 0);
  b.add("pos_embed", "PosEmbed", {T, D}, mul(T, D), 0);
  b.add("pos_drop", "Dropout", {T, D}, 0, 0);
  for (int i = 0; i < c.depth; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    b.add(p + "norm1", "LayerNorm", {T, D}, 2 * D, mul(kNormMacs, T, D));
    b.add(p + "attn.qkv", "Linear", {T, 3 * D}, linear_params(D, 3 * D, c.qkv_bias), mul(T, D, 3, D));
    b.add(p + "attn.qk", "MatMul", {H, T, T}, 0, mul(H, T, T, hd));
    b.add(p + "attn.softmax", "Softmax", {H, T, T}, 0, 0);
    b.add(p + "attn.av", "MatMul", {T, D}, 0, mul(H, T, T, hd));
    b.add(p + "attn.proj", "Linear", {T, D}, linear_params(D, D), mul(T, D, D));
    b.add(p + "norm2", "LayerNorm", {T, D}, 2 * D, mul(kNormMacs, T, D));
    b.add(p + "mlp.fc1", "Linear", {T, hidden}, linear_params(D, hidden), mul(T, D, hidden));
    b.add(p + "mlp.act", "GELU", {T, hidden}, 0, 0);
    b.add(p + "mlp.fc2", "Linear", {T, D}, linear_params(hidden, D), mul(T, hidden, D));
  }
  switch (c.pool) {
    case Pool::Token:
      b.add("norm", "LayerNorm", {T, D}, 2 * D, mul(kNormMacs, T, D));
      b.add("pool", "ClassTokenSelect", {D}, 0, 0);
      break;
    case Pool::Mean:
      b.add("pool", "MeanPool", {D}, 0, 0);
      b.add("fc_norm", "LayerNorm", {D}, 2 * D, mul(kNormMacs, D));
      break;
    case Pool::Flatten:
      b.add("norm", "LayerNorm", {T, D}, 2 * D, mul(kNormMacs, T, D));
      b.add("pool", "Flatten", {mul(T, D)}, 0, 0);
      break;
  }
  // Not c.pooled_dim(): T x D of a flatten head can exceed an int for configs check() accepts.
  int64_t features = c.pool == Pool::Flatten ? mul(T, D) : D;
  for (size_t i = 0; i < c.head_hidden.size(); ++i) {
    const int64_t out = c.head_hidden[i];
    b.add("head_mlp." + std::to_string(i), "Linear+GELU", {out}, linear_params(features, out),
          mul(features, out));
    features = out;
  }
  b.add("head", "Linear", {c.num_classes}, linear_params(features, c.num_classes),
        mul(features, c.num_classes));
  return std::move(b.rows);
}

}  // namespace

ModelSummary summarize(const ViTConfig& c) {
  check(c);
  ModelSummary s;
  s.config = c;
  s.layers = layer_rows(c, c.num_tokens());
  for (const auto& row : s.layers) {
    s.params = add(s.params, row.params);
    s.macs = add(s.macs, row.macs);
  }
  s.trainable_params = s.params;
  s.flops = mul(2, s.macs);
  s.weight_mib = static_cast<double>(s.params) * 4.0 / (1024.0 * 1024.0);
  return s;
}

int64_t training_macs(const ViTConfig& c, bool patch_drop) {
  check(c);
  const int64_t T = patch_drop ? training_tokens(c) : c.num_tokens();
  int64_t forward = 0, patch_embed = 0;
  for (const auto& row : layer_rows(c, T)) {
    forward = add(forward, row.macs);
    if (row.name == "patch_embed.proj") patch_embed = row.macs;
  }
  const int64_t three = mul(3, forward);
  return three == INT64_MAX ? three : three - patch_embed;
}

nlohmann::json to_json(const ModelSummary& s) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& row : s.layers)
    layers.push_back({{"name", row.name},
                      {"type", row.type},
                      {"output_shape", row.output_shape},
                      {"params", row.params},
                      {"macs", row.macs}});
  const auto& c = s.config;
  return {{"config", to_json(c)},
          {"input_shape", {c.in_channels, c.image_size, c.image_size}},
          {"num_patches", c.num_patches()},
          {"num_tokens", c.num_tokens()},
          {"training_tokens", training_tokens(c)},
          {"training_macs", training_macs(c)},
          {"params", s.params},
          {"trainable_params", s.trainable_params},
          {"macs", s.macs},
          {"flops", s.flops},
          {"weight_mib", s.weight_mib},
          {"layers", std::move(layers)}};
}

std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string si(double value) {
  const char* units[] = {"", " K", " M", " G", " T"};
  int u = 0;
  while (value >= 1000.0 && u < 4) {
    value /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.2f%s", value, units[u]);
  return buf;
}

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + ")";
}

}  // namespace

std::string format_table(const ModelSummary& s) {
  size_t name_w = 5, type_w = 4, shape_w = 12;
  for (const auto& row : s.layers) {
    name_w = std::max(name_w, row.name.size());
    type_w = std::max(type_w, row.type.size());
    shape_w = std::max(shape_w, shape_string(row.output_shape).size());
  }
  std::ostringstream out;
  auto line = [&](const std::string& a, const std::string& b, const std::string& c,
                  const std::string& d, const std::string& e) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%-*s  %-*s  %-*s  %14s  %16s\n", int(name_w), a.c_str(),
                  int(type_w), b.c_str(), int(shape_w), c.c_str(), d.c_str(), e.c_str());
    out << buf;
  };
  const std::string rule(name_w + type_w + shape_w + 14 + 16 + 8, '-');
  const auto& c = s.config;
  out << "Input: " << c.in_channels << "x" << c.image_size << "x" << c.image_size << ", "
      << c.num_patches() << " patches of " << c.patch_size << "x" << c.patch_size << ", "
      << c.num_tokens() << " tokens of dim " << c.dim;
  if (c.training_patches() < c.num_patches())
    out << " (training steps keep " << c.training_patches() << " of the patches: patch_drop "
        << c.patch_drop << ")";
  out << "\n" << rule << "\n";
  line("Layer", "Type", "Output shape", "Params", "MACs");
  out << rule << "\n";
  for (const auto& row : s.layers)
    line(row.name, row.type, shape_string(row.output_shape), with_commas(row.params),
         with_commas(row.macs));
  out << rule << "\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.2f MiB", s.weight_mib);
  out << "Total params:      " << with_commas(s.params) << " (" << buf << " as fp32)\n"
      << "Trainable params:  " << with_commas(s.trainable_params) << "\n"
      << "MACs per image:    " << with_commas(s.macs) << " (" << si(double(s.macs)) << ")\n"
      << "FLOPs per image:   " << with_commas(s.flops) << " (" << si(double(s.flops)) << ")\n";
  const int64_t train = training_macs(c);
  const double train_flops = train == INT64_MAX ? double(train) : 2.0 * double(train);
  out << "Training FLOPs:    " << si(train_flops) << " per image per step (forward and backward"
      << (c.training_patches() < c.num_patches() ? ", on the patches a step keeps" : "") << ")\n";
  return out.str();
}

}  // namespace vit
