// GELU and dropout: the fused kernels (model/gelu_dropout.h) against ATen's ops (at::gelu and a
// multiply by dropout_mask(), as the model ran them before), on keras-cifar's fc1 output for a
// shard of 128 images (18,560 x 128), float and bf16, forward alone and forward + backward.
// Figures only.
//
//   build/bench/gelu_dropout_bench [threads=1] [repeats=20]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

#include "dropout.h"
#include "gelu_dropout.h"
#include "median_ms.h"
#include "runtime.h"

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");
  const auto runtime = vit::configure_runtime(argc > 1 ? std::atoi(argv[1]) : 1);
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  std::printf("gelu_dropout_bench: %s, %d thread(s), kernels %s\n", runtime.cpu.c_str(), runtime.threads,
              vit::gelu_dropout_isa().c_str());
  if (!vit::gelu_dropout(torch::zeros({1}), true, 0.0)) {
    std::printf("  the fused kernels are off here: nothing to compare\n");
    return 0;
  }
  std::printf("  %-22s %6s %9s %9s %7s %11s %9s %7s\n", "op", "type", "fwd ATen", "fused", "ratio", "f+b ATen",
              "fused", "ratio");
  struct Case { const char* name; bool gelu; double p; };
  const Case cases[] = {{"gelu", true, 0.0}, {"gelu + dropout 0.1", true, 0.1}, {"dropout 0.1", false, 0.1}};
  for (const auto& c : cases) {
    for (const auto type : {torch::kFloat, torch::kBFloat16}) {
      const auto x = torch::randn({128 * 145, 128}).to(type).requires_grad_();
      const auto dy = torch::randn_like(x);
      auto aten = [&] {
        auto h = c.gelu ? torch::gelu(x) : x;
        return c.p > 0 ? h * vit::dropout_mask(x.sizes(), c.p, type) : h;
      };
      auto fused = [&] { return *vit::gelu_dropout(x, c.gelu, c.p); };
      auto forward = [&](auto&& op) {
        return median_ms([&] { torch::NoGradGuard no_grad; (void)op(); }, repeats, 2);
      };
      auto both = [&](auto&& op) {
        return median_ms([&] { op().backward(dy); x.mutable_grad() = at::Tensor(); }, repeats, 2);
      };
      const double fa = forward(aten), ff = forward(fused), ba = both(aten), bf = both(fused);
      std::printf("  %-22s %6s %9.3f %9.3f %6.2fx %11.3f %9.3f %6.2fx\n", c.name,
                  type == torch::kFloat ? "float" : "bf16", fa, ff, fa / ff, ba, bf, ba / bf);
    }
  }
}
