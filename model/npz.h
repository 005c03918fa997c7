// NumPy .npz archives: a zip file of .npy arrays, the format of Google's original ViT checkpoints
// (https://github.com/google-research/vision_transformer: `ViT-B_16.npz`, keys such as
// `Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel`).
//
// An .npy array is "\x93NUMPY", a version, a header length, a Python dict literal
// `{'descr': '<f4', 'fortran_order': False, 'shape': (768, 3), }` and the raw data. The header is
// parsed by a small literal parser (never evaluated), and every array is checked before it is
// allocated: a known little-endian dtype, a shape whose byte count fits 64 bits and equals the
// bytes that follow. Object arrays (which need pickle) are refused.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "safetensors.h"  // NamedTensors

namespace vit {

// Every array of an .npz file, named as in the archive minus ".npy", in archive order. Throws
// std::runtime_error whose message starts with the path and the entry and names the problem.
NamedTensors load_npz(const std::string& path);

// One .npy array from bytes; `name_for_errors` starts every error message.
at::Tensor parse_npy(const std::string& bytes, const std::string& name_for_errors);

// Writes .npz archives numpy.load reads (npy format 1.0, C order, little-endian); for tests and
// for handing weights to JAX code. Tensors of dtypes numpy lacks (bfloat16) are refused.
void save_npz(const std::string& path, const NamedTensors& tensors, bool compressed = false);
std::string serialize_npy(const at::Tensor& tensor);

// numpy refuses .npy headers longer than this by default (numpy.lib.format, max_header_size).
inline constexpr uint64_t kMaxNpyHeader = 10000;

}  // namespace vit
