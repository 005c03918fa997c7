// Data parallelism on one machine: a batch cut into shards that run at the same time, one
// thread each, every op inside a shard single-threaded.
//
// Why: a small ViT step split op by op across 2 threads spends most of its time in OpenMP
// fork/join and in GEMMs too small to split (fmnist-small: ~1,500 images/s on 2 threads, and two
// independent 1-thread runs side by side ~1,300-1,500 each). Whole shards keep both cores busy
// with one fork/join per step. TrainConfig::data_parallel turns it on (default).
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "vit.h"

namespace vit {

// Shards for a batch: one per intra-op thread of the calling thread (at::get_num_threads()), at
// most one per image; 1 when data parallelism is off.
int shard_count(bool data_parallel, int64_t batch);

// Runs fn(s) for s = 0..n-1 at the same time, one thread each, inside one OpenMP region: ATen
// runs every op inline there and OpenBLAS stays single-threaded (both check omp_in_parallel).
// Thread-local state such as grad mode does not reach the other threads: fn sets what it needs.
// The first exception thrown by fn is rethrown here.
void for_each_shard(int n, const std::function<void(int)>& fn);

// Rows [lo, hi) of a batch of `batch` rows that shard s of n gets.
std::pair<int64_t, int64_t> shard_rows(int64_t batch, int s, int n);

// Logits of a batch without autograd, sharded like training.
torch::Tensor predict_logits(VisionTransformer& model, const torch::Tensor& images, bool data_parallel);

// One training batch's forward and backward pass. Leaves the batch-mean gradient of the
// label-smoothed cross-entropy in the .grad of each of `params` (the trainable parameters).
// With shards > 1 each shard computes the gradient of its share of the loss on its own thread;
// the gradients are summed in shard order and dropout seeds are drawn in shard order, so the
// result depends on the seed and the shard count, never on timing.
struct StepOutput {
  torch::Tensor logits;  // (B, classes), detached
  double loss = 0;       // batch mean
};
StepOutput forward_backward(VisionTransformer& model, const std::vector<torch::Tensor>& params,
                            const torch::Tensor& images, const torch::Tensor& labels,
                            double label_smoothing, int shards);

}  // namespace vit
