// The model flags shared by `vit summary`, `vit train` and friends: --preset and one flag per
// field of the model's schema (vit_schema(), app/schema_flags.h). Torch-free so the CLI parser
// compiles fast.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <set>
#include <stdexcept>
#include <string>

#include "vit_config.h"

namespace vit::cli {

// Thrown for bad command-line usage: main prints the message on one line and exits with code 2.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

template <class C>
class SchemaFlags;

struct ModelFlags {
  ModelFlags();
  ~ModelFlags();
  std::string preset = kDefaultPreset;
  CLI::Option* preset_option = nullptr;
  std::unique_ptr<SchemaFlags<ViTConfig>> fields;
  bool preset_given() const;
  std::set<std::string> given() const;  // model fields given as flags
};

void add_model_flags(CLI::App& command, ModelFlags& flags);
// The preset with the given fields applied; --dim alone keeps the preset's MLP ratio. Throws
// UsageError for an unknown preset or an invalid result (the message names the field).
ViTConfig resolve(const ModelFlags& flags);
// The given fields applied to `base`, unvalidated (for a run being continued or fine-tuned).
ViTConfig apply_model_flags(const ModelFlags& flags, ViTConfig base);

// A core message about a field, prefixed with the flag that set it when the user gave one
// ("--erase: erase must be in [0, 1] ..."), so the user sees which argument to change.
std::string with_flag(const ConfigError& error, const std::set<std::string>& given);

}  // namespace vit::cli
