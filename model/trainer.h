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
class ProcessGroup;

// A progress report: the steps.csv row (step, epoch, loss and accuracy since the last report,
// lr, images/s, elapsed_seconds: the run's training time, pauses excluded) and where the run
// stands.
struct StepStats : StepRow {
  int64_t total_steps = 0;       // planned optimizer steps of the whole run
  int64_t step_in_epoch = 0, steps_per_epoch = 0;
  double eta_seconds = 0.0;
};

// An epoch's metrics.csv row (seconds: the whole epoch's training and validation time, pauses
// excluded) and whether it was the best so far.
struct EpochStats : EpochRow {
  bool best = false;  // best validation accuracy so far: its weights became the best checkpoint
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
  // Model FLOPs of those steps (summary.h: training_macs x 2 per image; what the model needs,
  // not what the kernels did), their rate over train_seconds, and the peak that rate is a share
  // of: the float FMA peak of the cores trained on (cpu_info.h), 0 where not known (a GPU, a
  // distributed run, bf16 GEMMs on bf16 units).
  double model_flops = 0.0, flops_per_second = 0.0, peak_flops_per_second = 0.0;
  std::string stop_reason;    // "completed", "stopped", "max_steps", "nan"
  std::string message;        // for "nan": what happened and what to change
};

// Trains the prepared run (run_dir.h: prepare_run, fit_to_data) on `data`, writing its run
// directory: setup (split, normalization, model, optimizer, loader, the run's writer), the loop of
// steps with a checkpoint at each epoch end (and every checkpoint_every steps), then the test
// split with the best weights. A continued run picks up at its committed checkpoint.
// Throws std::invalid_argument for bad configs and std::runtime_error for I/O problems (a full
// disk: the previous checkpoint stays committed and the run can be continued).
//
// With a process group (distributed.h), this process is one rank of a data-parallel run: every
// rank takes its rows of each global batch, the gradients and the step's statistics are summed
// across ranks in one flat buffer, validation and test are split across ranks, and rank 0 alone
// reads and writes the run directory (its settings, state and weights reach the others by
// broadcast, so other machines need only the data set). A rank that dies or hangs throws
// DistributedError on the others within the timeout; rank 0 first commits the last completed step.
TrainResult train(const PreparedRun& run, const DataSplits& data, const TrainCallbacks& callbacks = {},
                  ProcessGroup* group = nullptr);

// The same for callers that hold the configs: a new run in `run_dir`, or with `resume` the run
// there, continued with its own settings (max_steps and log_every may differ).
TrainResult train(const ViTConfig& model_config, const TrainConfig& train_config,
                  const DataSplits& data, const std::string& run_dir,
                  const TrainCallbacks& callbacks = {}, bool resume = false);

// The seed of training step `step`'s random stream (dropout.h's RandomStreamScope): its dropout,
// stochastic-depth and patch-dropout draws are a function of the run's seed and the step alone.
uint64_t step_random_seed(uint64_t seed, int64_t step);

// Whether epoch `epoch` (0-based) trains with the model's patch_drop: all but the last
// TrainConfig::full_token_epochs epochs.
bool patch_drop_active(const TrainConfig& config, int epoch);

// A step's (or a batch's) statistics as one float64 tensor where the logits are: [loss sum
// (loss_sum, a 0-dim tensor), top-1 hits, top-5 hits (top-k for fewer than 5 classes), images,
// stop vote (1 or 0)]. Hits count as topk would (on the CPU they are counted directly, and by
// topk where a row has equal logits or NaN).
at::Tensor batch_stats(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& loss_sum,
                       bool stop_vote = false);

// Loss (plain cross-entropy), top-1 and top-5 of a run's best weights (else last) on `data`, on
// `device` (model/device.h), in `precision` (fp32, bf16, auto; "" = the run's own).
EvalResult evaluate_run(const std::string& run_dir, const Dataset& data, const std::string& device = "auto",
                        const std::string& precision = "");

}  // namespace vit
