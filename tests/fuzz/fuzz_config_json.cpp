// A run directory's config.json (read_run: the model and training configs, the normalization),
// then the summary of the model it describes (its arithmetic must hold for any config check()
// accepts). The same JSON also goes to config_from_json / train_config_from_json directly, as a
// checkpoint's metadata does.
#include "config_json.h"
#include "fuzz_common.h"
#include "run_log.h"
#include "summary.h"
#include "train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = vit_fuzz::fresh_dir("run");
  vit_fuzz::write_file(dir / "config.json", data, size);
  vit_fuzz::expect_clean([&] {
    const vit::RunInfo info = vit::read_run(dir.string());
    vit::summarize(info.model);
    vit::validate(info.train);
  });
  vit_fuzz::expect_clean([&] {
    const auto j = nlohmann::json::parse(data, data + size);
    vit_fuzz::expect_clean([&] { vit::summarize(vit::config_from_json(j)); });
    vit_fuzz::expect_clean([&] { vit::validate(vit::train_config_from_json(j)); });
  });
  return 0;
}
