// `vit`: the headless ViT Studio command line. Exit codes: 0 success, 1 runtime failure,
// 2 bad usage (unknown flag, invalid value); errors are one line on stderr.
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.h"
#include "runtime.h"

int main(int argc, char** argv) {
  // A batch program: spinning OpenMP threads are fastest here (see runtime.h for the figures).
  vit::relaunch_with_openmp_policy(argv, "ACTIVE");
  vit::cli::set_program_arguments(argc, argv);
  CLI::App app{"ViT Studio command line: inspect, train and use Vision Transformers", "vit"};
  app.set_version_flag("--version", std::string("vit ") + VIT_VERSION);
  app.require_subcommand(1);
  std::function<int()> action;
  auto set_action = [&action](std::function<int()> a) { action = std::move(a); };
  vit::cli::add_summary_command(app, set_action);
  vit::cli::add_train_command(app, set_action);
  vit::cli::add_predict_command(app, set_action);
  vit::cli::add_weights_commands(app, set_action);

  if (argc > 1 && argv[1][0] != '-') {
    try {
      (void)app.get_subcommand(argv[1]);  // throws for an unknown name (CLI11 2.4: [[nodiscard]])
    } catch (const CLI::OptionNotFound&) {
      std::string known;
      for (const auto* sub : app.get_subcommands({})) known += " " + sub->get_name();
      std::cerr << "vit: unknown command '" << argv[1] << "'; commands:" << known << std::endl;
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "vit: " << e.what() << " (see vit --help)" << std::endl;
    return 2;
  } catch (const vit::cli::UsageError& e) {  // thrown by callbacks that validate early
    std::cerr << "vit: " << e.what() << std::endl;
    return 2;
  }
  try {
    return action ? action() : 0;
  } catch (const vit::cli::UsageError& e) {
    std::cerr << "vit: " << e.what() << std::endl;
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "vit: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "vit: error: " << e.what() << std::endl;
    return 1;
  }
}
