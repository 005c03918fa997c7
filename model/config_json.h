// ViTConfig <-> JSON, the form config.json, the CLI's --json output and checkpoint metadata use.
#pragma once

#include <nlohmann/json.hpp>

#include "vit_config.h"

namespace vit {

nlohmann::json to_json(const ViTConfig& config);
// Fields missing from `j` keep the values of `base`; unknown fields and wrong types throw
// std::invalid_argument naming the field. The result is not validated (call check()).
ViTConfig config_from_json(const nlohmann::json& j, const ViTConfig& base = ViTConfig{});

}  // namespace vit
