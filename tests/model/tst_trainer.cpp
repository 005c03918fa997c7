// The trainer on a tiny model and a tiny synthetic data set: learning, the run directory,
// stop/pause/resume, checkpoints, NaN handling.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>

#include "checkpoint.h"
#include "cpu_info.h"  // bf16_support
#include "data_parallel.h"
#include "datasets.h"
#include "fused_attention.h"
#include "onednn_linear.h"  // bf16_gemms_on_float_units
#include "safetensors.h"
#include "summary.h"        // training_macs
#include "tensorboard.h"
#include "trainer.h"

#include "bars_dataset.h"
#include "support/temp_dir.h"
#include "support/text.h"

namespace fs = std::filesystem;

namespace {

vit::TrainConfig quick(int epochs) {
  vit::TrainConfig t;
  t.dataset = "bars";
  t.epochs = epochs;
  t.batch_size = 16;
  t.lr = 3e-3;
  t.warmup_epochs = 0.5;
  t.log_every = 2;
  t.seed = 1;
  return t;
}

vit::DataSplits splits() {
  vit::DataSplits s;
  s.train = bars(320, 1);
  s.test = bars(100, 2);
  return s;
}

std::vector<std::string> lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Intra-op threads for one test; back to 1 (the suite's setting) however the test ends.
struct ThreadsForTest {
  explicit ThreadsForTest(int n) { torch::set_num_threads(n); }
  ~ThreadsForTest() { torch::set_num_threads(1); }
};

std::vector<torch::Tensor> all_parameters(vit::VisionTransformer& model) {
  std::vector<torch::Tensor> params;
  for (const auto& p : model->parameters()) params.push_back(p);
  return params;
}

std::vector<torch::Tensor> gradients(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> g;
  for (const auto& p : params) g.push_back(p.grad().clone());
  return g;
}

// Once, before every test (the Qt suite's initTestCase): deterministic reductions.
class SuiteSetup : public testing::Environment {
  void SetUp() override { torch::set_num_threads(1); }
};
[[maybe_unused]] const auto* const kSuiteSetup = testing::AddGlobalTestEnvironment(new SuiteSetup);

}  // namespace

TEST(Trainer, learnsAndWritesTheRunDirectory) {
  vit_test::TempDir tmp;
  const std::string run = (fs::path(tmp.path()) / "run").string();
  std::vector<vit::StepStats> steps;
  std::vector<vit::EpochStats> epochs;
  vit::TrainCallbacks cb;
  cb.on_step = [&](const vit::StepStats& s) { steps.push_back(s); };
  cb.on_epoch = [&](const vit::EpochStats& e) { epochs.push_back(e); };
  const auto data = splits();
  const auto r = vit::train(tiny_model(), quick(6), data, run, cb);

  ASSERT_EQ(r.stop_reason, std::string("completed"));
  ASSERT_EQ(r.epochs, 6);
  ASSERT_EQ(int(epochs.size()), 6);
  ASSERT_FALSE(steps.empty());
  ASSERT_TRUE(epochs.back().loss < epochs.front().loss) << "training loss did not go down";
  ASSERT_TRUE(epochs.back().val_accuracy > 0.9) << std::to_string(epochs.back().val_accuracy);
  ASSERT_TRUE(r.test.has_value());
  ASSERT_TRUE(r.test->accuracy > 0.9) << std::to_string(r.test->accuracy);
  ASSERT_EQ(r.test->count, int64_t(100));
  ASSERT_TRUE(r.images_per_second > 0);

  const fs::path dir(run);
  for (const char* f : {"config.json", "metrics.csv", "steps.csv", "state.json", "test.json",
                        "checkpoints/best.safetensors", "checkpoints/last.safetensors",
                        "checkpoints/last.optim.pt"})
    ASSERT_TRUE(fs::exists(dir / f)) << f;
  const auto metrics = lines(dir / "metrics.csv");
  ASSERT_EQ(metrics.front(), std::string("epoch,loss,accuracy,top5_accuracy,val_loss,val_accuracy,"
                                         "val_top5_accuracy,lr,seconds"));
  ASSERT_EQ(int(metrics.size()), 1 + 6);
  ASSERT_TRUE(lines(dir / "steps.csv").size() > 5);

  std::ifstream cfg(dir / "config.json");
  const auto j = nlohmann::json::parse(cfg);
  ASSERT_EQ(j["model"]["dim"].get<int>(), 16);
  ASSERT_EQ(j["train"]["seed"].get<int>(), 1);
  ASSERT_EQ(j["train"]["dataset"].get<std::string>(), std::string("bars"));
  ASSERT_TRUE(j.contains("version"));
  ASSERT_EQ(j["data"]["classes"].size(), size_t(2));
  ASSERT_EQ(j["data"]["val_size"].get<int>(), 32);

  // TensorBoard curves: one event file with the per-step loss.
  int event_files = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
      ++event_files;
      const auto events = vit::read_scalar_events(e.path().string());
      int losses = 0;
      for (const auto& ev : events) losses += ev.tag == "train/loss";
      ASSERT_EQ(losses, int(steps.size()));
    }
  ASSERT_EQ(event_files, 1);

  // The best checkpoint reproduces the reported test accuracy and carries its config.
  const auto again = vit::evaluate_run(run, *data.test);
  ASSERT_TRUE(std::abs(again.accuracy - r.test->accuracy) < 1e-9);
  const auto info = vit::read_checkpoint_info((dir / "checkpoints/best.safetensors").string());
  ASSERT_TRUE(info.config == tiny_model());
  ASSERT_EQ(info.normalization.mean.size(), size_t(1));
  ASSERT_TRUE(vit::load_safetensors((dir / "checkpoints/best.safetensors").string()).find("blocks.0.attn.qkv.weight"));
}

TEST(Trainer, batchStatsCountHitsAsTopkDoes) {
  // batch_stats counts top-1/top-5 hits of float CPU logits directly (no ATen ops between the
  // step's parallel parts); the reference here is topk itself. Rows where a logit equals the
  // label's, or NaN, take topk's own way; so do other types.
  torch::manual_seed(21);
  const auto reference = [](const torch::Tensor& logits, const torch::Tensor& labels) {
    const int64_t k = std::min<int64_t>(5, logits.size(1));
    const auto hits = std::get<1>(logits.topk(k, 1)).eq(labels.unsqueeze(1));
    return std::make_pair(hits.select(1, 0).sum().item<int64_t>(), hits.any(1).sum().item<int64_t>());
  };
  const auto loss = torch::tensor(12.5f);
  struct Case { const char* name; torch::Tensor logits, labels; };
  std::vector<Case> cases;
  for (int64_t classes : {10, 3, 1}) {
    auto logits = torch::randn({300, classes});
    cases.push_back({"random", logits, torch::randint(0, classes, {300}, torch::kLong)});
  }
  auto tied = torch::randn({50, 10}), nan = torch::randn({50, 10});
  auto labels = torch::randint(0, 10, {50}, torch::kLong);
  tied[7] = 1.0;  // a row of equal logits
  tied[9][labels[9].item<int64_t>()] = tied[9].max().item<float>() + 1;
  tied[9][(labels[9].item<int64_t>() + 1) % 10] = tied[9][labels[9].item<int64_t>()].item<float>();  // tie at the top
  nan[3][2] = std::numeric_limits<float>::quiet_NaN();
  cases.push_back({"ties", tied, labels});
  cases.push_back({"NaN", nan, labels});
  cases.push_back({"bf16", torch::randn({64, 10}).to(torch::kBFloat16), torch::randint(0, 10, {64}, torch::kLong)});
  int64_t hits_seen = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.name) + ", " + std::to_string(c.logits.size(1)) + " classes");
    const auto stats = vit::batch_stats(c.logits, c.labels, loss, /*stop_vote=*/true);
    ASSERT_EQ(stats.scalar_type(), torch::kDouble);
    ASSERT_EQ(stats.numel(), 5);
    const auto [top1, top5] = reference(c.logits, c.labels);
    EXPECT_EQ(stats[0].item<double>(), 12.5);
    EXPECT_EQ(stats[1].item<double>(), double(top1));
    EXPECT_EQ(stats[2].item<double>(), double(top5));
    EXPECT_EQ(stats[3].item<double>(), double(c.logits.size(0)));
    EXPECT_EQ(stats[4].item<double>(), 1.0);
    hits_seen += top1;
  }
  EXPECT_GT(hits_seen, 0);
  EXPECT_EQ(vit::batch_stats(cases[0].logits, cases[0].labels, loss)[4].item<double>(), 0.0);
}

TEST(Trainer, stopThenResumeMatchesAnUninterruptedRun) {
  vit_test::TempDir tmp;
  const fs::path base(tmp.path());
  const auto data = splits();
  auto cfg = quick(3);
  const auto straight = vit::train(tiny_model(), cfg, data, (base / "straight").string());

  int polls = 0;
  vit::TrainCallbacks stop_cb;
  stop_cb.poll = [&] { return ++polls > 25 ? vit::Control::Stop : vit::Control::Continue; };
  const auto stopped = vit::train(tiny_model(), cfg, data, (base / "split").string(), stop_cb);
  ASSERT_EQ(stopped.stop_reason, std::string("stopped"));
  ASSERT_EQ(stopped.steps, int64_t(25));  // finished within one step of the request
  ASSERT_FALSE(stopped.test.has_value());
  std::ifstream state_file(base / "split" / "state.json");
  const auto state = nlohmann::json::parse(state_file);
  ASSERT_EQ(state["global_step"].get<int>(), 25);

  const auto resumed = vit::train(tiny_model(), cfg, data, (base / "split").string(), {}, true);
  ASSERT_EQ(resumed.stop_reason, std::string("completed"));
  ASSERT_EQ(resumed.steps, straight.steps);
  ASSERT_EQ(int(lines(base / "split" / "metrics.csv").size()), 1 + 3);
  // Same data order, same optimizer state: the same weights as the uninterrupted run.
  const auto a = vit::load_safetensors((base / "straight/checkpoints/last.safetensors").string());
  const auto b = vit::load_safetensors((base / "split/checkpoints/last.safetensors").string());
  for (const auto& [name, t] : a.tensors)
    ASSERT_TRUE(torch::allclose(t, *b.find(name), 1e-4, 1e-6)) << name;
  ASSERT_TRUE(std::abs(resumed.test->accuracy - straight.test->accuracy) < 0.02);
}

// The random draws inside the model (dropout, stochastic depth, patch dropout) are a function of
// the run's seed and the step (step_random_seed), not of a generator's running state, so a
// resumed run draws what the uninterrupted one drew: the same weights, bit for bit, on 1 or 2
// threads.
TEST(Trainer, resumeRepeatsTheDropoutDraws) {
  ASSERT_NE(vit::step_random_seed(42, 7), vit::step_random_seed(42, 8));
  ASSERT_NE(vit::step_random_seed(42, 7), vit::step_random_seed(43, 7));
  auto model = tiny_model();
  model.dropout = 0.2;
  model.attn_dropout = 0.1;  // inside fused attention where our kernels cover 8-feature heads (AVX2)
  model.drop_path = 0.1;
  model.patch_drop = 0.25;
  const auto data = splits();
  for (int threads : {1, 2}) {
    ThreadsForTest scope(threads);
    vit_test::TempDir tmp;
    const fs::path base(tmp.path());
    auto cfg = quick(2);
    cfg.full_token_epochs = 1;  // patch dropout in the first epoch (where the stop is), not in the second
    const auto straight = vit::train(model, cfg, data, (base / "straight").string());
    int polls = 0;
    vit::TrainCallbacks stop_cb;
    stop_cb.poll = [&] { return ++polls > 11 ? vit::Control::Stop : vit::Control::Continue; };
    ASSERT_EQ(vit::train(model, cfg, data, (base / "split").string(), stop_cb).stop_reason, std::string("stopped"));
    const auto resumed = vit::train(model, cfg, data, (base / "split").string(), {}, true);
    ASSERT_EQ(resumed.steps, straight.steps);
    const auto a = vit::load_safetensors((base / "straight/checkpoints/last.safetensors").string());
    const auto b = vit::load_safetensors((base / "split/checkpoints/last.safetensors").string());
    for (const auto& [name, t] : a.tensors)
      ASSERT_TRUE(torch::equal(t, *b.find(name))) << name << " differs on " << threads << " thread(s)";
  }
}

// Data parallelism (model/data_parallel.h) must compute the same gradient as one pass over the
// whole batch: each shard's loss is weighted by its share of the rows, uneven shards included.
TEST(Trainer, dataParallelGradientsMatchOneShard) {
  ThreadsForTest threads(2);
  auto cfg = tiny_model();
  cfg.num_classes = 5;
  torch::manual_seed(3);
  vit::VisionTransformer model(cfg);
  model->train();
  const auto params = all_parameters(model);
  const auto images = torch::randn({10, 1, 8, 8});
  const auto labels = torch::randint(0, 5, {10}, torch::kLong);
  auto grads_of = [&](int shards) {
    const auto out = vit::forward_backward(model, params, images, labels, 0.1, shards);
    return std::make_pair(out, gradients(params));
  };
  const auto [whole, g1] = grads_of(1);
  ASSERT_EQ(whole.logits.size(0), int64_t(10));
  for (int shards : {2, 3, 10}) {  // 3: shards of 3, 3 and 4 rows
    const auto [split, g] = grads_of(shards);
    ASSERT_TRUE(std::abs(split.loss - whole.loss) < 1e-5);
    ASSERT_TRUE(torch::allclose(split.logits, whole.logits, 1e-5, 1e-6));
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_TRUE(torch::allclose(g[i], g1[i], 1e-4, 1e-6))
          << (std::to_string(shards) + " shards, parameter " + std::to_string(i) + ": max diff " +
                std::to_string((g[i] - g1[i]).abs().max().item<double>()) + " of max " +
                std::to_string(g1[i].abs().max().item<double>()));
    // The clipping norms taken with the sums are those of the gradients left in .grad.
    ASSERT_EQ(split.grad_norms.size(), params.size());
    for (size_t i = 0; i < params.size(); ++i)
      ASSERT_TRUE(torch::equal(split.grad_norms[i], params[i].grad().norm(2.0))) << "norm of parameter " << i;
  }
  // The comparison above means something only for a gradient that is not zero.
  ASSERT_TRUE(g1[0].abs().sum().item<double>() > 0);
}

// The trainer's clipping and AdamW step run spread over the shards' threads; they must give
// LibTorch's clip_grad_norm_ and AdamW::step bit for bit (same arithmetic per parameter), with
// two parameter groups (decay and none) and the optimizer state created on the first step.
TEST(Trainer, parallelClipAndAdamWMatchLibTorch) {
  ThreadsForTest threads(2);
  torch::manual_seed(4);
  std::vector<torch::Tensor> a, b, c;  // c: the trainer's way, the factor applied inside AdamW's pass
  for (auto shape : std::vector<std::vector<int64_t>>{{16, 8}, {8}, {3, 4, 5}, {1}, {7, 7}}) {
    a.push_back(torch::randn(shape).requires_grad_());
    b.push_back(a.back().detach().clone().requires_grad_());
    c.push_back(a.back().detach().clone().requires_grad_());
  }
  auto make = [](std::vector<torch::Tensor>& p) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<torch::Tensor>{p[0], p[2], p[4]},
                        std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(3e-3).weight_decay(0.05)));
    groups.emplace_back(std::vector<torch::Tensor>{p[1], p[3]},
                        std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(3e-3).weight_decay(0.0)));
    return torch::optim::AdamW(std::move(groups), torch::optim::AdamWOptions(3e-3));
  };
  auto ours = make(b), theirs = make(a), fused = make(c);
  int scaled_steps = 0;
  const auto start = a[0].detach().clone();
  for (int step = 0; step < 4; ++step) {
    for (size_t i = 0; i < a.size(); ++i) {
      // Norms below the clip (step 0: ~0.2 x sqrt(246) = 3.1 < 5) and above it.
      const auto g = torch::randn(a[i].sizes()) * (step == 0 ? 0.2 : step + 1.0);
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
      c[i].mutable_grad() = g.clone();
    }
    const double n1 = torch::nn::utils::clip_grad_norm_(a, 5.0);
    const double n2 = vit::clip_grad_norm(b, 5.0, 2);
    ASSERT_DOUBLE_EQ(n2, n1);
    // Norms handed in as forward_backward takes them (grad.norm(2) per parameter), one missing.
    std::vector<torch::Tensor> norms;
    for (const auto& p : c) norms.push_back(p.grad().norm(2.0));
    norms[3] = torch::Tensor();
    const auto clip = vit::grad_clip(c, 5.0, 2, norms);
    ASSERT_DOUBLE_EQ(clip.total_norm, n1);
    scaled_steps += clip.scale != 1.0f;
    theirs.step();
    vit::adamw_step(ours, 2);
    vit::adamw_step(fused, 2, clip.scale);
    for (size_t i = 0; i < b.size(); ++i) {  // the fused scaling is clip_grad_norm's bit for bit
      ASSERT_TRUE(torch::equal(b[i].grad(), c[i].grad())) << ("scaled gradient " + std::to_string(i));
      ASSERT_TRUE(torch::equal(b[i], c[i])) << ("parameter " + std::to_string(i));
    }
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(torch::equal(a[i].grad(), b[i].grad())) << ("clipped gradient " + std::to_string(i));
      // Our fused update does LibTorch's arithmetic in float without FMAs; ATen's kernels use
      // them in some ISAs: equal to float rounding (a step moves weights by ~lr = 3e-3, so a wrong
      // term, such as a missing bias correction, is off by far more).
      const auto diff = (a[i] - b[i]).abs().max().item<double>();
      ASSERT_LT(diff, 2e-6 * (1 + a[i].abs().max().item<double>()))
          << ("step " + std::to_string(step) + ", parameter " + std::to_string(i));
    }
  }
  ASSERT_FALSE(torch::equal(a[0], start));  // the comparison is of weights that moved
  ASSERT_GT(scaled_steps, 0);                // and of steps that clipped
  ASSERT_LT(scaled_steps, 4);                // and steps that did not
  ASSERT_EQ(ours.state().size(), theirs.state().size());
  // The moments too, and the step counts.
  const auto s_ours = vit::adamw_states(ours), s_theirs = vit::adamw_states(theirs);  // group order
  ASSERT_EQ(s_ours.size(), s_theirs.size());
  for (size_t i = 0; i < s_ours.size(); ++i) {
    EXPECT_EQ(s_ours[i]->step(), s_theirs[i]->step());
    EXPECT_TRUE(torch::allclose(s_ours[i]->exp_avg(), s_theirs[i]->exp_avg(), 1e-6, 1e-7)) << i;
    EXPECT_TRUE(torch::allclose(s_ours[i]->exp_avg_sq(), s_theirs[i]->exp_avg_sq(), 1e-6, 1e-9)) << i;
  }
}

// The fused update gives the same numbers on 1, 2 and 3 threads, and on a parameter it cannot
// fuse (not contiguous: LibTorch's ops) it still follows AdamW::step.
TEST(Trainer, adamwStepIsThreadCountIndependent) {
  torch::manual_seed(5);
  std::vector<torch::Tensor> start;
  for (auto shape : std::vector<std::vector<int64_t>>{{33, 17}, {17}, {5, 5, 5}, {1}})
    start.push_back(torch::randn(shape));
  std::vector<torch::Tensor> grads;
  for (const auto& p : start) grads.push_back(torch::randn(p.sizes()));
  std::vector<std::vector<torch::Tensor>> results;
  for (int threads : {1, 2, 3}) {
    std::vector<torch::Tensor> p;
    for (const auto& s : start) p.push_back(s.clone().requires_grad_());
    torch::optim::AdamW opt(p, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < p.size(); ++i) p[i].mutable_grad() = grads[i] * (step + 1);
      vit::adamw_step(opt, threads);
    }
    results.push_back(p);
  }
  for (size_t i = 0; i < start.size(); ++i) {
    EXPECT_TRUE(torch::equal(results[0][i], results[1][i])) << i;
    EXPECT_TRUE(torch::equal(results[0][i], results[2][i])) << i;
    EXPECT_FALSE(torch::equal(results[0][i], start[i])) << i;
  }
  // A transposed view as the parameter: not contiguous, so LibTorch's per-op path.
  auto base = torch::randn({6, 4});
  auto a = base.clone().requires_grad_();
  auto bt = base.t().contiguous().t().requires_grad_();  // the same values, strides (1, 6)
  ASSERT_FALSE(bt.is_contiguous());
  torch::optim::AdamW theirs({a}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  torch::optim::AdamW ours({bt}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  for (int step = 0; step < 3; ++step) {
    const auto g = torch::randn({6, 4});
    a.mutable_grad() = g.clone();
    bt.mutable_grad() = g.clone();
    theirs.step();
    vit::adamw_step(ours, 2);
  }
  EXPECT_TRUE(torch::equal(a, bt));  // the per-op path is LibTorch's arithmetic exactly
}

// bf16 mixed precision: the matrix products run in bfloat16 (8-bit mantissa, ~0.4% per
// rounding), weights and gradients stay float, and the gradient is the float one to within a
// few percent, on one shard and on two.
TEST(Trainer, bf16GradientsAreCloseToFloat) {
  ThreadsForTest threads(2);
  auto cfg = tiny_model();
  cfg.num_classes = 5;
  cfg.dropout = 0.2;  // bf16 activations get bf16 dropout masks
  torch::manual_seed(3);
  vit::VisionTransformer model(cfg);
  model->train();
  const auto params = all_parameters(model);
  const auto images = torch::randn({12, 1, 8, 8});
  const auto labels = torch::randint(0, 5, {12}, torch::kLong);
  auto flat_grads = [&](int shards, bool bf16) {
    torch::manual_seed(9);  // the same dropout masks in every pass
    const auto out = vit::forward_backward(model, params, images, labels, 0.1, shards, bf16);
    std::vector<torch::Tensor> flat;
    for (const auto& g : gradients(params)) {
      if (g.scalar_type() != torch::kFloat) throw std::runtime_error("a gradient is not float");
      flat.push_back(g.flatten());
    }
    if (out.logits.scalar_type() != torch::kFloat) throw std::runtime_error("logits are not float");
    return torch::cat(flat);
  };
  for (int shards : {1, 2}) {
    const auto fp32 = flat_grads(shards, false), bf16 = flat_grads(shards, true);
    const double rel = ((bf16 - fp32).norm() / fp32.norm()).item<double>();
    ASSERT_TRUE(rel < 0.05) << (std::to_string(shards) + " shard(s): relative difference " + std::to_string(rel));
    ASSERT_TRUE(rel > 1e-5) << "bf16 gave the float gradient bit for bit: autocast did not run";
    ASSERT_FALSE(vit::bf16_autocast_enabled());  // the scope ended with the pass
  }
}

// With dropout, stochastic depth and patch dropout the shards draw their masks from seeds taken
// in shard order, so the same seed gives the same gradient however the threads are scheduled.
TEST(Trainer, dataParallelDropoutIsReproducible) {
  ThreadsForTest threads(2);
  auto cfg = tiny_model();
  cfg.dropout = 0.3;
  cfg.attn_dropout = 0.2;
  cfg.drop_path = 0.2;
  cfg.patch_drop = 0.25;
  torch::manual_seed(5);
  vit::VisionTransformer model(cfg);
  model->train();
  const auto params = all_parameters(model);
  const auto images = torch::randn({16, 1, 8, 8});
  const auto labels = torch::randint(0, 2, {16}, torch::kLong);
  auto grads_of = [&](uint64_t seed) {
    torch::manual_seed(seed);
    vit::forward_backward(model, params, images, labels, 0.0, 2);
    return gradients(params);
  };
  const auto a = grads_of(11);
  for (int repeat = 0; repeat < 5; ++repeat) {
    const auto b = grads_of(11);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_TRUE(torch::equal(a[i], b[i]));
  }
  const auto c = grads_of(12);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) differs |= !torch::equal(a[i], c[i]);
  ASSERT_TRUE(differs) << "another seed should draw other dropout masks";
}

// Attention dropout runs inside fused attention only on heads our kernels cover; elsewhere the
// ATen ops are several times slower (7.6x for keras-cifar in bf16 on an AVX2 CPU), and the log
// says so rather than leaving a user to wonder.
TEST(Trainer, attentionDropoutSaysWhenItRunsOnATensOps) {
  vit_test::TempDir tmp;
  const fs::path base(tmp.path());
  auto cfg = quick(1);
  cfg.max_steps = 2;
  const auto data = splits();
  auto said_for = [&](int dim, const std::string& run) {
    auto model = tiny_model();
    model.dim = dim;  // 2 heads of dim / 2 features
    model.attn_dropout = 0.1;
    std::vector<std::string> lines;
    vit::TrainCallbacks cb;
    cb.on_message = [&](const std::string& line) { lines.push_back(line); };
    vit::train(model, cfg, data, (base / run).string(), cb);
    for (const auto& l : lines)
      if (l.find("attention dropout 0.1 runs as separate ATen ops") != std::string::npos) return l;
    return std::string();
  };
  // 12 features a head: a multiple of no vector width, never on our kernels.
  const auto odd = said_for(24, "odd");
  ASSERT_NE(odd, "") << "no word on the slow path";
  ASSERT_NE(odd.find("17 tokens of 12 features"), std::string::npos) << odd;
  // 16 features: one AVX-512 vector, two AVX2 ones; silent where our kernels run.
  const bool ours = vit::fused_attention_drops_out(17, 16, torch::kFloat);
  ASSERT_EQ(said_for(32, "covered").empty(), ours);
}

// A whole data-parallel run on 2 threads: learns, and the same seed gives the same weights.
TEST(Trainer, dataParallelRunLearnsAndRepeats) {
  std::optional<ThreadsForTest> threads(std::in_place, 2);  // reset before the asserts
  vit_test::TempDir tmp;
  const fs::path base(tmp.path());
  auto cfg = quick(4);
  cfg.data_parallel = true;
  auto model = tiny_model();
  model.dropout = 0.1;
  const auto data = splits();
  const auto a = vit::train(model, cfg, data, (base / "a").string());
  const auto b = vit::train(model, cfg, data, (base / "b").string());
  threads.reset();
  ASSERT_TRUE(a.test->accuracy > 0.9) << std::to_string(a.test->accuracy);
  ASSERT_DOUBLE_EQ(a.test->accuracy, b.test->accuracy);
  const auto wa = vit::load_safetensors((base / "a/checkpoints/last.safetensors").string());
  const auto wb = vit::load_safetensors((base / "b/checkpoints/last.safetensors").string());
  for (const auto& [name, t] : wa.tensors) ASSERT_TRUE(torch::equal(t, *wb.find(name))) << name;
  std::ifstream config(base / "a" / "config.json");
  ASSERT_TRUE(nlohmann::json::parse(config)["train"]["data_parallel"].get<bool>());
}

// Patch dropout in a whole run (mean pooling: a class token and fewer patches in training), with
// the last epoch on every patch: it learns, repeats bit for bit, and the full-token epoch is
// the last one; full_token_epochs covering the run turns patch dropout off altogether.
TEST(Trainer, patchDropRunLearnsAndEndsOnEveryPatch) {
  auto cfg = quick(4);
  cfg.full_token_epochs = 1;
  for (int epoch = 0; epoch < 4; ++epoch) ASSERT_EQ(vit::patch_drop_active(cfg, epoch), epoch < 3);
  cfg.full_token_epochs = 6;  // more than the run: every epoch on every patch
  for (int epoch = 0; epoch < 4; ++epoch) ASSERT_FALSE(vit::patch_drop_active(cfg, epoch));
  ASSERT_TRUE(vit::validate(cfg).empty());
  cfg.full_token_epochs = 1;
  vit_test::TempDir tmp;
  const fs::path base(tmp.path());
  auto model = tiny_model();
  model.pool = vit::Pool::Mean;
  model.patch_drop = 0.25;  // 16 patches: 12 in training
  std::vector<std::string> lines;
  vit::TrainCallbacks cb;
  cb.on_message = [&](const std::string& line) { lines.push_back(line); };
  const auto data = splits();
  const auto a = vit::train(model, cfg, data, (base / "a").string(), cb);
  const auto b = vit::train(model, cfg, data, (base / "b").string());
  ASSERT_TRUE(a.test->accuracy > 0.9) << std::to_string(a.test->accuracy);
  ASSERT_DOUBLE_EQ(a.test->accuracy, b.test->accuracy);
  bool said = false;
  for (const auto& l : lines) said |= l.find("epoch 4: the last 1 epoch(s) train on every patch") != std::string::npos;
  ASSERT_TRUE(said) << "no log line for the full-token epoch";
  // All epochs on every patch: the same run as a model without patch_drop.
  cfg.full_token_epochs = 4;
  const auto c = vit::train(model, cfg, data, (base / "c").string());
  model.patch_drop = 0;
  const auto d = vit::train(model, cfg, data, (base / "d").string());
  const auto wc = vit::load_safetensors((base / "c/checkpoints/last.safetensors").string());
  const auto wd = vit::load_safetensors((base / "d/checkpoints/last.safetensors").string());
  for (const auto& [name, t] : wc.tensors) ASSERT_TRUE(torch::equal(t, *wd.find(name))) << name;
  // The model FLOPs behind the reported rate: per image, the kept patches' training step in the
  // first 3 epochs of `a` and every patch's in its last; every patch's throughout in `c`.
  model.patch_drop = 0.25;
  const double kept = 2.0 * double(vit::training_macs(model)), all = 2.0 * double(vit::training_macs(model, false));
  ASSERT_LT(kept, all);
  auto per_image = [](const vit::TrainResult& r) { return r.model_flops / (r.images_per_second * r.train_seconds); };
  ASSERT_NEAR(per_image(c), all, all * 1e-9);
  ASSERT_GT(per_image(a), kept * 1.0001);
  ASSERT_LT(per_image(a), all * 0.9999);
  ASSERT_NEAR(a.flops_per_second, a.model_flops / a.train_seconds, a.flops_per_second * 1e-9);
  // and the peak it is a share of: the float FMA peak of the threads trained on where the GEMMs
  // run on the float units (fp32, or bf16 widened), unknown (0) on bf16 dot-product units or AMX
  const bool float_units = vit::resolve_precision(cfg.precision) == "fp32" || vit::bf16_gemms_on_float_units();
  ASSERT_NEAR(a.peak_flops_per_second,
              float_units ? vit::bf16_support().fma_gflops * 1e9 * at::get_num_threads() : 0.0, 1.0);
  const auto wa = vit::load_safetensors((base / "a/checkpoints/last.safetensors").string());
  bool differs = false;
  for (const auto& [name, t] : wa.tensors) differs |= !torch::equal(t, *wd.find(name));
  ASSERT_TRUE(differs) << "patch dropout changed nothing";
}

// update_average is average + (1 - decay)(values - average), element by element, on any thread
// count, for float tensors (one pass) and others (lerp_); ema_decay_at is TensorFlow's
// ExponentialMovingAverage schedule, min(decay, (1 + n) / (10 + n)).
TEST(Trainer, weightAverageUpdateIsItsFormula) {
  ASSERT_DOUBLE_EQ(vit::ema_decay_at(0.999, 0), 0.1);
  ASSERT_DOUBLE_EQ(vit::ema_decay_at(0.999, 10), 11.0 / 20.0);
  ASSERT_DOUBLE_EQ(vit::ema_decay_at(0.5, 10), 0.5);
  torch::manual_seed(5);
  for (int threads : {1, 2}) {
    ThreadsForTest scope(threads);
    std::vector<torch::Tensor> average, values, expected;
    for (int64_t n : {1000, 3, 77}) {
      average.push_back(torch::randn({n}));
      values.push_back(torch::randn({n}));
    }
    average.push_back(torch::randn({4, 6}, torch::kDouble).t());  // not contiguous, not float
    values.push_back(torch::randn({6, 4}, torch::kDouble));
    for (size_t i = 0; i < average.size(); ++i)
      expected.push_back(average[i] + (1 - 0.75) * (values[i] - average[i]));
    vit::update_average(average, values, 0.75, threads);
    for (size_t i = 0; i < average.size(); ++i)
      ASSERT_TRUE(torch::allclose(average[i], expected[i], 1e-6, 1e-7)) << i << " on " << threads << " thread(s)";
  }
  ASSERT_THROW(vit::update_average({torch::zeros({2})}, {}, 0.5, 1), std::invalid_argument);
}

namespace {

// Plain cross-entropy of a weights file on rows `rows` of `data`, as the trainer's validation
// computes it (the file's normalization, batches of 512).
double weights_loss(const std::string& path, const vit::Dataset& data, const std::vector<int64_t>& rows) {
  vit::CheckpointInfo info;
  auto model = vit::load_model(path, &info);
  model->eval();
  torch::NoGradGuard no_grad;
  vit::LoaderOptions o;
  o.batch_size = 512;
  o.image_size = info.config.image_size;
  o.normalization = info.normalization;
  o.shuffle = false;
  vit::DataLoader loader(data, rows, o);
  loader.start_epoch(0);
  double sum = 0;
  int64_t count = 0;
  while (auto batch = loader.next()) {
    sum += torch::cross_entropy_loss(model->forward(batch->images), batch->labels, {}, at::Reduction::Sum).item<double>();
    count += batch->labels.size(0);
  }
  return sum / double(count);
}

}  // namespace

// ema_decay: the trained weights are those of the same run without it (bit for bit); the
// average after each step is the formula applied to those weights, starting from the seed's
// initial weights; a continued run goes on with the average it saved (the same file as an
// uninterrupted run); validation reports the average's loss, not the trained weights'; the best
// checkpoint is an average.
TEST(Trainer, weightAverageFollowsTheTrainedWeightsAndResumes) {
  vit_test::TempDir tmp;
  const fs::path base(tmp.path());
  const auto data = splits();
  auto cfg = quick(2);
  cfg.ema_decay = 0.5;  // reached at the ninth update: both sides of the min() in 10 steps
  std::vector<vit::EpochStats> epochs;
  std::vector<std::string> lines;
  vit::TrainCallbacks cb;
  cb.on_epoch = [&](const vit::EpochStats& e) { epochs.push_back(e); };
  cb.on_message = [&](const std::string& line) { lines.push_back(line); };
  const auto straight = vit::train(tiny_model(), cfg, data, (base / "straight").string(), cb);
  ASSERT_EQ(straight.stop_reason, std::string("completed"));
  bool said = false;
  for (const auto& l : lines) said |= l.find("moving average of the weights (ema_decay 0.5)") != std::string::npos;
  ASSERT_TRUE(said);
  auto plain_cfg = cfg;
  plain_cfg.ema_decay = 0;
  vit::train(tiny_model(), plain_cfg, data, (base / "plain").string());
  const auto load = [&](const std::string& run, const char* file) {
    return vit::load_safetensors((base / run / "checkpoints" / file).string());
  };
  {
    const auto a = load("straight", "last.safetensors"), b = load("plain", "last.safetensors");
    for (const auto& [name, t] : a.tensors) ASSERT_TRUE(torch::equal(t, *b.find(name))) << name;
    ASSERT_FALSE(fs::exists(base / "plain/checkpoints/ema.safetensors"));
  }

  // One step per call: the average against the formula over the trained weights.
  torch::manual_seed(int64_t(cfg.seed));
  vit::VisionTransformer init(tiny_model());  // the trainer's initial weights for this seed
  std::map<std::string, torch::Tensor> expected;
  for (const auto& item : init->named_parameters()) expected[item.key()] = item.value().detach().clone();
  auto stepwise = cfg;
  stepwise.max_steps = 1;
  const std::string split = (base / "split").string();
  for (int64_t step = 0; step < 10; ++step) {
    const auto r = vit::train(tiny_model(), stepwise, data, split, {}, /*resume=*/step > 0);
    ASSERT_EQ(r.steps, step + 1);
    const auto weights = load("split", "last.safetensors"), average = load("split", "ema.safetensors");
    const double d = vit::ema_decay_at(0.5, step);
    for (auto& [name, a] : expected) {
      const auto* w = weights.find(name);
      ASSERT_TRUE(w) << name;
      a = a + (1 - d) * (*w - a);
      ASSERT_TRUE(torch::allclose(*average.find(name), a, 1e-5, 1e-6)) << name << " after step " << step + 1;
    }
  }
  ASSERT_EQ(vit::train(tiny_model(), cfg, data, split, {}, true).stop_reason, std::string("completed"));
  {
    const auto a = load("straight", "ema.safetensors"), b = load("split", "ema.safetensors");
    for (const auto& [name, t] : a.tensors) ASSERT_TRUE(torch::equal(t, *b.find(name))) << name;
  }

  // Validation ran on the average: the last epoch's val_loss is the average's loss on the
  // validation rows (the trainer's seeded split), not the trained weights'.
  std::vector<int64_t> order(size_t(data.train.size()));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 split_rng(cfg.seed);
  std::shuffle(order.begin(), order.end(), split_rng);
  std::vector<int64_t> val(order.begin(), order.begin() + int64_t(data.train.size() * cfg.val_fraction));
  std::sort(val.begin(), val.end());
  ASSERT_EQ(epochs.size(), size_t(2));
  const double averaged = weights_loss((base / "straight/checkpoints/ema.safetensors").string(), data.train, val);
  const double trained = weights_loss((base / "straight/checkpoints/last.safetensors").string(), data.train, val);
  ASSERT_NEAR(epochs.back().val_loss, averaged, 1e-6);
  ASSERT_GT(std::abs(averaged - trained), 2e-5) << "too close to tell: " << averaged << " " << trained;
  // The best checkpoint is the average of its epoch (a hard link to that epoch's ema file).
  const auto best = load("straight", "best.safetensors");
  const auto average = load("straight", "ema.safetensors");
  const auto last = load("straight", "last.safetensors");
  bool is_average = true, is_last = true;
  for (const auto& [name, t] : best.tensors) {
    is_average &= torch::equal(t, *average.find(name));
    is_last &= torch::equal(t, *last.find(name));
  }
  ASSERT_FALSE(is_last);
  if (epochs.back().best) ASSERT_TRUE(is_average);
}

TEST(Trainer, pauseWaitsThenContinues) {
  vit_test::TempDir tmp;
  int polls = 0;
  vit::TrainCallbacks cb;
  cb.poll = [&] { return (++polls >= 3 && polls < 8) ? vit::Control::Pause : vit::Control::Continue; };
  const auto start = std::chrono::steady_clock::now();
  const auto r = vit::train(tiny_model(), quick(1), splits(), tmp.file("run"), cb);
  ASSERT_EQ(r.stop_reason, std::string("completed"));
  ASSERT_TRUE(polls > 8);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(elapsed >= std::chrono::milliseconds(5 * 50 - 10));  // five paused polls, 50 ms apart
}

TEST(Trainer, maxStepsStopsEarlyAndStillTests) {
  vit_test::TempDir tmp;
  auto cfg = quick(5);
  cfg.max_steps = 7;
  const auto r = vit::train(tiny_model(), cfg, splits(), tmp.file("run"));
  ASSERT_EQ(r.stop_reason, std::string("max_steps"));
  ASSERT_EQ(r.steps, int64_t(7));
  ASSERT_TRUE(r.test.has_value());
}

TEST(Trainer, nanLossStopsWithAClearMessage) {
  vit_test::TempDir tmp;
  auto cfg = quick(2);
  cfg.mean = {0.0f};
  // Pixels / std overflow to inf (1e-38 did not: pixels of 1e38 are finite, and only a layer norm
  // whose variance overflowed turned them into NaN; oneDNN's does not), so the first loss is NaN.
  cfg.std = {1e-45f};
  const auto run = tmp.file("run");
  const auto r = vit::train(tiny_model(), cfg, splits(), run);
  ASSERT_EQ(r.stop_reason, std::string("nan"));
  ASSERT_TRUE(vit_test::contains(r.message, "--lr")) << r.message;
  ASSERT_FALSE(r.test.has_value());
  ASSERT_FALSE(fs::exists(fs::path(run) / "checkpoints/last.safetensors"));  // nothing broken saved
}

TEST(Trainer, badSetupsAreRejected) {
  vit_test::TempDir tmp;
  auto model = tiny_model();
  model.num_classes = 3;
  try {
    vit::train(model, quick(1), splits(), tmp.file("a"));
    FAIL() << "class mismatch accepted";
  } catch (const std::invalid_argument& e) {
    ASSERT_TRUE(vit_test::contains(e.what(), "--classes 2")) << e.what();
  }
  auto cfg = quick(1);
  cfg.batch_size = 0;
  ASSERT_THROW(vit::train(tiny_model(), cfg, splits(), tmp.file("b")), std::invalid_argument);
  // A finished run is not silently overwritten.
  const auto run = tmp.file("c");
  vit::train(tiny_model(), quick(1), splits(), run);
  try {
    vit::train(tiny_model(), quick(1), splits(), run);
    FAIL() << "overwrote an existing run";
  } catch (const std::invalid_argument& e) {
    ASSERT_TRUE(vit_test::contains(e.what(), "--resume")) << e.what();
  }
  ASSERT_THROW(vit::train(tiny_model(), quick(1), splits(), run, {}, true), std::invalid_argument);
}
