#include "tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tensorboard.pb.h"  // generated from tensorboard.proto into the build directory

namespace vit {

namespace {

// Byte-at-a-time table for the reflected Castagnoli polynomial. Event files hold a few bytes per
// scalar, so the faster slicing-by-8 or SSE4.2 variants would not be measurable here.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// TFRecord stores a rotated and offset CRC: a CRC computed over data that itself contains CRCs
// is weak, and masking avoids that (tensorflow/core/lib/hash/crc32c.h).
uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// Explicit little-endian encoding, so the files are the same on any host.
void put_le(char* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xFFu);
}
uint64_t get_le(const char* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t(static_cast<unsigned char>(in[i])) << (8 * i);
  return value;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error("cannot " + what + " " + path + ": " + std::strerror(err));
}

// Opens a file that did not exist before: O_EXCL instead of truncating, so a second writer started
// in the same second never destroys the first one's curves.
std::FILE* create_new_file(const std::string& base, std::string& path) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    path = attempt == 0 ? base : base + "." + std::to_string(attempt);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      fail("create", path, errno);
    }
    std::FILE* file = ::fdopen(fd, "wb");
    if (!file) {
      const int err = errno;
      ::close(fd);
      fail("open", path, err);
    }
    return file;
  }
  fail("create", base, EEXIST);
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

TensorBoardWriter::TensorBoardWriter(const std::string& logdir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(logdir, ec);
  if (ec) throw std::runtime_error("cannot create " + logdir + ": " + ec.message());
  const std::string base = (fs::path(logdir) / ("events.out.tfevents." +
                                                std::to_string(std::time(nullptr)) + "." +
                                                host_name() + "." + std::to_string(::getpid())))
                               .string();
  file_ = create_new_file(base, path_);

  tensorboard::Event event;
  event.set_wall_time(now_seconds());
  event.set_file_version("brain.Event:2");  // TensorBoard checks the "brain.Event:" prefix
  try {
    write_event(event.SerializeAsString());
  } catch (...) {
    std::fclose(file_);
    std::remove(path_.c_str());  // a file without its version record would only confuse readers
    throw;
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);  // fclose flushes
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step,
                                   double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time < 0 ? now_seconds() : wall_time);
  event.set_step(step);
  auto* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_event(event.SerializeAsString());
}

void TensorBoardWriter::flush() {
  if (std::fflush(file_) != 0) fail("write", path_, errno);
}

void TensorBoardWriter::write_event(const std::string& data) {
  // One buffer and one fwrite per record, so the stream never holds half a header.
  std::string record(12 + data.size() + 4, '\0');
  put_le(&record[0], data.size(), 8);
  put_le(&record[8], masked_crc32c(&record[0], 8), 4);
  std::memcpy(&record[12], data.data(), data.size());
  put_le(&record[12 + data.size()], masked_crc32c(data.data(), data.size()), 4);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size())
    fail("write", path_, errno ? errno : EIO);
}

std::vector<ScalarEvent> read_scalar_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("open", path, errno ? errno : ENOENT);
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw std::runtime_error("cannot read " + path + ": " + ec.message());

  std::vector<ScalarEvent> scalars;
  uint64_t offset = 0;
  std::string data;
  tensorboard::Event event;
  auto corrupt = [&](const std::string& what) {
    return std::runtime_error(path + ": record at byte " + std::to_string(offset) + ": " + what);
  };
  while (offset < file_size) {
    char header[12];
    char footer[4];
    if (file_size - offset < sizeof(header))
      throw corrupt("the file ends inside the record header (truncated)");
    in.read(header, sizeof(header));
    if (!in) throw corrupt("read failed");
    if (get_le(header + 8, 4) != masked_crc32c(header, 8))
      throw corrupt("length CRC mismatch (corrupted)");
    // The length is trusted only after its CRC matched, and checked against the file before
    // allocating, so a damaged file cannot make us allocate gigabytes.
    const uint64_t length = get_le(header, 8);
    const uint64_t rest = file_size - offset - sizeof(header);
    if (rest < sizeof(footer) || length > rest - sizeof(footer))
      throw corrupt("the file ends inside the record (truncated)");
    data.resize(length);
    in.read(data.data(), static_cast<std::streamsize>(length));
    in.read(footer, sizeof(footer));
    if (!in) throw corrupt("read failed");
    if (get_le(footer, 4) != masked_crc32c(data.data(), data.size()))
      throw corrupt("data CRC mismatch (corrupted)");
    if (!event.ParseFromString(data)) throw corrupt("not a TensorBoard event");
    if (event.has_summary()) {
      for (const auto& v : event.summary().value()) {
        if (v.value_case() != tensorboard::Summary::Value::kSimpleValue) continue;
        scalars.push_back({v.tag(), v.simple_value(), event.step(), event.wall_time()});
      }
    }
    offset += sizeof(header) + length + sizeof(footer);
  }
  return scalars;
}

}  // namespace vit
