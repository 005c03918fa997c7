// CIFAR-10/100 binary batches. The first byte picks the kind (odd: CIFAR-100); the rest is cut at
// vit_fuzz::kSeparator into the training file(s), the test file and the class-name file.
// CIFAR-10's five training batches all hold the first part.
#include "datasets.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool c100 = data[0] & 1;
  const auto parts = vit_fuzz::split_input(data + 1, size - 1);
  const auto dir = vit_fuzz::fresh_dir("cifar");
  const std::string& train = parts[0];
  const std::string& test = parts.size() > 1 ? parts[1] : parts[0];
  if (c100) {
    vit_fuzz::write_file(dir / "train.bin", train);
    vit_fuzz::write_file(dir / "test.bin", test);
    if (parts.size() > 2) vit_fuzz::write_file(dir / "fine_label_names.txt", parts[2]);
  } else {
    for (int k = 1; k <= 5; ++k)
      vit_fuzz::write_file(dir / ("data_batch_" + std::to_string(k) + ".bin"), train);
    vit_fuzz::write_file(dir / "test_batch.bin", test);
    if (parts.size() > 2) vit_fuzz::write_file(dir / "batches.meta.txt", parts[2]);
  }
  vit_fuzz::expect_clean([&] { vit::load_cifar(dir.string(), c100 ? 100 : 10); });
  return 0;
}
