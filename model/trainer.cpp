#include <torch/torch.h>

#include "trainer.h"

#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "checkpoint.h"
#include "data_parallel.h"
#include "datasets.h"
#include "finetune.h"
#include "param_groups.h"
#include "run_writer.h"
#include "vit.h"
#include "weights_import.h"

namespace vit {

using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// Evaluation

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

double lr_at(const TrainConfig& c, int64_t step, int64_t total, int64_t steps_per_epoch) {
  const double warmup = c.warmup_epochs * steps_per_epoch;
  if (step < warmup) return c.lr * (step + 1) / warmup;
  const double span = std::max(1.0, total - warmup);
  const double progress = std::min(1.0, (step - warmup) / span);
  return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

// Seconds of work, pauses left out.
class ActiveClock {
 public:
  double seconds() const {
    return std::chrono::duration<double>(Clock::now() - start_).count() - paused_;
  }
  void add_pause(double s) { paused_ += s; }

 private:
  Clock::time_point start_ = Clock::now();
  double paused_ = 0;
};

// ---------------------------------------------------------------------------------------------
// One call of train(): setup, loop, finish.

class Training {
 public:
  Training(const PreparedRun& run, const DataSplits& data, const TrainCallbacks& cb)
      : run_(run), data_(data), cb_(cb), writer_(run.dir, /*enabled=*/true) {}

  TrainResult run() {
    setup();
    while (state_.epoch < tc_.epochs && !stop_) {
      if (!train_epoch()) break;
      end_epoch();
    }
    finish();
    return result_;
  }

 private:
  void say(const std::string& m) const {
    if (cb_.on_message) cb_.on_message(m);
  }

  // --- setup ----------------------------------------------------------------------------------

  void setup() {
    model_config_ = run_.model;
    tc_ = run_.train;
    check(model_config_);
    if (auto errors = validate(tc_); !errors.empty()) throw std::invalid_argument(errors.front().message);
    tc_.precision = resolve_precision(tc_.precision);  // config.json records what ran
    bf16_ = tc_.precision == "bf16";
    const Dataset& full = data_.train;
    if (full.size() < 2) throw std::invalid_argument("the training set needs at least 2 images");
    if (int64_t(full.classes.size()) != model_config_.num_classes)
      throw std::invalid_argument("the data set has " + std::to_string(full.classes.size()) +
                                  " classes but the model has " +
                                  std::to_string(model_config_.num_classes) +
                                  " outputs: use --classes " + std::to_string(full.classes.size()));
    if (full.images.size(1) != model_config_.in_channels)
      throw std::invalid_argument("the data set has " + std::to_string(full.images.size(1)) +
                                  " channel(s) but the model expects " +
                                  std::to_string(model_config_.in_channels) + ": use --channels " +
                                  std::to_string(full.images.size(1)));
    split();

    std::optional<ImportedWeights> init;  // fine-tuning: the pretrained weights to start from
    const RunReader reader(run_.dir);
    if (run_.resume) {
      const auto state = reader.state();
      if (!state) throw std::invalid_argument(run_.dir + " has no checkpoint to continue from");
      state_ = *state;
      norm_ = reader.info().normalization;
    } else {
      if (!tc_.init_weights.empty())
        init = import_weights(tc_.init_weights, ImportOptions{model_config_.heads});
      if (!tc_.mean.empty()) {
        norm_ = {tc_.mean, tc_.std};
      } else if (init) {
        norm_ = adapt_normalization(init->normalization, model_config_.in_channels);  // theirs
      } else {
        norm_ = compute_normalization(full, train_rows_);  // Keras Normalization.adapt
      }
      if (int(norm_.mean.size()) != model_config_.in_channels)
        throw std::invalid_argument("give one mean/std value per channel (" +
                                    std::to_string(model_config_.in_channels) + ")");
    }

    torch::manual_seed(tc_.seed);
    model_ = VisionTransformer(model_config_);
    if (init) {
      say("starting from " + init->path + " (" + init->naming + " names)");
      for (const auto& note : load_pretrained(*model_, *init).notes) say(note);
      init.reset();  // release the file's tensors
    }
    if (tc_.freeze_backbone)
      say("backbone frozen: training the head only (" + std::to_string(freeze_backbone(*model_)) +
          " parameters fixed)");
    // AdamW groups: decay / no decay (timm), split by layer when layer_decay < 1.
    std::vector<torch::optim::OptimizerParamGroup> groups;
    for (auto& g : param_groups(*model_, tc_.weight_decay, tc_.layer_decay)) {
      groups.emplace_back(g.params, std::make_unique<torch::optim::AdamWOptions>(
                                        torch::optim::AdamWOptions(tc_.lr).weight_decay(g.weight_decay)));
      lr_scales_.push_back(g.lr_scale);
    }
    optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(tc_.lr));
    for (const auto& p : model_->parameters())
      if (p.requires_grad()) params_.push_back(p);

    LoaderOptions lo;
    lo.batch_size = tc_.batch_size;
    lo.image_size = model_config_.image_size;
    lo.normalization = norm_;
    lo.augment = tc_.augment;
    lo.shuffle = true;
    lo.drop_last = int64_t(train_rows_.size()) > tc_.batch_size;  // keep batch statistics steady
    lo.seed = tc_.seed;
    loader_ = std::make_unique<DataLoader>(full, train_rows_, lo);
    steps_per_epoch_ = loader_->batches_per_epoch();
    total_steps_ = steps_per_epoch_ * tc_.epochs;

    if (run_.resume) {
      if (state_.step_in_epoch >= steps_per_epoch_ && !state_.finished)
        throw std::runtime_error(RunPaths(run_.dir).state() + " is damaged (step_in_epoch " +
                                 std::to_string(state_.step_in_epoch) + " is not below the " +
                                 std::to_string(steps_per_epoch_) + " steps of an epoch): the run "
                                 "cannot be continued from it");
      load_weights(reader.weights(Weights::Last), *model_);
      const std::string optim = reader.optimizer();
      if (optim.empty())
        throw std::runtime_error(run_.dir + " has no optimizer state (checkpoints/last.optim.pt) "
                                 "to continue from");
      load_optimizer(*optimizer_, optim);
      writer_.reopen(state_);
      committed_step_ = state_.global_step;
      for (const auto& n : run_.notes) say(n);
      say("resumed " + run_.dir + " at epoch " + std::to_string(state_.epoch + 1) + ", step " +
          std::to_string(state_.global_step));
    } else {
      RunData d;
      d.spec = tc_.dataset;
      d.name = full.name;
      d.classes = full.classes;
      d.train_size = int64_t(train_rows_.size());
      d.val_size = int64_t(val_rows_.size());
      d.test_size = data_.test ? data_.test->size() : 0;
      writer_.create(run_config_json(model_config_, tc_, norm_, d));
    }
    epoch_acc_.loss_sum = state_.epoch_loss_sum;
    epoch_acc_.top1 = state_.epoch_top1;
    epoch_acc_.top5 = state_.epoch_top5;
    epoch_acc_.count = state_.epoch_count;
    epoch_seconds_before_ = state_.epoch_seconds;

    shards_ = shard_count(tc_.data_parallel, tc_.batch_size);
    if (bf16_) say("mixed precision: bf16 matrix products, float weights and optimizer");
    if (shards_ > 1)
      say("data parallel: each batch of " + std::to_string(tc_.batch_size) + " runs as " +
          std::to_string(shards_) + " shards on " + std::to_string(shards_) + " threads");
    result_.run_dir = run_.dir;
    if (cb_.on_ready) cb_.on_ready();
  }

  // Seeded split: the same seed always holds out the same validation images.
  void split() {
    const Dataset& full = data_.train;
    std::vector<int64_t> order = all_rows(full);
    std::mt19937_64 split_rng(tc_.seed);
    std::shuffle(order.begin(), order.end(), split_rng);
    const int64_t n_val =
        tc_.val_fraction > 0 ? std::max<int64_t>(1, int64_t(full.size() * tc_.val_fraction)) : 0;
    val_rows_.assign(order.begin(), order.begin() + n_val);
    train_rows_.assign(order.begin() + n_val, order.end());
    std::sort(val_rows_.begin(), val_rows_.end());
  }

  // --- the loop -------------------------------------------------------------------------------

  // Between steps: Pause blocks (its time is not training time), Stop ends the run.
  bool keep_going() {
    if (!cb_.poll) return true;
    Control c = cb_.poll();
    if (c == Control::Pause) {
      const auto paused = Clock::now();
      while (c == Control::Pause) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        c = cb_.poll();
      }
      clock_.add_pause(std::chrono::duration<double>(Clock::now() - paused).count());
    }
    if (c == Control::Stop) {
      result_.stop_reason = "stopped";
      stop_ = true;
      return false;
    }
    return true;
  }

  // The epoch's training steps; false when the run stops inside it.
  bool train_epoch() {
    epoch_start_ = clock_.seconds();
    loader_->start_epoch(state_.epoch, state_.step_in_epoch);
    model_->train();
    while (auto batch = loader_->next()) {
      if (!keep_going()) return false;
      lr_ = lr_at(tc_, state_.global_step, total_steps_, steps_per_epoch_);
      for (size_t g = 0; g < lr_scales_.size(); ++g)
        optimizer_->param_groups()[g].options().set_lr(lr_ * lr_scales_[g]);

      const auto t0 = Clock::now();
      const auto step = forward_backward(model_, params_, batch->images, batch->labels,
                                         tc_.label_smoothing, shards_, bf16_);
      if (!std::isfinite(step.loss)) {
        stop_for_nan(step.loss);
        return false;
      }
      // Both as LibTorch's clip_grad_norm_ and AdamW::step, spread over the shards' threads.
      if (tc_.grad_clip > 0) clip_grad_norm(params_, tc_.grad_clip, shards_);
      adamw_step(*optimizer_, shards_);
      // Throughput leaves out the first step of a call: it pays one-time allocations and the
      // OpenMP pool start, which would skew short benchmark runs.
      if (steps_this_call_ > 0) {
        step_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
        images_trained_ += batch->labels.size(0);
      }
      ++steps_this_call_;
      ++state_.global_step;
      ++state_.step_in_epoch;
      {
        torch::NoGradGuard no_grad;
        epoch_acc_.add(step.logits, batch->labels, step.loss);
        window_.add(step.logits, batch->labels, step.loss);
      }
      const bool limit = tc_.max_steps > 0 && steps_this_call_ >= tc_.max_steps;
      if (state_.global_step % tc_.log_every == 0 || limit) report_step();
      if (limit) {
        result_.stop_reason = "max_steps";
        stop_ = true;
        return false;
      }
      if (tc_.checkpoint_every > 0 && state_.global_step % tc_.checkpoint_every == 0 &&
          state_.step_in_epoch < steps_per_epoch_)
        commit(/*best=*/false);
    }
    return true;
  }

  void report_step() {
    StepStats s;
    s.epoch = state_.epoch;
    s.step = state_.global_step;
    s.total_steps = total_steps_;
    s.step_in_epoch = state_.step_in_epoch;
    s.steps_per_epoch = steps_per_epoch_;
    const auto w = window_.result();
    s.loss = w.loss;
    s.accuracy = w.accuracy;
    s.lr = lr_;
    s.images_per_second = step_seconds_ > 0 ? images_trained_ / step_seconds_ : 0;
    const double session = clock_.seconds();
    s.elapsed_seconds = state_.elapsed_seconds + session - elapsed_committed_session_;
    s.eta_seconds = session / double(steps_this_call_) * double(total_steps_ - state_.global_step);
    StepRow row;
    row.step = s.step;
    row.epoch = s.epoch;
    row.loss = s.loss;
    row.accuracy = s.accuracy;
    row.lr = s.lr;
    row.images_per_second = s.images_per_second;
    row.elapsed_seconds = s.elapsed_seconds;
    writer_.log_step(row);
    if (cb_.on_step) cb_.on_step(s);
    window_ = Accumulator{};
  }

  void stop_for_nan(double loss) {
    std::ostringstream m;
    m << "the training loss became " << loss << " at step " << state_.global_step + 1
      << " (epoch " << state_.epoch + 1 << ", lr " << lr_ << "); training stopped and ";
    if (writer_.has_checkpoint())
      m << "the last good checkpoint (step " << committed_step_ << ") stays in "
        << RunPaths(run_.dir).checkpoints();
    else
      m << "no checkpoint was saved (it happened before the first one)";
    m << ". Lower the learning rate (--lr) or keep gradient clipping on (--grad-clip 1)";
    result_.stop_reason = "nan";
    result_.message = m.str();
    say(m.str());
    stop_ = true;
  }

  // The state of the epoch in progress goes into the checkpoint with the weights.
  void commit(bool best) {
    const double session = clock_.seconds();
    state_.elapsed_seconds += session - elapsed_committed_session_;
    elapsed_committed_session_ = session;
    state_.epoch_seconds = state_.step_in_epoch > 0 ? epoch_seconds_before_ + session - epoch_start_ : 0;
    state_.epoch_loss_sum = state_.step_in_epoch > 0 ? epoch_acc_.loss_sum : 0;
    state_.epoch_top1 = state_.step_in_epoch > 0 ? epoch_acc_.top1 : 0;
    state_.epoch_top5 = state_.step_in_epoch > 0 ? epoch_acc_.top5 : 0;
    state_.epoch_count = state_.step_in_epoch > 0 ? epoch_acc_.count : 0;
    writer_.commit(*model_, norm_, optimizer_.get(), state_, best);
    committed_step_ = state_.global_step;
  }

  // End of epoch: validation, metrics.csv, the checkpoint (best when validation improved).
  void end_epoch() {
    EpochStats e;
    e.epoch = state_.epoch;
    const auto t = epoch_acc_.result();
    e.loss = t.loss;
    e.accuracy = t.accuracy;
    e.top5_accuracy = t.top5_accuracy;
    if (!val_rows_.empty()) {
      const auto v = evaluate(model_, data_.train, val_rows_, norm_, tc_.eval_batch_size, tc_.data_parallel);
      e.val_loss = v.loss;
      e.val_accuracy = v.accuracy;
      e.val_top5_accuracy = v.top5_accuracy;
    }
    e.lr = lr_;
    e.seconds = epoch_seconds_before_ + clock_.seconds() - epoch_start_;
    const double score = val_rows_.empty() ? e.accuracy : e.val_accuracy;
    e.best = score > state_.best_val_accuracy;
    ++state_.epoch;
    state_.step_in_epoch = 0;
    if (e.best) {
      state_.best_val_accuracy = score;
      state_.best_epoch = e.epoch;
    }
    state_.finished = state_.epoch >= tc_.epochs;
    EpochRow row;
    row.epoch = e.epoch;
    row.loss = e.loss, row.accuracy = e.accuracy, row.top5_accuracy = e.top5_accuracy;
    row.val_loss = e.val_loss, row.val_accuracy = e.val_accuracy;
    row.val_top5_accuracy = e.val_top5_accuracy;
    row.lr = e.lr, row.seconds = e.seconds;
    writer_.log_epoch(row, state_.global_step);
    epoch_acc_ = Accumulator{};
    epoch_seconds_before_ = 0;
    commit(e.best);
    if (cb_.on_epoch) cb_.on_epoch(e);
  }

  // --- finish ---------------------------------------------------------------------------------

  void finish() {
    if (result_.stop_reason.empty()) result_.stop_reason = "completed";
    // A stop mid-epoch keeps its progress (and a run stopped before its first step gets a
    // checkpoint it can be continued from).
    if ((result_.stop_reason == "stopped" || result_.stop_reason == "max_steps") &&
        (committed_step_ != state_.global_step || !writer_.has_checkpoint()))
      commit(/*best=*/false);
    writer_.flush();

    result_.epochs = state_.epoch;
    result_.steps = state_.global_step;
    result_.train_seconds = step_seconds_;
    result_.images_per_second = step_seconds_ > 0 ? images_trained_ / step_seconds_ : 0;
    // Test with the best weights (the Keras example's ModelCheckpoint + evaluate). A user's stop
    // skips it so that stopping stays quick; NaN skips it as the weights are broken.
    if (data_.test && (result_.stop_reason == "completed" || result_.stop_reason == "max_steps")) {
      const std::string best = RunReader(run_.dir).weights(Weights::Best, /*fallback=*/false);
      if (!best.empty()) load_weights(best, *model_);
      say("evaluating on the test set (" + std::to_string(data_.test->size()) + " images)");
      result_.test = evaluate(model_, *data_.test, all_rows(*data_.test), norm_,
                              tc_.eval_batch_size, tc_.data_parallel);
      writer_.write_test({{"loss", result_.test->loss},
                          {"accuracy", result_.test->accuracy},
                          {"top5_accuracy", result_.test->top5_accuracy},
                          {"count", result_.test->count},
                          {"weights", best.empty() ? "last" : "best"}});
    }
  }

  const PreparedRun& run_;
  const DataSplits& data_;
  const TrainCallbacks& cb_;
  RunWriter writer_;

  ViTConfig model_config_;
  TrainConfig tc_;
  bool bf16_ = false;
  RunState state_;
  Normalization norm_;
  std::vector<int64_t> train_rows_, val_rows_;
  VisionTransformer model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<double> lr_scales_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<DataLoader> loader_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0;
  int shards_ = 1;

  TrainResult result_;
  bool stop_ = false;
  double lr_ = 0;
  ActiveClock clock_;
  double elapsed_committed_session_ = 0;  // this call's active seconds already in state_
  double epoch_start_ = 0;                // active seconds when this call's part of the epoch began
  double epoch_seconds_before_ = 0;       // the epoch's seconds from before a restart
  int64_t committed_step_ = -1;
  double step_seconds_ = 0;
  int64_t images_trained_ = 0, steps_this_call_ = 0;
  Accumulator epoch_acc_, window_;
};

}  // namespace

TrainResult train(const PreparedRun& run, const DataSplits& data, const TrainCallbacks& cb) {
  return Training(run, data, cb).run();
}

TrainResult train(const ViTConfig& model_config, const TrainConfig& train_config,
                  const DataSplits& data, const std::string& run_dir, const TrainCallbacks& cb,
                  bool resume) {
  RunRequest request;
  request.model = model_config;
  request.train = train_config;
  if (resume) {
    request.resume_dir = run_dir;
    request.given = {"max_steps", "log_every"};  // a resumed smoke run may set its own limit
  } else {
    request.out_dir = run_dir;
  }
  return train(prepare_run(request), data, cb);
}

EvalResult evaluate_run(const std::string& run_dir, const Dataset& data) {
  const RunReader reader(run_dir);
  const RunInfo info = reader.info();
  const std::string weights = reader.weights(Weights::Best);
  if (weights.empty()) throw std::runtime_error(run_dir + " has no checkpoint to evaluate");
  VisionTransformer model(info.model);
  load_weights(weights, *model);
  if (data.images.size(1) != info.model.in_channels)
    throw std::invalid_argument("the data set has " + std::to_string(data.images.size(1)) +
                                " channel(s) but the run's model expects " +
                                std::to_string(info.model.in_channels));
  return evaluate(model, data, all_rows(data), info.normalization, info.train.eval_batch_size,
                  /*data_parallel=*/true);
}

}  // namespace vit
