// `vit train` and `vit eval`: headless training with a progress bar, and evaluation of a run.
#include <torch/types.h>  // torch before anything that might pull Qt-like macros

#include "commands.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "datasets.h"
#include "run_dir.h"
#include "runtime.h"
#include "schema_flags.h"
#include "trainer.h"

namespace vit::cli {

namespace {

std::atomic<int> g_interrupts{0};
extern "C" void on_sigint(int) { g_interrupts.fetch_add(1); }

std::string duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

struct TrainOptions {
  ModelFlags model;
  SchemaFlags<TrainConfig> train;
  std::string augment = "default";
  CLI::Option* augment_option = nullptr;
  std::string out, resume;
  bool json = false;
  std::string parallel;  // the older spelling of --data-parallel: data | ops
};

AugmentConfig augmentation(const std::string& name, const ViTConfig& model) {
  try {
    return augmentation_preset(name, model.image_size);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--augment: ") + e.what());
  }
}

void print_progress(const StepStats& s, bool tty) {
  const int width = 24;
  const double frac = s.total_steps ? double(s.step) / s.total_steps : 0.0;
  const int filled = int(frac * width);
  char line[256];
  std::snprintf(line, sizeof line,
                "epoch %d step %lld/%lld [%s%s] loss %.4f acc %.3f lr %.2e %.0f img/s ETA %s",
                s.epoch + 1, static_cast<long long>(s.step), static_cast<long long>(s.total_steps),
                std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), s.loss,
                s.accuracy, s.lr, s.images_per_second, duration(s.eta_seconds).c_str());
  if (tty)
    std::fprintf(stderr, "\r%s\033[K", line);
  else
    std::fprintf(stderr, "%s\n", line);
}

// The settings of a run from the command line: the preset (or the pretrained weights' model)
// with the given flags, then the core decides what a continued run may change (prepare_run).
PreparedRun prepare(const TrainOptions& o, std::set<std::string>* given_model) {
  const bool resume = !o.resume.empty();
  *given_model = o.model.given();
  std::set<std::string> given_train = o.train.given();
  TrainConfig train;
  ViTConfig model;
  if (resume) {
    if (o.model.preset_given())
      throw UsageError("--preset cannot be combined with --resume: a continued run keeps its model");
    model = apply_model_flags(o.model, ViTConfig{});  // only the given fields are compared
  } else if (!o.train.given("init_weights")) {
    model = resolve(o.model);
  } else {
    TrainConfig t;
    o.train.apply(t);
    model = pretrained_model_config(t.init_weights, o.model);
  }
  // The augmentation preset fills the augmentation fields; flags such as --crop override it.
  if (!resume || o.augment_option->count() > 0) {
    train.augment = augmentation(o.augment, model);
    if (resume)
      for (const char* f : {"hflip", "rotation", "zoom", "translate", "crop", "erase"}) given_train.insert(f);
  }
  o.train.apply(train);
  if (!o.parallel.empty()) {
    train.data_parallel = o.parallel == "data";
    given_train.insert("data_parallel");
  }
  if (auto errors = validate(train); !errors.empty())
    throw UsageError(with_flag(errors.front(), given_train));

  RunRequest request;
  request.model = model;
  request.train = train;
  request.given = *given_model;
  request.given.insert(given_train.begin(), given_train.end());
  request.resume_dir = o.resume;
  request.out_dir = o.out;
  request.runs_root = "runs";
  request.name = o.train.given("init_weights") ? "finetune" : o.model.preset;
  try {
    return prepare_run(request);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

int run_train(const TrainOptions& o) {
  std::set<std::string> given_model;
  PreparedRun run = prepare(o, &given_model);
  const RuntimeInfo runtime = configure_runtime(run.train.threads);
  if (!runtime.warning.empty()) std::cerr << "vit: warning: " << runtime.warning << "\n";

  std::cerr << "vit: loading " << run.train.dataset << "\n";
  DataSplits data = load_dataset(run.train.dataset, run.model.image_size, run.model.in_channels);
  if (data.skipped_files > 0)
    std::cerr << "vit: skipped " << data.skipped_files << " unreadable file(s), e.g. "
              << data.skipped_examples.front() << "\n";
  try {
    fit_to_data(run, given_model, int(data.train.images.size(1)), int(data.train.classes.size()));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  for (const auto& note : run.notes) std::cerr << "vit: " << note << "\n";
  const std::string run_dir = run.dir;

  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  const bool tty = isatty(STDERR_FILENO);
  auto last_print = std::chrono::steady_clock::now() - std::chrono::hours(1);
  TrainCallbacks cb;
  cb.on_message = [](const std::string& m) { std::cerr << "vit: " << m << "\n"; };
  cb.on_step = [&](const StepStats& s) {
    const auto now = std::chrono::steady_clock::now();
    if (tty || now - last_print > std::chrono::seconds(10)) {
      print_progress(s, tty);
      last_print = now;
    }
  };
  cb.on_epoch = [&](const EpochStats& e) {
    std::fprintf(stderr,
                 "%sepoch %d: loss %.4f acc %.4f | val loss %.4f acc %.4f top5 %.4f | %.1f s%s\n",
                 tty ? "\r\033[K" : "", e.epoch + 1, e.loss, e.accuracy, e.val_loss,
                 e.val_accuracy, e.val_top5_accuracy, e.seconds, e.best ? " (best)" : "");
  };
  cb.poll = [] { return g_interrupts.load() > 0 ? Control::Stop : Control::Continue; };

  std::cerr << "vit: training into " << run_dir << " (" << describe(runtime) << ")\n";
  run.notes.clear();  // said above
  const TrainResult r = train(run, data, cb);
  if (tty) std::cerr << "\r\033[K";
  nlohmann::json out = {{"run_dir", r.run_dir},
                        {"epochs", r.epochs},
                        {"steps", r.steps},
                        {"stop_reason", r.stop_reason},
                        {"images_per_second", r.images_per_second},
                        {"train_seconds", r.train_seconds},
                        {"test_loss", nullptr},
                        {"test_accuracy", nullptr},
                        {"test_top5_accuracy", nullptr}};
  if (r.test) {
    out["test_loss"] = r.test->loss;
    out["test_accuracy"] = r.test->accuracy;
    out["test_top5_accuracy"] = r.test->top5_accuracy;
  }
  if (!r.message.empty()) out["message"] = r.message;
  if (o.json) {
    std::cout << out.dump() << std::endl;
  } else {
    std::printf("run: %s (%s after %d epoch(s), %lld steps, %.0f images/s)\n", r.run_dir.c_str(),
                r.stop_reason.c_str(), r.epochs, static_cast<long long>(r.steps),
                r.images_per_second);
    if (r.test)
      std::printf("test accuracy: %.2f%%  top-5: %.2f%%  loss: %.4f\n", 100 * r.test->accuracy,
                  100 * r.test->top5_accuracy, r.test->loss);
  }
  if (r.stop_reason == "nan") {
    std::cerr << "vit: " << r.message << "\n";
    return 1;
  }
  return 0;
}

struct EvalOptions {
  std::string run, dataset;
  bool json = false;
  int threads = 0;
};

int run_eval(const EvalOptions& o) {
  configure_runtime(o.threads);
  const RunInfo info = read_run(o.run);
  const std::string spec = o.dataset.empty() ? info.train.dataset : o.dataset;
  if (spec.empty()) throw UsageError(o.run + " records no data set (an imported model): give --dataset SPEC");
  DataSplits data = load_dataset(spec, info.model.image_size, info.model.in_channels);
  const Dataset& split = data.test ? *data.test : data.train;
  const EvalResult r = evaluate_run(o.run, split);
  if (o.json) {
    std::cout << nlohmann::json{{"run_dir", o.run},         {"dataset", split.name},
                                {"count", r.count},         {"loss", r.loss},
                                {"accuracy", r.accuracy},   {"top5_accuracy", r.top5_accuracy}}
                     .dump()
              << std::endl;
  } else {
    std::printf("%s on %s (%lld images): loss %.4f  top-1 %.2f%%  top-5 %.2f%%\n", o.run.c_str(),
                split.name.c_str(), static_cast<long long>(r.count), r.loss, 100 * r.accuracy,
                100 * r.top5_accuracy);
  }
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app, SetAction set_action) {
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = app.add_subcommand("train", "Train a ViT and write a run directory");
  add_model_flags(*cmd, o->model);
  const TrainConfig defaults;
  o->train.add(*cmd, train_schema(), &defaults);
  o->augment_option =
      cmd->add_option("--augment", o->augment,
                      "Augmentation preset, before --crop, --erase, ...: none | flip | light (flip + "
                      "shift) | crop (flip + padded random crop) | keras (flip, rotate, zoom); "
                      "default: 1-pixel random crop up to 32 px, else keras")
          ->capture_default_str();
  cmd->add_option("--parallel", o->parallel, "data | ops: the older spelling of --data-parallel / --no-data-parallel")
      ->check(CLI::IsMember({"data", "ops"}));
  cmd->add_option("--out", o->out, "Run directory (default runs/<preset>-<time>)");
  cmd->add_option("--resume", o->resume,
                  "Continue the run in this directory (its settings; --epochs, --threads, "
                  "--precision, --max-steps and a few more may change)");
  cmd->add_flag("--json", o->json, "Print one JSON object as the last line of stdout");
  cmd->callback([o, set_action, cmd] {
    if (!o->resume.empty() && !o->out.empty()) throw UsageError("give --resume or --out, not both");
    if (o->train.given("init_weights") && !o->resume.empty()) throw UsageError("give --init or --resume, not both");
    if (o->train.given("init_weights") && cmd->count("--preset"))
      throw UsageError("--init takes the model from the weights: drop --preset");
    set_action([o] { return run_train(*o); });
  });

  auto e = std::make_shared<EvalOptions>();
  auto* eval = app.add_subcommand("eval", "Evaluate a run's best weights: loss, top-1, top-5");
  eval->add_option("--run", e->run, "Run directory")->required();
  eval->add_option("--dataset", e->dataset, "Data set spec (default: the run's; its test split)");
  eval->add_option("--threads", e->threads, "Intra-op threads (default: one per core)");
  eval->add_flag("--json", e->json, "Print one JSON object");
  eval->callback([e, set_action] { set_action([e] { return run_eval(*e); }); });
}

}  // namespace vit::cli
