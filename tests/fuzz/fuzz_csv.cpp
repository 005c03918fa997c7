// A run's metrics.csv and steps.csv (the window re-reads them while `vit train` writes them).
// The input is both files; the header picks which reader accepts it.
#include "fuzz_common.h"
#include "run_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vit_fuzz::input_file("log.csv", data, size);
  vit_fuzz::expect_clean([&] { vit::read_metrics_csv(path); });
  vit_fuzz::expect_clean([&] { vit::read_steps_csv(path); });
  return 0;
}
