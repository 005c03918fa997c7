// What a run directory's text files say, written and read through one definition: config.json
// (the model, the training settings, the preprocessing, the data), and the two CSV logs,
// metrics.csv (one row per epoch) and steps.csv (one row every log_every steps). The trainer
// writes them (run_writer.h); the window, `vit eval` and `vit train --resume` read them. The
// readers are lenient where a live writer can be caught mid-line, strict where a number could
// not have been written by us.
//
// Torch-free: the window's widgets include this.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train_config.h"
#include "vit_config.h"

namespace vit {

// ---------------------------------------------------------------------------------------------
// config.json

// What a run directory's config.json says.
struct RunInfo {
  ViTConfig model;
  TrainConfig train;
  Normalization normalization;
  std::vector<std::string> classes;  // the data set's class names (may be empty: imported runs)
  std::string created;               // UTC, "2026-11-24T10:04:59Z"
  int world_size = 1;                // processes that trained it (distributed data parallel)
};

// The data set a run was trained on, as config.json records it.
struct RunData {
  std::string spec, name;
  std::vector<std::string> classes;
  int64_t train_size = 0, val_size = 0, test_size = 0;
};

// config.json's contents. `extra` entries (e.g. "imported") are added at the top level.
nlohmann::json run_config_json(const ViTConfig& model, const TrainConfig& train,
                               const Normalization& normalization, const RunData& data,
                               int world_size = 1, const nlohmann::json& extra = {});
// Throws std::runtime_error naming the file when config.json is missing or malformed.
RunInfo read_run(const std::string& run_dir);

// Now as "2026-11-24T10:04:59Z", the form config.json records creation times in.
std::string utc_timestamp();

// ---------------------------------------------------------------------------------------------
// metrics.csv and steps.csv

struct EpochRow {
  int epoch = 0;  // 0-based
  double loss = 0, accuracy = 0, top5_accuracy = 0;
  double val_loss = 0, val_accuracy = 0, val_top5_accuracy = 0;
  double lr = 0;
  double seconds = 0;  // training + validation time of the epoch, pauses excluded
};

struct StepRow {
  int64_t step = 0;
  int epoch = 0;
  double loss = 0, accuracy = 0, lr = 0, images_per_second = 0;
  double elapsed_seconds = 0;  // training time of the whole run so far, pauses excluded
};

// One CSV column: its header name, and the row's value as a double. Whole-number columns are
// read back only when the number is whole and fits (a damaged 1e+31 drops the row).
template <class Row>
struct Column {
  const char* name;
  bool whole;
  std::function<double(const Row&)> get;
  std::function<void(Row&, double)> set;
};
const std::vector<Column<EpochRow>>& metrics_columns();  // Keras CSVLogger's columns
const std::vector<Column<StepRow>>& steps_columns();

// The header lines, from the column tables.
inline constexpr const char* kMetricsHeader =
    "epoch,loss,accuracy,top5_accuracy,val_loss,val_accuracy,val_top5_accuracy,lr,seconds";
inline constexpr const char* kStepsHeader =
    "step,epoch,loss,accuracy,lr,images_per_second,elapsed_seconds";

// One row as the trainer writes it (6 significant digits, no newline).
std::string format_row(const EpochRow& row);
std::string format_row(const StepRow& row);

// Rows of metrics.csv / steps.csv. A missing file gives no rows; a header other than the
// expected one throws std::runtime_error naming the file. A last line cut short by a writer in
// progress, or any row that does not parse (a field missing, not a number, a whole-number column
// that is not whole or out of range), is skipped, never fatal.
std::vector<EpochRow> read_metrics_csv(const std::string& path);
std::vector<StepRow> read_steps_csv(const std::string& path);

}  // namespace vit
