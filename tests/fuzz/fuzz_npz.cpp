// An .npz archive: the zip checks (libzip) and every .npy array inside.
#include "fuzz_common.h"
#include "npz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vit_fuzz::input_file("in.npz", data, size);
  vit_fuzz::expect_clean([&] { vit::load_npz(path); });
  return 0;
}
