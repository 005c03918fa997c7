// From uint8 images in memory to normalized float batches: the Keras example's preprocessing
// (Normalization.adapt, Resizing, RandomFlip, RandomRotation, RandomZoom), seeded, prepared on a
// background thread so the trainer never waits for data.
//
// Resize, flip, rotation and zoom are folded into one affine map per image and applied with a
// single cv::warpAffine per channel plane; the uint8 -> float conversion and normalization happen
// in the same pass in plain C++ (LibTorch's uint8 -> float conversion is slow in this build).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "train_config.h"

namespace vit {

struct Dataset;

// Keras Normalization.adapt: mean and std per channel over the given images (all when empty).
Normalization compute_normalization(const Dataset& data, const std::vector<int64_t>& indices = {});

struct Batch {
  at::Tensor images;  // float (B, C, S, S), normalized
  at::Tensor labels;  // int64 (B)
  std::vector<int64_t> indices;  // rows of the data set in this batch
};

// Prepares one image: uint8 (C, H, W) data -> float (C, S, S) written to `out`. `rng` picks the
// augmentation when `augment.enabled()`. Exposed for tests and inference.
void prepare_image(const uint8_t* src, int channels, int height, int width, int size,
                   const Normalization& norm, const AugmentConfig& augment, uint64_t rng_seed,
                   float* out);

// Number k (0-based) drawn by the engine prepare_image takes its augmentation from, seeded with
// `seed`: std::mt19937_64's, computed lazily (test DataPipeline.augmentationEngineIsMt19937_64).
uint64_t augmentation_engine_draw(uint64_t seed, int k);

struct LoaderOptions {
  int batch_size = 128;
  int image_size = 28;       // output side S
  Normalization normalization;
  AugmentConfig augment;     // applied only when enabled (training)
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  int prefetch = 3;          // batches prepared ahead on the background thread
  // Distributed training: this process prepares only rows [B*part/parts, B*(part+1)/parts) of
  // every batch of B. The order and each image's augmentation do not depend on it.
  int part = 0, parts = 1;
  // Batches in page-locked memory, so copies to a GPU can run asynchronously (CUDA only).
  bool pin_memory = false;
  // The background thread at the lowest CPU priority (nice 19; Linux): for training on the CPU,
  // whose threads keep every core busy. At normal priority the thread, woken when a batch is
  // taken, preempts the trainer at once and prepares the next batch on the trainer's core while
  // the other training threads wait: ~125 µs of each fmnist-small step (0.7%) on an Intel Xeon
  // model 207, against ~24 µs at nice 19, where it runs in the scheduler's gaps instead.
  bool low_priority = false;
};

// Iterates a subset of a data set in batches, epoch by epoch. The order and augmentation of epoch
// e depend only on (seed, e), so a resumed run sees exactly the batches it would have seen.
class DataLoader {
 public:
  DataLoader(const Dataset& data, std::vector<int64_t> indices, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts epoch `epoch`, skipping its first `skip_batches` batches (resume mid-epoch).
  void start_epoch(int epoch, int64_t skip_batches = 0);
  // The next batch of the current epoch, or nullopt at its end.
  std::optional<Batch> next();
  int64_t batches_per_epoch() const;
  int64_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vit
