// Fault injection on `vit train` as users run it (issue 17): killed with SIGKILL at every kind of
// point inside the writes of a run directory, a full disk, a second writer, and bad places to
// write. A tiny model trains on a 2-class image folder the suite writes, so each run takes about
// a second; the kill points come from the core's own crash_point() hook (model/atomic_file.h).
#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint.h"
#include "run_dir.h"
#include "run_log.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/text.h"

namespace fs = std::filesystem;
using vit_test::contains;

namespace {

std::string vit_binary() {
  const char* v = std::getenv("VIT_BINARY");
  return v ? v : "";
}

// 2 classes (vertical and horizontal bars) of 24 8x8 grey images each.
std::string bars_folder(const std::string& dir) {
  for (int label = 0; label < 2; ++label) {
    fs::create_directories(dir + "/" + (label ? "horizontal" : "vertical"));
    for (int i = 0; i < 24; ++i) {
      cv::Mat img(8, 8, CV_8UC1, cv::Scalar(20 + i));
      const int at = i % 8;
      if (label) img.row(at).setTo(230);
      else img.col(at).setTo(230);
      cv::imwrite(dir + "/" + (label ? "horizontal/" : "vertical/") + std::to_string(i) + ".png", img);
    }
  }
  return "folder:" + dir;
}

// The training every test starts: 3 epochs of 5 steps (36 training images, 12 held out), a
// checkpoint every 4 steps and at each epoch's end, with a moving average of the weights (so each
// checkpoint unit holds ema.safetensors too).
std::vector<std::string> train_args(const std::string& data, const std::string& out) {
  return {vit_binary(), "train", "--dataset", data, "--image-size", "8", "--patch-size", "4",
          "--dim", "16", "--depth", "1", "--heads", "2", "--mlp-hidden", "32", "--batch-size", "8",
          "--epochs", "3", "--val-fraction", "0.25", "--threads", "1", "--precision", "fp32",
          "--log-every", "2", "--checkpoint-every", "4", "--ema-decay", "0.9", "--out", out};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t lines_of(const std::string& path) {
  const std::string text = read_text(path);
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// Leftovers of interrupted writes anywhere in the run directory.
std::vector<std::string> temporary_files(const std::string& run) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(run, ec); it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (name.find(".tmp") != std::string::npos) out.push_back(it->path().string());
  }
  return out;
}

// What must hold for a run directory at any moment a reader may look (after a kill too): the
// current checkpoint is one unit (its weights are of the step state.json names), the weights
// load, and the logs hold whole rows.
void expect_consistent(const std::string& run, const std::string& context) {
  SCOPED_TRACE(context);
  const vit::RunReader reader(run);
  const auto state = reader.state();
  if (!state) return;  // killed before the first checkpoint: nothing to resume from yet
  const std::string last = reader.weights(vit::Weights::Last);
  ASSERT_FALSE(last.empty());
  const auto info = vit::read_checkpoint_info(last);
  EXPECT_EQ(info.metadata.at("global_step"), std::to_string(state->global_step))
      << "last weights and state.json are of different steps";
  EXPECT_NO_THROW(vit::load_model(last));
  const std::string best = reader.weights(vit::Weights::Best, /*fallback=*/false);
  if (!best.empty()) EXPECT_NO_THROW(vit::load_model(best));
  const std::string average = reader.average_weights();
  ASSERT_FALSE(average.empty()) << "a checkpoint without its moving average";
  EXPECT_EQ(vit::read_checkpoint_info(average).metadata.at("global_step"), std::to_string(state->global_step))
      << "the moving average and state.json are of different steps";
  EXPECT_NO_THROW(vit::load_model(average));
}

// Every tensor of two weight files equal, bit for bit.
void expect_same_weights(const std::string& a, const std::string& b, const std::string& context) {
  auto ma = vit::load_model(a), mb = vit::load_model(b);
  const auto pa = ma->named_parameters(), pb = mb->named_parameters();
  ASSERT_EQ(pa.size(), pb.size()) << context;
  for (const auto& item : pa)
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << context << ": " << item.key() << " differs";
}

// After a finished run: every epoch once, in order; the same step rows as `reference` (an
// uninterrupted run), so none lost or duplicated; no torn line.
void expect_complete_logs(const std::string& run, const std::string& reference) {
  const vit::RunPaths paths(run);
  const auto epochs = vit::read_metrics_csv(paths.metrics());
  ASSERT_EQ(epochs.size(), 3u);
  for (size_t i = 0; i < epochs.size(); ++i) EXPECT_EQ(epochs[i].epoch, int(i));
  EXPECT_EQ(lines_of(paths.metrics()), epochs.size() + 1) << "a torn or foreign line in metrics.csv";
  const auto steps = vit::read_steps_csv(paths.steps());
  ASSERT_FALSE(steps.empty());
  std::vector<int64_t> got, want;
  for (const auto& r : steps) got.push_back(r.step);
  for (const auto& r : vit::read_steps_csv(vit::RunPaths(reference).steps())) want.push_back(r.step);
  EXPECT_EQ(got, want) << "steps.csv rows lost or duplicated";
  EXPECT_EQ(lines_of(paths.steps()), steps.size() + 1) << "a torn line in steps.csv";
}

class Faults : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(vit_binary().empty()) << "VIT_BINARY unset";
    data_ = bars_folder(tmp_.file("bars"));
  }
  std::string dir(const std::string& name) const { return tmp_.file(name); }
  // An uninterrupted run to compare with.
  std::string reference() {
    const std::string run = dir("reference");
    if (!vit::RunReader(run).state()) {
      vit_test::Child p(train_args(data_, run), run);
      EXPECT_TRUE(p.wait(120));
      EXPECT_EQ(p.code, 0) << p.stderr_text();
    }
    return run;
  }
  vit_test::TempDir tmp_;
  std::string data_;
};

}  // namespace

// Kill -9 at each kind of crash point (the first and the last time a run passes it), then
// continue: every continue succeeds and ends where an uninterrupted run ends, no temporary file
// is left, best and last always load, and the logs have no torn or duplicated rows.
TEST_F(Faults, KilledAtEveryKindOfWritePointTheRunContinues) {
  // A clean run lists the points it passes.
  vit_test::Child listing(train_args(data_, dir("listing")), dir("listing"), {"VIT_TEST_KILL_AT=list"});
  ASSERT_TRUE(listing.wait(120));
  ASSERT_EQ(listing.code, 0) << listing.stderr_text();
  std::map<std::string, std::vector<int>> kinds;  // where -> the point numbers
  std::istringstream lines(listing.stderr_text());
  for (std::string line; std::getline(lines, line);) {
    const auto colon = line.find(": ");
    if (line.rfind("crash point ", 0) != 0 || colon == std::string::npos) continue;
    kinds[line.substr(colon + 2)].push_back(std::stoi(line.substr(12, colon - 12)));
  }
  // Each kind of write: an atomic file's two steps, a checkpoint commit's four, a CSV row's.
  ASSERT_EQ(kinds.size(), 7u) << listing.stderr_text();
  std::set<int> points;
  for (const auto& [where, numbers] : kinds) {
    points.insert(numbers.front());
    points.insert(numbers.back());
    points.insert(numbers[numbers.size() / 2]);
  }
  const auto final_state = vit::RunReader(dir("listing")).state();
  ASSERT_TRUE(final_state && final_state->finished);
  expect_complete_logs(dir("listing"), dir("listing"));

  for (int point : points) {
    const std::string run = dir("killed-" + std::to_string(point));
    const std::string context = "killed at crash point " + std::to_string(point);
    vit_test::Child killed(train_args(data_, run), run, {"VIT_TEST_KILL_AT=" + std::to_string(point)});
    ASSERT_TRUE(killed.wait(120)) << context;
    ASSERT_EQ(killed.code, 128 + SIGKILL) << context << "\n" << killed.stderr_text();
    expect_consistent(run, context);
    const auto killed_state = vit::RunReader(run).state();
    if (!killed_state) continue;  // nothing committed yet: a new run starts over
    if (killed_state->finished) {  // killed after the last checkpoint (writing test.json)
      expect_complete_logs(run, dir("listing"));
      continue;
    }
    vit_test::Child resumed({vit_binary(), "train", "--resume", run, "--threads", "1"}, run + "-resume");
    ASSERT_TRUE(resumed.wait(120)) << context;
    ASSERT_EQ(resumed.code, 0) << context << "\n" << resumed.stderr_text();
    const auto state = vit::RunReader(run).state();
    ASSERT_TRUE(state && state->finished) << context;
    EXPECT_EQ(state->global_step, final_state->global_step) << context;
    EXPECT_EQ(temporary_files(run), std::vector<std::string>{}) << context;
    expect_consistent(run, context);
    expect_complete_logs(run, dir("listing"));
    // Continued from its last checkpoint, the run ends on the uninterrupted run's bits: the
    // weights, and the moving average (which a checkpoint without it would restart).
    const vit::RunReader done(run), clean(dir("listing"));
    expect_same_weights(done.weights(vit::Weights::Last), clean.weights(vit::Weights::Last), context + ", last");
    expect_same_weights(done.average_weights(), clean.average_weights(), context + ", moving average");
  }
}

// Kill -9 from outside at different moments (wherever the run happens to be), then continue.
TEST_F(Faults, KilledAtRandomMomentsTheRunContinues) {
  for (int delay_ms : {300, 700, 1100, 1500}) {
    const std::string run = dir("random-" + std::to_string(delay_ms));
    const std::string context = "killed after " + std::to_string(delay_ms) + " ms";
    vit_test::Child p(train_args(data_, run), run);
    ASSERT_GT(p.pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(p.pid, SIGKILL);
    ASSERT_TRUE(p.wait(60));
    expect_consistent(run, context);
    if (!vit::RunReader(run).state() || vit::RunReader(run).state()->finished) continue;
    vit_test::Child resumed({vit_binary(), "train", "--resume", run, "--threads", "1"}, run + "-resume");
    ASSERT_TRUE(resumed.wait(120)) << context;
    ASSERT_EQ(resumed.code, 0) << context << "\n" << resumed.stderr_text();
    EXPECT_EQ(temporary_files(run), std::vector<std::string>{}) << context;
    expect_complete_logs(run, reference());
  }
}

// A full disk (the atomic writer's VIT_TEST_DISK_BYTES budget makes a write fail with ENOSPC, as
// a full filesystem does): a clear error, the last committed checkpoint kept, and the run
// continues once space returns.
TEST_F(Faults, AFullDiskIsAClearErrorAndTheRunContinuesLater) {
  const std::string run = dir("full");
  // Room for the run's first files and two and a half checkpoints (weights, moving average,
  // optimizer state, state.json, as the reference run's current one): the third checkpoint meets a full disk.
  const vit::RunPaths ref(reference());
  const auto size = [](const std::string& f) { return int64_t(fs::file_size(fs::canonical(f))); };
  const int64_t checkpoint =
      size(ref.last_weights()) + size(ref.average_weights()) + size(ref.last_optimizer()) + size(ref.state());
  const int64_t budget = size(ref.config()) + 2 * size(ref.metrics()) + checkpoint * 5 / 2;
  vit_test::Child p(train_args(data_, run), run, {"VIT_TEST_DISK_BYTES=" + std::to_string(budget)});
  ASSERT_TRUE(p.wait(120));
  const std::string err = p.stderr_text();
  ASSERT_EQ(p.code, 1) << err;
  EXPECT_TRUE(contains(err, "No space left on device")) << err;
  EXPECT_TRUE(contains(err, "free some disk space")) << err;
  EXPECT_EQ(err.find("terminate called"), std::string::npos) << err;
  const auto state = vit::RunReader(run).state();
  ASSERT_TRUE(state.has_value()) << "the budget left no checkpoint; raise it\n" << err;
  EXPECT_FALSE(state->finished);
  expect_consistent(run, "after the full disk");
  EXPECT_EQ(temporary_files(run), std::vector<std::string>{});
  vit_test::Child resumed({vit_binary(), "train", "--resume", run, "--threads", "1"}, run + "-resume");
  ASSERT_TRUE(resumed.wait(120));
  ASSERT_EQ(resumed.code, 0) << resumed.stderr_text();
  EXPECT_TRUE(vit::RunReader(run).state()->finished);
  expect_complete_logs(run, reference());
}

// A second `vit train` on a run another one is writing is refused, naming the other process.
TEST_F(Faults, ASecondWriterIsRefusedByName) {
  const std::string run = dir("busy");
  auto args = train_args(data_, run);
  args[std::find(args.begin(), args.end(), "--epochs") - args.begin() + 1] = "1000";
  vit_test::Child first(args, run);
  ASSERT_GT(first.pid, 0);
  const auto start = std::chrono::steady_clock::now();
  while (!vit::RunReader(run).state() && std::chrono::steady_clock::now() - start < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(vit::RunReader(run).state().has_value()) << first.stderr_text();
  vit_test::Child second({vit_binary(), "train", "--resume", run}, run + "-second");
  ASSERT_TRUE(second.wait(60));
  const std::string err = second.stderr_text();
  EXPECT_EQ(second.code, 1) << err;
  EXPECT_TRUE(contains(err, "being written by vit train (pid " + std::to_string(first.pid))) << err;
  ::kill(first.pid, SIGTERM);  // Ctrl-C's way: stops after the step, keeps a checkpoint
  ASSERT_TRUE(first.wait(60));
  expect_consistent(run, "after the first writer stopped");
}

struct BadPlace {
  std::string name;
  std::function<std::vector<std::string>(const std::string& tmp, const std::string& data)> args;
  int code;
  std::string says;
};

// Places a run cannot go, and runs that cannot continue: each a clear error naming the problem,
// exit code 2 where the command must change, 1 where the system refused.
TEST_F(Faults, BadPlacesAndBadRunsAreClearErrors) {
  const std::string tmp = dir("bad");
  fs::create_directories(tmp);
  std::ofstream(tmp + "/a-file") << "x";
  // A finished-looking run whose state.json is damaged.
  const std::string damaged = tmp + "/damaged";
  vit_test::Child setup(train_args(data_, damaged), damaged);
  ASSERT_TRUE(setup.wait(120));
  ASSERT_EQ(setup.code, 0) << setup.stderr_text();
  const std::string state_file = fs::canonical(vit::RunPaths(damaged).state()).string();
  const std::vector<BadPlace> cases = {
      {"--out is a file", [&](auto& t, auto& d) { return train_args(d, t + "/a-file"); }, 2, "is a file"},
      {"--out where nothing can be written",
       [&](auto&, auto& d) { return train_args(d, "/proc/vit-studio-run"); }, 1, "/proc/vit-studio-run"},
      {"--resume of a folder that is no run",
       [&](auto& t, auto&) { return std::vector<std::string>{vit_binary(), "train", "--resume", t}; }, 2,
       "config.json"},
      {"--resume with another preset",
       [&](auto&, auto&) {
         return std::vector<std::string>{vit_binary(), "train", "--resume", damaged, "--preset", "vit-b16"};
       },
       2, "a continued run keeps its model"},
  };
  for (const auto& c : cases) {
    vit_test::Child p(c.args(tmp, data_), tmp + "/log");
    ASSERT_TRUE(p.wait(60)) << c.name;
    const std::string err = p.stderr_text();
    EXPECT_EQ(p.code, c.code) << c.name << "\n" << err;
    EXPECT_TRUE(contains(err, c.says)) << c.name << "\n" << err;
    EXPECT_EQ(err.find("terminate called"), std::string::npos) << c.name << "\n" << err;
  }
  // state.json garbled: the continue names the file and writes nothing.
  std::ofstream(state_file, std::ios::trunc) << "{\"epoch\": ";
  const std::string metrics_before = read_text(vit::RunPaths(damaged).metrics());
  vit_test::Child p({vit_binary(), "train", "--resume", damaged, "--epochs", "4"}, tmp + "/log-state");
  ASSERT_TRUE(p.wait(60));
  const std::string err = p.stderr_text();
  EXPECT_EQ(p.code, 2) << err;
  EXPECT_TRUE(contains(err, "state.json is damaged")) << err;
  EXPECT_EQ(read_text(vit::RunPaths(damaged).metrics()), metrics_before);
}

// A damaged moving average (ema.safetensors) stops the continue with an error that names the file
// and the way on; once it is removed the run continues, the average restarted from the last
// weights, as the note says.
TEST_F(Faults, ADamagedMovingAverageNamesTheWayOn) {
  const std::string run = dir("damaged-average");
  auto args = train_args(data_, run);
  args[std::find(args.begin(), args.end(), "--epochs") - args.begin() + 1] = "2";
  vit_test::Child setup(args, run);
  ASSERT_TRUE(setup.wait(120));
  ASSERT_EQ(setup.code, 0) << setup.stderr_text();
  const std::string average = vit::RunReader(run).average_weights();
  ASSERT_FALSE(average.empty());
  const std::string weights_before = read_text(vit::RunReader(run).weights(vit::Weights::Last));
  const int64_t step_before = vit::RunReader(run).state()->global_step;
  const std::string whole = read_text(average);
  std::ofstream(average, std::ios::binary | std::ios::trunc) << whole.substr(0, whole.size() / 2);

  vit_test::Child refused({vit_binary(), "train", "--resume", run, "--epochs", "3", "--threads", "1"}, run + "-1");
  ASSERT_TRUE(refused.wait(60));
  const std::string err = refused.stderr_text();
  EXPECT_NE(refused.code, 0) << err;
  EXPECT_TRUE(contains(err, average)) << err;
  EXPECT_TRUE(contains(err, "truncated")) << err;
  EXPECT_TRUE(contains(err, "remove " + average + " and run the same command again")) << err;
  EXPECT_EQ(err.find("terminate called"), std::string::npos) << err;
  EXPECT_EQ(read_text(vit::RunReader(run).weights(vit::Weights::Last)), weights_before) << "the refusal wrote weights";
  EXPECT_EQ(vit::RunReader(run).state()->global_step, step_before) << "the refusal trained";

  fs::remove(average);
  vit_test::Child resumed({vit_binary(), "train", "--resume", run, "--epochs", "3", "--threads", "1"}, run + "-2");
  ASSERT_TRUE(resumed.wait(120));
  ASSERT_EQ(resumed.code, 0) << resumed.stderr_text();
  EXPECT_TRUE(contains(resumed.stderr_text(), "it starts again from the last weights")) << resumed.stderr_text();
  const auto state = vit::RunReader(run).state();
  ASSERT_TRUE(state && state->finished);
  EXPECT_EQ(vit::RunReader(run).metrics().size(), 3u);
  expect_consistent(run, "continued without its moving average");
}
