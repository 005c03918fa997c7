#include "config_json.h"

namespace vit {

nlohmann::json to_json(const ViTConfig& c) { return to_json(vit_schema(), c); }

ViTConfig config_from_json(const nlohmann::json& j, const ViTConfig& base) {
  if (!j.is_object()) throw std::invalid_argument("a ViT config must be a JSON object");
  return from_json(vit_schema(), j, base, /*strict=*/true);
}

}  // namespace vit
