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

#include "config_json.h"
#include "cpu_info.h"
#include "datasets.h"
#include "device.h"
#include "distributed.h"
#include "launcher.h"
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
  int nproc_per_node = 0;  // our launcher: start this many ranks here
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
// `restarted`: a run torchrun restarts after a failure, continued with the command line that
// started it (--out, --preset and --init then describe the run rather than a new one).
PreparedRun prepare(const TrainOptions& o, std::set<std::string>* given_model,
                    const std::string& restarted = "") {
  const std::string resume_dir = restarted.empty() ? o.resume : restarted;
  const bool resume = !resume_dir.empty();
  *given_model = o.model.given();
  std::set<std::string> given_train = o.train.given();
  TrainConfig train;
  ViTConfig model;
  if (resume) {
    if (o.model.preset_given() && restarted.empty())
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
  request.resume_dir = resume_dir;
  request.out_dir = resume ? "" : o.out;
  request.runs_root = "runs";
  request.name = o.train.given("init_weights") ? "finetune" : o.model.preset;
  try {
    return prepare_run(request);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

// What rank 0 decided, for the other ranks of a distributed run (or the usage error that stops
// them all: every rank exits as rank 0 does).
std::string share_run(const PreparedRun* run, const std::set<std::string>& given_model,
                      const std::string& error, int code) {
  nlohmann::json j = {{"error", error}, {"code", code}};
  if (run)
    j["run"] = {{"model", to_json(run->model)},  {"train", to_json(run->train)},
                {"dir", run->dir},               {"resume", run->resume},
                {"notes", run->notes},           {"given_model", given_model}};
  return j.dump();
}

struct SharedRunError : std::runtime_error {
  SharedRunError(const std::string& m, int c) : std::runtime_error(m), code(c) {}
  int code;
};

PreparedRun prepared_from(const std::string& text, std::set<std::string>* given_model) {
  const auto j = nlohmann::json::parse(text);
  if (!j["error"].get<std::string>().empty())
    throw SharedRunError(j["error"].get<std::string>(), j["code"].get<int>());
  PreparedRun run;
  run.model = config_from_json(j["run"]["model"]);
  run.train = train_config_from_json(j["run"]["train"]);
  run.dir = j["run"]["dir"];
  run.resume = j["run"]["resume"];
  run.notes = j["run"]["notes"].get<std::vector<std::string>>();
  *given_model = j["run"]["given_model"].get<std::set<std::string>>();
  return run;
}

// Rank 0 prepares the run (naming it, or finding the one a torchrun restart continues) and the
// others take its decision, so `--out` stays optional and every rank trains the same run.
PreparedRun prepare_distributed(const TrainOptions& o, ProcessGroup& group, std::set<std::string>* given_model) {
  std::string text;
  if (group.rank() == 0) {
    try {
      std::string restarted;
      if (group.env().restart_count > 0) {
        const auto dir = group.persistent_get("run_dir");
        const std::string candidate = dir ? *dir : o.out;
        if (!candidate.empty() && RunReader(candidate).state()) restarted = candidate;
        else if (!candidate.empty()) discard_unstarted_run(candidate);
      }
      const PreparedRun run = prepare(o, given_model, restarted);
      group.persistent_set("run_dir", run.dir);
      text = share_run(&run, *given_model, "", 0);
    } catch (const UsageError& e) {
      text = share_run(nullptr, {}, e.what(), 2);
    } catch (const std::exception& e) {
      text = share_run(nullptr, {}, e.what(), 1);
    }
  }
  text = group.broadcast_string(text, "the run's settings");
  return prepared_from(text, given_model);
}

int run_train(const TrainOptions& o) {
  if (o.nproc_per_node > 0) {
    // Our own launcher: this process starts the ranks and waits for them.
    if (dist_env_from_environment().distributed())
      throw UsageError("--nproc-per-node starts the ranks itself: drop it under torchrun");
    TrainConfig t;
    o.train.apply(t);
    LaunchOptions launch;
    launch.nproc = o.nproc_per_node;
    launch.grace = std::chrono::milliseconds(int64_t(t.dist_timeout * 1000) + 10000);
    std::vector<std::string> args;
    const auto& all = program_arguments();
    for (size_t i = 1; i < all.size(); ++i) {
      if (all[i] == "--nproc-per-node") {
        ++i;
        continue;
      }
      if (all[i].rfind("--nproc-per-node=", 0) == 0) continue;
      args.push_back(all[i]);
    }
    return launch_local_ranks("/proc/self/exe", args, launch);
  }

  DistEnv env;
  try {
    env = dist_env_from_environment();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::unique_ptr<ProcessGroup> group;
  std::set<std::string> given_model;
  PreparedRun run;
  if (env.distributed()) {
    TrainConfig t;
    o.train.apply(t);
    group = std::make_unique<ProcessGroup>(env, std::chrono::milliseconds(int64_t(t.dist_timeout * 1000)));
    try {
      run = prepare_distributed(o, *group, &given_model);
    } catch (const SharedRunError& e) {
      if (env.rank != 0) return e.code;  // rank 0 says why
      if (e.code == 2) throw UsageError(e.what());
      throw std::runtime_error(e.what());
    }
    // Threads per rank: the cores shared by the ranks of this machine.
    if (!o.train.given("threads")) run.train.threads = std::max(1, available_cores() / env.local_world_size);
  } else {
    run = prepare(o, &given_model);
  }
  const bool speaks = env.rank == 0;  // the other ranks report errors only
  try {
    resolve_device(run.train.device, env.local_rank);  // a GPU this LibTorch cannot use: now, not after loading
  } catch (const std::invalid_argument& e) {
    if (!speaks) return 2;
    throw UsageError(e.what());
  }
  const RuntimeInfo runtime = configure_runtime(run.train.threads);
  if (!runtime.warning.empty() && speaks) std::cerr << "vit: warning: " << runtime.warning << "\n";

  if (speaks) std::cerr << "vit: loading " << run.train.dataset << "\n";
  DataSplits data = load_dataset(run.train.dataset, run.model.image_size, run.model.in_channels);
  if (data.skipped_files > 0 && speaks)
    std::cerr << "vit: skipped " << data.skipped_files << " unreadable file(s), e.g. "
              << data.skipped_examples.front() << "\n";
  try {
    fit_to_data(run, given_model, int(data.train.images.size(1)), int(data.train.classes.size()));
  } catch (const std::invalid_argument& e) {
    if (!speaks) return 2;
    throw UsageError(e.what());
  }
  if (speaks)
    for (const auto& note : run.notes) std::cerr << "vit: " << note << "\n";
  const std::string run_dir = run.dir;

  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  const bool tty = isatty(STDERR_FILENO);
  auto last_print = std::chrono::steady_clock::now() - std::chrono::hours(1);
  TrainCallbacks cb;
  cb.on_message = [speaks](const std::string& m) {
    if (speaks) std::cerr << "vit: " << m << "\n";
  };
  cb.on_step = [&](const StepStats& s) {
    const auto now = std::chrono::steady_clock::now();
    if (speaks && (tty || now - last_print > std::chrono::seconds(10))) {
      print_progress(s, tty);
      last_print = now;
    }
  };
  cb.on_epoch = [&](const EpochStats& e) {
    if (!speaks) return;
    std::fprintf(stderr,
                 "%sepoch %d: loss %.4f acc %.4f | val loss %.4f acc %.4f top5 %.4f | %.1f s%s\n",
                 tty ? "\r\033[K" : "", e.epoch + 1, e.loss, e.accuracy, e.val_loss,
                 e.val_accuracy, e.val_top5_accuracy, e.seconds, e.best ? " (best)" : "");
  };
  cb.poll = [] { return g_interrupts.load() > 0 ? Control::Stop : Control::Continue; };

  if (speaks)
    std::cerr << "vit: training into " << run_dir << " (" << describe(runtime)
              << (group ? ", rank 0 of " + std::to_string(group->size()) : std::string()) << ")\n";
  run.notes.clear();  // said above
  const TrainResult r = train(run, data, cb, group.get());
  if (!speaks) return r.stop_reason == "nan" ? 1 : 0;
  if (tty) std::cerr << "\r\033[K";
  nlohmann::json out = {{"run_dir", r.run_dir},
                        {"epochs", r.epochs},
                        {"steps", r.steps},
                        {"stop_reason", r.stop_reason},
                        {"images_per_second", r.images_per_second},
                        {"train_seconds", r.train_seconds},
                        {"model_flops", r.model_flops},
                        {"flops_per_second", r.flops_per_second},
                        {"peak_flops_per_second", r.peak_flops_per_second},
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
    if (r.flops_per_second > 0) {
      std::printf("training steps: %.1f GFLOP/s of model FLOPs", r.flops_per_second / 1e9);
      if (r.peak_flops_per_second > 0)
        std::printf(", %.0f%% of the float FMA peak of the cores trained on (%.0f GFLOP/s)",
                    100 * r.flops_per_second / r.peak_flops_per_second, r.peak_flops_per_second / 1e9);
      std::printf("\n");
    }
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
  std::string run, dataset, device = "auto", precision;
  bool json = false;
  int threads = 0;
};

int run_eval(const EvalOptions& o) {
  resolve_device(o.device);  // a bad --device before the data set loads
  configure_runtime(o.threads);
  const RunInfo info = read_run(o.run);
  const std::string spec = o.dataset.empty() ? info.train.dataset : o.dataset;
  if (spec.empty()) throw UsageError(o.run + " records no data set (an imported model): give --dataset SPEC");
  DataSplits data = load_dataset(spec, info.model.image_size, info.model.in_channels);
  const Dataset& split = data.test ? *data.test : data.train;
  const EvalResult r = evaluate_run(o.run, split, o.device, o.precision);
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
  cmd->add_option("--nproc-per-node", o->nproc_per_node,
                  "Start N ranks of a distributed run on this machine (what torchrun "
                  "--nproc_per_node does, without Python); the batch is the global batch")
      ->check(CLI::Range(1, 1024));
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
  eval->add_option("--device", e->device, "auto | cpu | cuda | cuda:N (auto: a GPU when this LibTorch has CUDA)")
      ->capture_default_str();
  eval->add_option("--precision", e->precision, "fp32 | bf16 | auto (default: the run's)")
      ->check(CLI::IsMember(precision_names()));
  eval->add_flag("--json", e->json, "Print one JSON object");
  eval->callback([e, set_action] { set_action([e] { return run_eval(*e); }); });
}

}  // namespace vit::cli
