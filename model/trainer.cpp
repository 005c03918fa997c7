#include <torch/torch.h>

#include "trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "atomic_file.h"
#include "checkpoint.h"
#include "config_json.h"
#include "data_parallel.h"
#include "datasets.h"
#include "tensorboard.h"
#include "vit.h"
#include "weights_io.h"

namespace vit {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Evaluation

namespace {

struct Accumulator {
  double loss_sum = 0;
  int64_t top1 = 0, top5 = 0, count = 0;
  void add(const torch::Tensor& logits, const torch::Tensor& labels, double loss_mean) {
    const int64_t B = labels.size(0);
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    auto hits = std::get<1>(logits.topk(k, 1)).eq(labels.unsqueeze(1));  // (B, k)
    top1 += hits.select(1, 0).sum().item<int64_t>();
    top5 += hits.any(1).sum().item<int64_t>();
    loss_sum += loss_mean * B;
    count += B;
  }
  EvalResult result() const {
    EvalResult r;
    r.count = count;
    if (count > 0) {
      r.loss = loss_sum / count;
      r.accuracy = double(top1) / count;
      r.top5_accuracy = double(top5) / count;
    }
    return r;
  }
};

EvalResult evaluate(VisionTransformer& model, const Dataset& data, std::vector<int64_t> indices,
                    const Normalization& norm, int batch_size, bool data_parallel) {
  model->eval();
  torch::NoGradGuard no_grad;
  LoaderOptions o;
  o.batch_size = batch_size;
  o.image_size = model->config().image_size;
  o.normalization = norm;
  o.shuffle = false;
  DataLoader loader(data, std::move(indices), o);
  loader.start_epoch(0);
  Accumulator acc;
  while (auto batch = loader.next()) {
    auto logits = predict_logits(model, batch->images, data_parallel);
    acc.add(logits, batch->labels, torch::cross_entropy_loss(logits, batch->labels).item<double>());
  }
  return acc.result();
}

std::vector<int64_t> all_rows(const Dataset& d) {
  std::vector<int64_t> rows(d.size());
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Run directory files


std::string metrics_row(const EpochStats& e) {
  std::ostringstream out;
  out.precision(6);
  out << e.epoch << ',' << e.loss << ',' << e.accuracy << ',' << e.top5_accuracy << ','
      << e.val_loss << ',' << e.val_accuracy << ',' << e.val_top5_accuracy << ',' << e.lr << ','
      << e.seconds;
  return out.str();
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string() + ": is this a run directory?");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + " is not valid JSON: " + e.what());
  }
}

struct RunState {
  int epoch = 0;              // epoch in progress (or the next one)
  int64_t step_in_epoch = 0;  // optimizer steps already done in `epoch`
  int64_t global_step = 0;
  double best_val_accuracy = -1.0;
  int best_epoch = -1;
  bool finished = false;
  nlohmann::json to_json() const {
    return {{"epoch", epoch},
            {"step_in_epoch", step_in_epoch},
            {"global_step", global_step},
            {"best_val_accuracy", best_val_accuracy},
            {"best_epoch", best_epoch},
            {"finished", finished}};
  }
  static RunState from_json(const nlohmann::json& j) {
    RunState s;
    s.epoch = j.at("epoch");
    s.step_in_epoch = j.at("step_in_epoch");
    s.global_step = j.at("global_step");
    s.best_val_accuracy = j.at("best_val_accuracy");
    s.best_epoch = j.value("best_epoch", -1);
    s.finished = j.value("finished", false);
    return s;
  }
};

double lr_at(const TrainConfig& c, int64_t step, int64_t total, int64_t steps_per_epoch) {
  const double warmup = c.warmup_epochs * steps_per_epoch;
  if (step < warmup) return c.lr * (step + 1) / warmup;
  const double span = std::max(1.0, total - warmup);
  const double progress = std::min(1.0, (step - warmup) / span);
  return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// train()

TrainResult train(const ViTConfig& model_config_in, const TrainConfig& train_config_in,
                  const DataSplits& data, const std::string& run_dir,
                  const TrainCallbacks& cb, bool resume) {
  const fs::path dir(run_dir), ckpt_dir = dir / "checkpoints";
  auto say = [&](const std::string& m) {
    if (cb.on_message) cb.on_message(m);
  };

  ViTConfig model_config = model_config_in;
  TrainConfig tc = train_config_in;
  RunState state;
  Normalization norm;
  std::vector<std::string> metric_rows;
  if (resume) {
    const RunInfo info = read_run(run_dir);
    model_config = info.model;
    const int64_t max_steps = tc.max_steps;
    const int log_every = tc.log_every;
    tc = info.train;
    tc.max_steps = max_steps;  // a resumed smoke run may set its own limit
    tc.log_every = log_every;
    norm = info.normalization;
    state = RunState::from_json(read_json(dir / "state.json"));
    if (state.finished) throw std::invalid_argument(run_dir + " has already finished all its epochs; start a new run");
    auto lines = read_lines(dir / "metrics.csv");
    for (size_t i = 1; i < lines.size() && int(i - 1) < state.epoch; ++i) metric_rows.push_back(lines[i]);
  }

  check(model_config);
  if (auto errors = validate(tc); !errors.empty()) throw std::invalid_argument(errors.front());
  tc.precision = resolve_precision(tc.precision);  // config.json records what ran
  const bool bf16 = tc.precision == "bf16";
  const Dataset& full = data.train;
  if (full.size() < 2) throw std::invalid_argument("the training set needs at least 2 images");
  if (int64_t(full.classes.size()) != model_config.num_classes)
    throw std::invalid_argument("the data set has " + std::to_string(full.classes.size()) +
                                " classes but the model has " +
                                std::to_string(model_config.num_classes) + " outputs: use --classes " +
                                std::to_string(full.classes.size()));
  if (full.images.size(1) != model_config.in_channels)
    throw std::invalid_argument("the data set has " + std::to_string(full.images.size(1)) +
                                " channel(s) but the model expects " +
                                std::to_string(model_config.in_channels) + ": use --channels " +
                                std::to_string(full.images.size(1)));

  // Seeded split: the same seed always holds out the same validation images.
  std::vector<int64_t> order = all_rows(full);
  std::mt19937_64 split_rng(tc.seed);
  std::shuffle(order.begin(), order.end(), split_rng);
  const int64_t n_val = tc.val_fraction > 0 ? std::max<int64_t>(1, int64_t(full.size() * tc.val_fraction)) : 0;
  std::vector<int64_t> val_rows(order.begin(), order.begin() + n_val);
  std::vector<int64_t> train_rows(order.begin() + n_val, order.end());
  std::sort(val_rows.begin(), val_rows.end());

  std::optional<ImportedWeights> init;  // fine-tuning: the pretrained weights to start from
  if (!resume && !tc.init_weights.empty())
    init = import_weights(tc.init_weights, ImportOptions{model_config.heads});
  if (!resume) {
    if (!tc.mean.empty()) {
      norm.mean = tc.mean;
      norm.std = tc.std;
    } else if (init) {
      norm = adapt_normalization(init->normalization, model_config.in_channels);  // theirs
    } else {
      norm = compute_normalization(full, train_rows);  // Keras Normalization.adapt
    }
    if (int(norm.mean.size()) != model_config.in_channels)
      throw std::invalid_argument("give one mean/std value per channel (" +
                                  std::to_string(model_config.in_channels) + ")");
  }

  fs::create_directories(ckpt_dir);
  if (!resume) {
    if (fs::exists(dir / "state.json"))
      throw std::invalid_argument(run_dir + " already holds a run: resume it (--resume " + run_dir +
                                  ") or choose another --out");
    nlohmann::json classes = full.classes;
    nlohmann::json config = {
        {"program", "ViT Studio"},
        {"version", VIT_VERSION},
        {"created", utc_timestamp()},
        {"model", to_json(model_config)},
        {"train", to_json(tc)},
        {"normalization", {{"mean", norm.mean}, {"std", norm.std}}},
        {"data",
         {{"spec", tc.dataset},
          {"name", full.name},
          {"classes", classes},
          {"train_size", train_rows.size()},
          {"val_size", val_rows.size()},
          {"test_size", data.test ? data.test->size() : 0}}}};
    write_file_atomically((dir / "config.json").string(), config.dump(2) + "\n");
  }

  torch::manual_seed(tc.seed);
  VisionTransformer model(model_config);
  if (init) {
    say("starting from " + init->path + " (" + init->naming + " names)");
    for (const auto& note : load_pretrained(*model, *init).notes) say(note);
    init.reset();  // release the file's tensors
  }
  if (tc.freeze_backbone)
    say("backbone frozen: training the head only (" + std::to_string(freeze_backbone(*model)) +
        " parameters fixed)");
  // AdamW groups: decay / no decay (timm), split by layer when layer_decay < 1 (weights_io.h).
  std::vector<double> lr_scales;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (auto& g : param_groups(*model, tc.weight_decay, tc.layer_decay)) {
    groups.emplace_back(g.params, std::make_unique<torch::optim::AdamWOptions>(
                                      torch::optim::AdamWOptions(tc.lr).weight_decay(g.weight_decay)));
    lr_scales.push_back(g.lr_scale);
  }
  torch::optim::AdamW optimizer(std::move(groups), torch::optim::AdamWOptions(tc.lr));
  if (resume) {
    load_weights((ckpt_dir / "last.safetensors").string(), *model);
    torch::load(optimizer, (ckpt_dir / "last.optim.pt").string());
    say("resumed " + run_dir + " at epoch " + std::to_string(state.epoch + 1) + ", step " +
        std::to_string(state.global_step));
  }

  LoaderOptions lo;
  lo.batch_size = tc.batch_size;
  lo.image_size = model_config.image_size;
  lo.normalization = norm;
  lo.augment = tc.augment;
  lo.shuffle = true;
  lo.drop_last = int64_t(train_rows.size()) > tc.batch_size;  // keep batch statistics steady
  lo.seed = tc.seed;
  DataLoader loader(full, train_rows, lo);
  const int64_t steps_per_epoch = loader.batches_per_epoch();
  const int64_t total_steps = steps_per_epoch * tc.epochs;

  // steps.csv: keep what a resumed run had logged up to its checkpoint.
  const fs::path steps_path = dir / "steps.csv";
  {
    std::vector<std::string> keep{kStepsHeader};
    if (resume) {
      auto lines = read_lines(steps_path);
      for (size_t i = 1; i < lines.size(); ++i)
        if (std::stoll(lines[i].substr(0, lines[i].find(','))) <= state.global_step) keep.push_back(lines[i]);
    }
    std::string text;
    for (const auto& l : keep) text += l + "\n";
    write_file_atomically(steps_path.string(), text);
  }
  std::ofstream steps_log(steps_path, std::ios::app);
  TensorBoardWriter tensorboard(run_dir);

  auto write_metrics = [&] {
    std::string text = std::string(kMetricsHeader) + "\n";
    for (const auto& r : metric_rows) text += r + "\n";
    write_file_atomically((dir / "metrics.csv").string(), text);
  };
  auto save_last = [&] {
    std::map<std::string, std::string> meta{{"epoch", std::to_string(state.epoch)},
                                            {"global_step", std::to_string(state.global_step)}};
    save_checkpoint((ckpt_dir / "last.safetensors").string(), *model, norm, meta);
    write_file_atomically((ckpt_dir / "last.optim.pt").string(),
                          [&](std::ostream& out) { torch::save(optimizer, out); });
    write_file_atomically((dir / "state.json").string(), state.to_json().dump(2) + "\n");
  };
  if (!resume) write_metrics();

  TrainResult result;
  result.run_dir = run_dir;
  const auto run_start = Clock::now();
  double step_seconds = 0.0;
  int64_t images_trained = 0, steps_this_call = 0;
  std::vector<torch::Tensor> params;  // the trainable ones: a frozen backbone is left out
  for (const auto& p : model->parameters())
    if (p.requires_grad()) params.push_back(p);
  const int shards = shard_count(tc.data_parallel, tc.batch_size);
  if (bf16) say("mixed precision: bf16 matrix products, float weights and optimizer");
  if (shards > 1)
    say("data parallel: each batch of " + std::to_string(tc.batch_size) + " runs as " +
        std::to_string(shards) + " shards on " + std::to_string(shards) + " threads");
  bool stop = false;

  for (; state.epoch < tc.epochs && !stop; ) {
    const auto epoch_start = Clock::now();
    loader.start_epoch(state.epoch, state.step_in_epoch);
    Accumulator train_acc, window;
    double lr = 0;
    model->train();
    while (auto batch = loader.next()) {
      // Stop / pause between steps: a stop request finishes within one step.
      if (cb.poll) {
        Control c = cb.poll();
        while (c == Control::Pause) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          c = cb.poll();
        }
        if (c == Control::Stop) {
          result.stop_reason = "stopped";
          stop = true;
          break;
        }
      }
      lr = lr_at(tc, state.global_step, total_steps, steps_per_epoch);
      for (size_t g = 0; g < lr_scales.size(); ++g)
        optimizer.param_groups()[g].options().set_lr(lr * lr_scales[g]);

      const auto t0 = Clock::now();
      const auto step = forward_backward(model, params, batch->images, batch->labels,
                                         tc.label_smoothing, shards, bf16);
      const double loss_value = step.loss;
      if (!std::isfinite(loss_value)) {
        std::ostringstream m;
        m << "the training loss became " << loss_value << " at step " << state.global_step + 1
          << " (epoch " << state.epoch + 1 << ", lr " << lr << "); training stopped and the last "
          << "good checkpoint stays in " << (ckpt_dir / "last.safetensors").string()
          << ". Lower the learning rate (--lr) or keep gradient clipping on (--grad-clip 1)";
        result.stop_reason = "nan";
        result.message = m.str();
        say(m.str());
        stop = true;
        break;
      }
      // Both as LibTorch's clip_grad_norm_ and AdamW::step, spread over the shards' threads.
      if (tc.grad_clip > 0) clip_grad_norm(params, tc.grad_clip, shards);
      adamw_step(optimizer, shards);
      // Throughput leaves out the first step of a call: it pays one-time allocations and the
      // OpenMP pool start, which would skew short benchmark runs.
      if (steps_this_call > 0) {
        step_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
        images_trained += batch->labels.size(0);
      }
      ++steps_this_call;
      ++state.global_step;
      ++state.step_in_epoch;

      {
        torch::NoGradGuard no_grad;
        train_acc.add(step.logits, batch->labels, loss_value);
        window.add(step.logits, batch->labels, loss_value);
      }
      const bool limit = tc.max_steps > 0 && steps_this_call >= tc.max_steps;
      if (state.global_step % tc.log_every == 0 || limit) {
        StepStats s;
        s.epoch = state.epoch;
        s.step = state.global_step;
        s.total_steps = total_steps;
        s.step_in_epoch = state.step_in_epoch;
        s.steps_per_epoch = steps_per_epoch;
        const auto w = window.result();
        s.loss = w.loss;
        s.accuracy = w.accuracy;
        s.lr = lr;
        s.images_per_second = step_seconds > 0 ? images_trained / step_seconds : 0;
        s.elapsed_seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
        const double per_step = s.elapsed_seconds / steps_this_call;
        s.eta_seconds = per_step * double(total_steps - state.global_step);
        steps_log << s.step << ',' << s.epoch << ',' << s.loss << ',' << s.accuracy << ',' << s.lr
                  << ',' << s.images_per_second << ',' << s.elapsed_seconds << '\n';
        steps_log.flush();
        tensorboard.add_scalar("train/loss", s.loss, s.step);
        tensorboard.add_scalar("train/accuracy", s.accuracy, s.step);
        tensorboard.add_scalar("train/lr", s.lr, s.step);
        if (cb.on_step) cb.on_step(s);
        window = Accumulator{};
      }
      if (limit) {
        result.stop_reason = "max_steps";
        stop = true;
        break;
      }
    }
    if (stop) break;

    // End of epoch: validation, checkpoints, metrics.
    EpochStats e;
    e.epoch = state.epoch;
    const auto t = train_acc.result();
    e.loss = t.loss;
    e.accuracy = t.accuracy;
    e.top5_accuracy = t.top5_accuracy;
    if (!val_rows.empty()) {
      const auto v = evaluate(model, full, val_rows, norm, tc.eval_batch_size, tc.data_parallel);
      e.val_loss = v.loss;
      e.val_accuracy = v.accuracy;
      e.val_top5_accuracy = v.top5_accuracy;
    }
    e.lr = lr;
    e.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    const double score = val_rows.empty() ? e.accuracy : e.val_accuracy;
    e.best = score > state.best_val_accuracy;
    ++state.epoch;
    state.step_in_epoch = 0;
    if (e.best) {
      state.best_val_accuracy = score;
      state.best_epoch = e.epoch;
      save_checkpoint((ckpt_dir / "best.safetensors").string(), *model, norm,
                      {{"epoch", std::to_string(e.epoch)}, {"val_accuracy", std::to_string(score)}});
    }
    state.finished = state.epoch >= tc.epochs;
    metric_rows.push_back(metrics_row(e));
    write_metrics();
    save_last();
    tensorboard.add_scalar("epoch/loss", e.loss, state.global_step);
    tensorboard.add_scalar("epoch/accuracy", e.accuracy, state.global_step);
    tensorboard.add_scalar("epoch/val_loss", e.val_loss, state.global_step);
    tensorboard.add_scalar("epoch/val_accuracy", e.val_accuracy, state.global_step);
    tensorboard.add_scalar("epoch/val_top5_accuracy", e.val_top5_accuracy, state.global_step);
    tensorboard.flush();
    if (cb.on_epoch) cb.on_epoch(e);
  }
  if (result.stop_reason.empty()) result.stop_reason = "completed";
  if (result.stop_reason == "stopped" || result.stop_reason == "max_steps") save_last();
  tensorboard.flush();

  result.epochs = state.epoch;
  result.steps = state.global_step;
  result.train_seconds = step_seconds;
  result.images_per_second = step_seconds > 0 ? images_trained / step_seconds : 0;
  // Test with the best weights (the Keras example's ModelCheckpoint + evaluate). A user's stop
  // skips it so that stopping stays quick; NaN skips it as the weights are broken.
  if (data.test && (result.stop_reason == "completed" || result.stop_reason == "max_steps")) {
    const fs::path best = ckpt_dir / "best.safetensors";
    if (fs::exists(best)) load_weights(best.string(), *model);
    say("evaluating on the test set (" + std::to_string(data.test->size()) + " images)");
    result.test = evaluate(model, *data.test, all_rows(*data.test), norm, tc.eval_batch_size, tc.data_parallel);
    nlohmann::json test = {{"loss", result.test->loss},
                           {"accuracy", result.test->accuracy},
                           {"top5_accuracy", result.test->top5_accuracy},
                           {"count", result.test->count},
                           {"weights", fs::exists(best) ? "best" : "last"}};
    write_file_atomically((dir / "test.json").string(), test.dump(2) + "\n");
  }
  return result;
}

EvalResult evaluate_run(const std::string& run_dir, const Dataset& data) {
  const RunInfo info = read_run(run_dir);
  const fs::path ckpt = fs::path(run_dir) / "checkpoints";
  const fs::path weights = fs::exists(ckpt / "best.safetensors") ? ckpt / "best.safetensors"
                                                                  : ckpt / "last.safetensors";
  VisionTransformer model(info.model);
  load_weights(weights.string(), *model);
  if (data.images.size(1) != info.model.in_channels)
    throw std::invalid_argument("the data set has " + std::to_string(data.images.size(1)) +
                                " channel(s) but the run's model expects " +
                                std::to_string(info.model.in_channels));
  return evaluate(model, data, all_rows(data), info.normalization, info.train.eval_batch_size,
                  /*data_parallel=*/true);
}

}  // namespace vit
