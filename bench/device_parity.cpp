// The same weights and images on two devices: do the logits agree? What scripts/cuda_check.sh
// runs after a short CUDA training, and what proves a GPU build computes what the CPU computes.
//
//   build/bench/device_parity RUN_DIR [DEVICE_A] [DEVICE_B] [IMAGES]
//   (defaults: cpu cuda 64; devices as --device takes them)
//
// Prints the largest absolute and relative logit difference and whether the top-1 classes agree,
// for fp32 on both, and for bf16 autocast on DEVICE_B against fp32 on DEVICE_A. Exit status 1 when
// fp32 differs by more than 1e-3 relative or a top-1 class differs, 0 otherwise.
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

#include "checkpoint.h"
#include "data_parallel.h"
#include "device.h"
#include "run_dir.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s RUN_DIR [DEVICE_A] [DEVICE_B] [IMAGES]\n", argv[0]);
    return 2;
  }
  try {
    const std::string run = argv[1];
    const c10::Device a = vit::resolve_device(argc > 2 ? argv[2] : "cpu");
    const c10::Device b = vit::resolve_device(argc > 3 ? argv[3] : "cuda");
    const int64_t n = argc > 4 ? std::atoll(argv[4]) : 64;
    const std::string weights = vit::RunReader(run).weights(vit::Weights::Best);
    if (weights.empty()) throw std::runtime_error(run + " has no weights");
    auto ma = vit::load_model(weights), mb = vit::load_model(weights);
    ma->eval();
    mb->eval();
    ma->to(a);
    mb->to(b);
    const auto& c = ma->config();
    torch::manual_seed(0);
    const auto images = torch::randn({n, c.in_channels, c.image_size, c.image_size});
    torch::NoGradGuard no_grad;
    const auto la = ma->forward(images.to(a)).cpu();
    auto compare = [&](const char* what, const torch::Tensor& lb) {
      const double abs = (la - lb).abs().max().item<double>();
      const double rel = abs / std::max(1e-12, la.abs().max().item<double>());
      const bool same_top1 = torch::equal(la.argmax(1), lb.argmax(1));
      std::printf("%-34s max |diff| %.3g, relative %.3g, top-1 %s\n", what, abs, rel,
                  same_top1 ? "identical" : "DIFFERS");
      return std::make_pair(rel, same_top1);
    };
    std::printf("device_parity: %s, %lld random images, %s vs %s\n", weights.c_str(),
                static_cast<long long>(n), a.str().c_str(), b.str().c_str());
    const auto fp32 = compare(("fp32 on " + b.str()).c_str(), mb->forward(images.to(b)).cpu());
    torch::Tensor lbf;
    {
      vit::Bf16AutocastScope autocast(true, b.type());
      lbf = mb->forward(images.to(b)).to(torch::kFloat).cpu();
    }
    compare(("bf16 autocast on " + b.str()).c_str(), lbf);
    return fp32.first <= 1e-3 && fp32.second ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "device_parity: %s\n", e.what());
    return 2;
  }
}
