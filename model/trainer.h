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
#include "run_dir.h"
#include "run_log.h"
#include "train_config.h"
#include "vit_config.h"

namespace vit {

struct Dataset;
struct DataSplits;

struct StepStats {
  int epoch = 0;                 // 0-based
  int64_t step = 0;              // optimizer steps done (global, 1-based after the first)
  int64_t total_steps = 0;       // planned optimizer steps of the whole run
  int64_t step_in_epoch = 0, steps_per_epoch = 0;
  double loss = 0.0;             // mean training loss over the steps since the last report
  double accuracy = 0.0;         // training top-1 over the same steps
  double lr = 0.0;
  double images_per_second = 0.0;  // training throughput (data loading excluded)
  double elapsed_seconds = 0.0;    // training time of the whole run, pauses excluded
  double eta_seconds = 0.0;
};

struct EpochStats {
  int epoch = 0;  // 0-based
  double loss = 0, accuracy = 0, top5_accuracy = 0;
  double val_loss = 0, val_accuracy = 0, val_top5_accuracy = 0;
  double lr = 0;
  double seconds = 0;  // the whole epoch's training and validation time, pauses excluded
  bool best = false;   // best validation accuracy so far: its weights became the best checkpoint
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
  std::function<void()> on_ready;  // the run directory is written (or reopened); steps begin
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

// Trains the prepared run (run_dir.h: prepare_run, fit_to_data) on `data`, writing its run
// directory: setup (split, normalization, model, optimizer, loader, the run's writer), the loop of
// steps with a checkpoint at each epoch end (and every checkpoint_every steps), then the test
// split with the best weights. A continued run picks up at its committed checkpoint.
// Throws std::invalid_argument for bad configs and std::runtime_error for I/O problems (a full
// disk: the previous checkpoint stays committed and the run can be continued).
TrainResult train(const PreparedRun& run, const DataSplits& data, const TrainCallbacks& callbacks = {});

// The same for callers that hold the configs: a new run in `run_dir`, or with `resume` the run
// there, continued with its own settings (max_steps and log_every may differ).
TrainResult train(const ViTConfig& model_config, const TrainConfig& train_config,
                  const DataSplits& data, const std::string& run_dir,
                  const TrainCallbacks& callbacks = {}, bool resume = false);

// Loss (plain cross-entropy), top-1 and top-5 of a run's best weights (else last) on `data`.
EvalResult evaluate_run(const std::string& run_dir, const Dataset& data);

}  // namespace vit
