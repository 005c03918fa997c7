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
  int targetClass = -1;  // gradient rollout: the class explained; -1 = the predicted one
};

struct PredictionItem {
  QString label;
  int index = 0;
  float probability = 0;
};

// Which weights a view shows. Every load gets a new generation; each result below carries the
// generation and label of the weights it was computed with, so a view can name them and tell
// when newer ones are loaded.
struct ModelInfo {
  QString weights;     // file loaded
  int generation = 0;
  QString runDir;      // "" for a weights file outside a run directory
  QString checkpoint;  // "best", "last", or the file's name
  int epoch = -1;      // epochs trained into the weights (1-based); -1 unknown
  qint64 stepInEpoch = 0;  // "last" weights saved inside an epoch: its steps so far
  QString label;       // "fmnist-small-20261201-101500: best weights, epoch 12"
  QStringList classes;
  int depth = 0, heads = 0, grid = 0, patchSize = 0, imageSize = 0;
  bool classToken = true;
  QString pool;
  QString note;        // a caveat about the weights, or ""
};

struct Inspection {
  int request = 0;
  int generation = 0;        // of the weights used (ModelInfo::generation)
  QString weights;           // their label
  QString source;            // ImageSource::name()
  QString path;              // the file classified, when it was one
  QString error;             // non-empty: nothing else is set
  QImage image;              // the image as the model sees it, enlarged for display
  QImage overlay;            // heatmap over `image`
  QImage original;           // the image as given, for display beside the model's input
  QString originalSize;      // "500x375 RGB"
  QString inputSize;         // "28x28 grey": what the model reads
  double mapMin = 0, mapMax = 0;  // the map's values at the colour bar's ends
  int targetClass = -1;      // gradient rollout: the class explained
  QVector<QImage> heads;     // one overlay per head (AttentionParams::allHeads)
  int layer = 0;
  int trueLabel = -1;        // test-set images
  QVector<PredictionItem> top;
};

struct PatchInspection {
  int request = 0;
  int generation = 0;  // of the weights (0: none; the grid needs no weights)
  QString weights;     // their label, or what the grid was cut with
  bool hasEmbedding = false;  // `similarity` and `values` are set (learned weights only)
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
  int generation = 0;
  QString weights;
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
  qint64 total = 0;              // images in the cell
};

Q_DECLARE_METATYPE(ModelInfo)
Q_DECLARE_METATYPE(Inspection)
Q_DECLARE_METATYPE(PatchInspection)
Q_DECLARE_METATYPE(EvaluationReport)
Q_DECLARE_METATYPE(CellImages)

