#include "temp_dir.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include <stdlib.h>

namespace fs = std::filesystem;

namespace vit_test {

TempDir::TempDir() {
  std::error_code ec;
  const fs::path base = fs::temp_directory_path(ec);  // $TMPDIR, else /tmp
  if (ec) {
    error_ = "no temporary directory: " + ec.message();
    return;
  }
  std::string pattern = (base / "vit-test-XXXXXX").string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    error_ = "mkdtemp " + pattern + ": " + std::strerror(errno);
    return;
  }
  path_ = buffer.data();
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;  // best effort, as QTemporaryDir: a test's leftovers never fail the suite
  fs::remove_all(path_, ec);
}

}  // namespace vit_test
