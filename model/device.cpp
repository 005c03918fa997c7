#include "device.h"

#include "train_config.h"  // valid_device_spec

#include <torch/cuda.h>

#include <stdexcept>

namespace vit {

c10::Device resolve_device(const std::string& spec, int local_rank) {
  if (!valid_device_spec(spec))
    throw std::invalid_argument("--device must be auto, cpu, cuda or cuda:N (got '" + spec + "')");
  if (spec == "cpu") return c10::Device(c10::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto") {
    if (!cuda) return c10::Device(c10::kCPU);
    return c10::Device(c10::kCUDA, c10::DeviceIndex(local_rank % int(torch::cuda::device_count())));
  }
  if (!cuda)
    throw std::invalid_argument(
        "--device " + spec + ": this LibTorch has no CUDA (Debian's libtorch is CPU-only) or sees no "
        "GPU. Build ViT Studio against the LibTorch of a PyTorch wheel with CUDA (README, \"CUDA\": "
        "cmake -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') "
        "-DVIT_BUILD_GUI=OFF), or use --device cpu");
  const int count = int(torch::cuda::device_count());
  const int index = spec == "cuda" ? local_rank : std::stoi(spec.substr(5));
  if (index >= count)
    throw std::invalid_argument("--device " + spec + ": GPU " + std::to_string(index) + " does not exist (" +
                                std::to_string(count) + " visible); use cuda:0.." + std::to_string(count - 1));
  return c10::Device(c10::kCUDA, c10::DeviceIndex(index));
}

std::string describe_device(const c10::Device& device) { return device.str(); }

}  // namespace vit
