// Distributed data parallel: step time and all-reduce time per step for 1, 2 and 3 ranks on this
// machine, and what bucketing or overlapping the all-reduce with the backward pass would buy,
// as ratios measured in the same run. Prints figures; never fails on a time.
//
//   build/bench/distributed_bench [preset] [global batch] [timed steps]
//   (defaults: fmnist-small 64 20; the other case: vit-b16 8 5)
//
// Without WORLD_SIZE in its environment it is the launcher: it runs itself as 1, 2 and 3 ranks
// (launcher.h) and prints one table. As a rank it times, per step (medians):
//   compute     forward + backward of its share of the batch (the trainer's forward_backward)
//   flat        one all-reduce of every gradient in one flat buffer (what the trainer does)
//   per-param   one all-reduce per gradient tensor (no bucketing)
//   buckets     all-reduces of 25 MB buckets (DDP's default bucket size), one after another
//   overlapped  compute while another thread all-reduces a buffer of the same size: how far this
//               machine's cores let communication hide behind the backward pass (DDP's overlap)
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cpu_info.h"
#include "data_parallel.h"
#include "distributed.h"
#include "launcher.h"
#include "runtime.h"
#include "vit.h"

using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int run_rank(const std::string& preset, int64_t batch, int steps, const std::string& out) {
  const vit::DistEnv env = vit::dist_env_from_environment();
  vit::configure_runtime(std::max(1, vit::available_cores() / env.local_world_size));
  vit::ProcessGroup group(env, std::chrono::seconds(300));
  torch::manual_seed(0);
  vit::VisionTransformer model(vit::preset(preset).config);
  model->train();
  const auto& c = model->config();
  std::vector<torch::Tensor> params = model->parameters();
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  auto flat = torch::zeros({total}, torch::kFloat);
  int64_t offset = 0;
  for (auto& p : params) {
    p.mutable_grad() = flat.narrow(0, offset, p.numel()).view(p.sizes());
    offset += p.numel();
  }
  const int shards = vit::shard_count(true, std::max<int64_t>(1, batch / env.world_size));
  vit::ShardLayout layout{batch, env.rank * shards, shards, env.world_size * shards, true};
  const auto [lo, hi] = layout.rows();
  const auto images = torch::randn({hi - lo, c.in_channels, c.image_size, c.image_size});
  const auto labels = torch::randint(0, c.num_classes, {hi - lo}, torch::kLong);

  std::vector<double> compute, flat_ms, per_param, buckets, overlapped;
  auto spare = torch::zeros_like(flat);
  constexpr int64_t kBucket = 25 * 1024 * 1024 / 4;  // floats in 25 MB
  for (int step = -1; step < steps; ++step) {  // step -1 warms up
    auto t = Clock::now();
    vit::forward_backward(model, params, images, labels, 0.1, layout);
    const double fb = ms_since(t);
    group.barrier("the step's start");
    t = Clock::now();
    group.all_reduce_sum(flat, "the flat buffer");
    const double f = ms_since(t);
    group.barrier("per-parameter");
    t = Clock::now();
    for (auto& p : params) {
      auto g = p.mutable_grad();
      group.all_reduce_sum(g, "one gradient");
    }
    const double pp = ms_since(t);
    group.barrier("buckets");
    t = Clock::now();
    for (int64_t off = 0; off < total; off += kBucket) {
      auto b = flat.narrow(0, off, std::min(kBucket, total - off));
      group.all_reduce_sum(b, "a bucket");
    }
    const double bk = ms_since(t);
    group.barrier("overlap");
    t = Clock::now();
    std::thread comm([&] { group.all_reduce_sum(spare, "the overlapped buffer"); });
    vit::forward_backward(model, params, images, labels, 0.1, layout);
    comm.join();
    const double ov = ms_since(t);
    if (step < 0) continue;
    compute.push_back(fb), flat_ms.push_back(f), per_param.push_back(pp), buckets.push_back(bk);
    overlapped.push_back(ov);
  }
  if (env.rank == 0) {
    std::ofstream(out) << nlohmann::json{{"ranks", env.world_size},
                                         {"threads", at::get_num_threads()},
                                         {"shards", shards},
                                         {"floats", total},
                                         {"compute_ms", median(compute)},
                                         {"flat_ms", median(flat_ms)},
                                         {"per_param_ms", median(per_param)},
                                         {"buckets_ms", median(buckets)},
                                         {"overlapped_ms", median(overlapped)}}
                              .dump();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "fmnist-small";
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 64;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 20;
  const std::string out = "/tmp/distributed_bench_" + std::to_string(::getpid()) + ".json";
  if (const char* rank_out = std::getenv("VIT_BENCH_OUT")) return run_rank(preset, batch, steps, rank_out);

  std::printf("distributed_bench: %s, global batch %lld, %d timed steps, %d cores (%s)\n",
              preset.c_str(), static_cast<long long>(batch), steps, vit::available_cores(),
              "medians per step, ms");
  std::printf("%5s %7s %7s %10s %11s %13s %11s %12s %14s %16s\n", "ranks", "threads", "shards",
              "compute", "all-reduce", "per-param", "25MB", "overlapped", "flat/step", "overlap gain");
  for (int ranks : {1, 2, 3}) {
    ::setenv("VIT_BENCH_OUT", out.c_str(), 1);
    vit::LaunchOptions o;
    o.nproc = ranks;
    const int code = vit::launch_local_ranks("/proc/self/exe", {preset, std::to_string(batch), std::to_string(steps)}, o);
    ::unsetenv("VIT_BENCH_OUT");
    if (code != 0) {
      std::printf("%5d ranks failed (exit %d)\n", ranks, code);
      continue;
    }
    std::ifstream in(out);
    const auto r = nlohmann::json::parse(in);
    const double compute = r["compute_ms"], flat = r["flat_ms"], pp = r["per_param_ms"];
    const double bk = r["buckets_ms"], ov = r["overlapped_ms"];
    // flat/step: the share of a step spent in the all-reduce. overlap gain: (compute + all-reduce)
    // over the overlapped time; 1.0 = nothing to win, 2.0 = the all-reduce hid entirely.
    std::printf("%5d %7d %7d %10.1f %11.2f %8.2f (x%.2f) %6.2f (x%.2f) %12.1f %13.1f%% %15.2fx\n",
                ranks, r["threads"].get<int>(), r["shards"].get<int>(), compute, flat, pp, pp / std::max(flat, 1e-9),
                bk, bk / std::max(flat, 1e-9), ov, 100 * flat / (compute + flat), (compute + flat) / ov);
  }
  std::remove(out.c_str());
  return 0;
}
