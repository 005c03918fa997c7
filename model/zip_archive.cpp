#include "zip_archive.h"

#include <zip.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

#include "atomic_file.h"

namespace vit {

namespace {

std::string zip_error_text(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string text = zip_error_strerror(&error);
  zip_error_fini(&error);
  return text;
}

std::runtime_error failure(const std::string& what, const std::string& problem) {
  return std::runtime_error(what + ": " + problem);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ZipStream

ZipStream::ZipStream(void* file, std::string what, uint64_t size)
    : file_(file), what_(std::move(what)), remaining_(size) {}

ZipStream::ZipStream(ZipStream&& other) noexcept
    : file_(other.file_), what_(std::move(other.what_)), remaining_(other.remaining_) {
  other.file_ = nullptr;
}

ZipStream::~ZipStream() {
  if (file_) zip_fclose(static_cast<zip_file_t*>(file_));
}

void ZipStream::read_exact(void* out, uint64_t bytes) {
  if (bytes > remaining_)
    throw failure(what_, "needs " + std::to_string(bytes) + " more bytes but only " +
                             std::to_string(remaining_) + " remain: the entry is truncated");
  auto* file = static_cast<zip_file_t*>(file_);
  auto* dest = static_cast<char*>(out);
  uint64_t done = 0;
  while (done < bytes) {
    const zip_int64_t n = zip_fread(file, dest + done, bytes - done);
    if (n < 0)
      throw failure(what_, std::string("cannot be read: ") + zip_file_strerror(file) +
                               " (the archive is damaged or truncated)");
    if (n == 0)
      throw failure(what_, "ends after " + std::to_string(done) + " of " +
                               std::to_string(bytes) + " bytes: the archive is truncated");
    done += uint64_t(n);
  }
  remaining_ -= bytes;
}

void ZipStream::expect_end() {
  if (remaining_ != 0)
    throw failure(what_, std::to_string(remaining_) + " bytes are left unread: the entry is "
                         "longer than its contents say");
  char extra;
  const zip_int64_t n = zip_fread(static_cast<zip_file_t*>(file_), &extra, 1);
  if (n < 0)
    throw failure(what_, std::string("fails its check: ") +
                             zip_file_strerror(static_cast<zip_file_t*>(file_)) +
                             " (the archive is damaged)");
  if (n > 0) throw failure(what_, "holds more bytes than its directory entry says");
}

// ---------------------------------------------------------------------------------------------
// ZipReader

ZipReader::ZipReader(const std::string& path) : path_(path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw failure(path, std::string("cannot open: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw failure(path, "is a directory, not a file");
  const uint64_t file_size = uint64_t(st.st_size);

  int code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!archive && code == ZIP_ER_EXISTS)
    throw failure(path, "has two entries named alike; an archive's names must be unique "
                        "(a damaged or hostile archive)");
  if (!archive)
    throw failure(path, "not a readable zip archive: " + zip_error_text(code) +
                            " (the file is damaged, truncated or of another kind)");
  archive_ = archive;
  try {
    const zip_int64_t count = zip_get_num_entries(archive, 0);
    std::set<std::string> seen;
    uint64_t compressed_total = 0;
    for (zip_int64_t i = 0; i < count; ++i) {
      zip_stat_t s;
      zip_stat_init(&s);
      if (zip_stat_index(archive, zip_uint64_t(i), ZIP_FL_ENC_RAW, &s) != 0)
        throw failure(path, std::string("entry ") + std::to_string(i) +
                                " cannot be read: " + zip_strerror(archive));
      const uint64_t need = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
                            ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
      if ((s.valid & need) != need)
        throw failure(path, "entry " + std::to_string(i) + " has an incomplete directory record");
      ZipEntry e;
      e.name = s.name;
      e.size = s.size;
      e.compressed_size = s.comp_size;
      e.index = uint64_t(i);
      const std::string what = path + ", entry '" + e.name + "'";
      if (!seen.insert(e.name).second)
        throw failure(path, "has the entry '" + e.name + "' twice; names must be unique");
      if (s.encryption_method != ZIP_EM_NONE)
        throw failure(what, "is encrypted; weight files are never encrypted");
      if (s.comp_method == ZIP_CM_STORE) {
        if (e.size != e.compressed_size)
          throw failure(what, "is stored uncompressed but claims " + std::to_string(e.size) +
                                  " bytes in " + std::to_string(e.compressed_size) +
                                  ": the archive is damaged");
      } else if (s.comp_method == ZIP_CM_DEFLATE) {
        e.deflated = true;
        if (e.size / kMaxDeflateRatio > e.compressed_size)
          throw failure(what, "claims " + std::to_string(e.size) + " bytes from " +
                                  std::to_string(e.compressed_size) +
                                  " compressed bytes, more than deflate can produce: a damaged "
                                  "or hostile archive (zip bomb)");
      } else {
        throw failure(what, "uses compression method " + std::to_string(s.comp_method) +
                                "; only stored and deflated entries (what numpy and torch "
                                "write) are read");
      }
      if (e.compressed_size > file_size)
        throw failure(what, "claims " + std::to_string(e.compressed_size) +
                                " bytes of data in a " + std::to_string(file_size) +
                                "-byte file: the archive is truncated");
      // Entries may not share compressed bytes: with overlapping entries (each a view of the
      // same deflate stream) a small file could claim its ~1100:1 expansion once per entry.
      if (__builtin_add_overflow(compressed_total, e.compressed_size, &compressed_total) ||
          compressed_total > file_size)
        throw failure(path, "its entries claim more compressed bytes together than the " +
                                std::to_string(file_size) +
                                "-byte file holds: entries overlap (a damaged or hostile "
                                "archive, zip bomb)");
      entries_.push_back(std::move(e));
    }
  } catch (...) {
    zip_discard(archive);
    archive_ = nullptr;
    throw;
  }
}

ZipReader::~ZipReader() {
  if (archive_) zip_discard(static_cast<zip_t*>(archive_));
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

ZipStream ZipReader::open(const ZipEntry& entry) const {
  auto* archive = static_cast<zip_t*>(archive_);
  zip_file_t* file = zip_fopen_index(archive, entry.index, 0);
  const std::string what = path_ + ", entry '" + entry.name + "'";
  if (!file) throw failure(what, std::string("cannot be opened: ") + zip_strerror(archive));
  return ZipStream(file, what, entry.size);
}

std::string ZipReader::read_all(const ZipEntry& entry, uint64_t max_bytes) const {
  if (entry.size > max_bytes)
    throw failure(path_ + ", entry '" + entry.name + "'",
                  "has " + std::to_string(entry.size) + " bytes, above the " +
                      std::to_string(max_bytes) + "-byte limit for this kind of entry");
  std::string bytes(entry.size, '\0');
  ZipStream stream = open(entry);
  stream.read_exact(bytes.data(), entry.size);
  stream.expect_end();
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// write_zip

void write_zip(const std::string& path,
               const std::vector<std::pair<std::string, std::string>>& entries, bool deflate) {
  if (entries.empty()) {
    // libzip deletes an archive left without entries; an empty zip is its end record alone.
    write_file_atomically(path, std::string("PK\x05\x06", 4) + std::string(18, '\0'));
    return;
  }
  int code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
  if (!archive) throw failure(path, "cannot create a zip archive: " + zip_error_text(code));
  for (const auto& [name, bytes] : entries) {
    // libzip reads the buffer at zip_close(); `entries` outlives that call.
    zip_source_t* source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
    const zip_int64_t index =
        source ? zip_file_add(archive, name.c_str(), source, ZIP_FL_ENC_UTF_8) : -1;
    if (index < 0) {
      if (source) zip_source_free(source);
      const std::string error = zip_strerror(archive);
      zip_discard(archive);
      throw failure(path, "cannot add '" + name + "': " + error);
    }
    zip_set_file_compression(archive, zip_uint64_t(index), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                             0);
  }
  if (zip_close(archive) != 0) {
    const std::string error = zip_strerror(archive);
    zip_discard(archive);
    throw failure(path, "cannot write: " + error);
  }
}

}  // namespace vit
