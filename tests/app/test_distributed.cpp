// Distributed data parallel (model/distributed.h) as users run it: `vit train --nproc-per-node N`
// (our launcher, no Python) and, when Debian's python3-torch is installed, torchrun. Each test
// trains a tiny model on the real Fashion-MNIST for a few steps and compares run directories.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "launcher.h"
#include "run_dir.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "safetensors.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// A vit_test::TempDir whose `tmp / "name"` is a path in it.
struct TempDir : vit_test::TempDir {
  fs::path path{vit_test::TempDir::path()};
  std::string operator/(const std::string& name) const { return file(name); }
};

std::string vit_binary() {
  const char* v = std::getenv("VIT_BINARY");
  return v ? v : "";
}

using Process = vit_test::Child;

// Trains with `extra` flags; returns the exit code (stderr in the failure message).
int train(const std::string& out, const std::vector<std::string>& extra, const std::string& log,
          const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {vit_binary(), "train",  "--dim",        "16",   "--depth",
                                   "1",          "--heads", "2",           "--patch-size", "7",
                                   "--batch-size", "64",   "--precision", "fp32", "--log-every", "5",
                                   "--val-fraction", "0.02", "--out",     out};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Process p(argv, log, env);
  EXPECT_TRUE(p.wait(240)) << "vit train did not finish";
  EXPECT_EQ(p.code, 0) << p.stderr_text();
  return p.code;
}

// The largest absolute difference between the weights of two checkpoints.
double max_weight_diff(const std::string& a, const std::string& b) {
  const auto x = vit::load_safetensors(a), y = vit::load_safetensors(b);
  double worst = 0;
  EXPECT_EQ(x.tensors.size(), y.tensors.size());
  for (const auto& [name, t] : x.tensors) {
    const auto* u = y.find(name);
    if (!u) {
      ADD_FAILURE() << name << " missing";
      continue;
    }
    worst = std::max(worst, (t - *u).abs().max().item<double>());
  }
  return worst;
}

std::string last_weights(const std::string& run) {
  return vit::RunReader(run).weights(vit::Weights::Last);
}

// The children of `parent` (the ranks a launcher started).
std::vector<pid_t> children(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(pid_t(std::stol(name)));
  }
  return out;
}

std::string environment_of(pid_t pid, const std::string& var) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  const std::string env((std::istreambuf_iterator<char>(in)), {});
  std::istringstream items(env);
  for (std::string item; std::getline(items, item, '\0');)
    if (item.rfind(var + "=", 0) == 0) return item.substr(var.size() + 1);
  return "";
}

int64_t last_logged_step(const std::string& run) {
  const auto rows = vit::read_steps_csv(vit::RunPaths(run).steps());
  return rows.empty() ? 0 : rows.back().step;
}

}  // namespace

class Distributed : public testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(vit_binary().empty()) << "VIT_BINARY unset"; }
  TempDir tmp;
};

// 2 ranks of 1 thread split each batch as 1 process of 2 threads does (2 shards, the same
// dropout streams): after 20 steps the weights agree up to float summation order, and so does
// their moving average (every rank keeps one; rank 0 writes it).
TEST_F(Distributed, TwoRanksEqualTwoThreads) {
  const std::vector<std::string> common = {"--max-steps", "20", "--dropout", "0.1", "--ema-decay", "0.9"};
  auto with = [&](std::vector<std::string> v) {
    v.insert(v.end(), common.begin(), common.end());
    return v;
  };
  ASSERT_EQ(train(tmp / "threads", with({"--threads", "2"}), tmp / "threads"), 0);
  ASSERT_EQ(train(tmp / "ranks", with({"--nproc-per-node", "2", "--threads", "1"}), tmp / "ranks"), 0);
  const double diff = max_weight_diff(last_weights(tmp / "threads"), last_weights(tmp / "ranks"));
  EXPECT_LE(diff, 1e-5);
  const std::string average = vit::RunReader(tmp / "ranks").average_weights();
  ASSERT_FALSE(average.empty()) << "no ema.safetensors";
  EXPECT_LE(max_weight_diff(vit::RunReader(tmp / "threads").average_weights(), average), 1e-5);
  EXPECT_GT(max_weight_diff(last_weights(tmp / "ranks"), average), 1e-4) << "the average is the weights";
  // Step by step the same losses, while the loss moved (so the weights did).
  const auto a = vit::read_steps_csv(vit::RunPaths(tmp / "threads").steps());
  const auto b = vit::read_steps_csv(vit::RunPaths(tmp / "ranks").steps());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i].loss, b[i].loss, 1e-5) << "step " << a[i].step;
  EXPECT_NE(a.front().loss, a.back().loss);
  // The run directory records the world size; the ranks other than 0 wrote nothing.
  std::ifstream config(vit::RunPaths(tmp / "ranks").config());
  const auto j = nlohmann::json::parse(config);
  EXPECT_EQ(j["world_size"], 2);
  EXPECT_EQ(vit::RunReader(tmp / "ranks").state()->world_size, 2);
  EXPECT_EQ(vit::read_steps_csv(vit::RunPaths(tmp / "ranks").steps()).size(), 4u);  // one writer
}

// `--precision auto` can resolve differently on two machines' CPUs (bf16 only where it is faster,
// cpu_info.h); every rank then runs rank 0's choice. Simulated with the probe's test hook: rank 0's
// CPU fast at bf16, rank 1's slow. The mixed pair trains exactly as a pair that both chose bf16,
// and not as a pair in fp32. The hook's rates would also choose different units for the bf16
// GEMMs (onednn_linear.h: float units below 0.8x), which round the same products in another
// order; that is the kernels, not the precision (two real CPUs' kernels differ anyway), so every
// rank here runs them on the float units.
TEST_F(Distributed, EveryRankRunsRank0sPrecision) {
  auto pair = [&](const std::string& name, const char* ratio0, const char* ratio1) {
    const std::string port = std::to_string(vit::free_port());
    std::vector<std::unique_ptr<Process>> ranks;
    for (int r = 0; r < 2; ++r)
      ranks.push_back(std::make_unique<Process>(
          std::vector<std::string>{vit_binary(), "train", "--dim", "16", "--depth", "1", "--heads", "2",
                                   "--patch-size", "7", "--batch-size", "64", "--max-steps", "4",
                                   "--threads", "1", "--val-fraction", "0.02", "--out", tmp / name},
          tmp / (name + std::to_string(r)),
          std::vector<std::string>{"WORLD_SIZE=2", "RANK=" + std::to_string(r), "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port,
                                   std::string("VIT_TEST_BF16_RATIO=") + (r == 0 ? ratio0 : ratio1),
                                   "VIT_BF16_GEMM=float"}));
    for (auto& p : ranks) {
      EXPECT_TRUE(p->wait(240)) << name << " did not finish";
      EXPECT_EQ(p->code, 0) << p->stderr_text();
    }
    std::ifstream config(vit::RunPaths(tmp / name).config());
    return nlohmann::json::parse(config)["train"]["precision"].get<std::string>();
  };
  ASSERT_EQ(pair("mixed", "2.0", "0.5"), "bf16");
  ASSERT_EQ(pair("bf16", "2.0", "2.0"), "bf16");
  ASSERT_EQ(pair("fp32", "0.5", "0.5"), "fp32");
  const auto mixed = last_weights(tmp / "mixed");
  EXPECT_EQ(max_weight_diff(mixed, last_weights(tmp / "bf16")), 0.0);
  EXPECT_GT(max_weight_diff(mixed, last_weights(tmp / "fp32")), 0.0);
}

// 3 ranks of a 64-image batch get 21, 21 and 22 images: the shard-weighted losses still sum to
// the batch mean, so 3 ranks agree with 1 process of 3 shards.
TEST_F(Distributed, ThreeRanksWithUnevenShards) {
  ASSERT_EQ(train(tmp / "threads", {"--max-steps", "20", "--threads", "3"}, tmp / "threads"), 0);
  ASSERT_EQ(train(tmp / "ranks", {"--max-steps", "20", "--nproc-per-node", "3", "--threads", "1"}, tmp / "ranks"), 0);
  EXPECT_LE(max_weight_diff(last_weights(tmp / "threads"), last_weights(tmp / "ranks")), 1e-5);
}

// A 2-rank run continued on 1 process (the global batch is the same) ends where a 1-process run
// of the same length does.
TEST_F(Distributed, ARunOfTwoRanksContinuesOnOne) {
  ASSERT_EQ(train(tmp / "whole", {"--max-steps", "15", "--threads", "2"}, tmp / "whole"), 0);
  ASSERT_EQ(train(tmp / "split", {"--max-steps", "10", "--nproc-per-node", "2", "--threads", "1"}, tmp / "split"), 0);
  Process resume({vit_binary(), "train", "--resume", tmp / "split", "--max-steps", "5", "--threads", "2"},
                 tmp / "resume");
  ASSERT_TRUE(resume.wait(240));
  ASSERT_EQ(resume.code, 0) << resume.stderr_text();
  const auto state = vit::RunReader(tmp / "split").state();
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->global_step, 15);
  EXPECT_EQ(state->world_size, 1);
  EXPECT_LE(max_weight_diff(last_weights(tmp / "whole"), last_weights(tmp / "split")), 1e-5);
}

// A rank killed mid-run: the others exit non-zero within the timeout (5 s here, plus the
// launcher's grace), and rank 0 kept the last completed step, which `vit eval` loads.
TEST_F(Distributed, AKilledRankStopsTheOthersAndTheRunStaysUsable) {
  const std::string run = tmp / "run";
  Process launcher({vit_binary(), "train", "--dim", "16", "--depth", "1", "--heads", "2",
                    "--patch-size", "7", "--batch-size", "64", "--precision", "fp32", "--epochs", "1",
                    "--log-every", "5", "--nproc-per-node", "3", "--threads", "1", "--dist-timeout", "5",
                    "--checkpoint-every", "1000", "--out", run},
                   tmp / "launcher");
  ASSERT_GT(launcher.pid, 0);
  const auto start = Clock::now();
  while (last_logged_step(run) < 30 && Clock::now() - start < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(last_logged_step(run), 30) << launcher.stderr_text();
  pid_t victim = -1;
  for (pid_t child : children(launcher.pid))
    if (environment_of(child, "RANK") == "1") victim = child;
  ASSERT_GT(victim, 0);
  ::kill(victim, SIGKILL);
  const auto killed = Clock::now();
  ASSERT_TRUE(launcher.wait(60)) << "the other ranks did not stop";
  const double seconds = std::chrono::duration<double>(Clock::now() - killed).count();
  EXPECT_NE(launcher.code, 0);
  EXPECT_LT(seconds, 5 + 10 + 5) << "longer than the timeout and the launcher's grace";
  const std::string err = launcher.stderr_text();
  EXPECT_NE(err.find("rank 0 of 3"), std::string::npos) << err;
  // The checkpoint holds the last completed step (no checkpoint was due before: every 1000).
  const auto state = vit::RunReader(run).state();
  ASSERT_TRUE(state.has_value()) << err;
  EXPECT_GE(state->global_step, 30);
  Process eval({vit_binary(), "eval", "--run", run, "--json"}, tmp / "eval");
  ASSERT_TRUE(eval.wait(120));
  EXPECT_EQ(eval.code, 0) << eval.stderr_text();
}

// Debian's torchrun (python3-torch) launches `vit` as its workers; they join its agent's store.
TEST_F(Distributed, TorchrunLaunchesTheRanks) {
  if (std::system("command -v torchrun >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "torchrun is not installed (Debian's python3-torch)";
  const std::string run = tmp / "run";
  // Debian's torchrun 1.13 on Python 3.11 crashes parsing its default --redirects 0 and accepts
  // only the underscore spellings.
  Process p({"torchrun", "--nproc_per_node", "2", "--master_port", std::to_string(vit::free_port()),
             "--redirects", "2", "--tee", "2", "--no_python",
             vit_binary(), "train", "--dim", "16", "--depth", "1", "--heads", "2", "--patch-size", "7",
             "--batch-size", "64", "--precision", "fp32", "--max-steps", "10", "--threads", "1",
             "--out", run},
            tmp / "torchrun");
  ASSERT_TRUE(p.wait(240));
  ASSERT_EQ(p.code, 0) << p.stderr_text();
  const auto state = vit::RunReader(run).state();
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->global_step, 10);
  EXPECT_EQ(state->world_size, 2);
}

// Under torchrun --max_restarts, a rank that dies makes torchrun restart every rank; the new
// attempt finds the run directory the first one chose (in torchrun's agent store) and continues
// it from its checkpoint to the end.
TEST_F(Distributed, TorchrunRestartsContinueTheRun) {
  if (std::system("command -v torchrun >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "torchrun is not installed (Debian's python3-torch)";
  const std::string run = tmp / "run";
  Process p({"torchrun", "--nproc_per_node", "2", "--max_restarts", "1", "--master_port",
             std::to_string(vit::free_port()), "--redirects", "2", "--tee", "2", "--no_python",
             vit_binary(), "train", "--dim", "16", "--depth", "1", "--heads", "2", "--patch-size", "7",
             "--batch-size", "256", "--precision", "fp32", "--epochs", "1", "--threads", "1",
             "--log-every", "5", "--checkpoint-every", "20", "--dist-timeout", "10", "--out", run},
            tmp / "torchrun");
  ASSERT_GT(p.pid, 0);
  const auto start = Clock::now();
  while (last_logged_step(run) < 45 && Clock::now() - start < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(last_logged_step(run), 45) << p.stderr_text();
  // torchrun's agent is our child; its workers are its children.
  pid_t victim = -1;
  for (pid_t agent : {p.pid})
    for (pid_t worker : children(agent))
      if (environment_of(worker, "RANK") == "1") victim = worker;
  ASSERT_GT(victim, 0) << "rank 1 not found";
  ::kill(victim, SIGKILL);
  ASSERT_TRUE(p.wait(240));
  ASSERT_EQ(p.code, 0) << p.stderr_text();
  const std::string err = p.stderr_text();
  EXPECT_NE(err.find("resumed"), std::string::npos) << err;
  const auto state = vit::RunReader(run).state();
  ASSERT_TRUE(state.has_value());
  EXPECT_TRUE(state->finished);
  EXPECT_EQ(state->epoch, 1);
}
