// A temporary directory removed with everything in it when the object goes away (what the Qt
// suites used QTemporaryDir for), so that the core's tests need no Qt.
#pragma once

#include <string>

namespace vit_test {

class TempDir {
 public:
  // Creates $TMPDIR/vit-test-XXXXXX (mkdtemp: a fresh name, mode 0700). On failure valid() is
  // false and error() says why.
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool valid() const { return !path_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }
  // path() + "/" + name; the file itself is not created.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_, error_;
};

}  // namespace vit_test
