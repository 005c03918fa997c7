// Training-step throughput of one model three ways, in one process, alternating so that machine
// noise hits all of them alike: every op split across the threads ("ops"), data-parallel shards
// (model/data_parallel.h, one single-threaded shard per thread), and one thread. Prints images/s
// and the ratios; never fails on a time.
//
//   build/bench/data_parallel_bench [preset=fmnist-small] [batch=64] [rounds=3] [steps=60]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data_parallel.h"
#include "runtime.h"
#include "vit_config.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  vit::relaunch_with_openmp_policy(argv, "ACTIVE");  // as the `vit` CLI does
  const std::string name = argc > 1 ? argv[1] : "fmnist-small";
  const int batch = argc > 2 ? std::atoi(argv[2]) : 64;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  const int steps = argc > 4 ? std::atoi(argv[4]) : 60;
  const auto info = vit::configure_runtime(0);
  const int threads = info.threads;
  const auto cfg = vit::preset(name).config;
  torch::manual_seed(0);
  vit::VisionTransformer model(cfg);
  model->train();
  std::vector<torch::Tensor> params;
  for (const auto& p : model->parameters()) params.push_back(p);
  const auto x = torch::randn({batch, cfg.in_channels, cfg.image_size, cfg.image_size});
  const auto y = torch::randint(0, cfg.num_classes, {batch}, torch::kLong);

  struct Mode { const char* name; int threads, shards; double seconds = 0; };
  Mode modes[] = {{"ops (every op on all threads)", threads, 1},
                  {"data (one shard per thread)", threads, threads},
                  {"one thread", 1, 1}};
  std::printf("%s, batch %d, %d threads, %d rounds of %d steps\n", name.c_str(), batch, threads,
              rounds, steps);
  for (int r = 0; r < rounds; ++r)
    for (auto& m : modes) {
      at::set_num_threads(m.threads);
      for (int i = 0; i < 3; ++i) vit::forward_backward(model, params, x, y, 0.1, m.shards);
      const auto t0 = Clock::now();
      for (int i = 0; i < steps; ++i) vit::forward_backward(model, params, x, y, 0.1, m.shards);
      m.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    }
  const double images = double(rounds) * steps * batch;
  for (const auto& m : modes)
    std::printf("  %-32s %8.0f images/s  %.2fx ops\n", m.name, images / m.seconds,
                modes[0].seconds / m.seconds);
  return 0;
}
