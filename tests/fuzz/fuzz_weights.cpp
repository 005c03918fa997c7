// Weight import as `vit import` and the window's fine-tuning field do it: the format sniffed from
// the first bytes (safetensors, .npz, .pth), names mapped to timm's, the ViT config inferred from
// the shapes; then the checkpoint path (`vit predict --weights`): a ViT Studio safetensors file's
// metadata and load_model, which builds the model the metadata describes.
#include "checkpoint.h"
#include "fuzz_common.h"
#include "weights_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vit_fuzz::input_file("in.weights", data, size);
  try {
    vit::import_weights(path);
  } catch (const std::invalid_argument&) {
    // Widths outside the standard table need the head count: give one to reach infer_config.
    vit::ImportOptions options;
    options.heads = 1;
    vit_fuzz::expect_clean([&] { vit::import_weights(path, options); });
  } catch (const std::exception&) {
  }
  vit_fuzz::expect_clean([&] { vit::load_model(path); });
  return 0;
}
