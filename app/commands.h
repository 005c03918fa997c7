// Subcommands of the `vit` CLI. Each adds itself to the app; when chosen, it hands main the action
// to run after parsing (so parse errors and run errors are reported the same way).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

#include "model_flags.h"

namespace vit::cli {

using SetAction = std::function<void(std::function<int()>)>;

void add_summary_command(CLI::App& app, SetAction set_action);
void add_train_command(CLI::App& app, SetAction set_action);  // train and eval

}  // namespace vit::cli
