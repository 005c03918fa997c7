// The training engine: AdamW with linear warmup and cosine decay, label smoothing, gradient
// clipping, per-epoch validation (loss, top-1, top-5), best/last checkpoints, test evaluation with
// the best weights, and a run directory other tools can read.
//
// Qt-free. It reports through callbacks and polls for stop/pause, so the same engine serves the
// CLI and the GUI's worker thread. All callbacks are called on the thread that runs train().
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data_pipeline.h"
#include "vit_config.h"

namespace vit {

struct Dataset;
struct DataSplits;

struct TrainConfig {
  std::string dataset = "fashion-mnist";  // spec for load_dataset(), recorded in config.json
  int epochs = 12;               // passes over the training split (fmnist-small: ~7.5 min)
  int batch_size = 64;           // images per optimizer step (small ViTs gain from more steps)
  double lr = 2e-3;              // peak learning rate after warmup
  double min_lr = 1e-5;          // floor of the cosine decay
  double weight_decay = 0.05;    // AdamW decoupled decay (not on norms, biases, embeddings)
  double warmup_epochs = 0.5;    // linear warmup from 0 to lr, in (fractional) epochs
  double label_smoothing = 0.1;  // cross-entropy target smoothing
  double grad_clip = 1.0;        // max global gradient norm; 0 disables
  uint64_t seed = 42;            // model init, split, shuffling and augmentation
  double val_fraction = 0.1;     // share of the training set held out for validation
  AugmentConfig augment;         // training-time augmentation
  std::vector<float> mean, std;  // normalization; empty = computed from the training split
  int log_every = 10;            // steps between on_step callbacks and steps.csv rows
  int64_t max_steps = 0;         // stop after this many optimizer steps (0 = no limit)
  int eval_batch_size = 512;     // batch size of validation and test passes
};

std::vector<std::string> validate(const TrainConfig& config);  // messages naming the field
nlohmann::json to_json(const TrainConfig& config);
TrainConfig train_config_from_json(const nlohmann::json& j);

struct StepStats {
  int epoch = 0;                 // 0-based
  int64_t step = 0;              // optimizer steps done (global, 1-based after the first)
  int64_t total_steps = 0;       // planned optimizer steps of the whole run
  int64_t step_in_epoch = 0, steps_per_epoch = 0;
  double loss = 0.0;             // mean training loss over the steps since the last report
  double accuracy = 0.0;         // training top-1 over the same steps
  double lr = 0.0;
  double images_per_second = 0.0;  // training throughput (data loading excluded)
  double elapsed_seconds = 0.0;    // since this train() call started
  double eta_seconds = 0.0;
};

struct EpochStats {
  int epoch = 0;  // 0-based
  double loss = 0, accuracy = 0, top5_accuracy = 0;
  double val_loss = 0, val_accuracy = 0, val_top5_accuracy = 0;
  double lr = 0;
  double seconds = 0;
  bool best = false;  // best validation accuracy so far: best.safetensors was written
};

struct EvalResult {
  double loss = 0, accuracy = 0, top5_accuracy = 0;
  int64_t count = 0;
};

enum class Control { Continue, Pause, Stop };

struct TrainCallbacks {
  std::function<void(const StepStats&)> on_step;
  std::function<void(const EpochStats&)> on_epoch;
  std::function<void(const std::string&)> on_message;  // human-readable notes (loading, saving)
  std::function<Control()> poll;  // called between steps; Pause blocks until it stops saying so
};

struct TrainResult {
  std::string run_dir;
  int epochs = 0;             // completed epochs
  int64_t steps = 0;          // optimizer steps done in total (including a resumed part)
  std::optional<EvalResult> test;  // with the best weights, when the data set has a test split
  double images_per_second = 0.0;  // training throughput of this call, data loading excluded
  double train_seconds = 0.0;      // time inside optimizer steps
  std::string stop_reason;    // "completed", "stopped", "max_steps", "nan"
  std::string message;        // for "nan": what happened and what to change
};

// Trains `model_config` on `data` and writes the run directory `run_dir` (created if needed).
// With `resume`, continues the run found in `run_dir` (its config.json wins over the arguments).
// Throws std::invalid_argument for bad configs and std::runtime_error for I/O problems.
TrainResult train(const ViTConfig& model_config, const TrainConfig& train_config,
                  const DataSplits& data, const std::string& run_dir,
                  const TrainCallbacks& callbacks = {}, bool resume = false);

// What a run directory's config.json says: the model, the training settings, the preprocessing.
struct RunInfo {
  ViTConfig model;
  TrainConfig train;
  Normalization normalization;
};
RunInfo read_run(const std::string& run_dir);

// Loss (plain cross-entropy), top-1 and top-5 of a run's best weights (else last) on `data`.
EvalResult evaluate_run(const std::string& run_dir, const Dataset& data);

}  // namespace vit
