#include "config_json.h"

#include <stdexcept>

namespace vit {

nlohmann::json to_json(const ViTConfig& c) {
  return {
      {"image_size", c.image_size},   {"patch_size", c.patch_size},
      {"in_channels", c.in_channels}, {"num_classes", c.num_classes},
      {"dim", c.dim},                 {"depth", c.depth},
      {"heads", c.heads},             {"mlp_hidden", c.mlp_hidden},
      {"mlp_act_after_fc2", c.mlp_act_after_fc2},
      {"qkv_bias", c.qkv_bias},       {"dropout", c.dropout},
      {"attn_dropout", c.attn_dropout}, {"drop_path", c.drop_path},
      {"class_token", c.class_token}, {"pool", to_string(c.pool)},
      {"ln_eps", c.ln_eps},           {"head_hidden", c.head_hidden},
      {"head_dropout", c.head_dropout},
  };
}

namespace {

template <typename T>
void read(const nlohmann::json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end()) return;
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(std::string("config field '") + key + "' has the wrong type: " +
                                it->dump());
  }
}

}  // namespace

ViTConfig config_from_json(const nlohmann::json& j, const ViTConfig& base) {
  if (!j.is_object()) throw std::invalid_argument("a ViT config must be a JSON object");
  const auto known = to_json(base);
  for (const auto& [key, value] : j.items())
    if (!known.contains(key))
      throw std::invalid_argument("unknown config field '" + key + "'");
  ViTConfig c = base;
  read(j, "image_size", c.image_size);
  read(j, "patch_size", c.patch_size);
  read(j, "in_channels", c.in_channels);
  read(j, "num_classes", c.num_classes);
  read(j, "dim", c.dim);
  read(j, "depth", c.depth);
  read(j, "heads", c.heads);
  read(j, "mlp_hidden", c.mlp_hidden);
  read(j, "mlp_act_after_fc2", c.mlp_act_after_fc2);
  read(j, "qkv_bias", c.qkv_bias);
  read(j, "dropout", c.dropout);
  read(j, "attn_dropout", c.attn_dropout);
  read(j, "drop_path", c.drop_path);
  read(j, "class_token", c.class_token);
  read(j, "ln_eps", c.ln_eps);
  read(j, "head_hidden", c.head_hidden);
  read(j, "head_dropout", c.head_dropout);
  std::string pool = to_string(c.pool);
  read(j, "pool", pool);
  auto parsed = pool_from_string(pool);
  if (!parsed)
    throw std::invalid_argument("config field 'pool' must be token, mean or flatten (got '" +
                                pool + "')");
  c.pool = *parsed;
  return c;
}

}  // namespace vit
