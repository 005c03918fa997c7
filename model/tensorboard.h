// TensorBoard event files written from C++, so `tensorboard --logdir runs` shows the trainer's
// curves with no Python in the training process, and read back for tests and the GUI's run reader.
// An event file is a TFRecord stream of serialized tensorboard.Event protos (tensorboard.proto);
// each record is
//   uint64 length (little endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
// with masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8, as TensorFlow's record writer does.
// The protobuf types stay in tensorboard.cpp so that including this header stays cheap, and
// nothing here depends on torch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace vit {

// Appends TensorBoard scalars to a new event file. Not thread-safe: one writer per training
// thread (called on the training thread).
class TensorBoardWriter {
 public:
  // Creates `logdir` if needed and opens events.out.tfevents.<unix seconds>.<hostname>.<pid> in it.
  // Every writer starts a new file, as TensorFlow does: should that name exist (two writers in the
  // same second), ".1", ".2", ... is appended rather than overwriting it; TensorBoard reads any
  // file whose name contains "tfevents". Writes the file_version "brain.Event:2" record first.
  // Throws std::runtime_error naming the path on failure.
  explicit TensorBoardWriter(const std::string& logdir);
  ~TensorBoardWriter();  // flushes; errors are ignored there (call flush() to see them)
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Records `value` (stored as float, as TensorBoard's simple_value is) under `tag` at `step`.
  // A negative wall_time (the default) means now, in seconds since the Unix epoch. Records are
  // buffered: call flush() to make them visible to a running TensorBoard. Throws
  // std::runtime_error naming the path if the write fails (e.g. disk full).
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time = -1);
  // Hands buffered records to the OS (no fsync: losing the last seconds of curves in a crash is
  // acceptable, stalling training on the disk is not). Throws std::runtime_error on failure.
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& serialized_event);

  std::string path_;
  std::FILE* file_ = nullptr;
};

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum TFRecord uses. Pass the
// previous result as `crc` to continue over data split in pieces: crc32c(b, crc32c(a)) == crc32c(ab).
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

// One scalar point of an event file.
struct ScalarEvent {
  std::string tag;
  double value;  // the stored float, widened
  int64_t step;
  double wall_time;  // seconds since the Unix epoch
};

// Reads every record of an event file, verifying both CRCs of each, and returns its scalar
// (simple_value) points in file order; other events (file_version, images, ...) are skipped.
// Throws std::runtime_error naming the file and the record's byte offset if the file cannot be
// read, a CRC does not match, a record is not an Event, or the file ends inside a record (also the
// case for a file still being written, between flushes).
std::vector<ScalarEvent> read_scalar_events(const std::string& path);

}  // namespace vit
