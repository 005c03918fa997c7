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

#include <torch/optim/adamw.h>

#include "vit.h"

namespace vit {

// Shards for a batch: one per intra-op thread of the calling thread (at::get_num_threads()), at
// most one per image; 1 when data parallelism is off or the model is on a GPU.
int shard_count(bool data_parallel, int64_t batch, c10::Device device = c10::kCPU);

// Runs fn(s) for s = 0..n-1 at the same time, one thread each, inside one OpenMP region: ATen
// runs every op inline there and OpenBLAS stays single-threaded (both check omp_in_parallel).
// Thread-local state such as grad mode does not reach the other threads: fn sets what it needs.
// The first exception thrown by fn is rethrown here.
void for_each_shard(int n, const std::function<void(int)>& fn);

// Rows [lo, hi) of a batch of `batch` rows that shard s of n gets.
std::pair<int64_t, int64_t> shard_rows(int64_t batch, int s, int n);

// Logits of a batch without autograd, sharded like training; with `bf16` under bf16 autocast (the
// run's precision: its validation and test passes cost what its training steps do), in float.
torch::Tensor predict_logits(VisionTransformer& model, const torch::Tensor& images, bool data_parallel,
                             bool bf16 = false);

// Where this process's shards sit among all shards of a global batch (several processes train
// one batch in a distributed run, process_group.h): shard s of `total` gets the global rows
// [B*s/total, B*(s+1)/total); this process has shards first..first+count-1, i.e. the rows
// [B*first/total, B*(first+count)/total), which are the images it passes. N ranks of t shards
// each split a batch exactly as one process of N*t shards does.
struct ShardLayout {
  int64_t global_batch = 0;
  int first = 0, count = 1, total = 1;
  // The parameters' .grad are views of one flat buffer (all-reduced across processes): the
  // gradients are written into them. Otherwise every step sets new gradient tensors.
  bool into_grads = false;
  static ShardLayout whole(int64_t batch, int shards) { return {batch, 0, shards, shards}; }
  std::pair<int64_t, int64_t> rows() const;  // this process's rows of the global batch
};

// One training batch's forward and backward pass. Leaves the batch-mean gradient of the
// label-smoothed cross-entropy in the .grad of each of `params` (the trainable parameters).
// With shards > 1 each shard computes the gradient of its share of the loss on its own thread;
// the gradients are summed in shard order and dropout seeds are drawn in shard order, so the
// result depends on the seed and the shard count, never on timing.
struct StepOutput {
  torch::Tensor logits;       // (B, classes), detached, on the model's device
  torch::Tensor loss_tensor;  // this process's share of the batch-mean loss, a scalar on the device
  double loss = 0;            // the same read to the host: on the CPU only (on a GPU it would wait)
  // Each parameter's gradient norm (grad.norm(2)), taken right after its shards' gradients were
  // summed (still in cache), when this process ran every shard of the batch on the CPU; empty
  // otherwise (a distributed step's gradients change in the all-reduce after it). For grad_clip.
  std::vector<torch::Tensor> grad_norms;
};
// bf16: mixed precision, LibTorch's CPU autocast on every shard's thread for the forward pass
// (matrix products in bfloat16 with float accumulation; weights, gradients and the optimizer
// stay float). See TrainConfig::precision.
StepOutput forward_backward(VisionTransformer& model, const std::vector<torch::Tensor>& params,
                            const torch::Tensor& images, const torch::Tensor& labels,
                            double label_smoothing, int shards, bool bf16 = false);
// The same for this process's part of a global batch: each shard's loss is weighted by its rows
// over the *global* batch, and dropout seeds are drawn for every shard of the batch (all ranks
// draw the same ones and use their own), so the ranks' gradients sum to the whole batch's.
StepOutput forward_backward(VisionTransformer& model, const std::vector<torch::Tensor>& params,
                            const torch::Tensor& images, const torch::Tensor& labels,
                            double label_smoothing, const ShardLayout& layout, bool bf16 = false);

// The serial end of a step, spread over `threads` threads by parameter (each parameter's
// arithmetic stays on one thread, in LibTorch's order, so the numbers are those of the serial
// calls): with 2 shards the second core otherwise idles through ~60 small ops per parameter
// group, about a quarter of a small ViT's step.
// torch::nn::utils::clip_grad_norm_ (L2): returns the total norm before clipping.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm, int threads);
// clip_grad_norm_'s total norm and factor, min(1, max_norm / (total + 1e-6)) computed as it does,
// without scaling the gradients: adamw_step applies the factor in its own pass over them. `norms`:
// StepOutput::grad_norms when it has them (one pass over the gradients less), else empty.
struct GradClip {
  double total_norm = 0;
  float scale = 1.0f;  // 1: the norm is within the limit, nothing to scale
};
GradClip grad_clip(const std::vector<torch::Tensor>& params, double max_norm, int threads,
                   const std::vector<torch::Tensor>& norms = {});
// torch::optim::AdamW::step() of LibTorch 1.13 (decoupled decay, bias correction, no amsgrad),
// on the optimizer's own state, so checkpoints and resume are unchanged. Float CPU parameters are
// updated in one fused pass each (LibTorch's arithmetic in float, without FMAs: equal to
// AdamW::step to float rounding, the same on every CPU and thread count); others by ATen's ops.
// grad_scale != 1 first multiplies each gradient by it (grad_clip's factor), in place, as
// clip_grad_norm_ would have: the fused pass reads and scales the gradient once.
void adamw_step(torch::optim::AdamW& optimizer, int threads, float grad_scale = 1.0f);
// Every parameter's AdamW state in group order, created (zero, step 0) where missing: what a
// distributed run broadcasts from rank 0 so that every rank continues with the same state.
std::vector<torch::optim::AdamWParamState*> adamw_states(torch::optim::AdamW& optimizer);
// Whether every loaded state has its parameter's shape. LibTorch 2.x maps an optimizer file that
// 1.13 wrote (state keyed by pointer strings) onto the parameters by position, which can pair a
// state with the wrong parameter; callers then start the moments afresh.
bool adamw_states_fit(torch::optim::AdamW& optimizer);

// The decay of the moving average of the weights at its update number `updates` (0 for the
// first): min(decay, (1 + updates) / (10 + updates)), TensorFlow's ExponentialMovingAverage with
// num_updates (TrainConfig::ema_decay).
double ema_decay_at(double decay, int64_t updates);
// average[i] += (1 - decay) x (values[i] - average[i]) for every pair, spread over `threads`
// threads by size; float CPU tensors in one pass each, computed as written (the same numbers on
// every CPU and thread count), others by torch's lerp_ with weight 1 - decay.
void update_average(const std::vector<torch::Tensor>& average, const std::vector<torch::Tensor>& values,
                    double decay, int threads);

// While alive, LibTorch's autocast to bfloat16 for `device` (CPU or CUDA) is on for the calling
// thread (autocast state is thread-local); when `on` is false it does nothing. Clears autocast's
// weight cache on exit.
class Bf16AutocastScope {
 public:
  explicit Bf16AutocastScope(bool on, at::DeviceType device = at::kCPU);
  ~Bf16AutocastScope();
  Bf16AutocastScope(const Bf16AutocastScope&) = delete;
  Bf16AutocastScope& operator=(const Bf16AutocastScope&) = delete;

 private:
  bool on_;
  at::DeviceType device_;
  bool was_enabled_ = false;
  at::ScalarType old_dtype_ = at::kBFloat16;
};
// Whether autocast is on for `device` on this thread (either LibTorch release's spelling).
bool bf16_autocast_enabled(at::DeviceType device = at::kCPU);

}  // namespace vit
