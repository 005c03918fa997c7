// TensorBoard event files: TFRecord framing with CRC-32C, then the Event protobuf. The input is
// read twice: as an event file itself, and as record payloads (cut at vit_fuzz::kSeparator)
// framed here with valid lengths and CRCs, so that mutations also reach the protobuf parser
// instead of stopping at a checksum.
#include "fuzz_common.h"
#include "tensorboard.h"

namespace {

uint32_t masked_crc(const std::string& bytes) {
  const uint32_t crc = vit::crc32c(bytes.data(), bytes.size());
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string le(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string raw = vit_fuzz::input_file("events.out.tfevents.raw", data, size);
  vit_fuzz::expect_clean([&] { vit::read_scalar_events(raw); });

  std::string framed;
  for (const std::string& payload : vit_fuzz::split_input(data, size)) {
    const std::string length = le(payload.size(), 8);
    framed += length + le(masked_crc(length), 4) + payload + le(masked_crc(payload), 4);
  }
  const auto path = vit_fuzz::scratch_dir() / "events.out.tfevents.framed";
  vit_fuzz::write_file(path, framed);
  vit_fuzz::expect_clean([&] { vit::read_scalar_events(path.string()); });
  return 0;
}
