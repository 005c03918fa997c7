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

#include <QDir>
#include <QFile>
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
  r.target_class = p.gradient ? p.targetClass : -1;
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

// "28x28 grey", "500x375 RGB": an image's size and colours, for captions.
QString describeSize(const cv::Mat& m) {
  const int c = m.channels();
  return QString("%1x%2 %3").arg(m.cols).arg(m.rows).arg(c == 1 ? "grey" : c == 4 ? "RGBA" : c == 2 ? "grey+alpha" : "RGB");
}

// Which weights a file is, for every view's caption: the run, the checkpoint and its epoch (from
// the state saved with that checkpoint).
void describeCheckpoint(ModelInfo& info, const QString& file, const QString& runDir) {
  const QFileInfo fi(file);
  const QString base = fi.completeBaseName();
  info.runDir = runDir;
  info.checkpoint = base == "best" || base == "last" ? base : fi.fileName();
  if (runDir.isEmpty()) {
    info.label = fi.fileName();
    return;
  }
  std::optional<vit::RunState> state;
  try {
    // A checkpoint unit (checkpoints/step-N/) holds its own state.json; older runs have one.
    QFile own(fi.absolutePath() + "/state.json");
    if (own.open(QIODevice::ReadOnly)) {
      const auto j = nlohmann::json::parse(own.readAll().toStdString(), nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) state = vit::RunState::from_json(j, own.fileName().toStdString());
    }
    if (!state) state = vit::RunReader(runDir.toStdString()).state();
  } catch (const std::exception&) {
  }
  if (state) {
    if (info.checkpoint == "best" && state->best_epoch >= 0) {
      info.epoch = state->best_epoch + 1;
    } else if (info.checkpoint == "last") {
      info.epoch = state->epoch;
      info.stepInEpoch = state->step_in_epoch;
    }
  }
  QString what = info.checkpoint == "best" ? QObject::tr("best weights")
                 : info.checkpoint == "last" ? QObject::tr("last weights") : info.checkpoint;
  if (info.epoch >= 0) {
    what += info.stepInEpoch > 0 ? QObject::tr(", epoch %1 + %2 steps").arg(info.epoch).arg(info.stepInEpoch)
                                 : QObject::tr(", epoch %1").arg(info.epoch);
  }
  info.label = QDir(runDir).dirName() + ": " + what;
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
  ModelInfo info;  // of the weights loaded
  int generation = 0;
  QString weights, runDir;
  vit::ViTConfig untrained;  // the patch view's geometry without weights
  QString untrainedData;     // and its data set
  std::optional<vit::DataSplits> data;  // loaded on first need
  QString dataKey;                      // what `data` was loaded from
  bool dataIsTest = true;
  std::optional<vit::Evaluation> evaluation;  // the shown matrix's; kept across reloads of its run
  QString evaluationRun;
  QString analysisKey;  // source of the cached forward pass
  std::optional<vit::ImageAnalysis> analysis;

  void post(std::function<void()> f) { QMetaObject::invokeMethod(context, std::move(f), Qt::QueuedConnection); }

  // The model the views describe: the loaded weights', else the panel's (untrained) one.
  const vit::ViTConfig& config() const { return predictor ? predictor->config() : untrained; }

  // The test split of the data set of the loaded run (or, without weights, of the panel's).
  const vit::Dataset& testSet() {
    QString spec;
    if (predictor) {
      if (runDir.isEmpty())
        throw std::runtime_error("these weights are not in a run directory, so there is no data set to take images from; open a run");
      spec = QString::fromStdString(vit::read_run(runDir.toStdString()).train.dataset);
    } else {
      spec = untrainedData;
      if (spec.isEmpty()) throw std::runtime_error("no data set chosen");
    }
    const auto& c = config();
    const QString key = spec + "|" + QString::number(c.image_size) + "|" + QString::number(c.in_channels);
    if (!data || dataKey != key) {
      data.reset();
      data = vit::load_dataset(spec.toStdString(), c.image_size, c.in_channels);
      dataKey = key;
    }
    dataIsTest = bool(data->test);
    return data->test ? *data->test : data->train;
  }

  // The model's input for an image without weights: the same conversion as training's.
  cv::Mat untrainedInput(const cv::Mat& img) const {
    const int S = untrained.image_size, C = untrained.in_channels;
    std::vector<uint8_t> planes(size_t(C) * S * S);
    if (const std::string why = vit::convert_decoded_image(img, S, C, planes.data()); !why.empty())
      throw std::invalid_argument(why);
    cv::Mat out(S, S, CV_8UC(C));
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x)
        for (int c = 0; c < C; ++c)
          out.ptr<uint8_t>(y)[x * C + c] = planes[size_t(C == 3 ? 2 - c : c) * S * S + size_t(y) * S + x];
    return out;
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
    r.generation = generation;
    r.weights = info.label;
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
      r.originalSize = describeSize(img);
      r.inputSize = describeSize(predictor->model_image(img));
    } catch (const std::exception& e) {
      r.error = QString::fromUtf8(e.what());
    }
    return r;
  }

  int trueLabel(const ImageSource& s) {
    if (s.testIndex < 0 || !data || !s.path.isEmpty()) return -1;
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
      d.predictor = std::move(p);
      d.weights = weights;
      d.runDir = runDir;
      // The evaluation of this run stays readable (its cells open) until the next one; another
      // run's is dropped.
      if (d.evaluationRun != runDir) d.evaluation.reset();
      d.analysis.reset();
      d.analysisKey.clear();
      d.hasModel = true;
      const auto& c = d.predictor->config();
      ModelInfo info;
      info.weights = QString::fromStdString(d.predictor->weights_path());
      info.generation = ++d.generation;
      describeCheckpoint(info, info.weights, runDir);
      for (const auto& name : d.predictor->classes()) info.classes << QString::fromStdString(name);
      info.depth = c.depth;
      info.heads = c.heads;
      info.grid = c.grid();
      info.patchSize = c.patch_size;
      info.imageSize = c.image_size;
      info.classToken = c.class_token;
      info.pool = QString::fromStdString(vit::to_string(c.pool));
      info.note = QString::fromStdString(d.predictor->note());
      d.info = info;
      emit loaded(info);
    } catch (const std::exception& e) {
      emit loadFailed(QString::fromUtf8(e.what()));
    }
  });
}

void Inspector::unload() {
  impl_->post([this] {
    Impl& d = *impl_;
    d.predictor.reset();
    d.analysis.reset();
    d.analysisKey.clear();
    d.evaluation.reset();
    d.evaluationRun.clear();
    d.runDir.clear();
    d.weights.clear();
    d.info = ModelInfo{};
    ++d.generation;
    d.hasModel = false;
    emit unloaded();
  });
}

void Inspector::setUntrainedModel(const vit::ViTConfig& config, const QString& datasetSpec) {
  impl_->post([this, config, datasetSpec] {
    impl_->untrained = config;
    impl_->untrainedData = datasetSpec;
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
    r.generation = d.generation;
    r.weights = d.info.label;
    try {
      if (!d.predictor) throw std::runtime_error("no weights loaded: train a model (Start) or open a run (File > Open run)");
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
      const cv::Mat input = d.predictor->model_image(img);
      const cv::Mat shown = vit::display_image(input, 336, 336);
      r.image = toQImage(shown);
      r.overlay = toQImage(vit::overlay_heatmap(shown, map.map, params.opacity));
      r.original = toQImage(vit::display_image(img, 112, 160));
      r.originalSize = describeSize(img);
      r.inputSize = describeSize(input);
      cv::minMaxLoc(map.map, &r.mapMin, &r.mapMax);
      r.targetClass = map.target_class;
      r.layer = map.layer;
      r.top = items(d.analysis->prediction());
      r.trueLabel = d.trueLabel(source);
      if (params.allHeads) {
        const cv::Mat small = vit::display_image(input, 112, 112);
        // One head of one block: rollout, its gradient weighting and its discard ratio do not
        // apply (and validate() refuses a discard ratio without rollout).
        vit::AttentionRequest one = request;
        one.rollout = one.gradient = false;
        one.discard_ratio = 0.0;
        one.target_class = -1;
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
    r.generation = d.generation;
    try {
      // Cutting into patches needs no weights: without them the panel's model cuts the image,
      // and only the learned position embeddings are missing.
      const auto& c = d.config();
      if (c.image_size <= 0 || c.patch_size <= 0 || c.image_size % c.patch_size != 0)
        throw std::invalid_argument("the settings do not cut the image into whole patches: fix image size and patch size");
      const cv::Mat img = d.image(source);
      r.image = toQImage(d.predictor ? d.predictor->model_image(img) : d.untrainedInput(img));
      r.weights = d.predictor ? d.info.label : QString();
      r.grid = c.grid();
      r.patchSize = c.patch_size;
      r.classToken = c.class_token;
      r.patch = std::clamp(patch, 0, c.num_patches() - 1);
      if (d.predictor) {
        const cv::Mat sim = d.predictor->position_similarity(r.patch);
        r.similarity = colorize(sim, -1.0, 1.0);
        for (int y = 0; y < sim.rows; ++y)
          for (int x = 0; x < sim.cols; ++x) r.values.push_back(sim.at<float>(y, x));
        r.hasEmbedding = true;
      }
    } catch (const std::exception& e) {
      r.error = QString::fromUtf8(e.what());
    }
    emit patchesReady(r);
  });
  return id;
}

void Inspector::predict(const QStringList& files) {
  for (const QString& file : files)
    impl_->post([this, file] {
      Inspection r = impl_->classify(file, [&] { return vit::read_image(file.toStdString()); });
      r.path = file;
      emit predicted(r);
    });
}

void Inspector::predictImage(const QImage& image, const QString& name) {
  impl_->post([this, image, name] { emit predicted(impl_->classify(name, [&] { return toMat(image); })); });
}

void Inspector::evaluate() {
  const int generation = impl_->evaluationGeneration.load();
  impl_->post([this, generation] {
    Impl& d = *impl_;
    EvaluationReport report;
    report.generation = d.generation;
    report.weights = d.info.label;
    try {
      if (!d.predictor) throw std::runtime_error("no weights loaded: train a model (Start) or open a run (File > Open run)");
      const vit::Dataset& test = d.testSet();
      report.dataset = QString::fromStdString(test.name) + (d.dataIsTest ? " (test set)" : " (training set: the data set has no test split)");
      vit::EvalOptions options;
      options.max_wrong = 40;
      options.progress = [this](int64_t done, int64_t total) { emit evaluationProgress(done, total); };
      // Polled between batches, like the trainer's stop request.
      options.stop = [this, generation] { return impl_->evaluationGeneration.load() != generation; };
      d.evaluation = d.predictor->evaluate(test, options);
      d.evaluationRun = d.runDir;
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
      out.total = qint64(rows.size());
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
      emit weightsDescribed(path, vit::ViTConfig{}, QString(), readableWeightsError(path, QString::fromUtf8(e.what())));
    }
  });
}

QString Inspector::readableWeightsError(const QString& path, const QString& error) {
  // Files that are no weights at all reach the safetensors reader last, which reads their first
  // bytes as a header length; say what the file is instead.
  if (!error.contains("header length")) return error;
  QFile f(path);
  QByteArray head;
  if (f.open(QIODevice::ReadOnly)) head = f.read(16);
  QString kind;
  if (head.startsWith("\x89PNG")) kind = tr("a PNG image");
  else if (head.startsWith("\xFF\xD8\xFF")) kind = tr("a JPEG image");
  else if (head.startsWith("%PDF")) kind = tr("a PDF document");
  else if (head.startsWith("\x1F\x8B")) kind = tr("a gzip archive");
  else if (!head.isEmpty() && std::all_of(head.cbegin(), head.cend(), [](char c) {
             return c == '\n' || c == '\r' || c == '\t' || (c >= 32 && c < 127);
           }))
    kind = tr("a text file");
  const QString name = QFileInfo(path).fileName();
  return (kind.isEmpty() ? tr("%1 is not a weights file ViT Studio reads").arg(name)
                         : tr("%1 is %2, not a weights file").arg(name, kind)) +
         tr(": choose a .safetensors, .pth, .bin or .npz file, or a run directory");
}
