// One .npy array from bytes (the header literal parser, dtype and shape checks).
#include "fuzz_common.h"
#include "npz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  vit_fuzz::expect_clean([&] { vit::parse_npy(bytes, "fuzz"); });
  return 0;
}
