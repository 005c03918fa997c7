// torch.save's .pth: the zip container and the weights-only unpickler. An input starting with a
// zip signature ("PK") is the whole file. Anything else is a pickle, put into a zip as
// archive/data.pkl next to storages 0 (6 floats 0..5), 1 (2 halfs) and 2 (empty), so mutations
// reach the unpickler instead of failing the zip's CRC.
#include "fuzz_common.h"
#include "pth.h"
#include "zip_archive.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path;
  if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
    path = vit_fuzz::input_file("in.pth", data, size);
  } else {
    static const float six[6] = {0, 1, 2, 3, 4, 5};
    path = (vit_fuzz::scratch_dir() / "wrapped.pth").string();
    vit::write_zip(path, {{"archive/data.pkl", std::string(reinterpret_cast<const char*>(data), size)},
                          {"archive/byteorder", "little"},
                          {"archive/data/0", std::string(reinterpret_cast<const char*>(six), sizeof six)},
                          {"archive/data/1", std::string("\x00\x3c\x00\x40", 4)},
                          {"archive/data/2", ""}});
  }
  vit_fuzz::expect_clean([&] { vit::load_pth(path); });
  return 0;
}
