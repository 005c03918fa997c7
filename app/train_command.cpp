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
#include "runtime.h"
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
  TrainConfig train;
  std::string augment = "default";
  int crop = -1;      // --crop: overrides the preset's when given
  double erase = -1;  // --erase: likewise
  std::string out, resume;
  bool json = false;
  int threads = 0;
  std::string parallel = "data";
  bool channels_given = false, classes_given = false;
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

int run_train(TrainOptions o) {
  ViTConfig model = o.train.init_weights.empty() || !o.resume.empty()
                        ? resolve(o.model)
                        : pretrained_model_config(o.train.init_weights, o.model);
  const RuntimeInfo runtime = configure_runtime(o.threads);
  if (!runtime.warning.empty()) std::cerr << "vit: warning: " << runtime.warning << "\n";
  o.train.data_parallel = o.parallel == "data";
  if (auto errors = validate(o.train); !errors.empty()) throw UsageError(errors.front());

  const bool resume = !o.resume.empty();
  std::string run_dir = resume ? o.resume : o.out;
  if (resume) {
    const RunInfo info = read_run(run_dir);
    model = info.model;
    o.train.dataset = o.train.dataset.empty() ? info.train.dataset : o.train.dataset;
  }
  if (run_dir.empty()) {
    char stamp[32];
    const auto t = std::time(nullptr);
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&t));
    run_dir = "runs/" + (o.train.init_weights.empty() ? o.model.preset : "finetune") + "-" + stamp;
  }
  if (o.train.dataset.empty()) o.train.dataset = "fashion-mnist";

  augmentation(o.augment, model);  // reject a bad --augment before loading any data
  std::cerr << "vit: loading " << o.train.dataset << "\n";
  DataSplits data = load_dataset(o.train.dataset, model.image_size, model.in_channels);
  if (data.skipped_files > 0)
    std::cerr << "vit: skipped " << data.skipped_files << " unreadable file(s), e.g. "
              << data.skipped_examples.front() << "\n";
  // Fit the preset to the data unless the user fixed the value.
  const int data_channels = int(data.train.images.size(1));
  const int data_classes = int(data.train.classes.size());
  if (!resume && data_channels != model.in_channels) {
    if (o.channels_given)
      throw UsageError("--channels " + std::to_string(model.in_channels) + " but " +
                       o.train.dataset + " has " + std::to_string(data_channels) + " channel(s)");
    std::cerr << "vit: model input set to " << data_channels << " channel(s) to match the data\n";
    model.in_channels = data_channels;
  }
  if (!resume && data_classes != model.num_classes) {
    if (o.classes_given)
      throw UsageError("--classes " + std::to_string(model.num_classes) + " but " +
                       o.train.dataset + " has " + std::to_string(data_classes) + " classes");
    std::cerr << "vit: model head set to " << data_classes << " classes to match the data\n";
    model.num_classes = data_classes;
  }
  o.train.augment = augmentation(o.augment, model);
  if (o.crop >= 0) o.train.augment.crop = o.crop;
  if (o.erase >= 0) o.train.augment.erase = o.erase;  // both range-checked by CLI11 above

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
  const TrainResult r = train(model, o.train, data, run_dir, cb, resume);
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
  o->train.dataset.clear();  // empty = fashion-mnist, or the resumed run's data set
  auto* cmd = app.add_subcommand("train", "Train a ViT and write a run directory");
  add_model_flags(*cmd, o->model);
  cmd->add_option("--dataset", o->train.dataset,
                  "fashion-mnist[:DIR] | cifar10:DIR | cifar100:DIR | folder:DIR (default fashion-mnist)");
  auto& t = o->train;
  cmd->add_option("--epochs", t.epochs, "Epochs")->capture_default_str();
  cmd->add_option("--batch-size", t.batch_size, "Images per step")->capture_default_str();
  cmd->add_option("--lr", t.lr, "Peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--min-lr", t.min_lr, "Final learning rate of the cosine decay")->capture_default_str();
  cmd->add_option("--weight-decay", t.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--warmup-epochs", t.warmup_epochs, "Linear warmup length in epochs")->capture_default_str();
  cmd->add_option("--label-smoothing", t.label_smoothing, "Label smoothing")->capture_default_str();
  cmd->add_option("--grad-clip", t.grad_clip, "Max gradient norm (0 = off)")->capture_default_str();
  cmd->add_option("--val-fraction", t.val_fraction, "Validation share of the training set")->capture_default_str();
  cmd->add_option("--seed", t.seed, "Random seed")->capture_default_str();
  cmd->add_option("--augment", o->augment, "none | flip | light (flip + shift) | crop (flip + padded random crop) | keras (flip, rotate, zoom); default: 1-pixel random crop up to 32 px, else keras")
      ->capture_default_str();
  cmd->add_option("--crop", o->crop, "Random crop after zero padding of N pixels (overrides the --augment preset's)")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--erase", o->erase, "Random erasing probability (overrides the --augment preset's)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--log-every", t.log_every, "Steps between progress reports")->capture_default_str();
  cmd->add_option("--max-steps", t.max_steps, "Stop after N optimizer steps (0 = no limit)");
  cmd->add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  cmd->add_option("--parallel", o->parallel,
                  "data: each thread trains a shard of the batch (faster for small ViTs); ops: "
                  "every op is split across the threads")
      ->check(CLI::IsMember({"data", "ops"}))
      ->capture_default_str();
  cmd->add_option("--precision", t.precision,
                  "fp32 | bf16 (mixed: bf16 matrix products, float weights) | auto: bf16 where the CPU has native bf16")
      ->check(CLI::IsMember(precision_names()))
      ->capture_default_str();
  cmd->add_option("--out", o->out, "Run directory (default runs/<preset>-<time>)");
  cmd->add_option("--resume", o->resume, "Continue the run in this directory");
  cmd->add_option("--init", t.init_weights, "Fine-tune pretrained weights: safetensors, .pth/.bin, .npz or a run directory");
  cmd->add_flag("--freeze-backbone", t.freeze_backbone, "With --init: train only the head");
  cmd->add_option("--layer-decay", t.layer_decay, "Layer-wise lr decay, e.g. 0.75 (1 = off)")->capture_default_str();
  cmd->add_flag("--json", o->json, "Print one JSON object as the last line of stdout");
  cmd->callback([o, set_action, cmd] {
    o->channels_given = cmd->count("--channels") > 0;
    o->classes_given = cmd->count("--classes") > 0;
    if (!o->resume.empty() && !o->out.empty()) throw UsageError("give --resume or --out, not both");
    if (!o->train.init_weights.empty() && !o->resume.empty()) throw UsageError("give --init or --resume, not both");
    if (!o->train.init_weights.empty() && cmd->count("--preset"))
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
