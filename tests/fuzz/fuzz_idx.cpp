// Fashion-MNIST IDX files (gzip or plain). The input is cut at vit_fuzz::kSeparator into up to
// four files: train images, train labels, test images, test labels (absent parts: missing files).
// A part that starts with the gzip magic is named .gz, as Debian installs them.
#include "datasets.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                      "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  const auto parts = vit_fuzz::split_input(data, size);
  const auto dir = vit_fuzz::fresh_dir("fmnist");
  for (size_t i = 0; i < parts.size() && i < 4; ++i) {
    const bool gz = parts[i].size() >= 2 && uint8_t(parts[i][0]) == 0x1f && uint8_t(parts[i][1]) == 0x8b;
    vit_fuzz::write_file(dir / (std::string(names[i]) + (gz ? ".gz" : "")), parts[i]);
  }
  vit_fuzz::expect_clean([&] { vit::load_fashion_mnist(dir.string()); });
  return 0;
}
