// Dropout mask cost: torch::dropout (bernoulli_ per element) against vit::dropout_mask on the same
// tensors in the same process, alternating so machine noise hits both. Prints ns per element and
// the ratio; never fails on a time.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

#include "runtime.h"
#include "vit.h"

int main(int argc, char** argv) {
  vit::relaunch_with_openmp_policy(argv, "ACTIVE");
  const auto runtime = vit::configure_runtime(argc > 1 ? std::atoi(argv[1]) : 0);
  std::printf("%s\n", vit::describe(runtime).c_str());
  torch::NoGradGuard no_grad;
  // fmnist-small's MLP activations at batch 64: (64, 50, 128).
  auto x = torch::randn({64, 50, 128});
  using Clock = std::chrono::steady_clock;
  double t_torch = 0, t_ours = 0;
  const int rounds = 20, reps = 20;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) auto y = torch::dropout(x, 0.1, /*train=*/true);
    auto t1 = Clock::now();
    for (int i = 0; i < reps; ++i) auto y = x * vit::dropout_mask(x.sizes(), 0.1);
    auto t2 = Clock::now();
    t_torch += std::chrono::duration<double>(t1 - t0).count();
    t_ours += std::chrono::duration<double>(t2 - t1).count();
  }
  const double n = double(x.numel()) * rounds * reps;
  std::printf("torch::dropout          : %6.2f ns/element\n", t_torch / n * 1e9);
  std::printf("x * vit::dropout_mask   : %6.2f ns/element\n", t_ours / n * 1e9);
  std::printf("speed-up                : %6.1fx\n", t_torch / t_ours);
}
