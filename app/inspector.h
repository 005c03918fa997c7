// The window's view into a trained model: loads weights (a run directory, or a run's latest
// checkpoint while it trains), and answers the inspection views' questions on its own worker
// thread: attention maps and rollout of an image, the patch grid and position-embedding
// similarity, top-5 predictions of dropped images, and a test-set evaluation (confusion matrix,
// per-class accuracy, most confidently wrong images). Torch-free header (pimpl); results are
// QImages and small value types.
//
// Thread contract: public methods are called on the GUI thread and return at once; each request
// is answered by one signal, emitted on the worker thread (queued to GUI receivers). Requests of
// one kind that pile up (a slider dragged) are coalesced: only the newest is computed.
#pragma once

#include <QObject>
#include <QString>
#include <QStringList>

#include "inspection_types.h"
#include "vit_config.h"

#include <memory>

Q_DECLARE_METATYPE(vit::ViTConfig)

class Inspector : public QObject {
  Q_OBJECT

 public:
  explicit Inspector(QObject* parent = nullptr);
  ~Inspector() override;

  // A run directory (its best weights) or a .safetensors file; test images and evaluation use
  // the data set of the run directory the weights belong to. An evaluation of the same run is
  // kept (its cells still open) until evaluate() runs again.
  void load(const QString& weights);
  // Forgets the weights (a run without any was opened): -> unloaded.
  void unload();
  bool hasModel() const;
  // What the patch view cuts images with while no weights are loaded (cutting into patches needs
  // none): the model's geometry and the data set its test images come from.
  void setUntrainedModel(const vit::ViTConfig& config, const QString& datasetSpec);

  int inspect(const ImageSource& source, const AttentionParams& params);  // -> inspected
  int patches(const ImageSource& source, int patch);                      // -> patchesReady
  void predict(const QStringList& files);       // -> inspected, one per file (request 0)
  void predictImage(const QImage& image, const QString& name);  // pasted image
  void evaluate();                               // -> evaluated (with evaluationProgress)
  // Ends an evaluation in progress between two batches (-> evaluated with `cancelled`).
  void cancelEvaluation();
  void cell(int trueLabel, int predicted);       // -> cellReady, after evaluate()
  // Reads pretrained weights for fine-tuning (any format `vit import` takes) and reports the
  // architecture inferred from them.
  void describeWeights(const QString& path);     // -> weightsDescribed

  // Files a drop may hold that are images we can read, by extension; the rest are refused.
  static bool looksLikeImage(const QString& path);
  // The weights reader's message made readable for a file that is no weights file at all (its
  // "header length 7935391400498849128" says little): what the file is, and what to choose.
  static QString readableWeightsError(const QString& path, const QString& error);
  // The formats named in messages (the core's vit::kImageFormats).
  static QString imageFormats();

 signals:
  void loaded(const ModelInfo& info);
  void loadFailed(const QString& error);
  void unloaded();
  void inspected(const Inspection& result);
  void predicted(const Inspection& result);
  void patchesReady(const PatchInspection& result);
  void evaluationProgress(qint64 done, qint64 total);
  void evaluated(const EvaluationReport& report);
  void cellReady(const CellImages& images);
  // `error` is empty on success; `summary` says what was read and assumed.
  void weightsDescribed(const QString& path, const vit::ViTConfig& config, const QString& summary,
                        const QString& error);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
