// Where tensors live: `--device auto|cpu|cuda[:N]`. Debian's LibTorch is CPU-only; a LibTorch from a
// PyTorch wheel with CUDA (README, "CUDA") runs the same code on a GPU.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace vit {

// The device a spec names. "auto": cuda:<local_rank modulo the GPUs> when this LibTorch has CUDA
// and sees a GPU, else the CPU; "cuda" under a distributed launcher: cuda:<local_rank>. Throws
// std::invalid_argument for a malformed spec, a CUDA device this LibTorch cannot use (with how
// to get one that can), or a GPU index past the last.
c10::Device resolve_device(const std::string& spec, int local_rank = 0);
// "cpu", or "cuda:0 (NVIDIA H200)".
std::string describe_device(const c10::Device& device);

}  // namespace vit
