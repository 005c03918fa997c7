// Value types of the inspection views (attention, patches, predictions, evaluation): what the
// app's Inspector computes on its worker thread and the widgets of ui/ show. Plain Qt types, so
// they cross threads in queued signals and no widget needs LibTorch or OpenCV.
#pragma once

#include <QImage>
#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>

// An image to inspect: a file, a row of the run's test set, or an image in memory (clipboard).
struct ImageSource {
  QString path;        // a file, or
  int testIndex = -1;  // a row of the test set of the loaded run's data set, or
  QImage image;        // pixels (pasted)
  QString name() const {
    if (!path.isEmpty()) return path.section('/', -1);
    if (testIndex >= 0) return QString("test image %1").arg(testIndex);
    return "pasted image";
  }
};

struct AttentionParams {
  int layer = -1;        // -1 = last block
  int head = -1;         // -1 = fuse heads with `fusion`
  QString fusion = "mean";
  bool rollout = false;
  double discard = 0.0;
  bool gradient = false;
  int queryPatch = -1;
  double opacity = 0.5;  // heat over image
  bool allHeads = false; // also one overlay per head of `layer`
};

struct PredictionItem {
  QString label;
  int index = 0;
  float probability = 0;
};

struct ModelInfo {
  QString weights;     // file loaded
  QStringList classes;
  int depth = 0, heads = 0, grid = 0, patchSize = 0, imageSize = 0;
  bool classToken = true;
  QString pool;
  QString note;        // a caveat about the weights, or ""
};

struct Inspection {
  int request = 0;
  QString source;            // ImageSource::name()
  QString error;             // non-empty: nothing else is set
  QImage image;              // the image as the model sees it, enlarged for display
  QImage overlay;            // heatmap over `image`
  QVector<QImage> heads;     // one overlay per head (AttentionParams::allHeads)
  int layer = 0;
  int trueLabel = -1;        // test-set images
  QVector<PredictionItem> top;
};

struct PatchInspection {
  int request = 0;
  QString error;
  QImage image;        // model input (image_size square, not enlarged)
  int grid = 0, patchSize = 0;
  bool classToken = true;
  int patch = 0;       // the patch whose position similarity is shown
  QImage similarity;   // grid x grid, colored (viridis), cosine similarity in [-1, 1]
  QVector<float> values;
};

struct WrongExample {
  qint64 index = 0;
  int trueLabel = 0, predicted = 0;
  float probability = 0;
  QImage image;
};

struct EvaluationReport {
  QString error;
  bool cancelled = false;  // stopped by Inspector::cancelEvaluation
  QString dataset;        // what was evaluated
  QStringList classes;
  QVector<QVector<qint64>> confusion;  // [true][predicted]
  QVector<double> classAccuracy;
  QVector<qint64> classCount;
  double accuracy = 0, top5 = 0;
  qint64 count = 0;
  QVector<WrongExample> wrong;
};

struct CellImages {
  int trueLabel = 0, predicted = 0;
  QVector<WrongExample> images;  // at most 60, most confident first
};

Q_DECLARE_METATYPE(ModelInfo)
Q_DECLARE_METATYPE(Inspection)
Q_DECLARE_METATYPE(PatchInspection)
Q_DECLARE_METATYPE(EvaluationReport)
Q_DECLARE_METATYPE(CellImages)

