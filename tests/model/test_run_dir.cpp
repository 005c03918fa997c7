// Run directories (model/run_dir.h, run_writer.h): the layout and its reader, runs written before
// the layout, the checkpoint as one unit, the writer's lock, what a continued run may change,
// damaged state files, and the time and statistics of an epoch split by a restart.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bars_dataset.h"
#include "checkpoint.h"
#include "datasets.h"
#include "run_dir.h"
#include "support/temp_dir.h"
#include "run_writer.h"
#include "trainer.h"

namespace fs = std::filesystem;

namespace {

// A vit_test::TempDir whose `tmp / "name"` is a path in it.
struct TempDir : vit_test::TempDir {
  fs::path path{vit_test::TempDir::path()};
  std::string operator/(const std::string& name) const { return file(name); }
};

vit::TrainConfig quick(int epochs) {
  vit::TrainConfig t;
  t.dataset = "bars";
  t.epochs = epochs;
  t.batch_size = 32;
  t.lr = 3e-3;
  t.warmup_epochs = 0.5;
  t.eval_batch_size = 128;
  t.val_fraction = 0.2;
  t.log_every = 2;
  t.precision = "fp32";
  t.augment = {};
  return t;
}

vit::DataSplits splits() {
  vit::DataSplits s;
  s.train = bars(320, 1);
  s.test = bars(64, 2);
  return s;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Stops after `steps` optimizer steps of this call (between steps, as the window's Stop does).
vit::TrainCallbacks stop_after(int steps, int* seen) {
  vit::TrainCallbacks cb;
  cb.poll = [steps, seen] { return (*seen)++ >= steps ? vit::Control::Stop : vit::Control::Continue; };
  return cb;
}

}  // namespace

TEST(RunDir, CheckpointIsOneUnitBehindOneLink) {
  TempDir tmp;
  const std::string run = tmp / "run";
  vit::train(tiny_model(), quick(2), splits(), run);
  const vit::RunPaths paths(run);
  ASSERT_TRUE(fs::is_symlink(paths.current()));
  const fs::path unit = fs::path(paths.checkpoints()) / fs::read_symlink(paths.current());
  for (const char* f : {"last.safetensors", "last.optim.pt", "best.safetensors", "state.json"})
    EXPECT_TRUE(fs::is_regular_file(unit / f)) << f;
  // The names users open are links through `current`.
  for (const auto& p : {paths.best_weights(), paths.last_weights(), paths.last_optimizer(), paths.state()}) {
    EXPECT_TRUE(fs::is_symlink(p)) << p;
    EXPECT_TRUE(fs::is_regular_file(p)) << p;
  }
  // One unit only, and nothing temporary left.
  int units = 0;
  for (const auto& e : fs::directory_iterator(paths.checkpoints())) {
    const std::string name = e.path().filename().string();
    units += name.rfind("step-", 0) == 0;
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
  }
  EXPECT_EQ(units, 1);
  const vit::RunReader reader(run);
  const auto state = reader.state();
  ASSERT_TRUE(state.has_value());
  EXPECT_TRUE(state->finished);
  EXPECT_EQ(state->epoch, 2);
  EXPECT_GE(state->best_epoch, 0);
  EXPECT_EQ(fs::path(reader.weights(vit::Weights::Best)).parent_path(), unit);
  auto model = vit::load_model(reader.weights(vit::Weights::Best));  // loads
  EXPECT_EQ(model->config().dim, 16);
}

TEST(RunDir, BestWeightsSurviveLaterCheckpoints) {
  // The best epoch's weights stay the best checkpoint through later commits (a hard link into
  // each new unit), and differ from the last weights once training moved on.
  TempDir tmp;
  const std::string run = tmp / "run";
  auto cfg = quick(3);
  cfg.lr = 1e-4;  // slow: a later epoch is rarely the best, and when it is, the check still holds
  vit::train(tiny_model(), cfg, splits(), run);
  const vit::RunReader reader(run);
  const auto state = reader.state();
  ASSERT_TRUE(state.has_value());
  const auto best = vit::read_checkpoint_info(reader.weights(vit::Weights::Best));
  EXPECT_EQ(best.metadata.at("epoch"), std::to_string(state->best_epoch + 1));
}

TEST(RunDir, ReadsAndContinuesARunFromBeforeTheLayout) {
  // tests/fixtures/legacy-run was written by the release before this layout (commit 09a618e,
  // tests/fixtures/legacy-run/make_fixture.sh): plain state.json, best/last.safetensors and
  // last.optim.pt, stopped at step 9, in epoch 2 of 3.
  TempDir tmp;
  const std::string run = tmp / "legacy";
  fs::copy(std::string(VIT_FIXTURES) + "/legacy-run", run, fs::copy_options::recursive);
  const vit::RunReader reader(run);
  const auto state = reader.state();
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->global_step, 9);
  EXPECT_EQ(state->epoch, 1);
  EXPECT_EQ(reader.weights(vit::Weights::Best), vit::RunPaths(run).best_weights());
  EXPECT_EQ(reader.weights(vit::Weights::Last), vit::RunPaths(run).last_weights());
  EXPECT_FALSE(reader.optimizer().empty());
  EXPECT_EQ(reader.metrics().size(), 1u);
  const auto before = read(vit::RunPaths(run).best_weights());

  // Continue it on its own data set past the end of its second epoch (its recorded --max-steps 9
  // was a limit of the call that wrote it and does not carry over): the epoch's checkpoint
  // converts it to the new layout.
  vit::DataSplits data = vit::load_dataset("fashion-mnist", 28, 1);
  vit::RunRequest request;
  request.resume_dir = run;
  request.train.max_steps = 4;  // the 3 steps left in epoch 2, and 1 of epoch 3
  request.given = {"max_steps"};
  const auto r = vit::train(vit::prepare_run(request), data);
  EXPECT_EQ(r.stop_reason, "max_steps");
  EXPECT_EQ(r.epochs, 2);
  EXPECT_EQ(r.steps, 13);
  EXPECT_TRUE(fs::is_symlink(vit::RunPaths(run).current()));
  EXPECT_TRUE(fs::is_symlink(vit::RunPaths(run).state()));
  EXPECT_TRUE(fs::is_symlink(vit::RunPaths(run).last_optimizer()));
  const auto after = vit::RunReader(run).state();
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->epoch, 2);
  EXPECT_EQ(after->step_in_epoch, 1);
  EXPECT_EQ(vit::RunReader(run).metrics().size(), 2u);
  EXPECT_FALSE(vit::RunReader(run).test()->contains("nothing"));
  // The old best survives as the best unless a later epoch beat it.
  if (after->best_epoch == 0) EXPECT_EQ(read(vit::RunPaths(run).best_weights()), before);
}

TEST(RunDir, AnInterruptedEpochKeepsItsStatisticsAndTime) {
  // Stopped after 7 steps of an 8-step epoch and continued, the run logs what one uninterrupted
  // run logs: the same epoch statistics (no dropout: the same weights), elapsed time that never
  // goes back, and an epoch time that counts both parts.
  TempDir tmp;
  const std::string whole = tmp / "whole", split = tmp / "split";
  auto cfg = quick(2);
  cfg.log_every = 1;
  vit::train(tiny_model(), cfg, splits(), whole);
  int seen = 0;
  const auto first = vit::train(tiny_model(), cfg, splits(), split, stop_after(7, &seen));
  ASSERT_EQ(first.stop_reason, "stopped");
  ASSERT_EQ(first.steps, 7);
  vit::RunRequest request;
  request.resume_dir = split;
  vit::train(vit::prepare_run(request), splits());

  const auto a = vit::read_metrics_csv(vit::RunPaths(whole).metrics());
  const auto b = vit::read_metrics_csv(vit::RunPaths(split).metrics());
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i].loss, b[i].loss, 1e-5) << "epoch " << i;
    EXPECT_EQ(a[i].accuracy, b[i].accuracy) << "epoch " << i;
    EXPECT_NEAR(a[i].val_loss, b[i].val_loss, 1e-5) << "epoch " << i;
  }
  const auto steps = vit::read_steps_csv(vit::RunPaths(split).steps());
  ASSERT_EQ(steps.size(), a.size() * 8);  // 256 training images / 32, every step logged once
  for (size_t i = 1; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].step, steps[i - 1].step + 1);
    EXPECT_GE(steps[i].elapsed_seconds, steps[i - 1].elapsed_seconds) << "step " << steps[i].step;
  }
}

TEST(RunDir, PausedTimeIsNotTrainingTime) {
  TempDir tmp;
  // Paused for 1.5 s before the third step; the epoch itself takes a fraction of that.
  int polls = 0;
  std::optional<std::chrono::steady_clock::time_point> paused;
  vit::TrainCallbacks cb;
  cb.poll = [&] {
    if (++polls < 3) return vit::Control::Continue;
    if (!paused) paused = std::chrono::steady_clock::now();
    return std::chrono::steady_clock::now() - *paused < std::chrono::milliseconds(1500)
               ? vit::Control::Pause
               : vit::Control::Continue;
  };
  const auto r = vit::train(tiny_model(), quick(1), splits(), tmp / "run", cb);
  ASSERT_EQ(r.stop_reason, "completed");
  const auto rows = vit::read_metrics_csv(vit::RunPaths(tmp / "run").metrics());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_LT(rows[0].seconds, 1.2) << "the 1.5 s pause was counted";
  const auto steps = vit::read_steps_csv(vit::RunPaths(tmp / "run").steps());
  ASSERT_FALSE(steps.empty());
  EXPECT_LT(steps.back().elapsed_seconds, 1.2);
}

TEST(RunDir, LeftoversOfInterruptedWritesAreRemovedOnContinue) {
  TempDir tmp;
  const std::string run = tmp / "run";
  int seen = 0;
  vit::train(tiny_model(), quick(2), splits(), run, stop_after(4, &seen));
  const vit::RunPaths paths(run);
  // What a kill in the middle of a commit leaves: an unfinished unit, a temporary file, an
  // unfinished link, a unit written but never published.
  fs::create_directories(paths.step_dir(99) + ".tmp");
  std::ofstream(paths.checkpoints() + "/.last.safetensors.tmp12345") << "x";
  std::ofstream(run + "/.metrics.csv.tmp777") << "x";
  fs::create_directories(paths.step_dir(98));
  vit::RunRequest request;
  request.resume_dir = run;
  vit::train(vit::prepare_run(request), splits());
  int units = 0;
  for (const auto& dir : {fs::path(run), fs::path(paths.checkpoints())})
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
      units += name.rfind("step-", 0) == 0;
    }
  EXPECT_EQ(units, 1);
}

TEST(RunDir, OneWriterAtATime) {
  TempDir tmp;
  const std::string run = tmp / "run";
  std::optional<vit::RunLock> held;
  held.emplace(run, "vit train");
  const auto holder = vit::run_lock_holder(run);
  ASSERT_TRUE(holder.has_value());
  EXPECT_EQ(holder->pid, ::getpid());
  EXPECT_EQ(holder->program, "vit train");
  try {
    vit::RunLock second(run, "ViT Studio");
    FAIL() << "a second writer was allowed";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), "being written by vit train (pid " + std::to_string(::getpid()))) << e.what();
  }
  // And training into a locked directory is refused before anything is written.
  EXPECT_THROW(vit::train(tiny_model(), quick(1), splits(), run), std::runtime_error);
  EXPECT_FALSE(fs::exists(vit::RunPaths(run).config()));
  held.reset();
  EXPECT_FALSE(vit::run_lock_holder(run).has_value());
  vit::RunLock again(run, "vit train");  // free again
}

TEST(RunDir, AContinuedRunChangesOnlyWhatMayChange) {
  TempDir tmp;
  const std::string run = tmp / "run";
  int seen = 0;
  vit::train(tiny_model(), quick(2), splits(), run, stop_after(3, &seen));
  vit::RunRequest r;
  r.resume_dir = run;
  r.train = quick(2);
  r.model = tiny_model();

  r.train.lr = 0.1;
  r.given = {"lr"};
  try {
    vit::prepare_run(r);
    FAIL() << "lr changed on continue";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "lr cannot change")) << e.what();
    EXPECT_TRUE(contains(e.what(), "--lr")) << e.what();
  }
  r.train = quick(2);
  r.model.dim = 32;
  r.given = {"dim"};
  EXPECT_THROW(vit::prepare_run(r), std::invalid_argument);

  r.model = tiny_model();
  r.train.epochs = 5;
  r.train.threads = 1;
  r.given = {"epochs", "threads", "lr"};  // lr given but equal: fine
  const auto p = vit::prepare_run(r);
  EXPECT_TRUE(p.resume);
  EXPECT_EQ(p.train.epochs, 5);
  EXPECT_EQ(p.train.threads, 1);
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_TRUE(contains(p.notes[0], "epochs changed from 2 to 5"));

  r.train.epochs = 0;
  r.given = {"epochs"};
  EXPECT_THROW(vit::prepare_run(r), std::invalid_argument);  // invalid (and fewer than done)
}

TEST(RunDir, NewRunsAreNamedAndNeverOverwrite) {
  TempDir tmp;
  const std::string a = vit::new_run_dir(tmp.path.string(), "fmnist-small");
  EXPECT_EQ(fs::path(a).filename().string().rfind("fmnist-small-", 0), 0u) << a;
  fs::create_directories(a);
  const std::string b = vit::new_run_dir(tmp.path.string(), "fmnist-small");
  EXPECT_NE(a, b);
  EXPECT_TRUE(contains(b, a)) << b;  // the same stamp with a suffix, within one second

  std::ofstream(tmp / "file") << "x";
  vit::RunRequest r;
  r.model = tiny_model();
  r.train = quick(1);
  r.out_dir = tmp / "file";
  try {
    vit::prepare_run(r);
    FAIL() << "a file was accepted as --out";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "is a file")) << e.what();
  }
}

struct DamagedState {
  const char* name;
  const char* state;
  const char* mentions;
};

class DamagedStateTest : public testing::TestWithParam<DamagedState> {};

TEST_P(DamagedStateTest, IsAClearErrorNamingTheField) {
  const DamagedState& row = GetParam();
  try {
    vit::RunState::from_json(nlohmann::json::parse(row.state), "state.json");
    FAIL() << "accepted " << row.state;
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), "state.json is damaged")) << e.what();
    EXPECT_TRUE(contains(e.what(), row.mentions)) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    States, DamagedStateTest,
    testing::Values(
        DamagedState{"negative_step_in_epoch", R"({"epoch":0,"step_in_epoch":-3,"global_step":5,"best_val_accuracy":-1})", "step_in_epoch"},
        DamagedState{"negative_epoch", R"({"epoch":-5,"step_in_epoch":0,"global_step":5,"best_val_accuracy":-1})", "epoch"},
        DamagedState{"huge_epoch", R"({"epoch":1e300,"step_in_epoch":0,"global_step":5,"best_val_accuracy":-1})", "epoch"},
        DamagedState{"negative_global_step", R"({"epoch":0,"step_in_epoch":0,"global_step":-100,"best_val_accuracy":-1})", "global_step"},
        DamagedState{"text_epoch", R"({"epoch":"two","step_in_epoch":0,"global_step":5,"best_val_accuracy":-1})", "epoch"},
        DamagedState{"missing_step", R"({"epoch":1,"global_step":5,"best_val_accuracy":-1})", "step_in_epoch"},
        DamagedState{"best_in_the_future", R"({"epoch":1,"step_in_epoch":0,"global_step":5,"best_epoch":4,"best_val_accuracy":0.5})", "best_epoch"},
        DamagedState{"not_an_object", "[1,2]", "object"}),
    [](const testing::TestParamInfo<DamagedState>& info) { return std::string(info.param.name); });

TEST(RunDir, ADamagedStateStopsAContinueBeforeTraining) {
  TempDir tmp;
  const std::string run = tmp / "run";
  int seen = 0;
  vit::train(tiny_model(), quick(2), splits(), run, stop_after(3, &seen));
  // Past the end of the epoch (8 steps): out of bounds for the data loader if trusted.
  const fs::path state = fs::canonical(vit::RunPaths(run).state());
  auto j = nlohmann::json::parse(read(state.string()));
  j["step_in_epoch"] = 400;
  j["global_step"] = 400;
  fs::remove(state);
  std::ofstream(state) << j.dump();
  vit::RunRequest r;
  r.resume_dir = run;
  try {
    vit::train(vit::prepare_run(r), splits());
    FAIL() << "continued from a damaged state";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), "step_in_epoch 400")) << e.what();
  }
}

TEST(RunDir, ANanBeforeTheFirstCheckpointSaysSo) {
  TempDir tmp;
  auto cfg = quick(2);
  cfg.mean = {0.0f};
  cfg.std = {1e-45f};  // pixels / std overflow to inf: the first loss is NaN
  const auto r = vit::train(tiny_model(), cfg, splits(), tmp / "run");
  EXPECT_EQ(r.stop_reason, "nan");
  EXPECT_TRUE(contains(r.message, "no checkpoint was saved")) << r.message;
  EXPECT_FALSE(contains(r.message, "last.safetensors")) << r.message;
}

// Validation and test run in the run's precision (bf16 when it trains in bf16): on a trained tiny
// model, bf16 evaluation agrees with fp32 to 0.2 points of accuracy.
TEST(RunDir, Bf16EvaluationMatchesFp32) {
  TempDir tmp;
  auto cfg = quick(2);
  cfg.precision = "fp32";
  vit::train(tiny_model(), cfg, splits(), tmp / "run");
  const vit::Dataset test = bars(4000, 7);
  const auto fp32 = vit::evaluate_run(tmp / "run", test, "cpu", "fp32");
  const auto bf16 = vit::evaluate_run(tmp / "run", test, "cpu", "bf16");
  ASSERT_EQ(fp32.count, 4000);
  EXPECT_GT(fp32.accuracy, 0.6) << "the model did not learn: the comparison would say nothing";
  EXPECT_LE(std::abs(fp32.accuracy - bf16.accuracy), 0.002) << fp32.accuracy << " vs " << bf16.accuracy;
  EXPECT_NEAR(fp32.loss, bf16.loss, 0.02);
  EXPECT_NE(fp32.loss, bf16.loss) << "bf16 gave the float loss bit for bit: autocast did not run";
}
