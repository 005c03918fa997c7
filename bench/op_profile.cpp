// Where a training step's time goes, op by op (LibTorch's profiler, its legacy CPU events): the
// README's per-op breakdown for fmnist-small and keras-cifar, and what the speed work targets.
//
//   build/bench/op_profile [preset] [batch] [steps] [precision] [threads] [shapes]
//   (defaults: fmnist-small 64 30 bf16 1; precision fp32, bf16, fp32-infer or bf16-infer;
//   a sixth argument `shapes` lists each op once per set of input shapes; OP_PROFILE_ROWS=N
//   prints N rows instead of 25)
//
// Times the trainer's own step (forward_backward, grad_clip, adamw_step) on random images
// after 5 warm-up steps (or, for *-infer, the forward pass of `vit summary --benchmark`: model and
// input converted to the type, inference mode), and prints the ops by self time (time in the op minus the ops it called),
// with their share of the step, calls per step and the number of ops per step. With 1 thread
// (default) every op is on the profiled thread; more threads profile the calling thread only.
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "data_parallel.h"
#include "runtime.h"
#include "vit.h"

namespace prof = torch::autograd::profiler;

// "torch::autograd::CppNode<vit::(anonymous namespace)::FusedLayerNormFunction>" (the backward of
// one of our autograd functions) as "FusedLayerNormFunction (backward)", so the 40 columns name it.
std::string readable(std::string name) {
  const std::string node = "torch::autograd::CppNode<", ours = "vit::(anonymous namespace)::";
  if (name.rfind(node, 0) != 0 || name.back() != '>') return name;
  name = name.substr(node.size(), name.size() - node.size() - 1);
  if (name.rfind(ours, 0) == 0) name = name.substr(ours.size());
  return name + " (backward)";
}

int main(int argc, char** argv) {
  vit::relaunch_with_best_settings(argv, "ACTIVE");  // as the `vit` CLI runs
  const std::string preset = argc > 1 ? argv[1] : "fmnist-small";
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 64;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 30;
  const std::string precision = argc > 4 ? argv[4] : "bf16";
  const bool bf16 = precision.rfind("bf16", 0) == 0;
  const bool infer = precision.size() > 6 && precision.substr(precision.size() - 6) == "-infer";
  const int threads = argc > 5 ? std::atoi(argv[5]) : 1;
  const bool by_shape = argc > 6 && std::string(argv[6]) == "shapes";
  const auto runtime = vit::configure_runtime(threads);

  torch::manual_seed(0);
  const auto cfg = vit::preset(preset).config;
  vit::VisionTransformer model(cfg);
  if (infer) {
    model->eval();
    model->to(bf16 ? torch::kBFloat16 : torch::kFloat32);
  } else {
    model->train();
  }
  std::vector<torch::Tensor> params = model->parameters();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(params, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-3)));
  torch::optim::AdamW optimizer(std::move(groups), torch::optim::AdamWOptions(1e-3));
  const auto images = torch::randn({batch, cfg.in_channels, cfg.image_size, cfg.image_size});
  const auto labels = torch::randint(0, cfg.num_classes, {batch}, torch::kLong);
  const int shards = vit::shard_count(true, batch);
  const auto typed_images = images.to(bf16 ? torch::kBFloat16 : torch::kFloat32);
  auto step = [&] {
    if (infer) {
      torch::InferenceMode guard;
      model->forward(typed_images).to(torch::kFloat32);
      return;
    }
    const auto out = vit::forward_backward(model, params, images, labels, 0.1, shards, bf16);
    vit::adamw_step(optimizer, shards, vit::grad_clip(params, 1.0, shards, out.grad_norms).scale);
  };
  for (int i = 0; i < 5; ++i) step();

  prof::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU, by_shape));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto lists = prof::disableProfilerLegacy();

  // Self time per op name: a push opens an op, the matching pop closes it; a child's time is taken
  // out of its parent's.
  struct Totals {
    double self_us = 0, total_us = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Totals> ops;
  int64_t calls = 0;
  for (const auto& events : lists) {
    struct Open {
      const prof::LegacyEvent* event;
      double children_us;
    };
    std::vector<Open> stack;
    for (const auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        stack.push_back({&e, 0});
      } else if (e.kind() == prof::EventKind::PopRange && !stack.empty()) {
        const Open open = stack.back();
        stack.pop_back();
        const double us = open.event->cpuElapsedUs(e);
        std::string name = readable(open.event->name());
        if (by_shape) {
          for (const auto& shape : open.event->shapes()) {
            name += " [";
            for (size_t i = 0; i < shape.size(); ++i) name += (i ? "," : "") + std::to_string(shape[i]);
            name += "]";
          }
        }
        auto& t = ops[name];
        t.total_us += us;
        t.self_us += us - open.children_us;
        ++t.calls;
        ++calls;
        if (!stack.empty()) stack.back().children_us += us;
      }
    }
  }
  std::vector<std::pair<std::string, Totals>> sorted(ops.begin(), ops.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
  const double step_ms = wall_ms / steps;
  std::printf("op_profile: %s, batch %lld, %s, %d thread(s), %d shard(s), %s\n", preset.c_str(),
              static_cast<long long>(batch), precision.c_str(), runtime.threads, shards,
              runtime.cpu.c_str());
  std::printf("  %.2f ms per step (profiled), %.0f ops per step, BLAS %s, oneDNN %s\n", step_ms,
              double(calls) / steps, runtime.blas_core.c_str(), runtime.onednn_isa.c_str());
  const size_t width = by_shape ? 64 : 40;
  std::printf("  %-*s %9s %7s %9s\n", int(width), "op (self time)", "ms/step", "share", "calls/step");
  const char* rows_env = std::getenv("OP_PROFILE_ROWS");
  const size_t rows = rows_env ? size_t(std::max(1, std::atoi(rows_env))) : 25;
  double shown = 0;
  for (size_t i = 0; i < sorted.size() && i < rows; ++i) {
    const auto& [name, t] = sorted[i];
    const double ms = t.self_us / 1000 / steps;
    shown += ms;
    std::printf("  %-*s %9.3f %6.1f%% %9.1f\n", int(width), name.substr(0, width).c_str(), ms, 100 * ms / step_ms,
                double(t.calls) / steps);
  }
  const std::string above = "(the " + std::to_string(std::min(rows, sorted.size())) + " above)";
  std::printf("  %-*s %9.3f %6.1f%%\n", int(width), above.c_str(), shown, 100 * shown / step_ms);
  return 0;
}
