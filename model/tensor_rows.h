// Small helpers for our CPU kernels' autograd functions, which read a contiguous (..., C) tensor
// as the matrix (M, C) it is in memory (linear layers, layer norms): no reshape or view, so no
// view node in the graph around them.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

namespace vit {

// M, the rows of x (..., C): every dimension but the last.
inline int64_t rows_of(const at::Tensor& x) { return x.numel() / std::max<int64_t>(1, x.size(-1)); }

// `t` as `type`: t itself when it has that type already, without the dispatch Tensor::to costs
// even then (backward passes call this for every gradient).
inline at::Tensor as_type(const at::Tensor& t, at::ScalarType type) { return t.scalar_type() == type ? t : t.to(type); }

}  // namespace vit
