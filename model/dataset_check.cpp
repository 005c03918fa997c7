#include "dataset_check.h"

#include <filesystem>
#include <system_error>
#include <vector>

namespace fs = std::filesystem;

namespace vit {
namespace {

// The IDX files of Fashion-MNIST, plain or gzip-compressed, as load_fashion_mnist finds them.
std::string fashion_mnist_problem(const std::string& dir_name) {
  const fs::path dir(dir_name);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return "Fashion-MNIST folder " + dir_name + " does not exist: install dataset-fashion-mnist "
           "(scripts/setup.sh) or choose the folder holding train-images-idx3-ubyte(.gz)";
  const char* files[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  auto find = [&](const fs::path& root, const std::string& name) -> fs::path {
    for (const auto& candidate : {root / name, root / (name + ".gz")})
      if (fs::is_regular_file(candidate, ec)) return candidate;
    return {};
  };
  fs::path root = dir;
  for (const auto& candidate : {dir, dir / "FashionMNIST" / "raw", dir / "raw"})
    if (!find(candidate, files[0]).empty()) {
      root = candidate;
      break;
    }
  for (const char* name : files) {
    const fs::path f = find(root, name);
    if (f.empty())
      return (root / name).string() + "(.gz) is missing: " + dir_name +
             " should hold the four Fashion-MNIST IDX files";
    if (fs::file_size(f, ec) == 0 || ec)
      return f.string() + " is empty: download the Fashion-MNIST files again";
  }
  return "";
}

// CIFAR binary batches: every file present and a whole number of records long (what a
// truncated download gets wrong).
std::string cifar_problem(const std::string& dir_name, bool c10) {
  const std::string kind = c10 ? "CIFAR-10" : "CIFAR-100";
  const std::string child = c10 ? "cifar-10-batches-bin" : "cifar-100-binary";
  const std::vector<std::string> names =
      c10 ? std::vector<std::string>{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                     "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"}
          : std::vector<std::string>{"train.bin", "test.bin"};
  const uintmax_t record = (c10 ? 1 : 2) + 3072;  // label byte(s) + 32x32x3 pixels
  const fs::path dir(dir_name);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return kind + " folder " + dir_name + " does not exist: choose the extracted " + child +
           " folder (or its parent)";
  fs::path root = dir;
  if (!fs::exists(dir / names[0], ec) && fs::is_directory(dir / child, ec)) root = dir / child;
  for (const auto& name : names) {
    const fs::path f = root / name;
    if (!fs::is_regular_file(f, ec))
      return f.string() + " is missing: " + dir_name + " should hold the " + kind +
             " binary version (" + names.front() + " ... " + names.back() + ")";
    const uintmax_t size = fs::file_size(f, ec);
    if (ec) return f.string() + ": cannot read its size: " + ec.message();
    if (size == 0) return f.string() + " is empty: download and extract " + kind + " again";
    if (size % record != 0)
      return f.string() + " is " + std::to_string(size) + " bytes, not a whole number of " +
             std::to_string(record) + "-byte " + kind + " records: the file is truncated; "
             "download and extract it again";
  }
  return "";
}

}  // namespace

std::string dataset_problem(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string dir = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "fashion-mnist")
    return fashion_mnist_problem(dir.empty() ? "/usr/share/datasets/fashion-mnist" : dir);
  if ((kind == "cifar10" || kind == "cifar100") && !dir.empty())
    return cifar_problem(dir, kind == "cifar10");
  return "";
}

}  // namespace vit
