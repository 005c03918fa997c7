// PyTorch `.pth` / `.bin` state_dicts (torch.save since torch 1.6: a zip archive holding
// `<name>/data.pkl`, a pickle of the dict, and `<name>/data/<key>`, the raw bytes of each storage),
// read without running anything from the file.
//
// Why not LibTorch's own reader (torch::pickle_load / torch::jit::Unpickler): it runs no Python,
// but LibTorch 1.13's unpickler had memory-safety bugs on malformed input that fuzzing found after
// its release (out-of-range stack and mark accesses, heap overflows; pytorch/pytorch#77573,
// #94300, #103667, #108413), so a hostile file could crash it. This reader instead implements the
// few pickle opcodes torch.save emits, checks every stack, memo and byte access, and allows only
// the globals a state_dict needs, like torch.load(weights_only=True): collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the torch.*Storage types. Any other
// global (a class, a function such as os.system) is refused by name; nothing is ever called.
//
// Accepted layouts: a dict of tensors (`model.state_dict()`), or a dict that holds one under
// "state_dict", "model", "model_state_dict" or "module" (common training checkpoints), as long as
// everything else in it is plain data. The legacy pre-1.6 format is refused with how to convert it.
#pragma once

#include <string>

#include "safetensors.h"  // NamedTensors

namespace vit {

// Throws std::runtime_error whose message starts with the path and names the problem.
NamedTensors load_pth(const std::string& path);

// Limits on what a file may make the reader allocate, each checked before allocating:
// - a data.pkl above kMaxPickleBytes is refused (ViT-L/16's is ~30 KB, ~100 KB with its AdamW
//   state: the pickle holds names and shapes, the tensor bytes live in separate entries);
// - the pickle may make at most kMaxPickleValues values, and hold as many on its stack, memo and
//   marks (ViT-L/16 with its optimizer state: ~36,000 opcodes), ~120 MB of bookkeeping at most;
// - values may nest kMaxPickleDepth levels (a training checkpoint nests ~5);
// - a storage is read only when its entry holds exactly numel x element-size bytes (and a zip
//   entry's size is checked against its compressed bytes, see zip_archive.h);
// - a tensor may not have more elements than its storage (overlapping strides), contiguous
//   views share their storage, and the copies made of strided views may not exceed the bytes of
//   all storages together.
inline constexpr uint64_t kMaxPickleBytes = 64ull << 20;
inline constexpr size_t kMaxPickleValues = 1'000'000;
inline constexpr uint32_t kMaxPickleDepth = 100;

}  // namespace vit
