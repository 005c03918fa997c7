// Dropout masks and their random streams: a fast inverted-dropout mask seeded from LibTorch's
// generator, and per-thread seed streams that keep data-parallel training reproducible.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace vit {

// Inverted-dropout mask: each element is 0 with probability p, else 1 / (1 - p). On a GPU the mask
// is drawn there (bernoulli_ from the device's generator, which torch::manual_seed seeds); on the
// CPU as follows.
// One 64-bit seed per mask, from LibTorch's default generator (or from the calling thread's
// RandomStreamScope); much cheaper than torch::dropout's per-element bernoulli draw. dtype is
// float or bfloat16 (bf16 mixed precision: a float mask would promote x * mask back to float);
// the same seed gives the same zeros in either.
at::Tensor dropout_mask(at::IntArrayRef sizes, double p, at::ScalarType dtype = at::kFloat,
                        c10::Device device = c10::kCPU);

// While alive, dropout and stochastic-depth masks made on this thread take their seeds from a
// private stream started at `seed` instead of the shared default generator. Data-parallel
// training runs its shards on several threads at once; the order in which they would reach the
// shared generator depends on timing, so each shard gets its own stream seeded in shard order,
// and a run stays reproducible.
class RandomStreamScope {
 public:
  explicit RandomStreamScope(uint64_t seed);
  ~RandomStreamScope();
  RandomStreamScope(const RandomStreamScope&) = delete;
  RandomStreamScope& operator=(const RandomStreamScope&) = delete;

 private:
  bool had_stream_;
  uint64_t saved_state_;
};

// The seed of the next dropout mask: from the calling thread's RandomStreamScope if one is alive,
// else from LibTorch's default generator. dropout_mask takes one per mask; so do the fused
// GELU/dropout kernels (gelu_dropout.h), which make the same mask from the same seed.
uint64_t next_dropout_seed();

// One 64-bit draw from LibTorch's default generator (what torch::manual_seed seeds).
uint64_t draw_seed();

}  // namespace vit
