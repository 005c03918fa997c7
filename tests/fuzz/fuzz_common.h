// Shared by the fuzz harnesses (tests/fuzz/fuzz_*.cpp). Each harness defines libFuzzer's
// LLVMFuzzerTestOneInput and feeds the input to one reader of the core through its public API.
//
// Every reader rejects bad input by throwing a std::exception (std::runtime_error,
// std::invalid_argument, c10::Error, cv::Exception, nlohmann::json::exception): that is the normal
// outcome and is caught here. What counts as a finding is everything else: a crash, undefined
// behaviour or a leak (the fuzz build runs under ASan + UBSan), an allocation above libFuzzer's
// -rss_limit_mb / -malloc_limit_mb, or a timeout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace vit_fuzz {

// A scratch directory for this process (libFuzzer's -fork and -jobs run several at once),
// removed at exit. On /dev/shm when there is one: every input is written to a file, and on a
// disk (ext4 mounted with discard here) truncating that file cost ~2 ms, 10x the parse. $TMPDIR
// when set, else /tmp, elsewhere.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    const std::filesystem::path base =
        !std::getenv("TMPDIR") && std::filesystem::is_directory("/dev/shm", ec) &&
                ::access("/dev/shm", W_OK) == 0
            ? std::filesystem::path("/dev/shm")
            : std::filesystem::temp_directory_path();
    std::string pattern = (base / "vit-fuzz-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    return std::filesystem::path(pattern);
  }();
  static const struct Cleanup {
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    }
  } cleanup;
  return dir;
}

// A fresh, empty sub-directory of the scratch directory.
inline std::filesystem::path fresh_dir(const char* name) {
  const auto dir = scratch_dir() / name;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_file(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::abort();
  }
}
inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  write_file(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// `path` rewritten with the input: for readers that take a file name.
inline std::string input_file(const char* name, const uint8_t* data, size_t size) {
  const auto path = scratch_dir() / name;
  write_file(path, data, size);
  return path.string();
}

// The input cut at every occurrence of kSeparator, for harnesses that need several files.
inline constexpr char kSeparator[] = "\n--vit-fuzz-next-file--\n";
inline std::vector<std::string> split_input(const uint8_t* data, size_t size) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  const std::string sep = kSeparator;
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t at = all.find(sep, start);
    if (at == std::string::npos) break;
    parts.push_back(all.substr(start, at - start));
    start = at + sep.size();
  }
  parts.push_back(all.substr(start));
  return parts;
}

// Runs `f`; an exception is the reader refusing the input, which is fine.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const std::exception&) {
  }
}

}  // namespace vit_fuzz
