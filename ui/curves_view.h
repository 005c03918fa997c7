// Live training curves (QCustomPlot): loss per step with TensorBoard-style EMA smoothing, loss
// and top-1/top-5 accuracy per epoch (train and validation), and the learning rate. Zoom and pan
// with the mouse (double-click refits), a log axis for loss, export to PNG, PDF and CSV.
//
// Points arrive from the training thread through queued signals; they are stored at once but
// drawn at most every kRedrawMs, so a fast trainer cannot flood the event loop.
#pragma once

#include <QHash>
#include <QList>
#include <QPair>
#include <QRect>
#include <QString>
#include <QWidget>

#include <vector>

#include "run_log.h"

class QCheckBox;
class QCPGraph;
class QCustomPlot;
class QLabel;
class QSlider;
class QTimer;

class CurvesView : public QWidget {
  Q_OBJECT

 public:
  static constexpr int kRedrawMs = 150;

  explicit CurvesView(QWidget* parent = nullptr);

  void clear();
  void setHistory(const std::vector<vit::StepRow>& steps, const std::vector<vit::EpochRow>& epochs);
  void addStep(const vit::StepRow& step);
  void addEpoch(const vit::EpochRow& epoch);

  // TensorBoard's smoothing weight in [0, 1): 0 shows the raw loss.
  void setSmoothing(double weight);
  double smoothing() const { return smoothing_; }
  void setLogLoss(bool log);
  // The run's planned epochs: the epoch axes span them from the start (0 = fit the data).
  void setPlannedEpochs(int epochs);

  const std::vector<vit::StepRow>& steps() const { return steps_; }
  const std::vector<vit::EpochRow>& epochs() const { return epochs_; }
  // Points currently drawn by the graph named `name` ("loss", "loss_ema", "lr", "epoch_loss",
  // "val_loss", "accuracy", "val_accuracy", "top5_accuracy", "val_top5_accuracy"), for tests.
  int drawnPoints(const QString& name) const;
  int redraws() const { return redraws_; }  // replots done so far (batching is testable)

  // Whether every point of graph `name` lies inside its plot's visible ranges, markers included
  // (for tests: log scale and Fit must not clip data).
  bool allPointsVisible(const QString& name) const;
  bool drawsMarkers(const QString& name) const;  // a single point needs a marker to be seen

  // The run the curves belong to: its name heads the exports.
  void setRunName(const QString& name);
  QString exportTitle() const;

  // Exports; each returns an empty string or the reason it failed.
  QString saveImage(const QString& path);  // PNG of the four plots at twice the screen resolution
  QString savePdf(const QString& path);    // vector PDF of the four plots, text at its screen size
  QString saveCsv(const QString& stepsPath, const QString& epochsPath) const;
  // Where the per-epoch CSV goes next to the per-step one: NAME.csv -> NAME-epochs.csv.
  static QString epochsCsvPath(const QString& stepsPath);

  // TensorBoard's debiased exponential moving average (the same as its scalar dashboard).
  static std::vector<double> smooth(const std::vector<double>& values, double weight);

 private:
  void scheduleRedraw();
  void redraw();
  void fit();
  QCustomPlot* makePlot(const QString& title, const QString& xLabel, const QString& yLabel);
  // The four plots laid out for export (logical pixels), under a title line of `titleHeight`.
  QList<QPair<QCustomPlot*, QRect>> exportLayout(int titleHeight) const;
  QFont titleFont() const;

  std::vector<vit::StepRow> steps_;
  std::vector<vit::EpochRow> epochs_;
  double smoothing_ = 0.6;
  int plannedEpochs_ = 0;
  bool followData_ = true;  // until the user zooms or pans
  int redraws_ = 0;
  QTimer* redrawTimer_;
  QWidget* plotArea_;
  QHash<QString, QCPGraph*> graphs_;
  QCustomPlot *stepLoss_, *epochLoss_, *accuracy_, *lr_;
  QSlider* smoothingSlider_;
  QLabel* smoothingLabel_;
  QCheckBox* logLoss_;
  QString runName_;
};
