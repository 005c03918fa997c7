// safetensors: the in-memory reader and the streaming file reader on the same bytes. They must
// agree: a file one accepts and the other refuses is a finding too (abort).
#include <cstdlib>

#include "fuzz_common.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  int parsed = -1, loaded = -1;  // tensors read, -1 when refused
  vit_fuzz::expect_clean([&] { parsed = int(vit::parse_safetensors(bytes, "fuzz").tensors.size()); });
  const std::string path = vit_fuzz::input_file("in.safetensors", data, size);
  vit_fuzz::expect_clean([&] { loaded = int(vit::load_safetensors(path).tensors.size()); });
  if (parsed != loaded) {
    std::fprintf(stderr, "parse_safetensors read %d tensors, load_safetensors %d (-1: refused)\n",
                 parsed, loaded);
    std::abort();
  }
  return 0;
}
