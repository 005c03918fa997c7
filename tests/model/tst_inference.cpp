// The Predictor on a tiny model trained for a few seconds: predictions, preprocessing of every kind
// of image, bad image files, attention maps and overlays, evaluation with a confusion matrix.
#include <torch/torch.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "datasets.h"
#include "inference.h"
#include "safetensors.h"
#include "trainer.h"
#include "vit.h"

#include "bars_dataset.h"
#include "support/fatal.h"
#include "support/rows.h"
#include "support/temp_dir.h"
#include "support/text.h"

namespace fs = std::filesystem;
using vit_test::contains;

namespace {

cv::Mat bar_image(int column) {
  cv::Mat m(8, 8, CV_8UC1);
  cv::randu(m, 0, 60);
  m.col(column).setTo(250);
  return m;
}

std::string write_bytes(const fs::path& dir, const std::string& name, const std::vector<uint8_t>& b) {
  const fs::path p = dir / name;
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                           std::streamsize(b.size()));
  return p.string();
}

std::vector<uint8_t> encode(const std::string& ext, const cv::Mat& m) {
  std::vector<uint8_t> out;
  if (!cv::imencode(ext, m, out)) vit_test::fatal("cannot encode " + ext);
  return out;
}

void put_be32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (24 - 8 * i));
}
void put_le32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (8 * i));
}

// The run every test reads: a tiny model trained on the bars for a few seconds, once.
struct TinyRun {
  vit_test::TempDir tmp;
  fs::path dir, run;
  vit::Dataset test;
};
TinyRun& tiny_run() {
  static TinyRun r;
  return r;
}

// Once, before every test (the Qt suite's initTestCase): no test runs if the model did not learn.
class SuiteSetup : public testing::Environment {
  void SetUp() override {
    torch::set_num_threads(1);
    TinyRun& tiny = tiny_run();
    ASSERT_TRUE(tiny.tmp.valid()) << tiny.tmp.error();
    tiny.dir = tiny.tmp.path();
    tiny.run = tiny.dir / "run";
    vit::ViTConfig c;
    c.image_size = 8;
    c.patch_size = 2;
    c.in_channels = 1;
    c.num_classes = 2;
    c.dim = 16;
    c.depth = 2;
    c.heads = 2;
    c.mlp_hidden = 32;
    vit::TrainConfig t;
    t.dataset = "bars";
    t.epochs = 6;
    t.batch_size = 16;
    t.lr = 3e-3;
    t.seed = 1;
    vit::DataSplits data;
    data.train = bars(320, 1);
    data.test = bars(100, 2);
    tiny.test = *data.test;
    const auto r = vit::train(c, t, data, tiny.run.string());
    ASSERT_TRUE(r.test && r.test->accuracy > 0.9) << "the tiny model did not learn the bars";
  }
};
[[maybe_unused]] const auto* const kSuiteSetup = testing::AddGlobalTestEnvironment(new SuiteSetup);

}  // namespace

// The Qt suite's members, for every test.
class Inference : public testing::Test {
 protected:
  const fs::path& dir_ = tiny_run().dir;
  const fs::path& run_ = tiny_run().run;
  const vit::Dataset& test_ = tiny_run().test;
};

template <class R>
class InferenceRows : public Inference, public testing::WithParamInterface<R> {};

TEST_F(Inference, predictsOnATinyTrainedModel) {
  const auto p = vit::Predictor::load(run_.string());
  ASSERT_EQ(p.classes(), (std::vector<std::string>{"left", "right"}));
  ASSERT_TRUE(p.note().empty());
  ASSERT_EQ(p.normalization().mean.size(), size_t(1));
  ASSERT_TRUE(p.weights_path().find("best.safetensors") != std::string::npos);
  cv::theRNG().state = 7;
  for (int label : {0, 1}) {
    const auto r = p.predict(bar_image(label == 0 ? 1 : 6), 5);
    ASSERT_EQ(int(r.top.size()), 2);  // k clamped to the classes
    ASSERT_EQ(r.top[0].index, label);
    ASSERT_EQ(r.top[0].label, p.classes()[size_t(label)]);
    ASSERT_TRUE(r.top[0].probability > 0.5f);
    ASSERT_TRUE(r.top[0].probability >= r.top[1].probability);
    ASSERT_EQ(int(r.logits.size()), 2);
    ASSERT_TRUE(std::abs(r.probabilities[0] + r.probabilities[1] - 1.0f) < 1e-5f);
    ASSERT_FLOAT_EQ(r.probabilities[size_t(r.top[0].index)], r.top[0].probability);
  }
  const auto batch = p.predict({bar_image(1), bar_image(6), bar_image(1)}, 1);
  ASSERT_EQ(int(batch.size()), 3);
  ASSERT_EQ(batch[1].top[0].index, 1);
  ASSERT_EQ(int(batch[0].top.size()), 1);
  ASSERT_THROW(p.predict(bar_image(1), 0), std::invalid_argument);
}

TEST_F(Inference, loadsAWeightsFile) {
  const auto from_run = vit::Predictor::load(run_.string());
  // Inside the run directory: class names from its config.json.
  const auto inside = vit::Predictor::load((run_ / "checkpoints" / "best.safetensors").string());
  ASSERT_EQ(inside.classes(), from_run.classes());
  // A copy elsewhere: generic names, the same numbers.
  const fs::path copy = dir_ / "weights.safetensors";
  fs::copy_file(run_ / "checkpoints" / "best.safetensors", copy, fs::copy_options::overwrite_existing);
  const auto alone = vit::Predictor::load(copy.string());
  ASSERT_EQ(alone.classes(), (std::vector<std::string>{"class 0", "class 1"}));
  const cv::Mat img = bar_image(6);
  ASSERT_EQ(alone.predict(img).logits, from_run.predict(img).logits);
  ASSERT_EQ(alone.grid().grid, 4);
  ASSERT_EQ(alone.grid().patch_size, 2);
}

TEST_F(Inference, loadsForeignWeightsThroughImport) {
  // timm-named tensors without ViT Studio's metadata (a standard width, so the heads are known).
  vit::ViTConfig c;
  c.image_size = 8;
  c.patch_size = 2;
  c.in_channels = 3;
  c.num_classes = 3;
  c.dim = 192;  // ViT-Ti width: 3 heads
  c.depth = 1;
  c.heads = 3;
  c.mlp_hidden = 64;
  torch::manual_seed(4);
  vit::VisionTransformer model(c);
  model->eval();
  vit::NamedTensors tensors;
  for (const auto& p : model->named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
  const std::string file = (dir_ / "timm.safetensors").string();
  vit::save_safetensors(file, tensors);
  const auto p = vit::Predictor::load(file);
  ASSERT_TRUE(p.note().find("imported") != std::string::npos) << p.note();
  ASSERT_EQ(p.config().dim, 192);
  ASSERT_EQ(p.config().num_classes, 3);
  // The same logits as the model on the same normalized input.
  cv::Mat img(8, 8, CV_8UC3);
  cv::randu(img, 0, 256);
  const auto got = p.predict(img);
  const cv::Mat seen = p.model_image(img);  // BGR
  auto x = torch::empty({1, 3, 8, 8});
  for (int ch = 0; ch < 3; ++ch)
    for (int y = 0; y < 8; ++y)
      for (int xx = 0; xx < 8; ++xx)
        x[0][ch][y][xx] = (seen.at<cv::Vec3b>(y, xx)[2 - ch] / 255.0f - p.normalization().mean[size_t(ch)]) /
                          p.normalization().std[size_t(ch)];
  torch::NoGradGuard no_grad;
  const auto want = model->forward(x)[0];
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(std::abs(got.logits[size_t(k)] - want[k].item<float>()) < 1e-4f);
}

struct FileRow : vit_test::Row {
  std::string file;
  std::string mentions;
};

class LoadFailuresNameTheFile : public InferenceRows<FileRow> {};

TEST_P(LoadFailuresNameTheFile, row) {
  const std::string& name = GetParam().file;
  const std::string& mentions = GetParam().mentions;
  fs::create_directories(dir_ / "empty-dir");
  std::ofstream(dir_ / "text.safetensors") << "hello";
  const std::string path = (dir_ / name).string();
  try {
    vit::Predictor::load(path);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    ASSERT_TRUE(contains(e.what(), mentions)) << e.what();
    ASSERT_TRUE(contains(e.what(), name)) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Inference, LoadFailuresNameTheFile,
                         testing::ValuesIn(std::vector<FileRow>{
    {{"missing"}, "nothing-here", "no such file"},
    {{"folder without checkpoints"}, "empty-dir", "checkpoints"},
    {{"not safetensors"}, "text.safetensors", "text.safetensors"},
}), vit_test::RowName());

struct ImageRow : vit_test::Row {
  cv::Mat image;
};

std::vector<ImageRow> image_kind_rows() {
  cv::theRNG().state = 11;
  const cv::Mat gray = bar_image(6);
  cv::Mat bgr, bgra, gray16, gray_f, big, two;
  cv::cvtColor(gray, bgr, cv::COLOR_GRAY2BGR);
  cv::cvtColor(gray, bgra, cv::COLOR_GRAY2BGRA);
  gray.convertTo(gray16, CV_16U, 257.0);
  gray.convertTo(gray_f, CV_32F, 1.0 / 255.0);
  cv::resize(gray, big, cv::Size(64, 64), 0, 0, cv::INTER_NEAREST);
  return {{{"gray 8-bit"}, gray}, {{"BGR"}, bgr},     {{"BGRA opaque"}, bgra},
          {{"gray 16-bit"}, gray16}, {{"float"}, gray_f}, {{"64x64"}, big}};
}

class EveryImageKindGivesTheSamePrediction : public InferenceRows<ImageRow> {};

TEST_P(EveryImageKindGivesTheSamePrediction, row) {
  const cv::Mat& image = GetParam().image;
  cv::theRNG().state = 11;
  const cv::Mat reference = bar_image(6);
  const auto p = vit::Predictor::load(run_.string());
  const auto want = p.predict(reference);
  const auto got = p.predict(image);
  ASSERT_EQ(got.top[0].index, want.top[0].index);
  ASSERT_TRUE(std::abs(got.probabilities[1] - want.probabilities[1]) < 1e-3f);
  // What the model sees is the reference image itself.
  ASSERT_DOUBLE_EQ(cv::norm(p.model_image(image), reference, cv::NORM_INF), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Inference, EveryImageKindGivesTheSamePrediction,
                         testing::ValuesIn(image_kind_rows()), vit_test::RowName());

struct UnusableRow : vit_test::Row {
  cv::Mat image;
  std::string mentions;
};

class UnusableImagesAreRefused : public InferenceRows<UnusableRow> {};

TEST_P(UnusableImagesAreRefused, row) {
  const cv::Mat& image = GetParam().image;
  const std::string& mentions = GetParam().mentions;
  const std::string problem = vit::check_image(image);
  ASSERT_TRUE(contains(problem, mentions)) << problem;
  const auto p = vit::Predictor::load(run_.string());
  ASSERT_THROW(p.predict(image), std::invalid_argument);
  ASSERT_THROW(vit::display_image(image), std::invalid_argument);
}

std::vector<UnusableRow> unusable_rows() {
  return {{{"empty"}, cv::Mat(), "empty"},
          {{"signed 8-bit"}, cv::Mat(8, 8, CV_8SC1, cv::Scalar(3)), "pixel type"},
          {{"5 channels"}, cv::Mat(cv::Mat::zeros(8, 8, CV_8UC(5))), "channels"}};
}

INSTANTIATE_TEST_SUITE_P(Inference, UnusableImagesAreRefused, testing::ValuesIn(unusable_rows()),
                         vit_test::RowName());

struct FormatRow : vit_test::Row {
  std::string ext;
  int type;
};

class ReadsImageFiles : public InferenceRows<FormatRow> {};

TEST_P(ReadsImageFiles, row) {
  const std::string& ext = GetParam().ext;
  const int type = GetParam().type;
  cv::Mat m(40, 30, type, cv::Scalar::all(CV_MAT_DEPTH(type) == CV_16U ? 40000 : 200));
  const auto path =
      write_bytes(dir_, "ok" + GetParam().name.substr(0, 3) + ext, encode(ext, m));
  const cv::Mat read = vit::read_image(path);
  ASSERT_EQ(read.cols, 30);
  ASSERT_EQ(read.rows, 40);
  if (ext != ".jpg" && ext != ".webp") {
    ASSERT_EQ(read.type(), type);
  }
  const auto p = vit::Predictor::load(run_.string());
  ASSERT_EQ(int(p.predict(read).top.size()), 2);
  ASSERT_EQ(vit::display_image(read).type(), CV_8UC3);
}

INSTANTIATE_TEST_SUITE_P(Inference, ReadsImageFiles,
                         testing::ValuesIn(std::vector<FormatRow>{
    {{"png gray"}, ".png", CV_8UC1},
    {{"png 16-bit"}, ".png", CV_16UC1},
    {{"png RGBA"}, ".png", CV_8UC4},
    {{"bmp"}, ".bmp", CV_8UC3},
    {{"jpeg"}, ".jpg", CV_8UC3},
    {{"webp"}, ".webp", CV_8UC3},
    {{"tiff 16-bit RGB"}, ".tiff", CV_16UC3},
}), vit_test::RowName());

class BadImageFilesGetAClearMessage : public InferenceRows<FileRow> {};

TEST_P(BadImageFilesGetAClearMessage, row) {
  const std::string& name = GetParam().file;
  const std::string& mentions = GetParam().mentions;
  fs::create_directories(dir_ / "a-folder.png");
  write_bytes(dir_, "empty.png", {});
  std::ofstream(dir_ / "notes.png") << "not an image at all\n";
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 256);
  auto png = encode(".png", noise);
  write_bytes(dir_, "truncated.png", std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
  put_be32(png, 16, 20000);  // IHDR width and height: 400 megapixels
  put_be32(png, 20, 20000);
  write_bytes(dir_, "huge.png", png);
  auto jpeg = encode(".jpg", noise);
  for (size_t i = 2; i + 8 < jpeg.size(); ++i)
    if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {  // SOF0: height and width after length, precision
      jpeg[i + 5] = jpeg[i + 6] = jpeg[i + 7] = jpeg[i + 8] = 0xff;
      break;
    }
  write_bytes(dir_, "huge.jpg", jpeg);
  auto bmp = encode(".bmp", noise);
  put_le32(bmp, 18, 30000);
  put_le32(bmp, 22, 30000);
  write_bytes(dir_, "huge.bmp", bmp);
  auto overflow = encode(".png", noise);
  put_be32(overflow, 16, 4143380037u);
  put_be32(overflow, 20, 4143380214u);
  write_bytes(dir_, "overflow.png", overflow);
  put_le32(bmp, 18, 64);
  put_le32(bmp, 22, 0x80000000u);  // -2^31: top-down rows, 2^31 of them
  write_bytes(dir_, "int-min.bmp", bmp);
  // A classic TIFF whose first IFD declares 20000 x 20000 (400 megapixels) and nothing else;
  // the same as BigTIFF (8-byte offsets and counts, LONG8 values); and 64 x 64 pixels in one
  // strip of 2^31 rows.
  std::vector<uint8_t> tiff = {'I', 'I', 42, 0, 8, 0, 0, 0, 2, 0};
  for (uint16_t tag : {256, 257}) {
    const uint8_t entry[12] = {uint8_t(tag), uint8_t(tag >> 8), 4, 0, 1, 0, 0, 0, 0x20, 0x4e, 0, 0};
    tiff.insert(tiff.end(), entry, entry + 12);
  }
  tiff.insert(tiff.end(), {0, 0, 0, 0});
  write_bytes(dir_, "huge.tiff", tiff);
  std::vector<uint8_t> big = {'I', 'I', 43, 0, 8, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
  for (uint16_t tag : {256, 257}) {
    const uint8_t entry[20] = {uint8_t(tag), uint8_t(tag >> 8), 16, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                               0x20, 0x4e, 0, 0, 0, 0, 0, 0};
    big.insert(big.end(), entry, entry + 20);
  }
  big.insert(big.end(), 8, 0);
  write_bytes(dir_, "huge-big.tiff", big);
  std::vector<uint8_t> strips = {'I', 'I', 42, 0, 8, 0, 0, 0, 3, 0};
  for (uint16_t tag : {256, 257, 278}) {
    const uint32_t v = tag == 278 ? 0x80000000u : 64;
    const uint8_t entry[12] = {uint8_t(tag), uint8_t(tag >> 8), 4, 0, 1, 0, 0, 0,
                               uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    strips.insert(strips.end(), entry, entry + 12);
  }
  strips.insert(strips.end(), {0, 0, 0, 0});
  write_bytes(dir_, "strips.tiff", strips);
  // A small width, then a huge one: which one the decoder would use is not ours to guess.
  std::vector<uint8_t> twice = {'I', 'I', 42, 0, 8, 0, 0, 0, 3, 0};
  for (uint32_t v : {16u, 0x7fffffffu}) {
    const uint8_t entry[12] = {0, 1, 4, 0, 1, 0, 0, 0, uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    twice.insert(twice.end(), entry, entry + 12);
  }
  const uint8_t length[12] = {1, 1, 4, 0, 1, 0, 0, 0, 16, 0, 0, 0};
  twice.insert(twice.end(), length, length + 12);
  twice.insert(twice.end(), {0, 0, 0, 0});
  write_bytes(dir_, "twice.tiff", twice);
  std::ofstream(dir_ / "huge.pgm", std::ios::binary) << "P5\n# a comment\n20000 20000\n255\n" << std::string(64, 'x');
  std::ofstream(dir_ / "huge.pam", std::ios::binary)
      << "P7\nWIDTH 20000\nHEIGHT 20000\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n"
      << std::string(64, 'x');
  write_bytes(dir_, "raster.png", encode(".ras", noise));  // a format OpenCV reads, we do not

  const std::string path = (dir_ / name).string();
  try {
    vit::read_image(path);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    ASSERT_TRUE(contains(msg, mentions)) << e.what();
    ASSERT_TRUE(contains(msg, name)) << e.what();
    ASSERT_FALSE(contains(msg, "\n")) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Inference, BadImageFilesGetAClearMessage,
                         testing::ValuesIn(std::vector<FileRow>{
    {{"missing"}, "missing.png", "no such file"},
    {{"folder"}, "a-folder.png", "folder"},
    {{"empty"}, "empty.png", "empty file"},
    {{"text"}, "notes.png", "PNG, JPEG"},
    {{"truncated png"}, "truncated.png", "PNG, JPEG"},
    {{"huge png"}, "huge.png", "megapixels"},
    {{"huge jpeg"}, "huge.jpg", "megapixels"},
    {{"huge bmp"}, "huge.bmp", "megapixels"},
    // 4143380037 x 4143380214 overflows a signed 64-bit product: the guard itself must not.
    {{"png side product overflows"}, "overflow.png", "megapixels"},
    {{"bmp INT32_MIN height"}, "int-min.bmp", "megapixels"},
    {{"huge tiff"}, "huge.tiff", "megapixels"},
    {{"huge bigtiff"}, "huge-big.tiff", "megapixels"},
    {{"huge tiff strips"}, "strips.tiff", "tiles or strips of"},
    {{"tiff width given twice"}, "twice.tiff", "PNG, JPEG"},
    {{"huge pgm"}, "huge.pgm", "megapixels"},
    {{"huge pam"}, "huge.pam", "megapixels"},
    {{"sun raster (size unchecked)"}, "raster.png", "PNG, JPEG"},
}), vit_test::RowName());

// The model runs where --device says; results come back to the host. Debian's LibTorch has no
// CUDA: asking for it is a usage error that says how to get a build that has it.
TEST_F(Inference, runsOnTheDeviceItIsGiven) {
  const auto on_cpu = vit::Predictor::load(run_.string(), "cpu");
  EXPECT_EQ(on_cpu.device(), "cpu");
  const auto automatic = vit::Predictor::load(run_.string(), "auto");
  EXPECT_EQ(automatic.device(), torch::cuda::is_available() ? "cuda:0" : "cpu");
  const cv::Mat img = bar_image(6);
  const auto a = on_cpu.predict(img), b = automatic.predict(img);
  for (size_t k = 0; k < a.logits.size(); ++k) EXPECT_NEAR(a.logits[k], b.logits[k], 1e-4);
  vit::AttentionRequest r;
  r.gradient = true;
  EXPECT_LT(cv::norm(on_cpu.attention(img, r).map, automatic.attention(img, r).map, cv::NORM_INF), 1e-4);
  EXPECT_THROW(vit::Predictor::load(run_.string(), "gpu"), std::invalid_argument);
  if (!torch::cuda::is_available()) {
    try {
      vit::Predictor::load(run_.string(), "cuda");
      FAIL() << "a CPU-only LibTorch accepted --device cuda";
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(contains(e.what(), "this LibTorch has no CUDA")) << e.what();
      EXPECT_TRUE(contains(e.what(), "cmake_prefix_path")) << e.what();
    }
  }
}

TEST_F(Inference, attentionMapsAndOverlays) {
  const auto p = vit::Predictor::load(run_.string());
  cv::theRNG().state = 3;
  const cv::Mat img = bar_image(1);
  const auto analysis = p.analyze(img);
  ASSERT_EQ(analysis.prediction().top[0].index, 0);
  vit::AttentionRequest r;
  const auto last = analysis.attention(r);
  ASSERT_EQ(last.layer, 1);
  ASSERT_EQ(last.map.type(), CV_32FC1);
  ASSERT_EQ(last.map.rows, 4);
  ASSERT_EQ(last.map.cols, 4);
  r.rollout = true;
  r.discard_ratio = 0.5;
  const auto rolled = analysis.attention(r);
  ASSERT_TRUE(cv::norm(rolled.map, last.map) > 0);
  // The one-call form gives the same map.
  ASSERT_DOUBLE_EQ(cv::norm(p.attention(img, r).map, rolled.map, cv::NORM_INF), 0.0);
  vit::AttentionRequest g;
  g.gradient = true;
  const auto explained = analysis.attention(g);
  ASSERT_EQ(explained.target_class, 0);  // the predicted class
  g.target_class = 1;
  ASSERT_EQ(analysis.attention(g).target_class, 1);
  double lo = 0;
  cv::minMaxLoc(explained.map, &lo);
  ASSERT_TRUE(lo >= 0.0);
  r.layer = 7;
  ASSERT_THROW(analysis.attention(r), std::invalid_argument);

  const cv::Mat shown = vit::display_image(img);
  ASSERT_EQ(shown.cols, 224);  // 8 px enlarged 28x with whole pixels
  ASSERT_EQ(shown.type(), CV_8UC3);
  const cv::Mat overlay = vit::overlay_heatmap(shown, rolled.map);
  ASSERT_EQ(overlay.size(), shown.size());
  ASSERT_EQ(overlay.type(), CV_8UC3);
  // alpha 0 is the image, alpha 1 the pure heatmap of the same map.
  ASSERT_DOUBLE_EQ(cv::norm(vit::overlay_heatmap(shown, rolled.map, 0.0), shown, cv::NORM_INF),
                   0.0);
  ASSERT_TRUE(cv::norm(vit::overlay_heatmap(shown, rolled.map, 1.0), shown, cv::NORM_INF) > 0.0);
  // A constant map gives one flat color.
  const cv::Mat flat = vit::overlay_heatmap(shown, cv::Mat(4, 4, CV_32F, cv::Scalar(0.3)), 1.0);
  ASSERT_DOUBLE_EQ(cv::norm(flat, cv::Mat(flat.size(), CV_8UC3, flat.at<cv::Vec3b>(0, 0)), cv::NORM_INF),
                   0.0);
  const cv::Mat wide = vit::display_image(cv::Mat(1000, 3000, CV_8UC1, cv::Scalar(9)));
  ASSERT_EQ(wide.cols, 1024);
  ASSERT_EQ(wide.rows, 341);
  // Between the bounds: a whole factor when one fits (28 -> 336), else bilinear (224 -> 336).
  ASSERT_EQ(vit::display_image(cv::Mat(28, 28, CV_8UC1, cv::Scalar(1)), 336, 336).cols, 336);
  ASSERT_EQ(vit::display_image(cv::Mat(224, 224, CV_8UC1, cv::Scalar(1)), 336, 336).cols, 336);
  ASSERT_EQ(vit::display_image(cv::Mat(100, 50, CV_8UC1, cv::Scalar(1)), 224, 0).rows, 300);
}

TEST_F(Inference, positionSimilarity) {
  const auto p = vit::Predictor::load(run_.string());
  const cv::Mat s = p.position_similarity(5);
  ASSERT_EQ(s.rows, 4);
  ASSERT_TRUE(std::abs(s.at<float>(1, 1) - 1.0f) < 1e-5f);  // patch 5 = row 1, column 1
  ASSERT_THROW(p.position_similarity(16), std::invalid_argument);
}

TEST_F(Inference, evaluatesWithAConfusionMatrix) {
  const auto p = vit::Predictor::load(run_.string());
  int64_t last_done = 0;
  vit::EvalOptions o;
  o.batch_size = 32;
  o.max_wrong = 3;
  o.progress = [&](int64_t done, int64_t total) {
    ASSERT_EQ(total, int64_t(100));
    last_done = done;
  };
  const auto ev = p.evaluate(test_, o);
  ASSERT_TRUE(ev.complete);
  ASSERT_EQ(ev.count, int64_t(100));
  ASSERT_EQ(last_done, int64_t(100));
  ASSERT_EQ(ev.classes, test_.classes);
  int64_t total = 0, diagonal = 0;
  for (int t = 0; t < 2; ++t)
    for (int q = 0; q < 2; ++q) {
      total += ev.confusion[size_t(t)][size_t(q)];
      if (t == q) diagonal += ev.confusion[size_t(t)][size_t(q)];
    }
  ASSERT_EQ(total, int64_t(100));
  ASSERT_DOUBLE_EQ(ev.accuracy, double(diagonal) / 100.0);
  ASSERT_DOUBLE_EQ(ev.top5_accuracy, 1.0);  // 2 classes
  // The trainer's own figure, in fp32 as the predictor computes (evaluate_run defaults to the
  // run's precision, bf16 where the CPU has it).
  const auto reference = vit::evaluate_run(run_.string(), test_, "auto", "fp32");
  ASSERT_TRUE(std::abs(ev.accuracy - reference.accuracy) < 1e-9);
  ASSERT_TRUE(std::abs(ev.loss - reference.loss) < 1e-4);
  for (int t = 0; t < 2; ++t) {
    ASSERT_EQ(ev.class_count[size_t(t)], test_.labels.eq(t).sum().item<int64_t>());
    ASSERT_DOUBLE_EQ(ev.class_accuracy[size_t(t)], double(ev.confusion[size_t(t)][size_t(t)]) /
                                                       double(ev.class_count[size_t(t)]));
  }
  ASSERT_TRUE(int(ev.most_confident_wrong.size()) <= 3);
  for (size_t i = 0; i < ev.most_confident_wrong.size(); ++i) {
    const auto& w = ev.most_confident_wrong[i];
    ASSERT_TRUE(w.predicted != w.true_label);
    ASSERT_EQ(int64_t(w.true_label), test_.labels[w.index].item<int64_t>());
    if (i > 0) {
      ASSERT_TRUE(w.probability <= ev.most_confident_wrong[i - 1].probability);
    }
  }
  // Per-image results agree with predict() on the same rows.
  for (int64_t row : {0, 17, 99}) {
    const auto r = p.predict(vit::dataset_image(test_, row));
    ASSERT_EQ(ev.predicted[size_t(row)], r.top[0].index);
    ASSERT_TRUE(std::abs(ev.confidence[size_t(row)] - r.top[0].probability) < 1e-5f);
  }
}

TEST_F(Inference, evaluationStopsEarly) {
  const auto p = vit::Predictor::load(run_.string());
  vit::EvalOptions o;
  o.batch_size = 16;
  int batches = 0;
  o.progress = [&](int64_t, int64_t) { ++batches; };
  o.stop = [&] { return batches >= 2; };
  const auto ev = p.evaluate(test_, o);
  ASSERT_FALSE(ev.complete);
  ASSERT_EQ(ev.count, int64_t(32));
  ASSERT_EQ(ev.predicted[50], -1);
}

TEST_F(Inference, evaluationRejectsMismatchedData) {
  const auto p = vit::Predictor::load(run_.string());
  vit::Dataset rgb = test_;
  rgb.images = test_.images.repeat({1, 3, 1, 1}).contiguous();
  ASSERT_THROW(p.evaluate(rgb), std::invalid_argument);
  vit::Dataset many = test_;
  many.classes = {"a", "b", "c"};
  ASSERT_THROW(p.evaluate(many), std::invalid_argument);
}
