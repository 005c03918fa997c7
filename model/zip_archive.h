// Zip archives through Debian's libzip, with the checks an untrusted archive needs. Two weight
// formats are zip files: NumPy's .npz (Google's original ViT checkpoints) and PyTorch's .pth /
// .bin since torch 1.6 (torch.save's zip container around a pickle).
//
// Opening checks the central directory against the local headers (libzip's ZIP_CHECKCONS) and
// every entry's sizes before anything is read: only stored and deflated entries, no encryption,
// no duplicate names, and no entry that claims more bytes than its compressed data can hold (a
// deflate stream expands at most ~1032:1) or that shares compressed bytes with another (the
// entries' compressed sizes may not add up to more than the file), so a "zip bomb" is refused
// before any allocation: everything read from an archive is at most kMaxDeflateRatio times the
// file's size.
// Reading checks the byte count and the CRC, so a truncated or damaged entry is an error.
//
// Torch-free: only the byte plumbing lives here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vit {

struct ZipEntry {
  std::string name;
  uint64_t size = 0;             // uncompressed bytes (checked against the compressed size)
  uint64_t compressed_size = 0;
  bool deflated = false;         // else stored
  uint64_t index = 0;            // libzip's entry index
};

// One entry opened for sequential reading. Every read is exact: fewer bytes than asked, a CRC
// mismatch or a libzip error throws std::runtime_error naming the archive and the entry.
class ZipStream {
 public:
  ~ZipStream();
  ZipStream(ZipStream&&) noexcept;
  ZipStream(const ZipStream&) = delete;
  ZipStream& operator=(const ZipStream&) = delete;
  void read_exact(void* out, uint64_t bytes);
  uint64_t remaining() const { return remaining_; }
  // Reads past the last byte, which makes libzip verify the CRC; throws if bytes are left.
  void expect_end();

 private:
  friend class ZipReader;
  ZipStream(void* file, std::string what, uint64_t size);
  void* file_;  // zip_file_t*
  std::string what_;
  uint64_t remaining_;
};

class ZipReader {
 public:
  // Throws std::runtime_error "PATH: ..." when the file is missing, not a zip archive, damaged,
  // or has an entry that fails the checks above.
  explicit ZipReader(const std::string& path);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const;  // nullptr if absent
  ZipStream open(const ZipEntry& entry) const;
  // The whole entry as bytes; throws when it is larger than `max_bytes`.
  std::string read_all(const ZipEntry& entry, uint64_t max_bytes) const;

 private:
  std::string path_;
  void* archive_ = nullptr;  // zip_t*
  std::vector<ZipEntry> entries_;
};

// Writes an archive of (name, bytes) entries, stored or deflated, replacing `path`. libzip writes
// a temporary file and renames it, so a failure leaves any old file intact. Used by tests and to
// build fixtures; throws std::runtime_error naming the path.
void write_zip(const std::string& path,
               const std::vector<std::pair<std::string, std::string>>& entries,
               bool deflate = false);

// The largest expansion a deflate stream allows (RFC 1951 caps it near 1032:1), with slack.
inline constexpr uint64_t kMaxDeflateRatio = 1100;

}  // namespace vit
