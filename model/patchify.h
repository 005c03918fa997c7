// Images <-> sequences of flattened patches, the cut ViT's patch embedding makes (Dosovitskiy et
// al. 2020, eq. 1). Shared by the model's views (the patch grid, per-patch maps) and the tests.
//
// A patch is flattened in (C, P, P) order, the order of PatchEmbed's Conv2d weight (D, C, P, P):
// patchify(x) @ proj.weight.flatten(1).T + proj.bias equals patch_embed(x) exactly. (MAE's and
// einops' `(p1 p2 c)` order differs; it is only a permutation of the same pixels.) Patches run
// row-major over the grid: patch n covers rows (n / grid_w) * P.. and columns (n % grid_w) * P..
//
// Shape legend: B batch, C channels, H x W image, P patch side, gh x gw = H/P x W/P grid,
// N = gh * gw patches.
#pragma once

#include <ATen/core/Tensor.h>

namespace vit {

// (B, C, H, W) -> (B, N, C * P * P). H and W must be multiples of P (std::invalid_argument).
at::Tensor patchify(const at::Tensor& images, int patch_size);
// (B, N, C * P * P) -> (B, C, gh * P, gw * P), the inverse of patchify. N must be gh * gw and the
// last dimension C * P * P (std::invalid_argument otherwise).
at::Tensor unpatchify(const at::Tensor& patches, int patch_size, int channels, int grid_h,
                      int grid_w);

}  // namespace vit
