// Writing a run directory (layout in run_dir.h): the one owner of every file a training run
// writes. It holds the run's lock for its lifetime, appends the logs, and commits checkpoints as
// one unit. In a distributed run only rank 0 has an enabled writer; the others' calls do nothing.
//
// Thread contract: one thread (the training thread) uses a writer.
#pragma once

#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "run_dir.h"
#include "train_config.h"

namespace torch::optim {
class Optimizer;
}

namespace vit {

struct VisionTransformerImpl;
class TensorBoardWriter;

class RunWriter {
 public:
  // `enabled` false: a writer that writes nothing (and takes no lock).
  RunWriter(const std::string& run_dir, bool enabled, const std::string& program = "vit train");
  ~RunWriter();
  RunWriter(const RunWriter&) = delete;
  RunWriter& operator=(const RunWriter&) = delete;

  bool enabled() const { return enabled_; }
  const RunPaths& paths() const { return paths_; }

  // A new run: writes config.json (which must not exist yet) and the logs' headers.
  void create(const nlohmann::json& config);
  // A continued run at `state`: removes what interrupted writes left (temporary files, step
  // directories no checkpoint refers to) and cuts metrics.csv and steps.csv back to the state,
  // so the part after the checkpoint is logged once, when it is redone.
  void reopen(const RunState& state);

  void log_step(const StepRow& row);
  // metrics.csv gets the row before the checkpoint that includes the epoch is committed: a kill
  // between the two leaves one row too many, which reopen() cuts.
  void log_epoch(const EpochRow& row, int64_t global_step);

  // Publishes a checkpoint: the model's weights, the optimizer's state (null: none, e.g. an
  // imported model), `state`, the moving average of the weights (null: none; ema.safetensors),
  // and the best weights: these weights (the average, when given) when `best`, else the previous
  // checkpoint's best. All or nothing: on any failure (a full disk) the previous checkpoint stays
  // the committed one and the exception says what happened.
  void commit(VisionTransformerImpl& model, const Normalization& normalization,
              torch::optim::Optimizer* optimizer, const RunState& state, bool best,
              const std::map<std::string, std::string>& metadata = {},
              VisionTransformerImpl* average = nullptr);
  bool has_checkpoint() const;

  void write_test(const nlohmann::json& test);
  void flush();

 private:
  void open_logs();
  void write_metrics();
  void remove_leftovers();

  bool enabled_;
  RunPaths paths_;
  std::string program_;
  std::unique_ptr<class RunLock> lock_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::ofstream steps_;
  std::vector<std::string> metric_rows_;
};

// Bytes of an optimizer's state as torch::save writes it. In memory first: LibTorch's stream
// writer throws from its destructor when the stream fails (a full disk), which aborts the process.
std::string serialize_optimizer(torch::optim::Optimizer& optimizer);
// Its tensors go to `device` (a run may continue on another device than it started on).
void load_optimizer(torch::optim::Optimizer& optimizer, const std::string& path,
                    c10::Device device = c10::kCPU);

}  // namespace vit
