#include "atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace vit {

namespace {

std::string hint(int err) {
  if (err == ENOSPC || err == EDQUOT) return ": free some disk space and retry";
  if (err == EACCES || err == EROFS || err == EPERM)
    return ": choose a writable directory (--out)";
  return "";
}

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error("cannot " + what + " " + path + ": " + std::strerror(err) + hint(err));
}

// Fault injection for the tests of a full disk: with VIT_TEST_DISK_BYTES=N in the environment, the
// files this process writes through here may hold N bytes in all; the write that would pass that
// fails as a full disk does (ENOSPC), after its bytes went to the temporary file.
int64_t disk_budget() {
  static const int64_t budget = [] {
    const char* v = std::getenv("VIT_TEST_DISK_BYTES");
    return v ? std::strtoll(v, nullptr, 10) : int64_t(-1);
  }();
  return budget;
}
std::atomic<int64_t> g_bytes_written{0};

std::atomic<int64_t> g_crash_points{0};

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort for the directory entry
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !directory) fail("sync", path, err);
}

}  // namespace

void crash_point(const char* where) {
  static const char* setting = std::getenv("VIT_TEST_KILL_AT");
  if (!setting) return;
  static const int64_t kill_at = std::strtoll(setting, nullptr, 10);
  const int64_t n = ++g_crash_points;
  if (std::strcmp(setting, "list") == 0) {
    std::fprintf(stderr, "crash point %lld: %s\n", static_cast<long long>(n), where);
  } else if (n == kill_at) {
    std::fprintf(stderr, "VIT_TEST_KILL_AT=%lld: killed at %s\n", static_cast<long long>(n), where);
    std::fflush(stderr);
    ::kill(::getpid(), SIGKILL);
  }
}

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::random_device rd;
  const fs::path tmp = dir / ("." + target.filename().string() + ".tmp" + std::to_string(rd()));
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) fail("create", tmp.string(), errno ? errno : EIO);
      write(out);
      out.flush();
      if (!out) fail("write", path, errno ? errno : EIO);
      if (disk_budget() >= 0 && g_bytes_written.fetch_add(int64_t(out.tellp())) + int64_t(out.tellp()) > disk_budget())
        fail("write", path, ENOSPC);
    }
    crash_point("a temporary file written, not yet renamed");
    fsync_path(tmp.string(), false);
    if (::rename(tmp.c_str(), target.c_str()) != 0) fail("rename into", path, errno);
    crash_point("a file renamed into place");
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(dir.string(), true);
}

void write_file_atomically(const std::string& path, std::string_view contents) {
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  });
}

}  // namespace vit
