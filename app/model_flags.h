// The model flags shared by `vit summary`, `vit train` and friends: --preset and per-field
// overrides. Torch-free so the CLI parser compiles fast.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "vit_config.h"

namespace vit::cli {

struct ModelFlags {
  std::string preset = kDefaultPreset;
  std::optional<int> image_size, patch_size, dim, depth, heads, classes, channels, mlp_hidden;
  std::optional<double> dropout, attn_dropout, drop_path;
  std::optional<std::string> pool;
};

void add_model_flags(CLI::App& command, ModelFlags& flags);
// The preset with the overrides applied. Throws std::invalid_argument for an unknown preset or an
// invalid result (the message names the field).
ViTConfig resolve(const ModelFlags& flags);

// Thrown for bad command-line usage: main prints the message on one line and exits with code 2.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

}  // namespace vit::cli
