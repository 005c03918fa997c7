// The Predictor on a tiny model trained for a few seconds: predictions, preprocessing of every kind
// of image, bad image files, attention maps and overlays, evaluation with a confusion matrix.
#include <torch/torch.h>  // torch and OpenCV before any Qt header (Qt's `slots` breaks LibTorch)
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <QtTest>

#include <filesystem>
#include <fstream>

#include "datasets.h"
#include "inference.h"
#include "safetensors.h"
#include "trainer.h"
#include "vit.h"

#include "bars_dataset.h"

namespace fs = std::filesystem;

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
  if (!cv::imencode(ext, m, out)) qFatal("cannot encode %s", ext.c_str());
  return out;
}

void put_be32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (24 - 8 * i));
}
void put_le32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (8 * i));
}

}  // namespace

Q_DECLARE_METATYPE(cv::Mat)

class TstInference : public QObject {
  Q_OBJECT
  QTemporaryDir tmp_;
  fs::path dir_, run_;
  vit::Dataset test_;

 private slots:
  void initTestCase() {
    torch::set_num_threads(1);
    QVERIFY(tmp_.isValid());
    dir_ = tmp_.path().toStdString();
    run_ = dir_ / "run";
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
    test_ = *data.test;
    const auto r = vit::train(c, t, data, run_.string());
    QVERIFY2(r.test && r.test->accuracy > 0.9, "the tiny model did not learn the bars");
  }

  void predictsOnATinyTrainedModel() {
    const auto p = vit::Predictor::load(run_.string());
    QCOMPARE(p.classes(), (std::vector<std::string>{"left", "right"}));
    QVERIFY(p.note().empty());
    QCOMPARE(p.normalization().mean.size(), size_t(1));
    QVERIFY(p.weights_path().find("best.safetensors") != std::string::npos);
    cv::theRNG().state = 7;
    for (int label : {0, 1}) {
      const auto r = p.predict(bar_image(label == 0 ? 1 : 6), 5);
      QCOMPARE(int(r.top.size()), 2);  // k clamped to the classes
      QCOMPARE(r.top[0].index, label);
      QCOMPARE(r.top[0].label, p.classes()[size_t(label)]);
      QVERIFY(r.top[0].probability > 0.5f);
      QVERIFY(r.top[0].probability >= r.top[1].probability);
      QCOMPARE(int(r.logits.size()), 2);
      QVERIFY(std::abs(r.probabilities[0] + r.probabilities[1] - 1.0f) < 1e-5f);
      QCOMPARE(r.probabilities[size_t(r.top[0].index)], r.top[0].probability);
    }
    const auto batch = p.predict({bar_image(1), bar_image(6), bar_image(1)}, 1);
    QCOMPARE(int(batch.size()), 3);
    QCOMPARE(batch[1].top[0].index, 1);
    QCOMPARE(int(batch[0].top.size()), 1);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, p.predict(bar_image(1), 0));
  }

  void loadsAWeightsFile() {
    const auto from_run = vit::Predictor::load(run_.string());
    // Inside the run directory: class names from its config.json.
    const auto inside = vit::Predictor::load((run_ / "checkpoints" / "best.safetensors").string());
    QCOMPARE(inside.classes(), from_run.classes());
    // A copy elsewhere: generic names, the same numbers.
    const fs::path copy = dir_ / "weights.safetensors";
    fs::copy_file(run_ / "checkpoints" / "best.safetensors", copy, fs::copy_options::overwrite_existing);
    const auto alone = vit::Predictor::load(copy.string());
    QCOMPARE(alone.classes(), (std::vector<std::string>{"class 0", "class 1"}));
    const cv::Mat img = bar_image(6);
    QCOMPARE(alone.predict(img).logits, from_run.predict(img).logits);
    QCOMPARE(alone.grid().grid, 4);
    QCOMPARE(alone.grid().patch_size, 2);
  }

  void loadsForeignWeightsThroughImport() {
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
    QVERIFY2(p.note().find("imported") != std::string::npos, p.note().c_str());
    QCOMPARE(p.config().dim, 192);
    QCOMPARE(p.config().num_classes, 3);
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
    for (int k = 0; k < 3; ++k) QVERIFY(std::abs(got.logits[size_t(k)] - want[k].item<float>()) < 1e-4f);
  }

  void loadFailuresNameTheFile_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("missing") << "nothing-here" << "no such file";
    QTest::newRow("folder without checkpoints") << "empty-dir" << "checkpoints";
    QTest::newRow("not safetensors") << "text.safetensors" << "text.safetensors";
  }
  void loadFailuresNameTheFile() {
    QFETCH(QString, name);
    QFETCH(QString, mentions);
    fs::create_directories(dir_ / "empty-dir");
    std::ofstream(dir_ / "text.safetensors") << "hello";
    const std::string path = (dir_ / name.toStdString()).string();
    try {
      vit::Predictor::load(path);
      QFAIL("no exception");
    } catch (const std::runtime_error& e) {
      QVERIFY2(QString(e.what()).contains(mentions), e.what());
      QVERIFY2(QString(e.what()).contains(name), e.what());
    }
  }

  void everyImageKindGivesTheSamePrediction_data() {
    QTest::addColumn<cv::Mat>("image");
    cv::theRNG().state = 11;
    const cv::Mat gray = bar_image(6);
    cv::Mat bgr, bgra, gray16, gray_f, big, two;
    cv::cvtColor(gray, bgr, cv::COLOR_GRAY2BGR);
    cv::cvtColor(gray, bgra, cv::COLOR_GRAY2BGRA);
    gray.convertTo(gray16, CV_16U, 257.0);
    gray.convertTo(gray_f, CV_32F, 1.0 / 255.0);
    cv::resize(gray, big, cv::Size(64, 64), 0, 0, cv::INTER_NEAREST);
    QTest::newRow("gray 8-bit") << gray;
    QTest::newRow("BGR") << bgr;
    QTest::newRow("BGRA opaque") << bgra;
    QTest::newRow("gray 16-bit") << gray16;
    QTest::newRow("float") << gray_f;
    QTest::newRow("64x64") << big;
  }
  void everyImageKindGivesTheSamePrediction() {
    QFETCH(cv::Mat, image);
    cv::theRNG().state = 11;
    const cv::Mat reference = bar_image(6);
    const auto p = vit::Predictor::load(run_.string());
    const auto want = p.predict(reference);
    const auto got = p.predict(image);
    QCOMPARE(got.top[0].index, want.top[0].index);
    QVERIFY(std::abs(got.probabilities[1] - want.probabilities[1]) < 1e-3f);
    // What the model sees is the reference image itself.
    QCOMPARE(cv::norm(p.model_image(image), reference, cv::NORM_INF), 0.0);
  }

  void unusableImagesAreRefused_data() {
    QTest::addColumn<cv::Mat>("image");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("empty") << cv::Mat() << "empty";
    QTest::newRow("signed 8-bit") << cv::Mat(8, 8, CV_8SC1, cv::Scalar(3)) << "pixel type";
    QTest::newRow("5 channels") << cv::Mat(cv::Mat::zeros(8, 8, CV_8UC(5))) << "channels";
  }
  void unusableImagesAreRefused() {
    QFETCH(cv::Mat, image);
    QFETCH(QString, mentions);
    const QString problem = QString::fromStdString(vit::check_image(image));
    QVERIFY2(problem.contains(mentions), qPrintable(problem));
    const auto p = vit::Predictor::load(run_.string());
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, p.predict(image));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, vit::display_image(image));
  }

  void readsImageFiles_data() {
    QTest::addColumn<QString>("ext");
    QTest::addColumn<int>("type");
    QTest::newRow("png gray") << ".png" << CV_8UC1;
    QTest::newRow("png 16-bit") << ".png" << CV_16UC1;
    QTest::newRow("png RGBA") << ".png" << CV_8UC4;
    QTest::newRow("bmp") << ".bmp" << CV_8UC3;
    QTest::newRow("jpeg") << ".jpg" << CV_8UC3;
    QTest::newRow("webp") << ".webp" << CV_8UC3;
    QTest::newRow("tiff 16-bit RGB") << ".tiff" << CV_16UC3;
  }
  void readsImageFiles() {
    QFETCH(QString, ext);
    QFETCH(int, type);
    cv::Mat m(40, 30, type, cv::Scalar::all(CV_MAT_DEPTH(type) == CV_16U ? 40000 : 200));
    const auto path = write_bytes(dir_, "ok" + std::string(QTest::currentDataTag()).substr(0, 3) +
                                            ext.toStdString(),
                                  encode(ext.toStdString(), m));
    const cv::Mat read = vit::read_image(path);
    QCOMPARE(read.cols, 30);
    QCOMPARE(read.rows, 40);
    if (ext != ".jpg" && ext != ".webp") QCOMPARE(read.type(), type);
    const auto p = vit::Predictor::load(run_.string());
    QCOMPARE(int(p.predict(read).top.size()), 2);
    QCOMPARE(vit::display_image(read).type(), CV_8UC3);
  }

  void badImageFilesGetAClearMessage_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("mentions");
    QTest::newRow("missing") << "missing.png" << "no such file";
    QTest::newRow("folder") << "a-folder.png" << "folder";
    QTest::newRow("empty") << "empty.png" << "empty file";
    QTest::newRow("text") << "notes.png" << "PNG, JPEG";
    QTest::newRow("truncated png") << "truncated.png" << "PNG, JPEG";
    QTest::newRow("huge png") << "huge.png" << "megapixels";
    QTest::newRow("huge jpeg") << "huge.jpg" << "megapixels";
    QTest::newRow("huge bmp") << "huge.bmp" << "megapixels";
    // 4143380037 x 4143380214 overflows a signed 64-bit product: the guard itself must not.
    QTest::newRow("png side product overflows") << "overflow.png" << "megapixels";
    QTest::newRow("bmp INT32_MIN height") << "int-min.bmp" << "megapixels";
    QTest::newRow("huge tiff") << "huge.tiff" << "megapixels";
    QTest::newRow("huge bigtiff") << "huge-big.tiff" << "megapixels";
    QTest::newRow("huge tiff strips") << "strips.tiff" << "tiles or strips of";
    QTest::newRow("tiff width given twice") << "twice.tiff" << "PNG, JPEG";
    QTest::newRow("huge pgm") << "huge.pgm" << "megapixels";
    QTest::newRow("huge pam") << "huge.pam" << "megapixels";
    QTest::newRow("sun raster (size unchecked)") << "raster.png" << "PNG, JPEG";
  }
  void badImageFilesGetAClearMessage() {
    QFETCH(QString, name);
    QFETCH(QString, mentions);
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

    const std::string path = (dir_ / name.toStdString()).string();
    try {
      vit::read_image(path);
      QFAIL("no exception");
    } catch (const std::runtime_error& e) {
      const QString msg = e.what();
      QVERIFY2(msg.contains(mentions), e.what());
      QVERIFY2(msg.contains(name), e.what());
      QVERIFY2(!msg.contains('\n'), e.what());
    }
  }

  void attentionMapsAndOverlays() {
    const auto p = vit::Predictor::load(run_.string());
    cv::theRNG().state = 3;
    const cv::Mat img = bar_image(1);
    const auto analysis = p.analyze(img);
    QCOMPARE(analysis.prediction().top[0].index, 0);
    vit::AttentionRequest r;
    const auto last = analysis.attention(r);
    QCOMPARE(last.layer, 1);
    QCOMPARE(last.map.type(), CV_32FC1);
    QCOMPARE(last.map.rows, 4);
    QCOMPARE(last.map.cols, 4);
    r.rollout = true;
    r.discard_ratio = 0.5;
    const auto rolled = analysis.attention(r);
    QVERIFY(cv::norm(rolled.map, last.map) > 0);
    // The one-call form gives the same map.
    QCOMPARE(cv::norm(p.attention(img, r).map, rolled.map, cv::NORM_INF), 0.0);
    vit::AttentionRequest g;
    g.gradient = true;
    const auto explained = analysis.attention(g);
    QCOMPARE(explained.target_class, 0);  // the predicted class
    g.target_class = 1;
    QCOMPARE(analysis.attention(g).target_class, 1);
    double lo = 0;
    cv::minMaxLoc(explained.map, &lo);
    QVERIFY(lo >= 0.0);
    r.layer = 7;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, analysis.attention(r));

    const cv::Mat shown = vit::display_image(img);
    QCOMPARE(shown.cols, 224);  // 8 px enlarged 28x with whole pixels
    QCOMPARE(shown.type(), CV_8UC3);
    const cv::Mat overlay = vit::overlay_heatmap(shown, rolled.map);
    QCOMPARE(overlay.size(), shown.size());
    QCOMPARE(overlay.type(), CV_8UC3);
    // alpha 0 is the image, alpha 1 the pure heatmap of the same map.
    QCOMPARE(cv::norm(vit::overlay_heatmap(shown, rolled.map, 0.0), shown, cv::NORM_INF), 0.0);
    QVERIFY(cv::norm(vit::overlay_heatmap(shown, rolled.map, 1.0), shown, cv::NORM_INF) > 0.0);
    // A constant map gives one flat color.
    const cv::Mat flat = vit::overlay_heatmap(shown, cv::Mat(4, 4, CV_32F, cv::Scalar(0.3)), 1.0);
    QCOMPARE(cv::norm(flat, cv::Mat(flat.size(), CV_8UC3, flat.at<cv::Vec3b>(0, 0)), cv::NORM_INF), 0.0);
    const cv::Mat wide = vit::display_image(cv::Mat(1000, 3000, CV_8UC1, cv::Scalar(9)));
    QCOMPARE(wide.cols, 1024);
    QCOMPARE(wide.rows, 341);
    // Between the bounds: a whole factor when one fits (28 -> 336), else bilinear (224 -> 336).
    QCOMPARE(vit::display_image(cv::Mat(28, 28, CV_8UC1, cv::Scalar(1)), 336, 336).cols, 336);
    QCOMPARE(vit::display_image(cv::Mat(224, 224, CV_8UC1, cv::Scalar(1)), 336, 336).cols, 336);
    QCOMPARE(vit::display_image(cv::Mat(100, 50, CV_8UC1, cv::Scalar(1)), 224, 0).rows, 300);
  }

  void positionSimilarity() {
    const auto p = vit::Predictor::load(run_.string());
    const cv::Mat s = p.position_similarity(5);
    QCOMPARE(s.rows, 4);
    QVERIFY(std::abs(s.at<float>(1, 1) - 1.0f) < 1e-5f);  // patch 5 = row 1, column 1
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, p.position_similarity(16));
  }

  void evaluatesWithAConfusionMatrix() {
    const auto p = vit::Predictor::load(run_.string());
    int64_t last_done = 0;
    vit::EvalOptions o;
    o.batch_size = 32;
    o.max_wrong = 3;
    o.progress = [&](int64_t done, int64_t total) {
      QCOMPARE(total, int64_t(100));
      last_done = done;
    };
    const auto ev = p.evaluate(test_, o);
    QVERIFY(ev.complete);
    QCOMPARE(ev.count, int64_t(100));
    QCOMPARE(last_done, int64_t(100));
    QCOMPARE(ev.classes, test_.classes);
    int64_t total = 0, diagonal = 0;
    for (int t = 0; t < 2; ++t)
      for (int q = 0; q < 2; ++q) {
        total += ev.confusion[size_t(t)][size_t(q)];
        if (t == q) diagonal += ev.confusion[size_t(t)][size_t(q)];
      }
    QCOMPARE(total, int64_t(100));
    QCOMPARE(ev.accuracy, double(diagonal) / 100.0);
    QCOMPARE(ev.top5_accuracy, 1.0);  // 2 classes
    const auto reference = vit::evaluate_run(run_.string(), test_);  // the trainer's own figure
    QVERIFY(std::abs(ev.accuracy - reference.accuracy) < 1e-9);
    QVERIFY(std::abs(ev.loss - reference.loss) < 1e-4);
    for (int t = 0; t < 2; ++t) {
      QCOMPARE(ev.class_count[size_t(t)], test_.labels.eq(t).sum().item<int64_t>());
      QCOMPARE(ev.class_accuracy[size_t(t)],
               double(ev.confusion[size_t(t)][size_t(t)]) / double(ev.class_count[size_t(t)]));
    }
    QVERIFY(int(ev.most_confident_wrong.size()) <= 3);
    for (size_t i = 0; i < ev.most_confident_wrong.size(); ++i) {
      const auto& w = ev.most_confident_wrong[i];
      QVERIFY(w.predicted != w.true_label);
      QCOMPARE(int64_t(w.true_label), test_.labels[w.index].item<int64_t>());
      if (i > 0) QVERIFY(w.probability <= ev.most_confident_wrong[i - 1].probability);
    }
    // Per-image results agree with predict() on the same rows.
    for (int64_t row : {0, 17, 99}) {
      const auto r = p.predict(vit::dataset_image(test_, row));
      QCOMPARE(ev.predicted[size_t(row)], r.top[0].index);
      QVERIFY(std::abs(ev.confidence[size_t(row)] - r.top[0].probability) < 1e-5f);
    }
  }

  void evaluationStopsEarly() {
    const auto p = vit::Predictor::load(run_.string());
    vit::EvalOptions o;
    o.batch_size = 16;
    int batches = 0;
    o.progress = [&](int64_t, int64_t) { ++batches; };
    o.stop = [&] { return batches >= 2; };
    const auto ev = p.evaluate(test_, o);
    QVERIFY(!ev.complete);
    QCOMPARE(ev.count, int64_t(32));
    QCOMPARE(ev.predicted[50], -1);
  }

  void evaluationRejectsMismatchedData() {
    const auto p = vit::Predictor::load(run_.string());
    vit::Dataset rgb = test_;
    rgb.images = test_.images.repeat({1, 3, 1, 1}).contiguous();
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, p.evaluate(rgb));
    vit::Dataset many = test_;
    many.classes = {"a", "b", "c"};
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, p.evaluate(many));
  }
};

QTEST_GUILESS_MAIN(TstInference)
#include "tst_inference.moc"
