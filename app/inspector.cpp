// LibTorch and OpenCV headers first: Qt's `slots` macro breaks LibTorch when it comes before.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <opencv2/imgproc.hpp>

#include "datasets.h"
#include "inference.h"
#include "run_dir.h"
#include "runtime.h"
#include "weights_import.h"

#include "inspector.h"

#include <QFileInfo>
#include <QThread>

#include <algorithm>
#include <atomic>
#include <optional>

namespace {

QImage toQImage(const cv::Mat& m) {
  if (m.type() == CV_8UC3) return QImage(m.data, m.cols, m.rows, int(m.step), QImage::Format_BGR888).copy();
  if (m.type() == CV_8UC1) return QImage(m.data, m.cols, m.rows, int(m.step), QImage::Format_Grayscale8).copy();
  cv::Mat bgr = vit::display_image(m, 1, 1 << 20);
  return QImage(bgr.data, bgr.cols, bgr.rows, int(bgr.step), QImage::Format_BGR888).copy();
}

cv::Mat toMat(const QImage& image) {
  const QImage bgr = image.convertToFormat(QImage::Format_BGR888);
  return cv::Mat(bgr.height(), bgr.width(), CV_8UC3, const_cast<uchar*>(bgr.constBits()),
                 size_t(bgr.bytesPerLine())).clone();
}

QVector<PredictionItem> items(const vit::PredictResult& r) {
  QVector<PredictionItem> out;
  for (const auto& p : r.top) out.push_back({QString::fromStdString(p.label), p.index, p.probability});
  return out;
}

vit::AttentionRequest toRequest(const AttentionParams& p) {
  vit::AttentionRequest r;
  r.layer = p.layer;
  r.head = p.head;
  r.fusion = vit::head_fusion_from_string(p.fusion.toStdString()).value_or(vit::HeadFusion::Mean);
  r.rollout = p.rollout || p.gradient;
  r.discard_ratio = p.discard;
  r.gradient = p.gradient;
  r.query_patch = p.queryPatch;
  return r;
}

// A map in [lo, hi] as a colored image (viridis), one pixel per grid cell.
QImage colorize(const cv::Mat& map, double lo, double hi) {
  cv::Mat u8;
  map.convertTo(u8, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
  cv::Mat colored;
  cv::applyColorMap(u8, colored, cv::COLORMAP_VIRIDIS);
  return toQImage(colored);
}

}  // namespace

struct Inspector::Impl {
  QThread thread;
  QObject* context = nullptr;  // lives on `thread`: requests run there in order
  std::atomic<int> nextRequest{1};
  std::atomic<int> latestInspect{0}, latestPatch{0};
  std::atomic<bool> hasModel{false};
  std::atomic<int> evaluationGeneration{0};  // evaluations started before a cancel see it change

  // Worker-thread state.
  std::optional<vit::Predictor> predictor;
  QString weights, runDir;
  std::optional<vit::DataSplits> data;  // the run's data set, loaded on first need
  bool dataIsTest = true;
  std::optional<vit::Evaluation> evaluation;
  QString analysisKey;  // source of the cached forward pass
  std::optional<vit::ImageAnalysis> analysis;

  void post(std::function<void()> f) { QMetaObject::invokeMethod(context, std::move(f), Qt::QueuedConnection); }

  const vit::Dataset& testSet() {
    if (!data) {
      if (runDir.isEmpty())
        throw std::runtime_error("these weights are not in a run directory, so there is no data set to take images from; open a run");
      const vit::RunInfo info = vit::read_run(runDir.toStdString());
      const auto& c = predictor->config();
      data = vit::load_dataset(info.train.dataset, c.image_size, c.in_channels);
    }
    dataIsTest = bool(data->test);
    return data->test ? *data->test : data->train;
  }

  cv::Mat image(const ImageSource& s) {
    if (!s.path.isEmpty()) return vit::read_image(s.path.toStdString());
    if (s.testIndex >= 0) {
      const vit::Dataset& d = testSet();
      if (s.testIndex >= d.labels.size(0))
        throw std::invalid_argument("the test set has " + std::to_string(d.labels.size(0)) + " images");
      return vit::dataset_image(d, s.testIndex);
    }
    if (s.image.isNull()) throw std::invalid_argument("no image");
    return toMat(s.image);
  }

  // A Predict card: top-5 and the attention rollout of one image (`read` may throw).
  Inspection classify(const QString& name, const std::function<cv::Mat()>& read) {
    Inspection r;
    r.source = name;
    try {
      if (!predictor) throw std::runtime_error("no model loaded: open a run or train one first");
      const cv::Mat img = read();
      const vit::ImageAnalysis a = predictor->analyze(img);
      vit::AttentionRequest rollout;
      rollout.rollout = true;
      const cv::Mat shown = vit::display_image(img, 160, 160);
      r.image = toQImage(shown);
      r.overlay = toQImage(vit::overlay_heatmap(shown, a.attention(rollout).map, 0.5));
      r.top = items(a.prediction());
    } catch (const std::exception& e) {
      r.error = QString::fromUtf8(e.what());
    }
    return r;
  }

  int trueLabel(const ImageSource& s) {
    if (s.testIndex < 0 || !data) return -1;
    const vit::Dataset& d = data->test ? *data->test : data->train;
    return int(d.labels.data_ptr<int64_t>()[s.testIndex]);
  }
};

Inspector::Inspector(QObject* parent) : QObject(parent), impl_(std::make_unique<Impl>()) {
  qRegisterMetaType<ModelInfo>();
  qRegisterMetaType<Inspection>();
  qRegisterMetaType<PatchInspection>();
  qRegisterMetaType<EvaluationReport>();
  qRegisterMetaType<CellImages>();
  qRegisterMetaType<vit::ViTConfig>();
  impl_->thread.setObjectName("inspector");
  impl_->context = new QObject;
  impl_->context->moveToThread(&impl_->thread);
  connect(&impl_->thread, &QThread::finished, impl_->context, &QObject::deleteLater);
  impl_->thread.start(QThread::LowPriority);
  // Intra-op threads are per calling thread in OpenMP builds.
  impl_->post([] { at::set_num_threads(vit::available_cores()); });
}

Inspector::~Inspector() {
  impl_->thread.quit();
  impl_->thread.wait();
}

bool Inspector::hasModel() const { return impl_->hasModel; }

QString Inspector::imageFormats() { return QString::fromUtf8(vit::kImageFormats); }

bool Inspector::looksLikeImage(const QString& path) {
  static const QStringList ext{"png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff", "pgm", "ppm", "pnm", "pbm"};
  return QFileInfo(path).isFile() && ext.contains(QFileInfo(path).suffix().toLower());
}

void Inspector::load(const QString& weights) {
  impl_->post([this, weights] {
    Impl& d = *impl_;
    try {
      vit::Predictor p = vit::Predictor::load(weights.toStdString());
      QString runDir;
      const QFileInfo fi(weights);
      if (fi.isDir()) runDir = fi.absoluteFilePath();
      else runDir = QString::fromStdString(vit::run_dir_of_weights(weights.toStdString()));
      if (runDir != d.runDir) d.data.reset();
      d.predictor = std::move(p);
      d.weights = weights;
      d.runDir = runDir;
      d.evaluation.reset();
      d.analysis.reset();
      d.analysisKey.clear();
      d.hasModel = true;
      const auto& c = d.predictor->config();
      ModelInfo info;
      info.weights = QString::fromStdString(d.predictor->weights_path());
      for (const auto& name : d.predictor->classes()) info.classes << QString::fromStdString(name);
      info.depth = c.depth;
      info.heads = c.heads;
      info.grid = c.grid();
      info.patchSize = c.patch_size;
      info.imageSize = c.image_size;
      info.classToken = c.class_token;
      info.pool = QString::fromStdString(vit::to_string(c.pool));
      info.note = QString::fromStdString(d.predictor->note());
      emit loaded(info);
    } catch (const std::exception& e) {
      emit loadFailed(QString::fromUtf8(e.what()));
    }
  });
}

int Inspector::inspect(const ImageSource& source, const AttentionParams& params) {
  const int id = impl_->nextRequest++;
  impl_->latestInspect = id;
  impl_->post([this, id, source, params] {
    Impl& d = *impl_;
    if (id != d.latestInspect) return;  // a newer request supersedes this one
    Inspection r;
    r.request = id;
    r.source = source.name();
    try {
      if (!d.predictor) throw std::runtime_error("no model loaded: open a run or train one");
      const cv::Mat img = d.image(source);
      const QString key = source.path + "|" + QString::number(source.testIndex) + "|" +
                          QString::number(source.image.cacheKey());
      if (!d.analysis || d.analysisKey != key) {
        d.analysis = d.predictor->analyze(img);
        d.analysisKey = key;
      }
      const vit::AttentionRequest request = toRequest(params);
      if (const std::string why = vit::validate(request, d.predictor->config()); !why.empty())
        throw std::invalid_argument(why);
      const vit::AttentionMap map = d.analysis->attention(request);
      const cv::Mat shown = vit::display_image(d.predictor->model_image(img), 336, 336);
      r.image = toQImage(shown);
      r.overlay = toQImage(vit::overlay_heatmap(shown, map.map, params.opacity));
      r.layer = map.layer;
      r.top = items(d.analysis->prediction());
      r.trueLabel = d.trueLabel(source);
      if (params.allHeads) {
        const cv::Mat small = vit::display_image(d.predictor->model_image(img), 112, 112);
        vit::AttentionRequest one = request;
        one.rollout = one.gradient = false;
        for (int h = 0; h < d.predictor->config().heads; ++h) {
          one.head = h;
          r.heads.push_back(toQImage(vit::overlay_heatmap(small, d.analysis->attention(one).map, params.opacity)));
        }
      }
    } catch (const std::exception& e) {
      r.error = QString::fromUtf8(e.what());
    }
    emit inspected(r);
  });
  return id;
}

int Inspector::patches(const ImageSource& source, int patch) {
  const int id = impl_->nextRequest++;
  impl_->latestPatch = id;
  impl_->post([this, id, source, patch] {
    Impl& d = *impl_;
    if (id != d.latestPatch) return;
    PatchInspection r;
    r.request = id;
    try {
      if (!d.predictor) throw std::runtime_error("no model loaded: open a run or train one");
      const auto& c = d.predictor->config();
      r.image = toQImage(d.predictor->model_image(d.image(source)));
      r.grid = c.grid();
      r.patchSize = c.patch_size;
      r.classToken = c.class_token;
      r.patch = std::clamp(patch, 0, c.num_patches() - 1);
      const cv::Mat sim = d.predictor->position_similarity(r.patch);
      r.similarity = colorize(sim, -1.0, 1.0);
      for (int y = 0; y < sim.rows; ++y)
        for (int x = 0; x < sim.cols; ++x) r.values.push_back(sim.at<float>(y, x));
    } catch (const std::exception& e) {
      r.error = QString::fromUtf8(e.what());
    }
    emit patchesReady(r);
  });
  return id;
}

void Inspector::predict(const QStringList& files) {
  for (const QString& file : files)
    impl_->post([this, file] { emit predicted(impl_->classify(file, [&] { return vit::read_image(file.toStdString()); })); });
}

void Inspector::predictImage(const QImage& image, const QString& name) {
  impl_->post([this, image, name] { emit predicted(impl_->classify(name, [&] { return toMat(image); })); });
}

void Inspector::evaluate() {
  const int generation = impl_->evaluationGeneration.load();
  impl_->post([this, generation] {
    Impl& d = *impl_;
    EvaluationReport report;
    try {
      if (!d.predictor) throw std::runtime_error("no model loaded: open a run or train one first");
      const vit::Dataset& test = d.testSet();
      report.dataset = QString::fromStdString(test.name) + (d.dataIsTest ? " (test set)" : " (training set: the data set has no test split)");
      vit::EvalOptions options;
      options.max_wrong = 40;
      options.progress = [this](int64_t done, int64_t total) { emit evaluationProgress(done, total); };
      // Polled between batches, like the trainer's stop request.
      options.stop = [this, generation] { return impl_->evaluationGeneration.load() != generation; };
      d.evaluation = d.predictor->evaluate(test, options);
      if (!d.evaluation->complete) {
        d.evaluation.reset();
        report.cancelled = true;
        report.error = tr("Evaluation cancelled.");
        emit evaluated(report);
        return;
      }
      const vit::Evaluation& e = *d.evaluation;
      for (const auto& c : e.classes) report.classes << QString::fromStdString(c);
      for (const auto& row : e.confusion) report.confusion.push_back(QVector<qint64>(row.begin(), row.end()));
      report.classAccuracy = QVector<double>(e.class_accuracy.begin(), e.class_accuracy.end());
      report.classCount = QVector<qint64>(e.class_count.begin(), e.class_count.end());
      report.accuracy = e.accuracy;
      report.top5 = e.top5_accuracy;
      report.count = e.count;
      for (const auto& w : e.most_confident_wrong) {
        WrongExample x{w.index, w.true_label, w.predicted, w.probability,
                       toQImage(vit::display_image(vit::dataset_image(test, w.index), 84, 84))};
        report.wrong.push_back(x);
      }
    } catch (const std::exception& e) {
      report.error = QString::fromUtf8(e.what());
    }
    emit evaluated(report);
  });
}

void Inspector::cancelEvaluation() { impl_->evaluationGeneration.fetch_add(1); }

void Inspector::cell(int trueLabel, int predicted) {
  impl_->post([this, trueLabel, predicted] {
    Impl& d = *impl_;
    CellImages out;
    out.trueLabel = trueLabel;
    out.predicted = predicted;
    if (d.evaluation && d.data) {
      const vit::Dataset& test = d.data->test ? *d.data->test : d.data->train;
      const int64_t* labels = test.labels.data_ptr<int64_t>();
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < int64_t(d.evaluation->predicted.size()); ++i)
        if (labels[i] == trueLabel && d.evaluation->predicted[size_t(i)] == predicted) rows.push_back(i);
      std::stable_sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) {
        return d.evaluation->confidence[size_t(a)] > d.evaluation->confidence[size_t(b)];
      });
      if (rows.size() > 60) rows.resize(60);
      for (int64_t i : rows)
        out.images.push_back({i, trueLabel, predicted, d.evaluation->confidence[size_t(i)],
                              toQImage(vit::display_image(vit::dataset_image(test, i), 84, 84))});
    }
    emit cellReady(out);
  });
}

void Inspector::describeWeights(const QString& path) {
  impl_->post([this, path] {
    try {
      const vit::ImportedWeights w = vit::import_weights(path.toStdString());
      QString summary = QString("%1 (%2 names): patch %3, dim %4, depth %5, heads %6 (%7), %8 px")
                            .arg(path, QString::fromStdString(w.naming))
                            .arg(w.config.patch_size).arg(w.config.dim).arg(w.config.depth)
                            .arg(w.config.heads).arg(QString::fromStdString(w.heads_source))
                            .arg(w.config.image_size);
      for (const auto& note : w.notes) summary += "; " + QString::fromStdString(note);
      emit weightsDescribed(path, w.config, summary, QString());
    } catch (const std::exception& e) {
      emit weightsDescribed(path, vit::ViTConfig{}, QString(), QString::fromUtf8(e.what()));
    }
  });
}
