// Bias gradients: our column sums (model/column_sums.h) against ATen's sum(0), on the linear
// layers' gradient shapes of a training shard: fmnist-small (32 images x 17 tokens) and
// keras-cifar (128 images x 145 tokens), float and bf16. 1 thread, as a data-parallel shard runs.
// Alternates the two kernels call by call; figures only.
//
//   build/bench/column_sum_bench [repeats=200]
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "column_sums.h"
#include "median_ms.h"
#include "runtime.h"

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");
  const auto runtime = vit::configure_runtime(1);
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 200;
  std::printf("column_sum_bench: %s, 1 thread, median of %d calls\n", runtime.cpu.c_str(), repeats);
  std::printf("  %-22s %6s %12s %12s %8s\n", "gradient (rows x cols)", "type", "ATen sum(0)", "ours", "ratio");
  struct Shape {
    const char* name;
    int64_t rows, cols;
  };
  const std::vector<Shape> shapes = {{"fmnist-small qkv", 544, 384}, {"fmnist-small fc1", 544, 256},
                                     {"fmnist-small proj", 544, 128}, {"keras-cifar qkv", 18560, 192},
                                     {"keras-cifar fc1", 18560, 128}, {"keras-cifar proj", 18560, 64}};
  for (const auto type : {torch::kFloat, torch::kBFloat16}) {
    for (const auto& s : shapes) {
      const auto x = torch::randn({s.rows, s.cols}).to(type);
      double aten = 0, ours = 0;
      for (int round = 0; round < 2; ++round) {  // alternated: the machine's speed drifts
        aten += median_ms([&] { x.sum(0); }, repeats / 2, 5);
        ours += median_ms([&] { vit::column_sums(x); }, repeats / 2, 5);
      }
      std::printf("  %-17s %5lldx%-4lld %5s %9.1f us %9.1f us %7.2fx\n", s.name, (long long)s.rows,
                  (long long)s.cols, type == torch::kFloat ? "float" : "bf16", aten * 500, ours * 500, aten / ours);
    }
  }
  return 0;
}
