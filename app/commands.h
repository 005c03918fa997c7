// Subcommands of the `vit` CLI. Each adds itself to the app; when chosen, it hands main the action
// to run after parsing (so parse errors and run errors are reported the same way).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "model_flags.h"

namespace vit::cli {

using SetAction = std::function<void(std::function<int()>)>;

// The command line as main() received it (the launcher starts the ranks with it).
void set_program_arguments(int argc, char** argv);
const std::vector<std::string>& program_arguments();

void add_summary_command(CLI::App& app, SetAction set_action);
void add_train_command(CLI::App& app, SetAction set_action);  // train and eval
void add_predict_command(CLI::App& app, SetAction set_action);  // predict and attention
void add_weights_commands(CLI::App& app, SetAction set_action);  // import and export

// The model `vit train --init FILE` fine-tunes: the file's architecture, with the image size,
// channels, classes and regularization from `flags`; other differing flags are a UsageError.
ViTConfig pretrained_model_config(const std::string& init, const ModelFlags& flags);

}  // namespace vit::cli
