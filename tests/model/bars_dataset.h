// The tiny data set (and model) the trainer, run-directory and inference suites train on: two
// classes a ViT must look at positions to tell apart, a bright vertical bar in column 1 (class
// "left") or 6 ("right") of an 8x8 gray image, on noise.
#pragma once

#include <torch/torch.h>

#include "datasets.h"
#include "vit_config.h"

inline vit::Dataset bars(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  vit::Dataset d;
  d.name = "bars";
  d.classes = {"left", "right"};
  d.labels = torch::randint(0, 2, {n}, torch::kInt64);
  auto images = torch::randint(0, 60, {n, 1, 8, 8}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t col = d.labels[i].item<int64_t>() == 0 ? 1 : 6;
    images[i][0].select(1, col).fill_(250);
  }
  d.images = images.to(torch::kUInt8).contiguous();
  return d;
}

// A ViT small enough to train on bars in a fraction of a second: 8x8x1 in 2x2 patches, dim 16.
inline vit::ViTConfig tiny_model() {
  vit::ViTConfig c;
  c.image_size = 8;
  c.patch_size = 2;
  c.in_channels = 1;
  c.num_classes = 2;
  c.dim = 16;
  c.depth = 1;
  c.heads = 2;
  c.mlp_hidden = 32;
  return c;
}
