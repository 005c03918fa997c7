// run_log: the torch-free readers the window uses for earlier runs and for runs a headless
// `vit train` is still writing.
#include "run_log.h"

#include "support/temp_dir.h"
#include "support/text.h"

#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>
#include <string>


using vit_test::contains;

namespace {

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace

TEST(RunLog, stepsSkipsARowStillBeingWritten) {
  vit_test::TempDir dir;
  const std::string path = dir.file("steps.csv");
  write(path, std::string(vit::kStepsHeader) +
                  "\n10,0,2.5,0.1,0.001,900,1.5\n20,0,2.25,0.2,0.002,950,3\n30,0,2.");
  const auto rows = vit::read_steps_csv(path);
  ASSERT_EQ(rows.size(), size_t(2));
  ASSERT_EQ(rows[1].step, int64_t(20));
  ASSERT_DOUBLE_EQ(rows[1].loss, 2.25);
  ASSERT_DOUBLE_EQ(rows[1].images_per_second, 950.0);
}

TEST(RunLog, metricsParsesEveryColumn) {
  vit_test::TempDir dir;
  const std::string path = dir.file("metrics.csv");
  write(path, std::string(vit::kMetricsHeader) + "\r\n0,1.5,0.6,0.9,1.25,0.7,0.95,0.002,30.5\r\n");
  const auto rows = vit::read_metrics_csv(path);
  ASSERT_EQ(rows.size(), size_t(1));
  ASSERT_DOUBLE_EQ(rows[0].val_loss, 1.25);
  ASSERT_DOUBLE_EQ(rows[0].val_top5_accuracy, 0.95);
  ASSERT_DOUBLE_EQ(rows[0].seconds, 30.5);
}

TEST(RunLog, malformedRowsAreSkipped) {
  vit_test::TempDir dir;
  const std::string path = dir.file("steps.csv");
  write(path, std::string(vit::kStepsHeader) + "\n10,0,x,0.1,0.001,900,1.5\n10,0,1\n20,0,2,0.2,0.002,950,3\n");
  const auto rows = vit::read_steps_csv(path);
  ASSERT_EQ(rows.size(), size_t(1));
  ASSERT_EQ(rows[0].step, int64_t(20));
}

// Integer columns hold whole numbers in range, or the row is skipped: converting 1e+31 (or NaN,
// or 2.5) from double to int is undefined behaviour, which fuzzing found here.
TEST(RunLog, integerColumnsOutOfRangeAreSkipped) {
  vit_test::TempDir dir;
  const std::string steps = dir.file("steps.csv");
  write(steps, std::string(vit::kStepsHeader) +
                   "\n1e+31,0,2,0.2,0.002,950,3"      // step beyond int64
                   "\n10,1e+31,2,0.2,0.002,950,3"     // epoch beyond int
                   "\n10,2147483648,2,0.2,0.002,950,3"
                   "\n-9.3e18,0,2,0.2,0.002,950,3"
                   "\nnan,0,2,0.2,0.002,950,3"
                   "\n10,inf,2,0.2,0.002,950,3"
                   "\n10.5,0,2,0.2,0.002,950,3"       // not whole
                   "\n20,1,2,0.2,0.002,950,3\n");
  const auto rows = vit::read_steps_csv(steps);
  ASSERT_EQ(rows.size(), size_t(1));
  ASSERT_EQ(rows[0].step, int64_t(20));
  ASSERT_EQ(rows[0].epoch, 1);

  const std::string metrics = dir.file("metrics.csv");
  write(metrics, std::string(vit::kMetricsHeader) +
                     "\n1e+31,1.5,0.6,0.9,1.25,0.7,0.95,0.002,30.5"
                     "\n-2147483649,1.5,0.6,0.9,1.25,0.7,0.95,0.002,30.5"
                     "\n2147483647,1.5,0.6,0.9,1.25,0.7,0.95,0.002,30.5\n");
  const auto epochs = vit::read_metrics_csv(metrics);
  ASSERT_EQ(epochs.size(), size_t(1));
  ASSERT_EQ(epochs[0].epoch, 2147483647);
}

TEST(RunLog, missingFileGivesNoRows) {
  vit_test::TempDir dir;
  ASSERT_TRUE(vit::read_steps_csv(dir.file("nope.csv")).empty());
}

TEST(RunLog, wrongHeaderNamesTheFile) {
  vit_test::TempDir dir;
  const std::string path = dir.file("metrics.csv");
  write(path, "a,b,c\n1,2,3\n");
  try {
    vit::read_metrics_csv(path);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), path)) << e.what();
    ASSERT_TRUE(contains(e.what(), "unexpected header")) << e.what();
  }
}

TEST(RunLog, readRunNamesAMissingConfig) {
  vit_test::TempDir dir;
  try {
    vit::read_run(dir.path());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), "config.json")) << e.what();
  }
}
