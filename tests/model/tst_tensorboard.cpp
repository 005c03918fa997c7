// TensorBoard event files (torch-free): CRC-32C against published vectors and an independent
// bitwise implementation; the TFRecord framing and the Event bytes checked by hand against the
// field numbers of TensorFlow's event.proto / summary.proto; round trip; corrupted and truncated
// files; and, where Python's tensorboard package is importable, TensorBoard's own reader.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensorboard.h"

#include "support/process.h"
#include "support/rows.h"
#include "support/temp_dir.h"
#include "support/text.h"

namespace fs = std::filesystem;
using vit_test::contains;

namespace {

// Bit by bit, straight from the definition (reflected polynomial 0x82F63B78, init and final xor
// 0xFFFFFFFF), sharing no code or table with vit::crc32c.
uint32_t reference_crc32c(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (const char c : bytes) {
    crc ^= static_cast<unsigned char>(c);
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string le_bytes(uint64_t value, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  return out;
}
uint64_t le_value(const std::string& bytes, size_t at, int n) {
  uint64_t value = 0;
  for (int i = 0; i < n; ++i) value |= uint64_t(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return value;
}
std::string varint(uint64_t value) {
  std::string out;
  do {
    const auto low = static_cast<char>(value & 0x7F);
    value >>= 7;
    out.push_back(value ? static_cast<char>(low | 0x80) : low);
  } while (value);
  return out;
}
std::string double_bytes(double v) {  // protobuf fixed64: little endian IEEE 754
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  return le_bytes(bits, 8);
}
std::string float_bytes(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return le_bytes(bits, 4);
}
// A length-delimited protobuf field: key (field << 3 | wire type 2), length, bytes.
std::string delimited(int field, const std::string& payload) {
  return varint(uint64_t(field) << 3 | 2) + varint(payload.size()) + payload;
}

// Lower-case hex digits, two per byte (QByteArray::toHex), for readable byte comparisons.
std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out.push_back(digits[static_cast<unsigned char>(c) >> 4]);
    out.push_back(digits[static_cast<unsigned char>(c) & 0xF]);
  }
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(f.is_open()) << path;
  f.write(bytes.data(), std::streamsize(bytes.size()));
  f.flush();
  ASSERT_TRUE(f.good()) << path;
}
// QFile::resize: true when the file now has `size` bytes.
bool resize(const std::string& path, uintmax_t size) {
  std::error_code ec;
  fs::resize_file(path, size, ec);
  return !ec;
}

// A second, independent TFRecord reader: each record's data, each frame's length and CRCs checked
// with the reference CRC. Returns false and says why on a bad frame.
struct Record {
  size_t offset;  // of the header
  std::string data;
};
bool split_records(const std::string& file, std::vector<Record>* records, std::string* error) {
  size_t at = 0;
  auto bad = [&](const char* why) {
    *error = "record at byte " + std::to_string(at) + ": " + why;
    return false;
  };
  while (at < file.size()) {
    if (file.size() - at < 16) return bad("shorter than a frame");
    if (le_value(file, at + 8, 4) != masked(reference_crc32c(file.substr(at, 8))))
      return bad("length CRC mismatch");
    const uint64_t length = le_value(file, at, 8);
    if (file.size() - at - 16 < length) return bad("longer than the file");
    const std::string data = file.substr(at + 12, length);
    if (le_value(file, at + 12 + length, 4) != masked(reference_crc32c(data)))
      return bad("data CRC mismatch");
    records->push_back({at, data});
    at += 16 + length;
  }
  return true;
}

// The fixture the corruption tests damage: the version record, then
// add_scalar("loss", 0.5, 300, 1234.5), whose Event is 27 bytes (9 wall_time + 3 step +
// 2 + 13 summary, spelled out in recordFramingAndEventBytes).
constexpr int kFixtureEventSize = 27;
std::string write_fixture(const vit_test::TempDir& dir) {
  vit::TensorBoardWriter writer(dir.file("run"));
  writer.add_scalar("loss", 0.5, 300, 1234.5);
  return writer.path();
}

// Runs read_scalar_events and returns the exception's message, or "" if it did not throw.
std::string read_error(const std::string& path) {
  try {
    vit::read_scalar_events(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

// For a regular expression that matches `text` literally.
std::string regex_escape(const std::string& text) {
  static const std::string special = R"(\^$.|?*+()[]{})";
  std::string out;
  for (const char c : text) {
    if (special.find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string fixed3(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.3f", v);
  return buffer;
}

}  // namespace

struct CrcRow : vit_test::Row {
  std::string bytes;
  uint32_t crc;
};

class Crc32cKnownVectors : public testing::TestWithParam<CrcRow> {};

TEST_P(Crc32cKnownVectors, row) {
  const std::string& bytes = GetParam().bytes;
  const uint32_t crc = GetParam().crc;
  ASSERT_EQ(uint32_t(vit::crc32c(bytes.data(), bytes.size())), crc);
  ASSERT_EQ(uint32_t(reference_crc32c(bytes)), crc);  // the reference itself is right
}

std::vector<CrcRow> crc_rows() {
  std::string zeros(32, '\0'), ones(32, '\xFF'), up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(char(i));
    down.push_back(char(31 - i));
  }
  // The CRC catalogue's check value, and the iSCSI vectors of RFC 3720 appendix B.4.
  return {{{"123456789"}, "123456789", 0xE3069283u},
          {{"32 zeros"}, zeros, 0x8A9136AAu},
          {{"32 x 0xFF"}, ones, 0x62A8AB43u},
          {{"0..31"}, up, 0x46DD794Eu},
          {{"31..0"}, down, 0x113FDB5Cu},
          {{"empty"}, std::string(), 0u}};
}

INSTANTIATE_TEST_SUITE_P(Tensorboard, Crc32cKnownVectors, testing::ValuesIn(crc_rows()),
                         vit_test::RowName());

TEST(Tensorboard, crc32cMatchesReferenceAndContinues) {
  std::mt19937 rng(42);
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(static_cast<char>(rng() & 0xFF));
  const uint32_t whole = vit::crc32c(bytes.data(), bytes.size());
  ASSERT_EQ(whole, reference_crc32c(bytes));
  for (const size_t split : {0, 1, 7, 500, 999, 1000}) {
    const uint32_t first = vit::crc32c(bytes.data(), split);
    ASSERT_EQ(vit::crc32c(bytes.data() + split, bytes.size() - split, first), whole);
  }
}

TEST(Tensorboard, fileNameAndNestedLogdir) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const auto before = std::time(nullptr);
  vit::TensorBoardWriter writer(dir.file("runs/exp1"));
  const auto after = std::time(nullptr);
  const std::string path = writer.path();
  ASSERT_TRUE(fs::exists(path)) << path;
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const std::regex name("^" + regex_escape(dir.file("runs/exp1")) +
                        "/events\\.out\\.tfevents\\.(\\d+)\\." + regex_escape(host) + "\\." +
                        std::to_string(::getpid()) + "$");
  std::smatch match;
  ASSERT_TRUE(std::regex_match(path, match, name)) << path;
  const auto seconds = std::stoll(match[1].str());
  ASSERT_TRUE(seconds >= before && seconds <= after);
}

TEST(Tensorboard, scalarsRoundTrip) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  vit::TensorBoardWriter writer(dir.path());
  const double before = std::time(nullptr);
  writer.add_scalar("train/loss", 2.5, 0, 1000.25);
  writer.add_scalar("train/acc", 0.125, 0, 1000.5);
  writer.add_scalar("train/loss", -1.75, int64_t(1) << 40, 1001.0);  // int64 steps survive
  writer.add_scalar("val/acc", 0.1, 7);                               // wall time: now
  writer.flush();
  const double after = std::time(nullptr) + 1;

  // Readable while the writer is still open, once flushed.
  const auto events = vit::read_scalar_events(writer.path());
  ASSERT_EQ(events.size(), size_t(4));
  ASSERT_EQ(events[0].tag, "train/loss");
  ASSERT_DOUBLE_EQ(events[0].value, 2.5);
  ASSERT_EQ(events[0].step, int64_t(0));
  ASSERT_DOUBLE_EQ(events[0].wall_time, 1000.25);
  ASSERT_EQ(events[1].tag, "train/acc");
  ASSERT_DOUBLE_EQ(events[1].value, 0.125);
  ASSERT_DOUBLE_EQ(events[1].wall_time, 1000.5);
  ASSERT_DOUBLE_EQ(events[2].value, -1.75);
  ASSERT_EQ(events[2].step, int64_t(1) << 40);
  ASSERT_DOUBLE_EQ(events[2].wall_time, 1001.0);
  ASSERT_EQ(events[3].tag, "val/acc");
  ASSERT_DOUBLE_EQ(events[3].value, double(0.1f));  // stored as float, as simple_value is
  ASSERT_EQ(events[3].step, int64_t(7));
  ASSERT_TRUE(events[3].wall_time >= before && events[3].wall_time <= after)
      << fixed3(events[3].wall_time);
}

TEST(Tensorboard, firstRecordIsFileVersion) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const double before = std::time(nullptr);
  std::string path;
  {
    vit::TensorBoardWriter writer(dir.path());
    path = writer.path();
  }
  const double after = std::time(nullptr) + 1;
  std::vector<Record> records;
  std::string error;
  ASSERT_TRUE(split_records(read_all(path), &records, &error)) << error;
  ASSERT_EQ(records.size(), size_t(1));
  // Event { wall_time (1, fixed64) = now; file_version (3, length-delimited) = "brain.Event:2" }.
  // step 0 is proto3's default and is not written.
  const std::string& data = records[0].data;
  ASSERT_EQ(data.size(), size_t(1 + 8 + 2 + 13));
  ASSERT_EQ(data[0], char(0x09));
  double wall_time;
  std::memcpy(&wall_time, data.data() + 1, 8);  // x86-64 is little endian, as the file
  ASSERT_TRUE(wall_time >= before && wall_time <= after);
  ASSERT_EQ(data.substr(9), delimited(3, "brain.Event:2"));
  ASSERT_TRUE(vit::read_scalar_events(path).empty());
}

// The second record of the fixture, byte by byte. Field numbers from TensorFlow:
// Event { wall_time = 1 (double), step = 2 (int64), summary = 5 }, Summary { value = 1 },
// Summary.Value { tag = 1, simple_value = 2 (float) }.
TEST(Tensorboard, recordFramingAndEventBytes) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const std::string path = write_fixture(dir);
  const std::string file = read_all(path);
  std::vector<Record> records;
  std::string error;
  ASSERT_TRUE(split_records(file, &records, &error)) << error;
  ASSERT_EQ(records.size(), size_t(2));

  const std::string value = delimited(1, "loss") + char(2 << 3 | 5) + float_bytes(0.5f);
  const std::string summary = delimited(1, value);
  const std::string event =
      char(1 << 3 | 1) + double_bytes(1234.5) + char(2 << 3 | 0) + varint(300) +
      delimited(5, summary);
  ASSERT_EQ(varint(300), std::string("\xAC\x02"));  // a two-byte varint, to exercise the encoding
  ASSERT_EQ(to_hex(records[1].data), to_hex(event));
  ASSERT_EQ(event.size(), size_t(kFixtureEventSize));

  // The frame itself: length, masked CRC of the 8 length bytes, data, masked CRC of the data.
  const size_t at = records[1].offset;
  ASSERT_EQ(at, records[0].data.size() + 16);
  ASSERT_EQ(file.substr(at, 8), le_bytes(uint64_t(event.size()), 8));
  ASSERT_EQ(file.substr(at + 8, 4), le_bytes(masked(reference_crc32c(file.substr(at, 8))), 4));
  ASSERT_EQ(file.substr(at + 12 + event.size(), 4), le_bytes(masked(reference_crc32c(event)), 4));
  ASSERT_EQ(file.size(), at + 16 + event.size());
}

struct CorruptionRow : vit_test::Row {
  int where;  // byte offset from the start of the second record; <0: first
  std::string what;
};

class CorruptionIsDetected : public testing::TestWithParam<CorruptionRow> {};

TEST_P(CorruptionIsDetected, row) {
  const int where = GetParam().where;
  const std::string& what = GetParam().what;
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const std::string path = write_fixture(dir);
  std::string file = read_all(path);
  std::vector<Record> records;
  std::string error;
  ASSERT_TRUE(split_records(file, &records, &error)) << error;
  ASSERT_EQ(records.size(), size_t(2));
  const size_t at = where == -1 ? file.size() - 1
                    : where == -100 ? 15
                                    : records[1].offset + where;
  file[at] = static_cast<char>(file[at] ^ 0x10);
  write_all(path, file);
  error = read_error(path);
  ASSERT_FALSE(error.empty()) << "a corrupted file was read without error";
  ASSERT_TRUE(contains(error, path)) << error;
  ASSERT_TRUE(contains(error, what) && contains(error, "corrupted")) << error;
}

INSTANTIATE_TEST_SUITE_P(Tensorboard, CorruptionIsDetected,
                         testing::ValuesIn(std::vector<CorruptionRow>{
    {{"length"}, 0, "length CRC"},
    {{"length CRC"}, 9, "length CRC"},
    {{"data"}, 20, "data CRC"},
    {{"data CRC"}, -1, "data CRC"},  // the file's last byte
    {{"first record's data"}, -100, "data CRC"},
}), vit_test::RowName());

struct TruncationRow : vit_test::Row {
  int cut;  // bytes cut from the end of the file
};

class TruncationIsDetected : public testing::TestWithParam<TruncationRow> {};

TEST_P(TruncationIsDetected, row) {
  const int cut = GetParam().cut;
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const std::string path = write_fixture(dir);
  std::vector<Record> records;
  std::string error;
  ASSERT_TRUE(split_records(read_all(path), &records, &error)) << error;
  ASSERT_EQ(records.back().data.size(), size_t(kFixtureEventSize));
  ASSERT_TRUE(resize(path, fs::file_size(path) - cut));
  error = read_error(path);
  ASSERT_FALSE(error.empty()) << "a truncated file was read without error";
  ASSERT_TRUE(contains(error, path) && contains(error, "truncated")) << error;
}

INSTANTIATE_TEST_SUITE_P(Tensorboard, TruncationIsDetected,
                         testing::ValuesIn(std::vector<TruncationRow>{
    {{"last byte of the data CRC"}, 1},
    {{"whole data CRC"}, 4},
    {{"inside the data"}, 7},
    {{"header only"}, kFixtureEventSize + 4},
    {{"inside the header"}, 16 + kFixtureEventSize - 5},
}), vit_test::RowName());

TEST(Tensorboard, cutAtARecordBoundaryIsValid) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const std::string path = write_fixture(dir);
  // Only the version record left.
  ASSERT_TRUE(resize(path, fs::file_size(path) - 16 - kFixtureEventSize));
  ASSERT_TRUE(vit::read_scalar_events(path).empty());
  ASSERT_TRUE(resize(path, 0));  // an empty file has no records, which is no error
  ASSERT_TRUE(vit::read_scalar_events(path).empty());
}

TEST(Tensorboard, garbageIsNotAnEvent) {
  // Valid framing around bytes that are no protobuf (field 0 is invalid).
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const std::string path = dir.file("events.out.tfevents.garbage");
  const std::string data("\x00\x00\x00", 3);
  const std::string length = le_bytes(uint64_t(data.size()), 8);
  write_all(path, length + le_bytes(masked(reference_crc32c(length)), 4) + data +
                      le_bytes(masked(reference_crc32c(data)), 4));
  const std::string error = read_error(path);
  ASSERT_TRUE(contains(error, path) && contains(error, "not a TensorBoard event")) << error;
}

TEST(Tensorboard, missingFileNamesIt) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  const std::string path = dir.file("no-such-file");
  const std::string error = read_error(path);
  ASSERT_TRUE(contains(error, path)) << error;
}

TEST(Tensorboard, unusableLogdirNamesIt) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  write_all(dir.file("blocker"), "a file, not a directory");
  const std::string logdir = dir.file("blocker/run");
  try {
    vit::TensorBoardWriter writer(logdir);
    FAIL() << "a logdir under a regular file was accepted";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), logdir)) << e.what();
  }
}

TEST(Tensorboard, everyWriterStartsANewFile) {
  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  // Same process and (almost surely) the same second: the same base name, so the second writer
  // must pick another name instead of truncating the first file.
  vit::TensorBoardWriter first(dir.path());
  vit::TensorBoardWriter second(dir.path());
  ASSERT_NE(first.path(), second.path());
  if (second.path().rfind(first.path(), 0) == 0) {  // same second: the first free suffix
    ASSERT_EQ(second.path(), first.path() + ".1");
  }
  ASSERT_TRUE(contains(second.path(), "tfevents")) << second.path();
  first.add_scalar("a", 1, 1, 10);
  second.add_scalar("b", 2, 2, 20);
  first.flush();
  second.flush();
  const auto a = vit::read_scalar_events(first.path());
  const auto b = vit::read_scalar_events(second.path());
  ASSERT_EQ(a.size(), size_t(1));
  ASSERT_EQ(b.size(), size_t(1));
  ASSERT_EQ(a[0].tag, "a");
  ASSERT_EQ(b[0].tag, "b");
}

// TensorBoard's own reader, when it is installed (Debian bookworm does not package it).
TEST(Tensorboard, tensorboardReadsTheFile) {
  using namespace std::chrono_literals;
  const auto probe = vit_test::run_process("/usr/bin/python3", {"-c", "import tensorboard"}, 60s);
  if (!probe.finished() || probe.code != 0)
    GTEST_SKIP() << "python3 cannot import tensorboard; skipping the cross-check with TensorBoard";

  vit_test::TempDir dir;
  ASSERT_TRUE(dir.valid()) << dir.error();
  std::string path;
  {
    vit::TensorBoardWriter writer(dir.path());
    writer.add_scalar("train/loss", 2.5, 1, 1000.25);
    writer.add_scalar("train/loss", 1.25, 2, 1000.5);
    writer.add_scalar("val/acc", 0.75, 2, 1000.75);
    path = writer.path();
  }
  const char* script = R"(
import sys
from tensorboard.backend.event_processing import event_accumulator
acc = event_accumulator.EventAccumulator(sys.argv[1])
acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    for s in acc.Scalars(tag):
        print(tag, s.step, repr(s.value), repr(s.wall_time))
)";
  const auto python = vit_test::run_process("/usr/bin/python3", {"-c", script, path}, 120s);
  ASSERT_TRUE(python.finished()) << python.error;
  ASSERT_TRUE(python.code == 0) << python.err;
  ASSERT_EQ(vit_test::trimmed(python.out), "train/loss 1 2.5 1000.25\n"
                                           "train/loss 2 1.25 1000.5\n"
                                           "val/acc 2 0.75 1000.75");
}
