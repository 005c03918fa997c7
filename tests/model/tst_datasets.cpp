// The data set loaders: Fashion-MNIST IDX (gzip and plain), CIFAR-10/100 binary and image folders
// on tiny files written here with known pixels and labels, every malformed input with the words its
// error must contain, and the real Fashion-MNIST that Debian's dataset-fashion-mnist installs.
// torch and OpenCV before any Qt header: Qt's `slots` macro breaks LibTorch headers.
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include <dlfcn.h>

#include <QtTest>

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "datasets.h"

namespace {

using Bytes = std::vector<uint8_t>;

void write_file(const QString& path, const Bytes& bytes) {
  QDir().mkpath(QFileInfo(path).absolutePath());
  std::ofstream out(path.toStdString(), std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  QVERIFY2(out.good(), qPrintable(path));
}

void write_gzip(const QString& path, const Bytes& bytes) {
  QDir().mkpath(QFileInfo(path).absolutePath());
  gzFile f = gzopen(path.toStdString().c_str(), "wb");
  QVERIFY(f);
  QCOMPARE(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  QCOMPARE(gzclose(f), Z_OK);
}

Bytes read_file(const QString& path) {
  std::ifstream in(path.toStdString(), std::ios::binary);
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

void write_fmnist(const QString& dir, const std::map<std::string, Bytes>& files, bool gz) {
  for (const auto& [name, bytes] : files) {
    const QString path = dir + "/" + QString::fromStdString(name);
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
void write_cifar10(const QString& dir) {
  for (int k = 0; k < 5; ++k)
    write_file(dir + QString("/data_batch_%1.bin").arg(k + 1),
               cifar_file({{uint8_t(2 * k)}, {uint8_t(2 * k + 1)}}, 2 * k));
  write_file(dir + "/test_batch.bin", cifar_file({{4}, {0}, {9}}, 100));
}

// CIFAR-100: 3 training records, 2 test records, (coarse, fine) labels.
void write_cifar100(const QString& dir) {
  write_file(dir + "/train.bin", cifar_file({{19, 99}, {0, 5}, {7, 42}}, 0));
  write_file(dir + "/test.bin", cifar_file({{3, 12}, {5, 0}}, 50));
}

void write_image(const QString& path, const cv::Mat& img, const std::vector<int>& params = {}) {
  QDir().mkpath(QFileInfo(path).absolutePath());
  QVERIFY2(cv::imwrite(path.toStdString(), img, params), qPrintable(path));
}

void write_text(const QString& path, const std::string& text) {
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
  QCOMPARE(d.images.scalar_type(), torch::kByte);
  QCOMPARE(d.labels.scalar_type(), torch::kLong);
  QVERIFY(d.images.is_contiguous());
  QCOMPARE(d.images.sizes().vec(), shape);
  QCOMPARE(d.labels.sizes().vec(), std::vector<int64_t>{shape[0]});
  QCOMPARE(d.size(), shape[0]);
}

// The message of what `f` throws; `invalid` tells whether it was std::invalid_argument.
QString error_of(const std::function<void()>& f, bool* invalid) {
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
  std::function<std::string(const QString& dir)> make;
};

// Called with the path of every file std::ifstream opens while set (see fopen64 below).
std::function<void(const char*)> g_before_fopen;

}  // namespace

// libstdc++'s file streams open files with fopen64; this definition in the test executable takes
// precedence over glibc's, so a test can act at the exact moment the loader opens a file.
extern "C" FILE* fopen64(const char* path, const char* mode) {
  using Fopen = FILE* (*)(const char*, const char*);
  static const auto real = reinterpret_cast<Fopen>(dlsym(RTLD_NEXT, "fopen64"));
  if (g_before_fopen) g_before_fopen(path);
  return real(path, mode);
}

Q_DECLARE_METATYPE(Case)

class TstDatasets : public QObject {
  Q_OBJECT
 private:
  QTemporaryDir tmp_;
  int dir_counter_ = 0;
  QString fresh_dir() {
    const QString d = tmp_.path() + QString("/d%1").arg(dir_counter_++);
    QDir().mkpath(d);
    return d;
  }

 private slots:
  void initTestCase() { QVERIFY(tmp_.isValid()); }

  void fashionMnistFromIdx_data() {
    QTest::addColumn<bool>("gzip");
    QTest::newRow("gzip") << true;
    QTest::newRow("uncompressed") << false;
  }
  void fashionMnistFromIdx() {
    QFETCH(bool, gzip);
    const QString dir = fresh_dir();
    write_fmnist(dir, fmnist_files(), gzip);
    const vit::DataSplits s = vit::load_fashion_mnist(dir.toStdString());
    check_layout(s.train, {3, 1, 2, 3});
    QVERIFY(s.test.has_value());
    check_layout(*s.test, {2, 1, 2, 3});
    QCOMPARE(s.train.name, std::string("fashion-mnist/train"));
    QCOMPARE(s.test->name, std::string("fashion-mnist/test"));
    QCOMPARE(to_vector(s.train.labels), (std::vector<int64_t>{9, 0, 3}));
    QCOMPARE(to_vector(s.test->labels), (std::vector<int64_t>{1, 2}));
    for (int i = 0; i < 3; ++i)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 3; ++x)
          QCOMPARE(px(s.train.images, i, 0, y, x), 100 + 10 * i + 3 * y + x);
    for (int i = 0; i < 2; ++i)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 3; ++x)
          QCOMPARE(px(s.test->images, i, 0, y, x), 200 + 10 * i + 3 * y + x);
    QCOMPARE(s.train.classes.size(), size_t(10));
    QCOMPARE(s.train.classes[0], std::string("T-shirt/top"));
    QCOMPARE(s.train.classes[9], std::string("Ankle boot"));
    QCOMPARE(s.skipped_files, int64_t(0));

    // The same through load_dataset's spec.
    const auto via_spec = vit::load_dataset("fashion-mnist:" + dir.toStdString(), 99, 3);
    QVERIFY(via_spec.train.images.equal(s.train.images));
  }

  void fashionMnistTorchvisionLayout() {
    const QString dir = fresh_dir();
    write_fmnist(dir + "/FashionMNIST/raw", fmnist_files(), true);
    QCOMPARE(vit::load_fashion_mnist(dir.toStdString()).train.size(), int64_t(3));
  }

  void cifar10_data() {
    QTest::addColumn<QString>("sub");
    QTest::addColumn<bool>("meta");
    QTest::newRow("the folder itself, standard names") << "" << false;
    QTest::newRow("cifar-10-batches-bin child, batches.meta.txt")
        << "/cifar-10-batches-bin" << true;
  }
  void cifar10() {
    QFETCH(QString, sub);
    QFETCH(bool, meta);
    const QString dir = fresh_dir();
    write_cifar10(dir + sub);
    if (meta)
      write_text(dir + sub + "/batches.meta.txt", "c0\nc1\nc2\nc3\nc4\nc5\nc6\nc7\nc8\nc9\n\n");
    const auto s = vit::load_dataset("cifar10:" + dir.toStdString(), 0, 0);
    check_layout(s.train, {10, 3, 32, 32});
    check_layout(*s.test, {3, 3, 32, 32});
    QCOMPARE(s.train.name, std::string("cifar10/train"));
    QCOMPARE(s.test->name, std::string("cifar10/test"));
    QCOMPARE(to_vector(s.train.labels), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    QCOMPARE(to_vector(s.test->labels), (std::vector<int64_t>{4, 0, 9}));
    QCOMPARE(s.train.classes[0], std::string(meta ? "c0" : "airplane"));
    QCOMPARE(s.train.classes[9], std::string(meta ? "c9" : "truck"));
    // Channel c, pixel (y, x) is byte 1024 c + 32 y + x of the record's pixels: R, G, B planes.
    for (int i : {0, 7, 9})
      for (int c = 0; c < 3; ++c)
        for (int p : {0, 1, 33, 1023})
          QCOMPARE(px(s.train.images, i, c, p / 32, p % 32), int(cifar_pixel(i, c, p)));
    QCOMPARE(px(s.test->images, 2, 1, 5, 6), int(cifar_pixel(102, 1, 5 * 32 + 6)));
  }

  void cifar100() {
    const QString dir = fresh_dir();
    write_cifar100(dir + "/cifar-100-binary");
    auto s = vit::load_cifar(dir.toStdString(), 100);
    check_layout(s.train, {3, 3, 32, 32});
    check_layout(*s.test, {2, 3, 32, 32});
    QCOMPARE(s.train.name, std::string("cifar100/train"));
    QCOMPARE(to_vector(s.train.labels), (std::vector<int64_t>{99, 5, 42}));  // fine, not coarse
    QCOMPARE(to_vector(s.test->labels), (std::vector<int64_t>{12, 0}));
    QCOMPARE(s.train.classes.size(), size_t(100));
    QCOMPARE(s.train.classes[99], std::string("worm"));
    QCOMPARE(s.train.classes[0], std::string("apple"));
    QCOMPARE(px(s.train.images, 2, 2, 31, 31), int(cifar_pixel(2, 2, 1023)));
    QCOMPARE(px(s.test->images, 1, 0, 0, 3), int(cifar_pixel(51, 0, 3)));

    std::string names;
    for (int i = 0; i < 100; ++i) names += "n" + std::to_string(i) + "\n";
    write_text(dir + "/cifar-100-binary/fine_label_names.txt", names);
    s = vit::load_cifar(dir.toStdString(), 100);
    QCOMPARE(s.train.classes[42], std::string("n42"));
  }

  // An image folder with every format and conversion: 8-bit gray, 16-bit and RGBA png, jpg, bmp
  // and (when this OpenCV can write it) lossless webp, plus files that must be skipped and counted.
  void imageFolder() {
    const QString dir = fresh_dir();
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
      qWarning("this OpenCV cannot write WebP; the .webp case is not exercised");

    const auto s = vit::load_image_folder(dir.toStdString(), 4, 3);
    const int64_t n = webp ? 7 : 6;
    check_layout(s.train, {n, 3, 4, 4});
    QVERIFY(!s.test.has_value());
    QCOMPARE(s.train.name, "folder:" + dir.toStdString());
    QCOMPARE(s.train.classes, (std::vector<std::string>{"a_gray", "b_color"}));
    std::vector<int64_t> labels = {0, 0, 1, 1, 1, 1};
    if (webp) labels.push_back(1);
    QCOMPARE(to_vector(s.train.labels), labels);
    QCOMPARE(s.skipped_files, int64_t(2));
    QCOMPARE(s.skipped_examples.size(), size_t(2));
    QVERIFY(QString::fromStdString(s.skipped_examples[0]).contains("a_gray/empty.jpg: empty file"));
    QVERIFY(
        QString::fromStdString(s.skipped_examples[1]).contains("a_gray/notes.png: not an image"));

    const auto& im = s.train.images;
    for (int c = 0; c < 3; ++c) {  // gray replicated to RGB
      QCOMPARE(px(im, 0, c, 0, 0), 255);  // 16-bit 65535
      QCOMPARE(px(im, 0, c, 3, 3), 100);  // 16-bit 25700
      QCOMPARE(px(im, 1, c, 2, 1), 100);  // 8-bit gray, shrunk 8 -> 4
    }
    const std::array<int, 3> bmp_rgb = {60, 50, 40}, rgba_rgb = {30, 20, 10};
    for (int c = 0; c < 3; ++c) {
      QCOMPARE(px(im, 2, c, 1, 2), bmp_rgb[c]);    // BGR file -> RGB planes
      QCOMPARE(px(im, 3, c, 0, 0), 3 - c);         // nested folder, BGR (1, 2, 3)
      QCOMPARE(px(im, 5, c, 2, 0), 255);           // alpha 0 -> white
      QCOMPARE(px(im, 5, c, 0, 3), rgba_rgb[c]);   // alpha 255 -> the color
      QCOMPARE(px(im, 5, c, 3, 3), 127);           // black at alpha 128 over white
      if (webp) QCOMPARE(px(im, 6, c, 3, 0), 90 - 10 * c);  // 2x2 enlarged to 4x4, lossless
    }
    // JPEG is lossy: red within a few levels.
    QVERIFY(std::abs(px(im, 4, 0, 2, 2) - 255) <= 4);
    QVERIFY(px(im, 4, 1, 2, 2) <= 4);
    QVERIFY(px(im, 4, 2, 2, 2) <= 4);

    // One channel: OpenCV's BGR2GRAY weights (0.299 R + 0.587 G + 0.114 B).
    const auto g = vit::load_image_folder(dir.toStdString(), 4, 1);
    check_layout(g.train, {n, 1, 4, 4});
    QCOMPARE(px(g.train.images, 0, 0, 0, 0), 255);
    QCOMPARE(px(g.train.images, 2, 0, 0, 0), 52);   // 0.299 * 60 + 0.587 * 50 + 0.114 * 40 = 51.85
    QCOMPARE(px(g.train.images, 5, 0, 0, 0), 255);  // transparent -> white
    QCOMPARE(px(g.train.images, 5, 0, 0, 3), 22);   // 0.299 * 30 + 0.587 * 20 + 0.114 * 10 = 21.85

    // load_image decodes exactly as the folder loader does.
    const auto one = vit::load_image((dir + "/b_color/rgba.png").toStdString(), 4, 3);
    QCOMPARE(one.sizes().vec(), (std::vector<int64_t>{3, 4, 4}));
    QVERIFY(one.equal(im[5]));
    const auto gray16 = vit::load_image((dir + "/a_gray/g16.png").toStdString(), 4, 1);
    QVERIFY(gray16.equal(g.train.images[0]));
  }

  // Shrinking averages (INTER_AREA): 1-pixel stripes 0/200 shrunk 9 -> 3 give 67, 133, 67, where
  // bilinear sampling would give 200, 0, 200. Enlarging is bilinear (INTER_LINEAR).
  // Every file is judged by its header before OpenCV decodes it, as read_image does: a header
  // declaring more than kMaxImagePixels (without overflowing the product) or a format whose size
  // is not read first (Sun raster, named .png) is skipped with the reason.
  void imageFolderChecksHeadersBeforeDecoding() {
    const QString dir = fresh_dir();
    const cv::Mat small(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
    write_image(dir + "/a/ok.png", small);
    write_image(dir + "/b/ok.png", small);
    std::vector<uint8_t> png, ras;
    QVERIFY(cv::imencode(".png", small, png));
    QVERIFY(cv::imencode(".ras", small, ras));
    auto sized = [&](uint32_t w, uint32_t h) {
      Bytes b(png.begin(), png.end());
      for (int k = 0; k < 4; ++k) {
        b[16 + k] = uint8_t(w >> (24 - 8 * k));  // IHDR width, then height, big-endian
        b[20 + k] = uint8_t(h >> (24 - 8 * k));
      }
      return b;
    };
    write_file(dir + "/a/huge.png", sized(20000, 20000));
    write_file(dir + "/b/overflow.png", sized(4143380037u, 4143380214u));
    write_file(dir + "/b/raster.png", Bytes(ras.begin(), ras.end()));
    const auto s = vit::load_image_folder(dir.toStdString(), 4, 3);
    QCOMPARE(s.train.size(), int64_t(2));
    QCOMPARE(s.skipped_files, int64_t(3));
    QCOMPARE(s.skipped_examples.size(), size_t(3));
    const QString huge = QString::fromStdString(s.skipped_examples[0]);
    const QString overflow = QString::fromStdString(s.skipped_examples[1]);
    const QString raster = QString::fromStdString(s.skipped_examples[2]);
    QVERIFY2(huge.contains("a/huge.png: 20000x20000 is 400.0 megapixels"), qPrintable(huge));
    QVERIFY2(overflow.contains("b/overflow.png: 4143380037x4143380214 is"), qPrintable(overflow));
    QVERIFY2(raster.contains("b/raster.png: not an image"), qPrintable(raster));
  }

  // Class names end up in config.json; a folder name that is not UTF-8 is reported by name
  // (escaped) at load time, not later by the JSON writer.
  void nonUtf8ClassFolderIsNamedEarly() {
    const QString dir = fresh_dir();
    const cv::Mat small(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
    write_image(dir + "/ok/x.png", small);
    const std::string latin1 = dir.toStdString() + "/caf\xe9";  // "café" in Latin-1
    std::filesystem::create_directories(latin1);
    QVERIFY(cv::imwrite(latin1 + "/x.png", small));
    bool invalid = false;
    const std::string message = error_of([&] { vit::load_image_folder(dir.toStdString(), 4, 3); },
                                         &invalid).toStdString();
    QVERIFY2(message.find("caf\\xe9") != std::string::npos, message.c_str());
    QVERIFY2(message.find("UTF-8") != std::string::npos, message.c_str());
    QVERIFY2(message.find('\xe9') == std::string::npos, "the message itself must be valid UTF-8");
  }

  // The loader sizes the CIFAR files, then reads them. A file that grows in between (a copy still
  // running) must not make it write past the images it allocated: here data_batch_5.bin grows by
  // 20,000 records at the moment the loader opens data_batch_1.bin, after every size was taken
  // (through the fopen64 above, which std::ifstream uses).
  void cifarFileGrowingWhileReadStaysInBounds() {
    const QString dir = fresh_dir();
    write_cifar10(dir);
    const std::string last = (dir + "/data_batch_5.bin").toStdString();
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
    const QString message = error_of(
        [&] { loaded = vit::load_cifar(dir.toStdString(), 10).train.size(); }, &invalid);
    g_before_fopen = nullptr;
    QVERIFY2(grown, "the loader never opened data_batch_1.bin");
    QVERIFY2(message.contains("data_batch_5.bin") && message.contains("changed size"),
             qPrintable(message + QString(" (loaded %1)").arg(loaded)));
  }

  void resizeInterpolation() {
    const QString dir = fresh_dir();
    cv::Mat stripes(9, 9, CV_8UC1, cv::Scalar(0));
    for (int x = 1; x < 9; x += 2) stripes.col(x).setTo(cv::Scalar(200));
    write_image(dir + "/stripes.png", stripes);
    const auto s = vit::load_image((dir + "/stripes.png").toStdString(), 3, 1);
    QCOMPARE(s.sizes().vec(), (std::vector<int64_t>{1, 3, 3}));
    for (int y = 0; y < 3; ++y) {
      QCOMPARE(px(s, 0, y, 0), 67);
      QCOMPARE(px(s, 0, y, 1), 133);
      QCOMPARE(px(s, 0, y, 2), 67);
    }

    const cv::Mat small = (cv::Mat_<uint8_t>(2, 2) << 0, 100, 200, 250);
    write_image(dir + "/small.png", small);
    cv::Mat linear, area;
    cv::resize(small, linear, cv::Size(5, 5), 0, 0, cv::INTER_LINEAR);
    cv::resize(small, area, cv::Size(5, 5), 0, 0, cv::INTER_AREA);
    QVERIFY(cv::norm(linear, area, cv::NORM_INF) > 0);  // the two modes are distinguishable here
    const auto g = vit::load_image((dir + "/small.png").toStdString(), 5, 1);
    for (int y = 0; y < 5; ++y)
      for (int x = 0; x < 5; ++x) QCOMPARE(px(g, 0, y, x), int(linear.at<uint8_t>(y, x)));
  }

  void trainTestFolders_data() {
    QTest::addColumn<QString>("testName");
    QTest::newRow("train + test") << "test";
    QTest::newRow("train + val") << "val";
  }
  void trainTestFolders() {
    QFETCH(QString, testName);
    const QString dir = fresh_dir();
    const cv::Mat img(6, 6, CV_8UC3, cv::Scalar(9, 9, 9));
    write_image(dir + "/train/cat/1.png", img);
    write_image(dir + "/train/cat/2.png", img);
    write_image(dir + "/train/dog/1.png", img);
    write_text(dir + "/train/dog/bad.jpg", "no");
    write_image(dir + "/" + testName + "/dog/1.png", img);  // the test set may lack a class
    write_text(dir + "/" + testName + "/dog/bad.png", "no");
    const auto s = vit::load_dataset("folder:" + dir.toStdString(), 8, 1);
    check_layout(s.train, {3, 1, 8, 8});
    QCOMPARE(s.train.classes, (std::vector<std::string>{"cat", "dog"}));
    QCOMPARE(to_vector(s.train.labels), (std::vector<int64_t>{0, 0, 1}));
    QVERIFY(s.test.has_value());
    check_layout(*s.test, {1, 1, 8, 8});
    QCOMPARE(s.test->classes, s.train.classes);
    QCOMPARE(to_vector(s.test->labels), (std::vector<int64_t>{1}));  // dog keeps the train label
    QCOMPARE(s.train.name, "folder:" + dir.toStdString() + "/train");
    QCOMPARE(s.test->name, "folder:" + dir.toStdString() + "/" + testName.toStdString());
    QCOMPARE(s.skipped_files, int64_t(2));
    QCOMPARE(px(s.test->images, 0, 0, 7, 7), 9);
  }

  void malformed_data() {
    QTest::addColumn<Case>("input");
    QTest::addColumn<QStringList>("expected");  // substrings of the message
    QTest::addColumn<bool>("invalidArgument");  // std::invalid_argument, else std::runtime_error

    auto fmnist = [](std::function<void(std::map<std::string, Bytes>&)> edit, bool gz = false) {
      return Case{[=](const QString& dir) {
        auto files = fmnist_files();
        edit(files);
        write_fmnist(dir, files, gz);
        return "fashion-mnist:" + dir.toStdString();
      }};
    };
    QTest::newRow("fmnist: missing folder")
        << Case{[](const QString& dir) { return "fashion-mnist:" + dir.toStdString() + "/nope"; }}
        << QStringList{"/nope does not exist", "install dataset-fashion-mnist (scripts/setup.sh)"}
        << false;
    QTest::newRow("fmnist: missing file")
        << fmnist([](auto& f) { f.erase("t10k-labels-idx1-ubyte"); }, true)
        << QStringList{"t10k-labels-idx1-ubyte.gz is missing", "uncompressed"} << false;
    QTest::newRow("fmnist: wrong magic")
        << fmnist([](auto& f) { f["train-images-idx3-ubyte"] = idx_labels({1, 2, 3}); })
        << QStringList{"train-images-idx3-ubyte: wrong IDX magic number", "expected 0x00000803",
                       "found 0x00000801"}
        << false;
    QTest::newRow("fmnist: truncated images")
        << fmnist([](auto& f) { f["train-images-idx3-ubyte"].resize(16 + 18 - 5); })
        << QStringList{"train-images-idx3-ubyte: truncated", "expected 34 bytes", "found 29"}
        << false;
    QTest::newRow("fmnist: truncated gzip labels")
        << fmnist([](auto& f) { f["train-labels-idx1-ubyte"].resize(9); }, true)
        << QStringList{"train-labels-idx1-ubyte.gz: truncated", "expected 11 bytes", "found 9",
                       "after decompression"}
        << false;
    QTest::newRow("fmnist: gzip stream cut short")
        << Case{[](const QString& dir) {
             write_fmnist(dir, fmnist_files(), true);
             const QString path = dir + "/train-images-idx3-ubyte.gz";
             Bytes gz = read_file(path);
             gz.resize(gz.size() / 2);
             write_file(path, gz);
             return "fashion-mnist:" + dir.toStdString();
           }}
        << QStringList{"train-images-idx3-ubyte.gz: cannot decompress", "truncated or corrupt"}
        << false;
    QTest::newRow("fmnist: trailing bytes")
        << fmnist([](auto& f) { f["t10k-images-idx3-ubyte"].push_back(0); })
        << QStringList{"t10k-images-idx3-ubyte: 1 unexpected bytes"} << false;
    QTest::newRow("fmnist: label/image count mismatch")
        << fmnist([](auto& f) { f["train-labels-idx1-ubyte"] = idx_labels({1, 2}); })
        << QStringList{"train-labels-idx1-ubyte holds 2 labels", "holds 3 images",
                       "do not belong together"}
        << false;
    QTest::newRow("fmnist: label out of range")
        << fmnist([](auto& f) { f["t10k-labels-idx1-ubyte"] = idx_labels({1, 10}); })
        << QStringList{"t10k-labels-idx1-ubyte: label 10 of item 1 is out of range", "(0..9)"}
        << false;

    QTest::newRow("cifar10: missing folder")
        << Case{[](const QString& dir) { return "cifar10:" + dir.toStdString() + "/nope"; }}
        << QStringList{"CIFAR-10 folder", "/nope does not exist", "cifar-10-binary.tar.gz"}
        << false;
    QTest::newRow("cifar10: missing batch")
        << Case{[](const QString& dir) {
             write_cifar10(dir);
             QFile::remove(dir + "/data_batch_3.bin");
             return "cifar10:" + dir.toStdString();
           }}
        << QStringList{"data_batch_3.bin is missing", "data_batch_1.bin .. data_batch_5.bin"}
        << false;
    QTest::newRow("cifar10: size not a multiple of the record")
        << Case{[](const QString& dir) {
             write_cifar10(dir);
             write_file(dir + "/test_batch.bin", Bytes(3073 * 2 + 5, 0));
             return "cifar10:" + dir.toStdString();
           }}
        << QStringList{"test_batch.bin: size 6151 bytes",
                       "not a multiple of the 3073-byte CIFAR-10 record"}
        << false;
    QTest::newRow("cifar10: label out of range")
        << Case{[](const QString& dir) {
             write_cifar10(dir);
             write_file(dir + "/data_batch_2.bin", cifar_file({{3}, {57}}, 0));
             return "cifar10:" + dir.toStdString();
           }}
        << QStringList{"data_batch_2.bin: label 57 of record 1 is out of range", "cifar100:DIR"}
        << false;
    QTest::newRow("cifar100: missing folder")
        << Case{[](const QString& dir) { return "cifar100:" + dir.toStdString() + "/nope"; }}
        << QStringList{"cifar-100-binary.tar.gz"} << false;
    QTest::newRow("cifar100: size not a multiple of the record")
        << Case{[](const QString& dir) {
             write_cifar100(dir);
             write_file(dir + "/train.bin", Bytes(3073 * 2, 0));  // CIFAR-10-sized records
             return "cifar100:" + dir.toStdString();
           }}
        << QStringList{"train.bin: size 6146 bytes", "3074-byte CIFAR-100 record"} << false;
    QTest::newRow("cifar100: fine label out of range")
        << Case{[](const QString& dir) {
             write_cifar100(dir);
             write_file(dir + "/test.bin", cifar_file({{1, 2}, {3, 100}}, 0));
             return "cifar100:" + dir.toStdString();
           }}
        << QStringList{"test.bin: label 100 of record 1 is out of range", "(0..99)"} << false;

    const cv::Mat img(3, 3, CV_8UC1, cv::Scalar(1));
    QTest::newRow("folder: missing")
        << Case{[](const QString& dir) { return "folder:" + dir.toStdString() + "/nope"; }}
        << QStringList{"image folder", "/nope does not exist", "one sub-folder per class"} << false;
    QTest::newRow("folder: empty class folder")
        << Case{[=](const QString& dir) {
             write_image(dir + "/a/1.png", img);
             QDir().mkpath(dir + "/b");
             return "folder:" + dir.toStdString();
           }}
        << QStringList{"class folder", "/b is empty"} << false;
    QTest::newRow("folder: one class")
        << Case{[=](const QString& dir) {
             write_image(dir + "/only/1.png", img);
             return "folder:" + dir.toStdString();
           }}
        << QStringList{"has 1 class sub-folder (only)", "at least two classes"} << false;
    QTest::newRow("folder: images but no class folders")
        << Case{[=](const QString& dir) {
             write_image(dir + "/1.png", img);
             write_image(dir + "/2.jpg", img);
             return "folder:" + dir.toStdString();
           }}
        << QStringList{"has 0 class sub-folders", "holds 2 images directly", "/<class>/<image>"}
        << false;
    QTest::newRow("folder: no readable images")
        << Case{[](const QString& dir) {
             write_text(dir + "/a/x.png", "text");
             write_text(dir + "/b/y.txt", "text");
             return "folder:" + dir.toStdString();
           }}
        << QStringList{"has no readable images", "all 2 files were skipped",
                       "a/x.png: not an image"}
        << false;
    QTest::newRow("folder: a class without readable images")
        << Case{[=](const QString& dir) {
             write_image(dir + "/a/ok.png", img);
             write_file(dir + "/b/zero.png", {});
             return "folder:" + dir.toStdString();
           }}
        << QStringList{"class folder", "/b has no readable images", "zero.png: empty file"}
        << false;
    QTest::newRow("folder: test class not in train")
        << Case{[=](const QString& dir) {
             for (const char* p :
                  {"/train/a/1.png", "/train/b/1.png", "/test/a/1.png", "/test/c/1.png"})
               write_image(dir + p, img);
             return "folder:" + dir.toStdString();
           }}
        << QStringList{"/test/c is not a class of the training set (a, b)"} << false;
    QTest::newRow("folder: image size 0")
        << Case{[](const QString& dir) { return "folder:" + dir.toStdString(); }}
        << QStringList{"image size 0"} << true;

    QTest::newRow("spec: unknown kind")
        << Case{[](const QString&) { return std::string("mnist:/data"); }}
        << QStringList{"unknown data set 'mnist:/data'", "fashion-mnist:DIR", "cifar10:DIR",
                       "cifar100:DIR", "folder:DIR"}
        << true;
    QTest::newRow("spec: no directory")
        << Case{[](const QString&) { return std::string("cifar10"); }}
        << QStringList{"needs a directory: cifar10:DIR"} << true;
  }
  void malformed() {
    QFETCH(Case, input);
    QFETCH(QStringList, expected);
    QFETCH(bool, invalidArgument);
    const QString dir = fresh_dir();
    const std::string spec = input.make(dir);
    const bool zero_size = QString(QTest::currentDataTag()).contains("image size 0");
    bool invalid = false;
    const QString message =
        error_of([&] { vit::load_dataset(spec, zero_size ? 0 : 4, 1); }, &invalid);
    QVERIFY2(!message.isEmpty(), "no exception");
    for (const QString& s : expected) QVERIFY2(message.contains(s), qPrintable(message));
    QCOMPARE(invalid, invalidArgument);
  }

  void loadImageErrors_data() {
    QTest::addColumn<QString>("file");
    QTest::addColumn<int>("size");
    QTest::addColumn<int>("channels");
    QTest::addColumn<QString>("expected");
    QTest::addColumn<bool>("invalidArgument");
    QTest::newRow("missing") << "missing.png" << 8 << 3 << "missing.png: no such file" << false;
    QTest::newRow("text") << "text.png" << 8 << 3 << "text.png: not an image" << false;
    QTest::newRow("empty") << "empty.jpg" << 8 << 3 << "empty.jpg: empty file" << false;
    QTest::newRow("folder") << "sub" << 8 << 3 << "sub: is a folder" << false;
    QTest::newRow("channels 2") << "ok.png" << 8 << 2 << "channels 2 is not supported" << true;
    QTest::newRow("size -1") << "ok.png" << -1 << 3 << "image size -1" << true;
  }
  void loadImageErrors() {
    QFETCH(QString, file);
    QFETCH(int, size);
    QFETCH(int, channels);
    QFETCH(QString, expected);
    QFETCH(bool, invalidArgument);
    const QString dir = fresh_dir();
    write_text(dir + "/text.png", "hello");
    write_file(dir + "/empty.jpg", {});
    write_image(dir + "/ok.png", cv::Mat(2, 2, CV_8UC1, cv::Scalar(0)));
    QDir().mkpath(dir + "/sub");
    bool invalid = false;
    const QString message = error_of(
        [&] { vit::load_image((dir + "/" + file).toStdString(), size, channels); }, &invalid);
    QVERIFY2(message.contains(expected), qPrintable(message));
    QCOMPARE(invalid, invalidArgument);
  }

  // The real data set from Debian's dataset-fashion-mnist (scripts/setup.sh installs it).
  void realFashionMnist() {
    const std::string dir = "/usr/share/datasets/fashion-mnist";
    QVERIFY2(QFileInfo(QString::fromStdString(dir)).isDir(),
             "install dataset-fashion-mnist (scripts/setup.sh)");
    const auto s = vit::load_dataset("fashion-mnist", 0, 0);
    check_layout(s.train, {60000, 1, 28, 28});
    QVERIFY(s.test.has_value());
    check_layout(*s.test, {10000, 1, 28, 28});
    for (const auto* d : {&s.train, &*s.test}) {
      std::array<int64_t, 10> counts{};
      for (int64_t l : to_vector(d->labels)) {
        QVERIFY(l >= 0 && l < 10);
        ++counts[size_t(l)];
      }
      for (int64_t c : counts) QCOMPARE(c, d->size() / 10);  // balanced: 6000 / 1000 per class
    }
    // Reference values read with Python's gzip module from the same files.
    const std::vector<int64_t> first_train = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    const std::vector<int64_t> first_test = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    QCOMPARE(to_vector(s.train.labels.slice(0, 0, 10)), first_train);
    QCOMPARE(to_vector(s.test->labels.slice(0, 0, 10)), first_test);
    QCOMPARE(s.train.images[0].sum().item<int64_t>(), int64_t(76247));
    QCOMPARE(s.test->images[0].sum().item<int64_t>(), int64_t(33456));
    QCOMPARE(s.train.classes[size_t(first_train[0])], std::string("Ankle boot"));
  }
};

QTEST_APPLESS_MAIN(TstDatasets)
#include "tst_datasets.moc"
