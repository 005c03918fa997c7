// The data set loaders: Fashion-MNIST IDX (gzip and plain), CIFAR-10/100 binary and image folders
// on tiny files written here with known pixels and labels, every malformed input with the words its
// error must contain, and the real Fashion-MNIST that Debian's dataset-fashion-mnist installs.
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include <dlfcn.h>

#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "datasets.h"

#include "support/rows.h"
#include "support/temp_dir.h"
#include "support/text.h"

namespace fs = std::filesystem;
using vit_test::contains;

namespace {

using Bytes = std::vector<uint8_t>;

// QDir::mkpath: creates the directory and its parents; a failure shows in what is written next.
void mkpath(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
}

void write_file(const std::string& path, const Bytes& bytes) {
  mkpath(fs::absolute(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const std::string& path, const Bytes& bytes) {
  mkpath(fs::absolute(path).parent_path());
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_TRUE(f);
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

Bytes idx_images(uint32_t n, uint32_t rows, uint32_t cols, const Bytes& pixels) {
  Bytes b;
  put_be32(b, 0x00000803);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes b;
  put_be32(b, 0x00000801);
  put_be32(b, uint32_t(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// Tiny Fashion-MNIST: 3 training images and 2 test images of 2x3 pixels, pixel (i, y, x) of the
// training set = 100 + 10 i + 3 y + x, of the test set = 200 + 10 i + 3 y + x.
const Bytes kTrainLabels = {9, 0, 3};
const Bytes kTestLabels = {1, 2};

Bytes pixels(int n, int base) {
  Bytes p;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 6; ++j) p.push_back(uint8_t(base + 10 * i + j));
  return p;
}

std::map<std::string, Bytes> fmnist_files() {
  return {{"train-images-idx3-ubyte", idx_images(3, 2, 3, pixels(3, 100))},
          {"train-labels-idx1-ubyte", idx_labels(kTrainLabels)},
          {"t10k-images-idx3-ubyte", idx_images(2, 2, 3, pixels(2, 200))},
          {"t10k-labels-idx1-ubyte", idx_labels(kTestLabels)}};
}

void write_fmnist(const std::string& dir, const std::map<std::string, Bytes>& files, bool gz) {
  for (const auto& [name, bytes] : files) {
    const std::string path = dir + "/" + name;
    if (gz)
      write_gzip(path + ".gz", bytes);
    else
      write_file(path, bytes);
  }
}

// CIFAR record r of a file: label bytes, then channel c pixel p = (r * 7 + c * 50 + p) % 256.
uint8_t cifar_pixel(int r, int c, int p) { return uint8_t((r * 7 + c * 50 + p) % 256); }

Bytes cifar_file(const std::vector<std::vector<uint8_t>>& labels, int first_record) {
  Bytes b;
  for (size_t i = 0; i < labels.size(); ++i) {
    b.insert(b.end(), labels[i].begin(), labels[i].end());
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) b.push_back(cifar_pixel(first_record + int(i), c, p));
  }
  return b;
}

// CIFAR-10: five batches of 2 records (labels 0..9 in order) and a test batch of 3.
void write_cifar10(const std::string& dir) {
  for (int k = 0; k < 5; ++k)
    write_file(dir + "/data_batch_" + std::to_string(k + 1) + ".bin",
               cifar_file({{uint8_t(2 * k)}, {uint8_t(2 * k + 1)}}, 2 * k));
  write_file(dir + "/test_batch.bin", cifar_file({{4}, {0}, {9}}, 100));
}

// CIFAR-100: 3 training records, 2 test records, (coarse, fine) labels.
void write_cifar100(const std::string& dir) {
  write_file(dir + "/train.bin", cifar_file({{19, 99}, {0, 5}, {7, 42}}, 0));
  write_file(dir + "/test.bin", cifar_file({{3, 12}, {5, 0}}, 50));
}

void write_image(const std::string& path, const cv::Mat& img, const std::vector<int>& params = {}) {
  mkpath(fs::absolute(path).parent_path());
  ASSERT_TRUE(cv::imwrite(path, img, params)) << path;
}

void write_text(const std::string& path, const std::string& text) {
  write_file(path, Bytes(text.begin(), text.end()));
}

int px(const at::Tensor& images, int64_t i, int c, int y, int x) {
  return images[i][c][y][x].item<int>();
}
int px(const at::Tensor& image, int c, int y, int x) { return image[c][y][x].item<int>(); }

std::vector<int64_t> to_vector(const at::Tensor& labels) {
  return std::vector<int64_t>(labels.data_ptr<int64_t>(),
                              labels.data_ptr<int64_t>() + labels.numel());
}

void check_layout(const vit::Dataset& d, std::vector<int64_t> shape) {
  ASSERT_EQ(d.images.scalar_type(), torch::kByte);
  ASSERT_EQ(d.labels.scalar_type(), torch::kLong);
  ASSERT_TRUE(d.images.is_contiguous());
  ASSERT_EQ(d.images.sizes().vec(), shape);
  ASSERT_EQ(d.labels.sizes().vec(), std::vector<int64_t>{shape[0]});
  ASSERT_EQ(d.size(), shape[0]);
}

// The message of what `f` throws; `invalid` tells whether it was std::invalid_argument.
std::string error_of(const std::function<void()>& f, bool* invalid) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    *invalid = true;
    return e.what();
  } catch (const std::exception& e) {
    *invalid = false;
    return e.what();
  }
  return {};
}

// A malformed-input row: writes its files under `dir` and returns the spec to load.
struct Case {
  std::function<std::string(const std::string& dir)> make;
};

// Called with the path of every file std::ifstream opens while set (see fopen64 below).
std::function<void(const char*)> g_before_fopen;

// The suite's directory (the Qt suite's QTemporaryDir member), one new sub-directory per use.
vit_test::TempDir& suite_dir() {
  static vit_test::TempDir dir;
  return dir;
}
std::string fresh_dir() {
  static int counter = 0;
  const std::string d = suite_dir().path() + "/d" + std::to_string(counter++);
  mkpath(d);
  return d;
}

// Once, before every test (the Qt suite's initTestCase).
class SuiteSetup : public testing::Environment {
  void SetUp() override { ASSERT_TRUE(suite_dir().valid()) << suite_dir().error(); }
};
[[maybe_unused]] const auto* const kSuiteSetup = testing::AddGlobalTestEnvironment(new SuiteSetup);

}  // namespace

// libstdc++'s file streams open files with fopen64 (GCC 12, Debian 12) or fopen (GCC 14, Debian
// 13); these definitions in the test executable take precedence over glibc's, so a test can act
// at the exact moment the loader opens a file.
extern "C" FILE* fopen64(const char* path, const char* mode) {
  using Fopen = FILE* (*)(const char*, const char*);
  static const auto real = reinterpret_cast<Fopen>(dlsym(RTLD_NEXT, "fopen64"));
  if (g_before_fopen) g_before_fopen(path);
  return real(path, mode);
}
extern "C" FILE* fopen(const char* path, const char* mode) {
  using Fopen = FILE* (*)(const char*, const char*);
  static const auto real = reinterpret_cast<Fopen>(dlsym(RTLD_NEXT, "fopen"));
  if (g_before_fopen) g_before_fopen(path);
  return real(path, mode);
}

struct GzipRow : vit_test::Row {
  bool gzip;
};

class FashionMnistFromIdx : public testing::TestWithParam<GzipRow> {};

TEST_P(FashionMnistFromIdx, row) {
  const bool gzip = GetParam().gzip;
  const std::string dir = fresh_dir();
  write_fmnist(dir, fmnist_files(), gzip);
  const vit::DataSplits s = vit::load_fashion_mnist(dir);
  check_layout(s.train, {3, 1, 2, 3});
  ASSERT_TRUE(s.test.has_value());
  check_layout(*s.test, {2, 1, 2, 3});
  ASSERT_EQ(s.train.name, std::string("fashion-mnist/train"));
  ASSERT_EQ(s.test->name, std::string("fashion-mnist/test"));
  ASSERT_EQ(to_vector(s.train.labels), (std::vector<int64_t>{9, 0, 3}));
  ASSERT_EQ(to_vector(s.test->labels), (std::vector<int64_t>{1, 2}));
  for (int i = 0; i < 3; ++i)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        ASSERT_EQ(px(s.train.images, i, 0, y, x), 100 + 10 * i + 3 * y + x);
  for (int i = 0; i < 2; ++i)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        ASSERT_EQ(px(s.test->images, i, 0, y, x), 200 + 10 * i + 3 * y + x);
  ASSERT_EQ(s.train.classes.size(), size_t(10));
  ASSERT_EQ(s.train.classes[0], std::string("T-shirt/top"));
  ASSERT_EQ(s.train.classes[9], std::string("Ankle boot"));
  ASSERT_EQ(s.skipped_files, int64_t(0));

  // The same through load_dataset's spec.
  const auto via_spec = vit::load_dataset("fashion-mnist:" + dir, 99, 3);
  ASSERT_TRUE(via_spec.train.images.equal(s.train.images));
}

INSTANTIATE_TEST_SUITE_P(Datasets, FashionMnistFromIdx,
                         testing::ValuesIn(std::vector<GzipRow>{
    {{"gzip"}, true},
    {{"uncompressed"}, false},
}), vit_test::RowName());

TEST(Datasets, fashionMnistTorchvisionLayout) {
  const std::string dir = fresh_dir();
  write_fmnist(dir + "/FashionMNIST/raw", fmnist_files(), true);
  ASSERT_EQ(vit::load_fashion_mnist(dir).train.size(), int64_t(3));
}

struct Cifar10Row : vit_test::Row {
  std::string sub;
  bool meta;
};

class Cifar10 : public testing::TestWithParam<Cifar10Row> {};

TEST_P(Cifar10, row) {
  const std::string& sub = GetParam().sub;
  const bool meta = GetParam().meta;
  const std::string dir = fresh_dir();
  write_cifar10(dir + sub);
  if (meta)
    write_text(dir + sub + "/batches.meta.txt", "c0\nc1\nc2\nc3\nc4\nc5\nc6\nc7\nc8\nc9\n\n");
  const auto s = vit::load_dataset("cifar10:" + dir, 0, 0);
  check_layout(s.train, {10, 3, 32, 32});
  check_layout(*s.test, {3, 3, 32, 32});
  ASSERT_EQ(s.train.name, std::string("cifar10/train"));
  ASSERT_EQ(s.test->name, std::string("cifar10/test"));
  ASSERT_EQ(to_vector(s.train.labels), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  ASSERT_EQ(to_vector(s.test->labels), (std::vector<int64_t>{4, 0, 9}));
  ASSERT_EQ(s.train.classes[0], std::string(meta ? "c0" : "airplane"));
  ASSERT_EQ(s.train.classes[9], std::string(meta ? "c9" : "truck"));
  // Channel c, pixel (y, x) is byte 1024 c + 32 y + x of the record's pixels: R, G, B planes.
  for (int i : {0, 7, 9})
    for (int c = 0; c < 3; ++c)
      for (int p : {0, 1, 33, 1023})
        ASSERT_EQ(px(s.train.images, i, c, p / 32, p % 32), int(cifar_pixel(i, c, p)));
  ASSERT_EQ(px(s.test->images, 2, 1, 5, 6), int(cifar_pixel(102, 1, 5 * 32 + 6)));
}

INSTANTIATE_TEST_SUITE_P(Datasets, Cifar10,
                         testing::ValuesIn(std::vector<Cifar10Row>{
    {{"the folder itself, standard names"}, "", false},
    {{"cifar-10-batches-bin child, batches.meta.txt"}, "/cifar-10-batches-bin", true},
}), vit_test::RowName());

TEST(Datasets, cifar100) {
  const std::string dir = fresh_dir();
  write_cifar100(dir + "/cifar-100-binary");
  auto s = vit::load_cifar(dir, 100);
  check_layout(s.train, {3, 3, 32, 32});
  check_layout(*s.test, {2, 3, 32, 32});
  ASSERT_EQ(s.train.name, std::string("cifar100/train"));
  ASSERT_EQ(to_vector(s.train.labels), (std::vector<int64_t>{99, 5, 42}));  // fine, not coarse
  ASSERT_EQ(to_vector(s.test->labels), (std::vector<int64_t>{12, 0}));
  ASSERT_EQ(s.train.classes.size(), size_t(100));
  ASSERT_EQ(s.train.classes[99], std::string("worm"));
  ASSERT_EQ(s.train.classes[0], std::string("apple"));
  ASSERT_EQ(px(s.train.images, 2, 2, 31, 31), int(cifar_pixel(2, 2, 1023)));
  ASSERT_EQ(px(s.test->images, 1, 0, 0, 3), int(cifar_pixel(51, 0, 3)));

  std::string names;
  for (int i = 0; i < 100; ++i) names += "n" + std::to_string(i) + "\n";
  write_text(dir + "/cifar-100-binary/fine_label_names.txt", names);
  s = vit::load_cifar(dir, 100);
  ASSERT_EQ(s.train.classes[42], std::string("n42"));
}

// An image folder with every format and conversion: 8-bit gray, 16-bit and RGBA png, jpg, bmp
// and (when this OpenCV can write it) lossless webp, plus files that must be skipped and counted.
TEST(Datasets, imageFolder) {
  const std::string dir = fresh_dir();
  // a_gray (label 0), sorted: g16.png, g8.png; skipped: empty.jpg, notes.png; ignored: .DS_Store
  cv::Mat g16(4, 4, CV_16UC1, cv::Scalar(65535));
  g16.rowRange(2, 4).setTo(cv::Scalar(25700));  // 25700 / 257 = 100
  write_image(dir + "/a_gray/g16.png", g16);
  write_image(dir + "/a_gray/g8.png", cv::Mat(8, 8, CV_8UC1, cv::Scalar(100)));  // shrunk to 4
  write_text(dir + "/a_gray/notes.png", "these are not pixels\n");
  write_file(dir + "/a_gray/empty.jpg", {});
  write_text(dir + "/a_gray/.DS_Store", "hidden");
  // b_color (label 1), sorted: bmp.bmp, more/deep.png, photo.jpg, rgba.png[, tiny.webp]
  write_image(dir + "/b_color/bmp.bmp", cv::Mat(4, 4, CV_8UC3, cv::Scalar(40, 50, 60)));  // BGR
  write_image(dir + "/b_color/more/deep.png", cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3)));
  write_image(dir + "/b_color/photo.jpg", cv::Mat(16, 16, CV_8UC3, cv::Scalar(0, 0, 255)),
              {cv::IMWRITE_JPEG_QUALITY, 95});
  cv::Mat rgba(4, 4, CV_8UC4, cv::Scalar(10, 20, 30, 255));
  rgba.colRange(0, 2).setTo(cv::Scalar(0, 0, 0, 0));  // fully transparent black -> white
  rgba.at<cv::Vec4b>(3, 3) = cv::Vec4b(0, 0, 0, 128);  // half transparent black -> 127
  write_image(dir + "/b_color/rgba.png", rgba);
  const bool webp = cv::haveImageWriter(".webp");
  if (webp)  // quality > 100 selects lossless WebP
    write_image(dir + "/b_color/tiny.webp", cv::Mat(2, 2, CV_8UC3, cv::Scalar(70, 80, 90)),
                {cv::IMWRITE_WEBP_QUALITY, 101});
  else
    std::cerr << "this OpenCV cannot write WebP; the .webp case is not exercised" << std::endl;

  const auto s = vit::load_image_folder(dir, 4, 3);
  const int64_t n = webp ? 7 : 6;
  check_layout(s.train, {n, 3, 4, 4});
  ASSERT_FALSE(s.test.has_value());
  ASSERT_EQ(s.train.name, "folder:" + dir);
  ASSERT_EQ(s.train.classes, (std::vector<std::string>{"a_gray", "b_color"}));
  std::vector<int64_t> labels = {0, 0, 1, 1, 1, 1};
  if (webp) labels.push_back(1);
  ASSERT_EQ(to_vector(s.train.labels), labels);
  ASSERT_EQ(s.skipped_files, int64_t(2));
  ASSERT_EQ(s.skipped_examples.size(), size_t(2));
  ASSERT_TRUE(contains(s.skipped_examples[0], "a_gray/empty.jpg: empty file"))
      << s.skipped_examples[0];
  ASSERT_TRUE(contains(s.skipped_examples[1], "a_gray/notes.png: not an image"))
      << s.skipped_examples[1];

  const auto& im = s.train.images;
  for (int c = 0; c < 3; ++c) {  // gray replicated to RGB
    ASSERT_EQ(px(im, 0, c, 0, 0), 255);  // 16-bit 65535
    ASSERT_EQ(px(im, 0, c, 3, 3), 100);  // 16-bit 25700
    ASSERT_EQ(px(im, 1, c, 2, 1), 100);  // 8-bit gray, shrunk 8 -> 4
  }
  const std::array<int, 3> bmp_rgb = {60, 50, 40}, rgba_rgb = {30, 20, 10};
  for (int c = 0; c < 3; ++c) {
    ASSERT_EQ(px(im, 2, c, 1, 2), bmp_rgb[c]);    // BGR file -> RGB planes
    ASSERT_EQ(px(im, 3, c, 0, 0), 3 - c);         // nested folder, BGR (1, 2, 3)
    ASSERT_EQ(px(im, 5, c, 2, 0), 255);           // alpha 0 -> white
    ASSERT_EQ(px(im, 5, c, 0, 3), rgba_rgb[c]);   // alpha 255 -> the color
    ASSERT_EQ(px(im, 5, c, 3, 3), 127);           // black at alpha 128 over white
    if (webp) {
      ASSERT_EQ(px(im, 6, c, 3, 0), 90 - 10 * c);  // 2x2 enlarged to 4x4, lossless
    }
  }
  // JPEG is lossy: red within a few levels.
  ASSERT_TRUE(std::abs(px(im, 4, 0, 2, 2) - 255) <= 4);
  ASSERT_TRUE(px(im, 4, 1, 2, 2) <= 4);
  ASSERT_TRUE(px(im, 4, 2, 2, 2) <= 4);

  // One channel: OpenCV's BGR2GRAY weights (0.299 R + 0.587 G + 0.114 B).
  const auto g = vit::load_image_folder(dir, 4, 1);
  check_layout(g.train, {n, 1, 4, 4});
  ASSERT_EQ(px(g.train.images, 0, 0, 0, 0), 255);
  ASSERT_EQ(px(g.train.images, 2, 0, 0, 0), 52);   // 0.299 * 60 + 0.587 * 50 + 0.114 * 40 = 51.85
  ASSERT_EQ(px(g.train.images, 5, 0, 0, 0), 255);  // transparent -> white
  ASSERT_EQ(px(g.train.images, 5, 0, 0, 3), 22);   // 0.299 * 30 + 0.587 * 20 + 0.114 * 10 = 21.85

  // load_image decodes exactly as the folder loader does.
  const auto one = vit::load_image(dir + "/b_color/rgba.png", 4, 3);
  ASSERT_EQ(one.sizes().vec(), (std::vector<int64_t>{3, 4, 4}));
  ASSERT_TRUE(one.equal(im[5]));
  const auto gray16 = vit::load_image(dir + "/a_gray/g16.png", 4, 1);
  ASSERT_TRUE(gray16.equal(g.train.images[0]));
}

// Shrinking averages (INTER_AREA): 1-pixel stripes 0/200 shrunk 9 -> 3 give 67, 133, 67, where
// bilinear sampling would give 200, 0, 200. Enlarging is bilinear (INTER_LINEAR).
// Every file is judged by its header before OpenCV decodes it, as read_image does: a header
// declaring more than kMaxImagePixels (without overflowing the product) or a format whose size
// is not read first (Sun raster, named .png) is skipped with the reason.
TEST(Datasets, imageFolderChecksHeadersBeforeDecoding) {
  const std::string dir = fresh_dir();
  const cv::Mat small(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
  write_image(dir + "/a/ok.png", small);
  write_image(dir + "/b/ok.png", small);
  std::vector<uint8_t> png, ras;
  ASSERT_TRUE(cv::imencode(".png", small, png));
  ASSERT_TRUE(cv::imencode(".ras", small, ras));
  auto sized = [&](uint32_t w, uint32_t h) {
    Bytes b(png.begin(), png.end());
    for (int k = 0; k < 4; ++k) {
      b[size_t(16 + k)] = uint8_t(w >> (24 - 8 * k));  // IHDR width, then height, big-endian
      b[size_t(20 + k)] = uint8_t(h >> (24 - 8 * k));
    }
    return b;
  };
  write_file(dir + "/a/huge.png", sized(20000, 20000));
  write_file(dir + "/b/overflow.png", sized(4143380037u, 4143380214u));
  write_file(dir + "/b/raster.png", Bytes(ras.begin(), ras.end()));
  const auto s = vit::load_image_folder(dir, 4, 3);
  ASSERT_EQ(s.train.size(), int64_t(2));
  ASSERT_EQ(s.skipped_files, int64_t(3));
  ASSERT_EQ(s.skipped_examples.size(), size_t(3));
  const std::string& huge = s.skipped_examples[0];
  const std::string& overflow = s.skipped_examples[1];
  const std::string& raster = s.skipped_examples[2];
  ASSERT_TRUE(vit_test::contains(huge, "a/huge.png: 20000x20000 is 400.0 megapixels")) << huge;
  ASSERT_TRUE(vit_test::contains(overflow, "b/overflow.png: 4143380037x4143380214 is")) << overflow;
  ASSERT_TRUE(vit_test::contains(raster, "b/raster.png: not an image")) << raster;
}

// Class names end up in config.json; a folder name that is not UTF-8 is reported by name
// (escaped) at load time, not later by the JSON writer.
TEST(Datasets, nonUtf8ClassFolderIsNamedEarly) {
  const std::string dir = fresh_dir();
  const cv::Mat small(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
  write_image(dir + "/ok/x.png", small);
  const std::string latin1 = dir + "/caf\xe9";  // "café" in Latin-1
  std::filesystem::create_directories(latin1);
  ASSERT_TRUE(cv::imwrite(latin1 + "/x.png", small));
  bool invalid = false;
  const std::string message = error_of([&] { vit::load_image_folder(dir, 4, 3); }, &invalid);
  ASSERT_TRUE(message.find("caf\\xe9") != std::string::npos) << message;
  ASSERT_TRUE(message.find("UTF-8") != std::string::npos) << message;
  ASSERT_TRUE(message.find('\xe9') == std::string::npos) << "the message itself must be valid UTF-8";
}

// The loader sizes the CIFAR files, then reads them. A file that grows in between (a copy still
// running) must not make it write past the images it allocated: here data_batch_5.bin grows by
// 20,000 records at the moment the loader opens data_batch_1.bin, after every size was taken
// (through the fopen/fopen64 above, which std::ifstream uses).
TEST(Datasets, cifarFileGrowingWhileReadStaysInBounds) {
  const std::string dir = fresh_dir();
  write_cifar10(dir);
  const std::string last = dir + "/data_batch_5.bin";
  bool grown = false;
  g_before_fopen = [&](const char* path) {
    const std::string name = path, first = "/data_batch_1.bin";
    if (grown || name.size() < first.size() ||
        name.compare(name.size() - first.size(), first.size(), first) != 0)
      return;
    grown = true;
    std::ofstream out(last, std::ios::binary | std::ios::app);
    out << std::string(20000 * 3073, '\x01');
  };
  bool invalid = false;
  int64_t loaded = -1;
  const std::string message =
      error_of([&] { loaded = vit::load_cifar(dir, 10).train.size(); }, &invalid);
  g_before_fopen = nullptr;
  ASSERT_TRUE(grown) << "the loader never opened data_batch_1.bin";
  ASSERT_TRUE(vit_test::contains(message, "data_batch_5.bin") &&
              vit_test::contains(message, "changed size"))
      << message << " (loaded " << loaded << ")";
}

TEST(Datasets, resizeInterpolation) {
  const std::string dir = fresh_dir();
  cv::Mat stripes(9, 9, CV_8UC1, cv::Scalar(0));
  for (int x = 1; x < 9; x += 2) stripes.col(x).setTo(cv::Scalar(200));
  write_image(dir + "/stripes.png", stripes);
  const auto s = vit::load_image(dir + "/stripes.png", 3, 1);
  ASSERT_EQ(s.sizes().vec(), (std::vector<int64_t>{1, 3, 3}));
  for (int y = 0; y < 3; ++y) {
    ASSERT_EQ(px(s, 0, y, 0), 67);
    ASSERT_EQ(px(s, 0, y, 1), 133);
    ASSERT_EQ(px(s, 0, y, 2), 67);
  }

  const cv::Mat small = (cv::Mat_<uint8_t>(2, 2) << 0, 100, 200, 250);
  write_image(dir + "/small.png", small);
  cv::Mat linear, area;
  cv::resize(small, linear, cv::Size(5, 5), 0, 0, cv::INTER_LINEAR);
  cv::resize(small, area, cv::Size(5, 5), 0, 0, cv::INTER_AREA);
  ASSERT_TRUE(cv::norm(linear, area, cv::NORM_INF) > 0);  // the two modes are distinguishable here
  const auto g = vit::load_image(dir + "/small.png", 5, 1);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 5; ++x) ASSERT_EQ(px(g, 0, y, x), int(linear.at<uint8_t>(y, x)));
}

struct TestNameRow : vit_test::Row {
  std::string testName;
};

class TrainTestFolders : public testing::TestWithParam<TestNameRow> {};

TEST_P(TrainTestFolders, row) {
  const std::string& testName = GetParam().testName;
  const std::string dir = fresh_dir();
  const cv::Mat img(6, 6, CV_8UC3, cv::Scalar(9, 9, 9));
  write_image(dir + "/train/cat/1.png", img);
  write_image(dir + "/train/cat/2.png", img);
  write_image(dir + "/train/dog/1.png", img);
  write_text(dir + "/train/dog/bad.jpg", "no");
  write_image(dir + "/" + testName + "/dog/1.png", img);  // the test set may lack a class
  write_text(dir + "/" + testName + "/dog/bad.png", "no");
  const auto s = vit::load_dataset("folder:" + dir, 8, 1);
  check_layout(s.train, {3, 1, 8, 8});
  ASSERT_EQ(s.train.classes, (std::vector<std::string>{"cat", "dog"}));
  ASSERT_EQ(to_vector(s.train.labels), (std::vector<int64_t>{0, 0, 1}));
  ASSERT_TRUE(s.test.has_value());
  check_layout(*s.test, {1, 1, 8, 8});
  ASSERT_EQ(s.test->classes, s.train.classes);
  ASSERT_EQ(to_vector(s.test->labels), (std::vector<int64_t>{1}));  // dog keeps the train label
  ASSERT_EQ(s.train.name, "folder:" + dir + "/train");
  ASSERT_EQ(s.test->name, "folder:" + dir + "/" + testName);
  ASSERT_EQ(s.skipped_files, int64_t(2));
  ASSERT_EQ(px(s.test->images, 0, 0, 7, 7), 9);
}

INSTANTIATE_TEST_SUITE_P(Datasets, TrainTestFolders,
                         testing::ValuesIn(std::vector<TestNameRow>{
    {{"train + test"}, "test"},
    {{"train + val"}, "val"},
}), vit_test::RowName());

struct MalformedRow : vit_test::Row {
  Case input;
  std::vector<std::string> expected;  // substrings of the message
  bool invalidArgument;               // std::invalid_argument, else std::runtime_error
};

std::vector<MalformedRow> malformed_rows() {
  std::vector<MalformedRow> rows;
  auto row = [&](const char* name, const Case& input, std::vector<std::string> expected,
              bool invalid_argument) {
    rows.push_back({{name}, input, std::move(expected), invalid_argument});
  };

  auto fmnist = [](std::function<void(std::map<std::string, Bytes>&)> edit, bool gz = false) {
    return Case{[=](const std::string& dir) {
      auto files = fmnist_files();
      edit(files);
      write_fmnist(dir, files, gz);
      return "fashion-mnist:" + dir;
    }};
  };
  row("fmnist: missing folder",
      Case{[](const std::string& dir) { return "fashion-mnist:" + dir + "/nope"; }},
      {"/nope does not exist", "install dataset-fashion-mnist (scripts/setup.sh)"},
      false);
  row("fmnist: missing file",
      fmnist([](auto& f) { f.erase("t10k-labels-idx1-ubyte"); }, true),
      {"t10k-labels-idx1-ubyte.gz is missing", "uncompressed"}, false);
  row("fmnist: wrong magic",
      fmnist([](auto& f) { f["train-images-idx3-ubyte"] = idx_labels({1, 2, 3}); }),
      {"train-images-idx3-ubyte: wrong IDX magic number", "expected 0x00000803",
       "found 0x00000801"},
      false);
  row("fmnist: truncated images",
      fmnist([](auto& f) { f["train-images-idx3-ubyte"].resize(16 + 18 - 5); }),
      {"train-images-idx3-ubyte: truncated", "expected 34 bytes", "found 29"},
      false);
  row("fmnist: truncated gzip labels",
      fmnist([](auto& f) { f["train-labels-idx1-ubyte"].resize(9); }, true),
      {"train-labels-idx1-ubyte.gz: truncated", "expected 11 bytes", "found 9",
       "after decompression"},
      false);
  row("fmnist: gzip stream cut short",
      Case{[](const std::string& dir) {
        write_fmnist(dir, fmnist_files(), true);
        const std::string path = dir + "/train-images-idx3-ubyte.gz";
        Bytes gz = read_file(path);
        gz.resize(gz.size() / 2);
        write_file(path, gz);
        return "fashion-mnist:" + dir;
      }},
      {"train-images-idx3-ubyte.gz: cannot decompress", "truncated or corrupt"},
      false);
  row("fmnist: trailing bytes",
      fmnist([](auto& f) { f["t10k-images-idx3-ubyte"].push_back(0); }),
      {"t10k-images-idx3-ubyte: 1 unexpected bytes"}, false);
  row("fmnist: label/image count mismatch",
      fmnist([](auto& f) { f["train-labels-idx1-ubyte"] = idx_labels({1, 2}); }),
      {"train-labels-idx1-ubyte holds 2 labels", "holds 3 images",
       "do not belong together"},
      false);
  row("fmnist: label out of range",
      fmnist([](auto& f) { f["t10k-labels-idx1-ubyte"] = idx_labels({1, 10}); }),
      {"t10k-labels-idx1-ubyte: label 10 of item 1 is out of range", "(0..9)"},
      false);

  row("cifar10: missing folder",
      Case{[](const std::string& dir) { return "cifar10:" + dir + "/nope"; }},
      {"CIFAR-10 folder", "/nope does not exist", "cifar-10-binary.tar.gz"},
      false);
  row("cifar10: missing batch",
      Case{[](const std::string& dir) {
        write_cifar10(dir);
        fs::remove(dir + "/data_batch_3.bin");
        return "cifar10:" + dir;
      }},
      {"data_batch_3.bin is missing", "data_batch_1.bin .. data_batch_5.bin"},
      false);
  row("cifar10: size not a multiple of the record",
      Case{[](const std::string& dir) {
        write_cifar10(dir);
        write_file(dir + "/test_batch.bin", Bytes(3073 * 2 + 5, 0));
        return "cifar10:" + dir;
      }},
      {"test_batch.bin: size 6151 bytes",
       "not a multiple of the 3073-byte CIFAR-10 record"},
      false);
  row("cifar10: label out of range",
      Case{[](const std::string& dir) {
        write_cifar10(dir);
        write_file(dir + "/data_batch_2.bin", cifar_file({{3}, {57}}, 0));
        return "cifar10:" + dir;
      }},
      {"data_batch_2.bin: label 57 of record 1 is out of range", "cifar100:DIR"},
      false);
  row("cifar100: missing folder",
      Case{[](const std::string& dir) { return "cifar100:" + dir + "/nope"; }},
      {"cifar-100-binary.tar.gz"}, false);
  row("cifar100: size not a multiple of the record",
      Case{[](const std::string& dir) {
        write_cifar100(dir);
        write_file(dir + "/train.bin", Bytes(3073 * 2, 0));  // CIFAR-10-sized records
        return "cifar100:" + dir;
      }},
      {"train.bin: size 6146 bytes", "3074-byte CIFAR-100 record"}, false);
  row("cifar100: fine label out of range",
      Case{[](const std::string& dir) {
        write_cifar100(dir);
        write_file(dir + "/test.bin", cifar_file({{1, 2}, {3, 100}}, 0));
        return "cifar100:" + dir;
      }},
      {"test.bin: label 100 of record 1 is out of range", "(0..99)"}, false);

  const cv::Mat img(3, 3, CV_8UC1, cv::Scalar(1));
  row("folder: missing",
      Case{[](const std::string& dir) { return "folder:" + dir + "/nope"; }},
      {"image folder", "/nope does not exist", "one sub-folder per class"}, false);
  row("folder: empty class folder",
      Case{[=](const std::string& dir) {
        write_image(dir + "/a/1.png", img);
        mkpath(dir + "/b");
        return "folder:" + dir;
      }},
      {"class folder", "/b is empty"}, false);
  row("folder: one class",
      Case{[=](const std::string& dir) {
        write_image(dir + "/only/1.png", img);
        return "folder:" + dir;
      }},
      {"has 1 class sub-folder (only)", "at least two classes"}, false);
  row("folder: images but no class folders",
      Case{[=](const std::string& dir) {
        write_image(dir + "/1.png", img);
        write_image(dir + "/2.jpg", img);
        return "folder:" + dir;
      }},
      {"has 0 class sub-folders", "holds 2 images directly", "/<class>/<image>"},
      false);
  row("folder: no readable images",
      Case{[](const std::string& dir) {
        write_text(dir + "/a/x.png", "text");
        write_text(dir + "/b/y.txt", "text");
        return "folder:" + dir;
      }},
      {"has no readable images", "all 2 files were skipped",
       "a/x.png: not an image"},
      false);
  row("folder: a class without readable images",
      Case{[=](const std::string& dir) {
        write_image(dir + "/a/ok.png", img);
        write_file(dir + "/b/zero.png", {});
        return "folder:" + dir;
      }},
      {"class folder", "/b has no readable images", "zero.png: empty file"},
      false);
  row("folder: test class not in train",
      Case{[=](const std::string& dir) {
        for (const char* p :
             {"/train/a/1.png", "/train/b/1.png", "/test/a/1.png", "/test/c/1.png"})
          write_image(dir + p, img);
        return "folder:" + dir;
      }},
      {"/test/c is not a class of the training set (a, b)"}, false);
  row("folder: image size 0",
      Case{[](const std::string& dir) { return "folder:" + dir; }},
      {"image size 0"}, true);

  row("spec: unknown kind",
      Case{[](const std::string&) { return std::string("mnist:/data"); }},
      {"unknown data set 'mnist:/data'", "fashion-mnist:DIR", "cifar10:DIR",
       "cifar100:DIR", "folder:DIR"},
      true);
  row("spec: no directory",
      Case{[](const std::string&) { return std::string("cifar10"); }},
      {"needs a directory: cifar10:DIR"}, true);
  return rows;
}

class Malformed : public testing::TestWithParam<MalformedRow> {};

TEST_P(Malformed, row) {
  const Case& input = GetParam().input;
  const std::vector<std::string>& expected = GetParam().expected;
  const bool invalidArgument = GetParam().invalidArgument;
  const std::string dir = fresh_dir();
  const std::string spec = input.make(dir);
  const bool zero_size = contains(GetParam().name, "image size 0");
  bool invalid = false;
  const std::string message =
      error_of([&] { vit::load_dataset(spec, zero_size ? 0 : 4, 1); }, &invalid);
  ASSERT_FALSE(message.empty()) << "no exception";
  for (const std::string& s : expected) ASSERT_TRUE(contains(message, s)) << message;
  ASSERT_EQ(invalid, invalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Datasets, Malformed, testing::ValuesIn(malformed_rows()),
                         vit_test::RowName());

struct ImageErrorRow : vit_test::Row {
  std::string file;
  int size;
  int channels;
  std::string expected;
  bool invalidArgument;
};

class LoadImageErrors : public testing::TestWithParam<ImageErrorRow> {};

TEST_P(LoadImageErrors, row) {
  const std::string& file = GetParam().file;
  const int size = GetParam().size;
  const int channels = GetParam().channels;
  const std::string& expected = GetParam().expected;
  const bool invalidArgument = GetParam().invalidArgument;
  const std::string dir = fresh_dir();
  write_text(dir + "/text.png", "hello");
  write_file(dir + "/empty.jpg", {});
  write_image(dir + "/ok.png", cv::Mat(2, 2, CV_8UC1, cv::Scalar(0)));
  mkpath(dir + "/sub");
  bool invalid = false;
  const std::string message =
      error_of([&] { vit::load_image(dir + "/" + file, size, channels); }, &invalid);
  ASSERT_TRUE(contains(message, expected)) << message;
  ASSERT_EQ(invalid, invalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Datasets, LoadImageErrors,
                         testing::ValuesIn(std::vector<ImageErrorRow>{
    {{"missing"}, "missing.png", 8, 3, "missing.png: no such file", false},
    {{"text"}, "text.png", 8, 3, "text.png: not an image", false},
    {{"empty"}, "empty.jpg", 8, 3, "empty.jpg: empty file", false},
    {{"folder"}, "sub", 8, 3, "sub: is a folder", false},
    {{"channels 2"}, "ok.png", 8, 2, "channels 2 is not supported", true},
    {{"size -1"}, "ok.png", -1, 3, "image size -1", true},
}), vit_test::RowName());

// The real data set from Debian's dataset-fashion-mnist (scripts/setup.sh installs it).
TEST(Datasets, realFashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  ASSERT_TRUE(fs::is_directory(dir)) << "install dataset-fashion-mnist (scripts/setup.sh)";
  const auto s = vit::load_dataset("fashion-mnist", 0, 0);
  check_layout(s.train, {60000, 1, 28, 28});
  ASSERT_TRUE(s.test.has_value());
  check_layout(*s.test, {10000, 1, 28, 28});
  for (const auto* d : {&s.train, &*s.test}) {
    std::array<int64_t, 10> counts{};
    for (int64_t l : to_vector(d->labels)) {
      ASSERT_TRUE(l >= 0 && l < 10);
      ++counts[size_t(l)];
    }
    for (int64_t c : counts) ASSERT_EQ(c, d->size() / 10);  // balanced: 6000 / 1000 per class
  }
  // Reference values read with Python's gzip module from the same files.
  const std::vector<int64_t> first_train = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  const std::vector<int64_t> first_test = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  ASSERT_EQ(to_vector(s.train.labels.slice(0, 0, 10)), first_train);
  ASSERT_EQ(to_vector(s.test->labels.slice(0, 0, 10)), first_test);
  ASSERT_EQ(s.train.images[0].sum().item<int64_t>(), int64_t(76247));
  ASSERT_EQ(s.test->images[0].sum().item<int64_t>(), int64_t(33456));
  ASSERT_EQ(s.train.classes[size_t(first_train[0])], std::string("Ankle boot"));
}
