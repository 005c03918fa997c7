// Reading a run directory without LibTorch: its config.json and the two CSV logs the trainer
// writes (metrics.csv, one row per epoch; steps.csv, one row every log_every steps). The window
// uses these to show an earlier run, or one a headless `vit train` is still writing, so the
// readers are lenient where a live writer can be caught mid-line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train_config.h"
#include "vit_config.h"

namespace vit {

// Keras CSVLogger columns.
inline constexpr const char* kMetricsHeader =
    "epoch,loss,accuracy,top5_accuracy,val_loss,val_accuracy,val_top5_accuracy,lr,seconds";
inline constexpr const char* kStepsHeader =
    "step,epoch,loss,accuracy,lr,images_per_second,elapsed_seconds";

// What a run directory's config.json says: the model, the training settings, the preprocessing.
struct RunInfo {
  ViTConfig model;
  TrainConfig train;
  Normalization normalization;
};
// Throws std::runtime_error naming the file when config.json is missing or malformed.
RunInfo read_run(const std::string& run_dir);

struct EpochRow {
  int epoch = 0;  // 0-based
  double loss = 0, accuracy = 0, top5_accuracy = 0;
  double val_loss = 0, val_accuracy = 0, val_top5_accuracy = 0;
  double lr = 0, seconds = 0;
};

struct StepRow {
  int64_t step = 0;
  int epoch = 0;
  double loss = 0, accuracy = 0, lr = 0, images_per_second = 0, elapsed_seconds = 0;
};

// Now as "2026-11-24T10:04:59Z", the form config.json records creation times in.
std::string utc_timestamp();

// Rows of metrics.csv / steps.csv. A missing file gives no rows; a header other than the
// expected one throws std::runtime_error naming the file. A last line cut short by a writer in
// progress (or any row that does not parse) is skipped, never fatal.
std::vector<EpochRow> read_metrics_csv(const std::string& path);
std::vector<StepRow> read_steps_csv(const std::string& path);

}  // namespace vit
