// The safetensors file format (https://github.com/huggingface/safetensors), the weight format timm
// and the Hugging Face hub use, so ViT Studio's checkpoints load in Python untouched and timm's
// weights load here without pickle:
//
//   u64 little-endian N | N bytes of UTF-8 JSON header, space-padded to a multiple of 8 | data
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte
// offsets into the data that follows the header) plus an optional "__metadata__" object of
// string -> string. Loading validates everything a hostile or truncated file could get wrong
// before it allocates or copies a tensor, and rejects what the reference reader rejects.
#pragma once

// at::Tensor is torch::Tensor (torch re-exports namespace at); this header is ~4x cheaper to
// compile than <torch/types.h>, which is what declares the torch:: spelling.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace vit {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;  // order preserved

struct SafetensorsFile {
  NamedTensors tensors;                          // in file-offset order
  std::map<std::string, std::string> metadata;   // "__metadata__"
  const at::Tensor* find(const std::string& name) const;  // nullptr if absent
};

// Writes atomically via vit::write_file_atomically (model/atomic_file.h). Tensors may be any of
// F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL; non-contiguous tensors are made contiguous. Tensor names
// must be unique and non-empty and not "__metadata__" (std::invalid_argument otherwise).
//
// Tensors are laid out in the given order, except that tensors with larger elements come first
// (a stable sort, as the reference writer does): with the 8-byte-aligned header this puts every
// tensor at a multiple of its element size, which PyTorch needs to view the bytes as that dtype.
// A list of one dtype (every ViT checkpoint: all F32) keeps its order exactly.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// The exact bytes save_safetensors writes.
std::string serialize_safetensors(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Throws std::runtime_error whose message names the file and the exact problem. Tensors are read
// straight from the file into their own (CPU) memory; the file is never held whole in memory.
SafetensorsFile load_safetensors(const std::string& path);
// The same from bytes in memory; `name_for_errors` starts every error message.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& name_for_errors);

// The reference reader refuses headers above 100 MB; so do we, before allocating anything. Every
// tensor's data_offsets must lie inside the file and match its shape and dtype exactly (so the
// tensors together hold at most the file's bytes), checked before any tensor is allocated.
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;
// Dimensions of one tensor (numpy's limit is 64 too).
inline constexpr size_t kMaxSafetensorsDims = 64;

}  // namespace vit
