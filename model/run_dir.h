// A run directory: its layout, the state that says how far training got, the checkpoint that
// state belongs to, the lock that keeps it to one writer, and how a run is prepared (named,
// fitted to the data, continued). The trainer writes through RunWriter (run_writer.h); the window,
// `vit eval`, `vit predict` and `vit train --resume` read through this header.
//
//   config.json        model, training settings, preprocessing, data (run_log.h)
//   metrics.csv        one row per finished epoch
//   steps.csv          one row every log_every steps
//   test.json          the test split with the best weights, when training completed
//   events.out.tfevents.*   the same curves for TensorBoard
//   state.json         -> checkpoints/current/state.json
//   checkpoints/
//     current          -> step-000000450: the last committed checkpoint (a symbolic link that
//                         one rename(2) replaces: the commit point)
//     step-000000450/  last.safetensors (weights), last.optim.pt (AdamW state), state.json,
//                      best.safetensors (a hard link to the best epoch's weights),
//                      ema.safetensors (with ema_decay: the weights' moving average, which
//                      the best weights are then taken from)
//     best.safetensors -> current/best.safetensors
//     last.safetensors -> current/last.safetensors
//     last.optim.pt    -> current/last.optim.pt
//     ema.safetensors  -> current/ema.safetensors (with ema_decay)
//   .lock              held (flock) by the one process writing the run; says who that is
//
// A checkpoint is one unit: weights, optimizer state, training state and best weights are written
// into a new step directory and published together by switching `current`; a kill or a full disk
// at any moment leaves the previous unit whole. Runs written before this layout (plain state.json,
// best/last.safetensors and last.optim.pt files) are read and continued; their first new
// checkpoint converts them.
//
// Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_log.h"
#include "train_config.h"
#include "vit_config.h"

namespace vit {

// Every path of a run directory, in one place.
struct RunPaths {
  explicit RunPaths(std::string run_dir);
  std::string dir;
  std::string config() const;       // config.json
  std::string metrics() const;      // metrics.csv
  std::string steps() const;        // steps.csv
  std::string test() const;         // test.json
  std::string state() const;        // state.json (the link, or a run's own from before)
  std::string lock() const;         // .lock
  std::string checkpoints() const;  // checkpoints/
  std::string current() const;      // checkpoints/current
  std::string best_weights() const;      // checkpoints/best.safetensors
  std::string last_weights() const;      // checkpoints/last.safetensors
  std::string last_optimizer() const;    // checkpoints/last.optim.pt
  std::string average_weights() const;   // checkpoints/ema.safetensors
  std::string step_dir(int64_t global_step) const;  // checkpoints/step-000000450
};

// Where training stands: what state.json holds. Written with each checkpoint, as part of it.
struct RunState {
  int epoch = 0;              // epoch in progress (or the next one), 0-based
  int64_t step_in_epoch = 0;  // optimizer steps already done in `epoch`
  int64_t global_step = 0;
  double best_val_accuracy = -1.0;
  int best_epoch = -1;        // -1: no best checkpoint yet
  bool finished = false;      // every planned epoch done
  // The epoch in progress so far, so a continued epoch reports the whole epoch's training loss,
  // accuracy and time, not only the part after the restart.
  double epoch_seconds = 0, epoch_loss_sum = 0;
  int64_t epoch_top1 = 0, epoch_top5 = 0, epoch_count = 0;
  double elapsed_seconds = 0;  // training time of the whole run, pauses excluded
  int world_size = 1;          // processes that wrote this checkpoint

  nlohmann::json to_json() const;
  // Checks every field's type and range; throws std::runtime_error naming `what` (the file) and
  // the field when state.json is damaged.
  static RunState from_json(const nlohmann::json& j, const std::string& what);
};

enum class Weights { Best, Last };

// Reading a run directory (one written now, before, or being written by another process).
class RunReader {
 public:
  explicit RunReader(std::string run_dir);
  const RunPaths& paths() const { return paths_; }

  RunInfo info() const;  // config.json (read_run)
  // The committed state; nullopt when no checkpoint was committed yet. Throws
  // std::runtime_error when state.json is damaged.
  std::optional<RunState> state() const;
  // The weights file of the committed checkpoint; "" when there is none. With `fallback`, best
  // falls back to last when there is no best yet, and last to best (imported runs have only best).
  std::string weights(Weights which = Weights::Best, bool fallback = true) const;
  // The optimizer state of the committed checkpoint, "" when none.
  std::string optimizer() const;
  // The moving average of the weights (TrainConfig::ema_decay) of the committed checkpoint, ""
  // when none.
  std::string average_weights() const;
  std::vector<EpochRow> metrics() const;
  std::vector<StepRow> steps() const;
  // test.json, when training completed: loss, accuracy, top5_accuracy, count, weights.
  std::optional<nlohmann::json> test() const;
  // Whether `run_dir` looks like a run directory (has a config.json).
  static bool is_run(const std::string& run_dir);

 private:
  RunPaths paths_;
  std::string committed_dir() const;  // the current unit, "" for runs from before / none
  // The committed unit's file `name` (`legacy` for runs from before), "" when it does not exist.
  std::string committed_file(const std::string& name, const std::string& legacy) const;
};

// The run directory a weights file belongs to ("" when none): checkpoints/x.safetensors or
// checkpoints/step-N/x.safetensors under a directory with a config.json.
std::string run_dir_of_weights(const std::string& weights_path);

// ---------------------------------------------------------------------------------------------
// One writer per run directory

// Who holds a run directory's lock.
struct LockHolder {
  int64_t pid = 0;
  std::string host, program, since;
  std::string describe() const;  // "vit train (pid 1234 on host, since 2026-11-30T10:00:00Z)"
};

// Held while a process writes a run directory: an exclusive flock on `.lock`, released when the
// object goes (or the process dies, so a killed writer never leaves a stale lock).
class RunLock {
 public:
  // Throws std::runtime_error naming the holder when another process (or another RunLock in this
  // one) writes the run.
  RunLock(const std::string& run_dir, const std::string& program);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};
// The process writing `run_dir` now, nullopt when none.
std::optional<LockHolder> run_lock_holder(const std::string& run_dir);

// ---------------------------------------------------------------------------------------------
// Preparing a run: the one place the CLI and the window decide what a run trains.

struct RunRequest {
  ViTConfig model;
  TrainConfig train;
  // Names of the fields the user set (flags given, fields edited). They are never fitted to the
  // data, and when continuing they must be resumable (FieldSpec::resumable) or equal to the run's.
  std::set<std::string> given;
  std::string resume_dir;  // continue this run, or
  std::string out_dir;     // write a new run here, or a new directory under runs_root:
  std::string runs_root = "runs";
  std::string name;        // <name>-<yyyymmdd-hhmmss>[-N]; "" = the preset's name or "custom"
};

struct PreparedRun {
  ViTConfig model;
  TrainConfig train;
  std::string dir;
  bool resume = false;
  std::vector<std::string> notes;  // what was decided for the user, one sentence each
};

// Resolves the configs (a continued run's own, with the resumable fields the user changed),
// checks them, and picks the directory (creating nothing). Throws std::invalid_argument for
// settings that cannot be honoured (an unknown run, a changed non-resumable field, fewer epochs
// than done) and for invalid configs (the first message of validate()).
PreparedRun prepare_run(const RunRequest& request);
// Channels and classes follow the loaded data unless the user fixed them (then a mismatch is an
// error naming the flag); a continued run must match its data. Adds a note when it changes one.
void fit_to_data(PreparedRun& run, const std::set<std::string>& given, int data_channels,
                 int data_classes);
// Removes what a run that never reached its first checkpoint wrote (config.json, the logs, the
// event files), so that a restarted attempt (torchrun --max_restarts) can start it again in the
// same directory. Does nothing to a run that has a checkpoint, or to other files.
void discard_unstarted_run(const std::string& run_dir);
// A new directory name under `root` that does not exist yet: root/<name>-<yyyymmdd-hhmmss>[-N].
std::string new_run_dir(const std::string& root, const std::string& name);

}  // namespace vit
