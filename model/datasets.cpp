#include "datasets.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>

#include "image_header.h"

namespace vit {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& message) { throw std::runtime_error(message); }

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xbf;  // the range of the second byte
    if (c < 0x80) len = 1;
    else if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else return false;
    if (len > n - i) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned b = p[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return false;
    }
    i += len;
  }
  return true;
}

// `s` with every byte that is not part of well-formed UTF-8 written as \xNN, for messages.
std::string escape_non_utf8(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    while (len <= 4 && i + len <= s.size() && !is_utf8(s.substr(i, len))) ++len;
    if (len <= 4 && i + len <= s.size()) {
      out += s.substr(i, len);
      i += len;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(static_cast<unsigned char>(s[i])));
      out += buf;
      ++i;
    }
  }
  return out;
}

void check_image_args(int image_size, int channels) {
  if (image_size < 1 || image_size > 8192)
    throw std::invalid_argument("image size " + std::to_string(image_size) +
                                " is out of range: use 1..8192 (e.g. 28, 32 or 224)");
  if (channels != 1 && channels != 3)
    throw std::invalid_argument("channels " + std::to_string(channels) +
                                " is not supported: use 1 (grayscale) or 3 (RGB)");
}

// Whole file, decompressed when it is gzip. gzread passes non-gzip data through unchanged, so
// "x.gz" and a plain "x" go through the same code.
std::vector<uint8_t> read_maybe_gzip(const fs::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail(path.string() + ": cannot open: " + std::strerror(errno));
  std::unique_ptr<gzFile_s, int (*)(gzFile)> closer(f, gzclose);
  gzbuffer(f, 1 << 18);
  std::vector<uint8_t> data;
  for (;;) {
    // Grown as the data arrives (64 KB, then doubling up to 4 MB steps), so a small file never
    // costs a 4 MB buffer and the buffer stays within twice what was really decompressed.
    const unsigned chunk = unsigned(std::clamp<size_t>(data.size(), size_t(1) << 16, size_t(1) << 22));
    const size_t old = data.size();
    data.resize(old + chunk);
    const int n = gzread(f, data.data() + old, chunk);
    if (n < 0) break;  // reported below
    data.resize(old + size_t(n));
    if (unsigned(n) < chunk) break;  // gzread returns less only at the end or on an error
  }
  // A gzip stream cut short is not an error for gzread (it returns what it could decompress and
  // sets Z_BUF_ERROR), so the state is checked explicitly.
  int err = Z_OK;
  const char* message = gzerror(f, &err);
  if (err != Z_OK)
    fail(path.string() + ": cannot decompress: " + message +
         " (the file is truncated or corrupt: download or install it again)");
  return data;
}

// Plain (uncompressed) file contents.
std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string() + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> data;
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  if (size < 0) fail(path.string() + ": cannot read its size");
  data.resize(size_t(size));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(data.data()), std::streamsize(data.size()));
  if (!in) fail(path.string() + ": read error: " + std::strerror(errno));
  return data;
}

// Exactly `size` bytes of `path`: an error when the file is now shorter or longer (it changed
// since its size was taken).
std::vector<uint8_t> read_exactly(const fs::path& path, uint64_t size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string() + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> data(size);
  in.read(reinterpret_cast<char*>(data.data()), std::streamsize(size));
  const bool shorter = uint64_t(in.gcount()) != size;
  if (shorter || in.peek() != std::char_traits<char>::eof())
    fail(path.string() + ": changed size while it was read (" + std::to_string(size) +
         " bytes when it was checked): is it still being written? Wait for the copy or "
         "extraction to finish");
  return data;
}

// A uint8 tensor viewing `bytes` from `offset`, owning the buffer: the IDX pixels are used in
// place instead of copying 47 MB.
at::Tensor wrap_bytes(std::vector<uint8_t>&& bytes, size_t offset, at::IntArrayRef shape) {
  auto owner = std::make_unique<std::vector<uint8_t>>(std::move(bytes));
  uint8_t* data = owner->data() + offset;
  auto* raw = owner.get();
  auto t = at::from_blob(data, shape, [raw](void*) { delete raw; }, at::kByte);
  owner.release();  // now owned by the tensor's deleter
  return t;
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST (IDX)

const char* const kFmnistFiles[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
constexpr uint32_t kIdxImages = 0x00000803;  // uint8 data, 3 dimensions (N, rows, cols)
constexpr uint32_t kIdxLabels = 0x00000801;  // uint8 data, 1 dimension (N)

std::string fmnist_layout() {
  return "a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
         "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzip or uncompressed)";
}

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

struct IdxFile {
  std::vector<uint8_t> bytes;  // header included
  std::vector<int64_t> dims;
  size_t header = 0;
};

IdxFile read_idx(const fs::path& path, uint32_t magic) {
  const int ndims = int(magic & 0xFF);
  const std::string what = magic == kIdxImages ? "IDX image file" : "IDX label file";
  IdxFile idx;
  idx.bytes = read_maybe_gzip(path);
  idx.header = 4 + 4 * size_t(ndims);
  const size_t n = idx.bytes.size();
  if (n < 4)
    fail(path.string() + ": truncated: " + std::to_string(n) + " bytes, too short for an " + what);
  const uint32_t found = be32(idx.bytes.data());
  if (found != magic) {
    std::string hint;
    if (found == kIdxImages) hint = " (that is an IDX image file)";
    if (found == kIdxLabels) hint = " (that is an IDX label file)";
    fail(path.string() + ": wrong IDX magic number: expected " + hex32(magic) + " (" + what +
         "), found " + hex32(found) + hint);
  }
  if (n < idx.header)
    fail(path.string() + ": truncated: expected at least " + std::to_string(idx.header) +
         " bytes of header, found " + std::to_string(n));
  // Saturating product: a corrupt header must give a size error, not an overflow.
  uint64_t expected = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint64_t dim = be32(idx.bytes.data() + 4 + 4 * d);
    idx.dims.push_back(int64_t(dim));
    expected = (dim != 0 && expected > std::numeric_limits<uint64_t>::max() / dim / 2)
                   ? std::numeric_limits<uint64_t>::max() / 2
                   : expected * dim;
  }
  expected += idx.header;
  std::string dims_text;
  for (size_t d = 0; d < idx.dims.size(); ++d)
    dims_text += (d ? " x " : "") + std::to_string(idx.dims[d]);
  if (n < expected)
    fail(path.string() + ": truncated: expected " + std::to_string(expected) + " bytes (" +
         std::to_string(idx.header) + "-byte header + " + dims_text + "), found " +
         std::to_string(n) + (path.extension() == ".gz" ? " after decompression" : "") +
         ": download or install it again");
  if (n > expected)
    fail(path.string() + ": " + std::to_string(n - expected) + " unexpected bytes after the " +
         dims_text + " items the header announces (expected " + std::to_string(expected) +
         " bytes, found " + std::to_string(n) + ")");
  if (idx.dims[0] == 0) fail(path.string() + ": holds no items (the header says 0)");
  return idx;
}

// dir/name.gz, else dir/name; empty when neither exists.
fs::path find_idx(const fs::path& dir, const std::string& name) {
  for (const auto& candidate : {dir / (name + ".gz"), dir / name})
    if (fs::is_regular_file(candidate)) return candidate;
  return {};
}

Dataset load_idx_pair(const fs::path& dir, const std::string& prefix, const std::string& name) {
  const fs::path images_path = find_idx(dir, prefix + "-images-idx3-ubyte");
  const fs::path labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte");
  for (const auto* missing : {&images_path, &labels_path})
    if (missing->empty()) {
      const std::string base = prefix + (missing == &images_path ? "-images-idx3-ubyte"
                                                                 : "-labels-idx1-ubyte");
      fail((dir / (base + ".gz")).string() + " is missing (nor is there an uncompressed " + base +
           "): Fashion-MNIST needs " + fmnist_layout() +
           "; reinstall dataset-fashion-mnist (scripts/setup.sh)");
    }

  IdxFile images = read_idx(images_path, kIdxImages);
  const IdxFile labels = read_idx(labels_path, kIdxLabels);
  const int64_t n = images.dims[0], rows = images.dims[1], cols = images.dims[2];
  if (labels.dims[0] != n)
    fail(labels_path.string() + " holds " + std::to_string(labels.dims[0]) + " labels but " +
         images_path.string() + " holds " + std::to_string(n) +
         " images: the two files do not belong together");

  const auto& classes = fashion_mnist_classes();
  Dataset data;
  data.name = name;
  data.classes = classes;
  data.labels = at::empty({n}, at::kLong);
  int64_t* out = data.labels.data_ptr<int64_t>();
  const uint8_t* in = labels.bytes.data() + labels.header;
  for (int64_t i = 0; i < n; ++i) {
    if (in[i] >= classes.size())
      fail(labels_path.string() + ": label " + std::to_string(in[i]) + " of item " +
           std::to_string(i) + " is out of range: Fashion-MNIST has " +
           std::to_string(classes.size()) + " classes (0.." + std::to_string(classes.size() - 1) +
           ")");
    out[i] = in[i];
  }
  data.images = wrap_bytes(std::move(images.bytes), images.header, {n, 1, rows, cols});
  return data;
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10 / CIFAR-100 (binary version)

const std::vector<std::string> kCifar10Names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};

const std::vector<std::string> kCifar100Names = {
    "apple",      "aquarium_fish", "baby",         "bear",       "beaver",      "bed",
    "bee",        "beetle",        "bicycle",      "bottle",     "bowl",        "boy",
    "bridge",     "bus",           "butterfly",    "camel",      "can",         "castle",
    "caterpillar", "cattle",       "chair",        "chimpanzee", "clock",       "cloud",
    "cockroach",  "couch",         "crab",         "crocodile",  "cup",         "dinosaur",
    "dolphin",    "elephant",      "flatfish",     "forest",     "fox",         "girl",
    "hamster",    "house",         "kangaroo",     "keyboard",   "lamp",        "lawn_mower",
    "leopard",    "lion",          "lizard",       "lobster",    "man",         "maple_tree",
    "motorcycle", "mountain",      "mouse",        "mushroom",   "oak_tree",    "orange",
    "orchid",     "otter",         "palm_tree",    "pear",       "pickup_truck", "pine_tree",
    "plain",      "plate",         "poppy",        "porcupine",  "possum",      "rabbit",
    "raccoon",    "ray",           "road",         "rocket",     "rose",        "sea",
    "seal",       "shark",         "shrew",        "skunk",      "skyscraper",  "snail",
    "snake",      "spider",        "squirrel",     "streetcar",  "sunflower",   "sweet_pepper",
    "table",      "tank",          "telephone",    "television", "tiger",       "tractor",
    "train",      "trout",         "tulip",        "turtle",     "wardrobe",    "whale",
    "willow_tree", "wolf",         "woman",        "worm"};

constexpr int64_t kCifarPixels = 3 * 32 * 32;  // 1024 R, then 1024 G, then 1024 B: already CHW

// Non-empty trimmed lines of `path` when there are exactly `count`, else `fallback` (a missing or
// odd name file is not worth refusing the data over).
std::vector<std::string> read_names(const fs::path& path, size_t count,
                                    const std::vector<std::string>& fallback) {
  std::ifstream in(path);
  if (!in) return fallback;
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    const auto b = line.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) continue;
    names.push_back(line.substr(b, line.find_last_not_of(" \t\r\n") - b + 1));
  }
  return names.size() == count ? names : fallback;
}

// Concatenates CIFAR binary files into one data set. `label_bytes` is 1 (CIFAR-10: label) or 2
// (CIFAR-100: coarse, fine); the last label byte is the one used.
Dataset load_cifar_files(const std::vector<fs::path>& files, int label_bytes,
                         const std::string& kind, std::vector<std::string> classes,
                         const std::string& name) {
  const int64_t record = label_bytes + kCifarPixels;
  int64_t total = 0;
  std::vector<int64_t> sizes;  // what the images are allocated for: exactly this much is read
  for (const auto& f : files) {
    std::error_code ec;
    const auto size = int64_t(fs::file_size(f, ec));
    if (ec) fail(f.string() + ": cannot read its size: " + ec.message());
    if (size == 0) fail(f.string() + ": empty file: download and extract " + kind + " again");
    if (size % record != 0)
      fail(f.string() + ": size " + std::to_string(size) + " bytes is not a multiple of the " +
           std::to_string(record) + "-byte " + kind + " record (" + std::to_string(label_bytes) +
           " label byte" + (label_bytes > 1 ? "s" : "") + " + 3072 pixel bytes): the file is "
           "truncated or not a " + kind + " binary batch; download and extract it again");
    total += size / record;
    sizes.push_back(size);
  }
  Dataset data;
  data.name = name;
  data.classes = std::move(classes);
  data.images = at::empty({total, 3, 32, 32}, at::kByte);
  data.labels = at::empty({total}, at::kLong);
  uint8_t* pixels = data.images.data_ptr<uint8_t>();
  int64_t* labels = data.labels.data_ptr<int64_t>();
  const auto num_classes = int64_t(data.classes.size());
  int64_t row = 0;
  for (size_t k = 0; k < files.size(); ++k) {
    const fs::path& f = files[k];
    // Exactly the size checked above, never a second size query: a file that grew in between
    // (a copy still running) would otherwise fill more rows than were allocated.
    const std::vector<uint8_t> bytes = read_exactly(f, uint64_t(sizes[k]));
    const int64_t n = int64_t(bytes.size()) / record;
    for (int64_t i = 0; i < n; ++i, ++row) {
      const uint8_t* rec = bytes.data() + i * record;
      const int label = rec[label_bytes - 1];
      if (label >= num_classes)
        fail(f.string() + ": label " + std::to_string(label) + " of record " + std::to_string(i) +
             " is out of range: " + kind + " has " + std::to_string(num_classes) + " classes (0.." +
             std::to_string(num_classes - 1) + ")" +
             (label_bytes == 1 && label < 100 ? "; is this a CIFAR-100 file? use cifar100:DIR"
                                              : ""));
      labels[row] = label;
      std::memcpy(pixels + row * kCifarPixels, rec + label_bytes, kCifarPixels);
    }
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// Image decoding and conversion

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  for (auto& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".webp";
}

}  // namespace

// Alpha-blends a gray+alpha or BGRA 8-bit image over a white background, dropping alpha.
cv::Mat composite_over_white(const cv::Mat& src) {
  const int cn = src.channels(), colors = cn - 1;
  cv::Mat dst(src.rows, src.cols, CV_8UC(colors));
  for (int y = 0; y < src.rows; ++y) {
    const uint8_t* s = src.ptr<uint8_t>(y);
    uint8_t* d = dst.ptr<uint8_t>(y);
    for (int x = 0; x < src.cols; ++x, s += cn, d += colors) {
      const int a = s[colors];
      for (int c = 0; c < colors; ++c) d[c] = uint8_t((s[c] * a + 255 * (255 - a) + 127) / 255);
    }
  }
  return dst;
}

namespace {

// Any image cv::imdecode(IMREAD_UNCHANGED) returns -> `channels` x size x size uint8 planes at
// `out`, RGB order. Returns an empty string, or why the image cannot be used.
std::string convert_image(cv::Mat img, int size, int channels, uint8_t* out) {
  switch (img.depth()) {
    case CV_8U: break;
    case CV_16U: img.convertTo(img, CV_8U, 1.0 / 257.0); break;  // 65535 -> 255, rounded
    case CV_32F:
    case CV_64F: img.convertTo(img, CV_8U, 255.0); break;  // float images are in [0, 1]
    default: return "unsupported pixel depth (OpenCV depth " + std::to_string(img.depth()) + ")";
  }
  if (img.channels() == 2 || img.channels() == 4) img = composite_over_white(img);
  if (img.channels() != 1 && img.channels() != 3)
    return "unsupported number of channels (" + std::to_string(img.channels()) + ")";
  if (channels == 1 && img.channels() == 3) cv::cvtColor(img, img, cv::COLOR_BGR2GRAY);
  if (img.cols != size || img.rows != size) {
    // Averaging (INTER_AREA) when every side shrinks avoids aliasing; it is not meant for
    // enlarging, where bilinear interpolation is the usual choice.
    const bool shrink = img.cols >= size && img.rows >= size;
    cv::resize(img, img, cv::Size(size, size), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
  }
  // HWC (BGR or gray) -> CHW (RGB or gray), gray replicated when 3 channels are asked for.
  const int64_t plane = int64_t(size) * size;
  const int cn = img.channels();
  for (int y = 0; y < size; ++y) {
    const uint8_t* s = img.ptr<uint8_t>(y);
    const int64_t row = int64_t(y) * size;
    for (int c = 0; c < channels; ++c) {
      uint8_t* d = out + c * plane + row;
      const int src_c = cn == 1 ? 0 : 2 - c;  // BGR -> RGB
      for (int x = 0; x < size; ++x) d[x] = s[x * cn + src_c];
    }
  }
  return {};
}

// Reads and converts one file; returns an empty string on success, else the reason it failed
// (the caller decides whether that is fatal).
std::string decode_file(const fs::path& path, int size, int channels, uint8_t* out) {
  std::error_code ec;
  const uintmax_t file_size = fs::file_size(path, ec);
  if (ec) return "cannot read: " + ec.message();
  if (file_size == 0) return "empty file";
  if (file_size > kMaxImageFileBytes)
    return std::to_string(file_size >> 20) + " MiB is too large for an image file (limit " +
           std::to_string(kMaxImageFileBytes >> 20) + " MiB)";
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string("cannot open: ") + std::strerror(errno);
  std::vector<uint8_t> bytes(file_size);  // the size taken above, even if the file grows
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  if (uint64_t(in.gcount()) != file_size) return std::string("read error: ") + std::strerror(errno);
  // Judged by its header before OpenCV allocates anything, as read_image does.
  if (std::string problem = check_image_header(bytes.data(), bytes.size()); !problem.empty())
    return problem;
  try {
    const cv::Mat img = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
    if (img.empty()) return "not an image OpenCV can decode (corrupt, or not really an image)";
    if (int64_t(img.rows) * img.cols > kMaxImagePixels)
      return std::to_string(img.cols) + "x" + std::to_string(img.rows) +
             " pixels decoded, above the limit of " + std::to_string(kMaxImagePixels);
    return convert_image(img, size, channels, out);
  } catch (const cv::Exception& e) {
    return "OpenCV cannot decode it: " + e.msg;
  }
}

// ---------------------------------------------------------------------------------------------
// Image folders

struct ClassFolder {
  std::string name;
  fs::path dir;
  std::vector<fs::path> files;  // sorted, hidden files and folders left out
};

std::vector<ClassFolder> list_class_folders(const fs::path& root) {
  std::vector<ClassFolder> classes;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec))
    if (entry.is_directory() && !is_hidden(entry.path()))
      classes.push_back({entry.path().filename().string(), entry.path(), {}});
  if (ec) fail(root.string() + ": cannot list: " + ec.message());
  // Class names are stored in config.json and checkpoints (JSON, UTF-8): say so here, naming
  // the folder, rather than failing later inside the JSON writer.
  for (const auto& c : classes)
    if (!is_utf8(c.name))
      fail("class folder " + escape_non_utf8(c.dir.string()) +
           " has a name that is not valid UTF-8 (shown with \\x escapes); class names are saved "
           "in config.json, which is UTF-8: rename the folder");
  std::sort(classes.begin(), classes.end(),
            [](const ClassFolder& a, const ClassFolder& b) { return a.name < b.name; });
  for (auto& c : classes) {
    fs::recursive_directory_iterator it(c.dir, fs::directory_options::follow_directory_symlink, ec),
        end;
    for (; !ec && it != end; it.increment(ec)) {
      if (is_hidden(it->path())) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_directory()) c.files.push_back(it->path());
    }
    if (ec) fail(c.dir.string() + ": cannot list: " + ec.message());
    std::sort(c.files.begin(), c.files.end());
  }
  return classes;
}

struct FolderResult {
  Dataset data;
  int64_t skipped = 0;
  std::vector<std::string> skipped_examples;
};

constexpr size_t kMaxSkippedExamples = 10;

// Loads one ImageFolder tree. With `known_classes` (the test split) every class folder must be one
// of them and labels follow their order; otherwise the sorted folder names are the classes.
FolderResult load_class_tree(const fs::path& root, const std::string& name, int size, int channels,
                             const std::vector<std::string>* known_classes) {
  const std::vector<ClassFolder> folders = list_class_folders(root);
  if (!known_classes && folders.size() < 2) {
    int64_t loose = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec))
      if (e.is_regular_file() && has_image_extension(e.path())) ++loose;
    std::vector<std::string> names;
    for (const auto& f : folders) names.push_back(f.name);
    fail("image folder " + root.string() + " has " + std::to_string(folders.size()) +
         " class sub-folder" + (folders.size() == 1 ? " (" + names[0] + ")" : "s") +
         ": a classifier needs at least two classes" +
         (loose ? " (it holds " + std::to_string(loose) + " images directly)" : "") +
         "; put each class's images in its own sub-folder: " + root.string() +
         "/<class>/<image>.png");
  }
  if (known_classes && folders.empty())
    fail("test folder " + root.string() + " has no class sub-folders: lay it out like the " +
         "training folder (" + root.string() + "/<class>/<image>.png)");
  std::vector<std::string> classes;
  std::vector<int64_t> folder_label;
  for (const auto& f : folders) {
    if (f.files.empty())
      fail("class folder " + f.dir.string() + " is empty: put its images in it or remove it");
    if (known_classes) {
      const auto it = std::find(known_classes->begin(), known_classes->end(), f.name);
      if (it == known_classes->end())
        fail("class folder " + f.dir.string() + " is not a class of the training set (" +
             join(*known_classes, ", ") + "): the test classes must be among the train classes");
      folder_label.push_back(it - known_classes->begin());
    } else {
      folder_label.push_back(int64_t(classes.size()));
      classes.push_back(f.name);
    }
  }
  if (known_classes) classes = *known_classes;

  std::vector<const fs::path*> paths;
  std::vector<int64_t> labels;
  std::vector<size_t> folder_of;
  for (size_t k = 0; k < folders.size(); ++k)
    for (const auto& p : folders[k].files) {
      paths.push_back(&p);
      labels.push_back(folder_label[k]);
      folder_of.push_back(k);
    }
  const auto n = int64_t(paths.size());
  const int64_t per_image = int64_t(channels) * size * size;
  at::Tensor images = at::empty({n, channels, size, size}, at::kByte);
  uint8_t* base = images.data_ptr<uint8_t>();
  std::vector<std::string> reasons(static_cast<size_t>(n));  // empty = decoded
  // Decoding dominates (JPEG); images are independent, so use LibTorch's intra-op threads.
  at::parallel_for(0, n, /*grain_size=*/8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (!has_image_extension(*paths[i]))
        reasons[i] = "not a .jpg/.jpeg/.png/.bmp/.webp file";
      else
        reasons[i] = decode_file(*paths[i], size, channels, base + i * per_image);
    }
  });

  FolderResult result;
  std::vector<int64_t> keep;
  std::vector<int64_t> kept_per_folder(folders.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    if (reasons[i].empty()) {
      keep.push_back(i);
      ++kept_per_folder[folder_of[i]];
    } else {
      ++result.skipped;
      if (result.skipped_examples.size() < kMaxSkippedExamples)
        result.skipped_examples.push_back(paths[i]->string() + ": " + reasons[i]);
    }
  }
  if (keep.empty())
    fail("image folder " + root.string() + " has no readable images: all " + std::to_string(n) +
         " files were skipped (e.g. " + result.skipped_examples.front() +
         "); images must be .jpg, .jpeg, .png, .bmp or .webp files");
  for (size_t k = 0; k < folders.size(); ++k)
    if (kept_per_folder[k] == 0) {
      std::string example;
      for (int64_t i = 0; i < n && example.empty(); ++i)
        if (folder_of[i] == k) example = paths[i]->string() + ": " + reasons[i];
      fail("class folder " + folders[k].dir.string() + " has no readable images: its " +
           std::to_string(folders[k].files.size()) + " files were skipped (e.g. " + example + ")");
    }

  Dataset& data = result.data;
  data.name = name;
  data.classes = std::move(classes);
  data.labels = at::empty({int64_t(keep.size())}, at::kLong);
  int64_t* kept_labels = data.labels.data_ptr<int64_t>();
  for (size_t j = 0; j < keep.size(); ++j) kept_labels[j] = labels[keep[j]];
  if (int64_t(keep.size()) == n) {
    data.images = images;
  } else {
    // Close the gaps left by skipped files (a row copy each, no per-pixel work).
    data.images = at::empty({int64_t(keep.size()), channels, size, size}, at::kByte);
    uint8_t* dst = data.images.data_ptr<uint8_t>();
    for (size_t j = 0; j < keep.size(); ++j)
      std::memcpy(dst + j * per_image, base + keep[j] * per_image, size_t(per_image));
  }
  return result;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                 "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

DataSplits load_fashion_mnist(const std::string& dir_name) {
  const fs::path dir(dir_name);
  if (!fs::is_directory(dir))
    fail("Fashion-MNIST folder " + dir_name + " does not exist: install dataset-fashion-mnist "
         "(scripts/setup.sh), which puts it in /usr/share/datasets/fashion-mnist, or pass " +
         fmnist_layout());
  // torchvision keeps the same files under FashionMNIST/raw.
  fs::path root = dir;
  for (const auto& candidate : {dir, dir / "FashionMNIST" / "raw", dir / "raw"})
    if (!find_idx(candidate, kFmnistFiles[0]).empty()) {
      root = candidate;
      break;
    }
  DataSplits splits;
  splits.train = load_idx_pair(root, "train", "fashion-mnist/train");
  Dataset test = load_idx_pair(root, "t10k", "fashion-mnist/test");
  if (test.images.sizes().slice(1) != splits.train.images.sizes().slice(1))
    fail((root / "t10k-images-idx3-ubyte").string() + ": images are " +
         std::to_string(test.images.size(2)) + "x" + std::to_string(test.images.size(3)) +
         " but the training images are " + std::to_string(splits.train.images.size(2)) + "x" +
         std::to_string(splits.train.images.size(3)));
  splits.test = std::move(test);
  return splits;
}

DataSplits load_cifar(const std::string& dir_name, int num_classes) {
  if (num_classes != 10 && num_classes != 100)
    throw std::invalid_argument("CIFAR has 10 or 100 classes, not " + std::to_string(num_classes));
  const bool c10 = num_classes == 10;
  const std::string kind = c10 ? "CIFAR-10" : "CIFAR-100";
  const std::string child = c10 ? "cifar-10-batches-bin" : "cifar-100-binary";
  const std::string archive = std::string("https://www.cs.toronto.edu/~kriz/") +
                              (c10 ? "cifar-10-binary.tar.gz" : "cifar-100-binary.tar.gz");
  const std::vector<std::string> train_names =
      c10 ? std::vector<std::string>{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                     "data_batch_4.bin", "data_batch_5.bin"}
          : std::vector<std::string>{"train.bin"};
  const std::string test_name = c10 ? "test_batch.bin" : "test.bin";
  const std::string layout = kind + " binary version (" + archive + ", extracted: " + child +
                             "/ with " +
                             (c10 ? "data_batch_1.bin .. data_batch_5.bin" : "train.bin") +
                             " and " + test_name + ")";

  const fs::path dir(dir_name);
  if (!fs::is_directory(dir))
    fail(kind + " folder " + dir_name + " does not exist: download and extract the " + layout);
  fs::path root = dir;
  if (!fs::exists(dir / train_names[0]) && fs::is_directory(dir / child)) root = dir / child;

  std::vector<fs::path> train_files;
  for (const auto& f : train_names) train_files.push_back(root / f);
  auto require = [&](const fs::path& f) {
    if (!fs::is_regular_file(f))
      fail(f.string() + " is missing: " + dir_name + " should hold the " + layout);
  };
  for (const auto& f : train_files) require(f);
  require(root / test_name);

  std::vector<std::string> classes =
      c10 ? read_names(root / "batches.meta.txt", 10, kCifar10Names)
          : read_names(root / "fine_label_names.txt", 100, kCifar100Names);
  const std::string prefix = c10 ? "cifar10/" : "cifar100/";
  DataSplits splits;
  splits.train = load_cifar_files(train_files, c10 ? 1 : 2, kind, classes, prefix + "train");
  splits.test = load_cifar_files({root / test_name}, c10 ? 1 : 2, kind, classes, prefix + "test");
  return splits;
}

DataSplits load_image_folder(const std::string& dir_name, int image_size, int channels) {
  check_image_args(image_size, channels);
  const fs::path dir(dir_name);
  if (!fs::is_directory(dir))
    fail("image folder " + dir_name + " does not exist: expected one sub-folder per class (" +
         dir_name + "/<class>/<image>.png), optionally under train/ and test/ (or val/)");
  DataSplits splits;
  const fs::path test_dir = fs::is_directory(dir / "test") ? dir / "test" : dir / "val";
  if (fs::is_directory(dir / "train") && fs::is_directory(test_dir)) {
    const std::string base = "folder:" + dir_name + (dir_name.back() == '/' ? "" : "/");
    FolderResult train =
        load_class_tree(dir / "train", base + "train", image_size, channels, nullptr);
    FolderResult test = load_class_tree(test_dir, base + test_dir.filename().string(), image_size,
                                        channels, &train.data.classes);
    splits.train = std::move(train.data);
    splits.test = std::move(test.data);
    splits.skipped_files = train.skipped + test.skipped;
    splits.skipped_examples = std::move(train.skipped_examples);
    for (auto& e : test.skipped_examples)
      if (splits.skipped_examples.size() < kMaxSkippedExamples)
        splits.skipped_examples.push_back(std::move(e));
  } else {
    FolderResult all = load_class_tree(dir, "folder:" + dir_name, image_size, channels, nullptr);
    splits.train = std::move(all.data);
    splits.skipped_files = all.skipped;
    splits.skipped_examples = std::move(all.skipped_examples);
  }
  return splits;
}

DataSplits load_dataset(const std::string& spec, int image_size, int channels) {
  const std::string forms =
      "use fashion-mnist, fashion-mnist:DIR, cifar10:DIR, cifar100:DIR or folder:DIR";
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string dir = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "fashion-mnist") return dir.empty() ? load_fashion_mnist() : load_fashion_mnist(dir);
  if (kind != "cifar10" && kind != "cifar100" && kind != "folder")
    throw std::invalid_argument("unknown data set '" + spec + "': " + forms);
  if (dir.empty())
    throw std::invalid_argument("data set '" + spec + "' needs a directory: " + kind + ":DIR");
  if (kind == "folder") return load_image_folder(dir, image_size, channels);
  return load_cifar(dir, kind == "cifar10" ? 10 : 100);
}

at::Tensor load_image(const std::string& path, int image_size, int channels) {
  check_image_args(image_size, channels);
  if (!fs::exists(path)) fail(path + ": no such file");
  if (fs::is_directory(path)) fail(path + ": is a folder, not an image file");
  at::Tensor out = at::empty({channels, image_size, image_size}, at::kByte);
  const std::string reason = decode_file(path, image_size, channels, out.data_ptr<uint8_t>());
  if (!reason.empty()) fail(path + ": " + reason);
  return out;
}

std::string convert_decoded_image(const cv::Mat& image, int image_size, int channels, uint8_t* out) {
  check_image_args(image_size, channels);
  if (image.empty()) return "empty image";
  try {
    return convert_image(image, image_size, channels, out);
  } catch (const cv::Exception& e) {
    return "OpenCV cannot convert it: " + e.msg;
  }
}

}  // namespace vit
