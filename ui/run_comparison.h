// Comparing runs, as TensorBoard's scalars and hparams views do: several runs' curves overlaid in
// one plot (one colour per run, a legend, a check box to hide a run), against epoch, step or
// training time, with a read-out of every run's value under the mouse; and a sortable table of
// each run's key hyperparameters, best validation and test top-1 and training time. Runs come
// from the runs folder, Open recent or any folder; runs still being written are re-read when
// their logs grow.
//
// Torch-free: runs are read with vit::RunReader (run_dir.h).
#pragma once

#include <QHash>
#include <QStringList>
#include <QWidget>

#include <vector>

#include "run_log.h"

class QCPGraph;
class QCPItemTracer;
class QComboBox;
class QCustomPlot;
class QLabel;
class QMenu;
class QTableWidget;
class QTimer;

class RunComparison : public QWidget {
  Q_OBJECT

 public:
  enum class XAxis { Epoch, Step, Time };

  explicit RunComparison(QWidget* parent = nullptr);

  // Adds a run directory; "" on success (or when it is already shown), else why not.
  QString addRun(const QString& dir);
  void removeRun(const QString& dir);
  void clear();
  void setRunVisible(const QString& dir, bool visible);
  // Where "Add from runs folder" looks, and what "Recent" lists.
  void setRunsRoot(const QString& root) { runsRoot_ = root; }
  void setRecentRuns(const QStringList& dirs) { recent_ = dirs; }
  // Runs under `root`, newest first (the runs folder menu).
  static QStringList runsIn(const QString& root);

  // Metrics: "val_accuracy", "accuracy", "val_top5_accuracy", "val_loss", "loss" (per epoch),
  // "step_loss" (per step, smoothed), "lr".
  void setMetric(const QString& metric);
  void setXAxis(XAxis axis);
  void reload();  // re-reads runs whose logs changed

  // For tests.
  QStringList runs() const;
  QTableWidget* table() const { return table_; }
  int visibleGraphs() const;
  int legendItems() const;
  int points(const QString& dir) const;  // points drawn for a run
  double lastX(const QString& dir) const;  // its last point's x
  // The read-out for the mouse at plot x coordinate `x` (what hovering shows).
  QString hoverAt(double x);
  QString readout() const;

 signals:
  void openRunRequested(const QString& dir);  // a row double-clicked

 private:
  struct Run {
    QString dir, name;
    QColor color;
    bool visible = true;
    std::vector<vit::EpochRow> epochs;
    std::vector<vit::StepRow> steps;
    qint64 bytes = -1;  // size of its logs when read
    QCPGraph* graph = nullptr;
  };
  QString load(Run& run) const;  // reads the logs; "" or why not
  void rebuildTable();
  void redraw();
  QVector<QPointF> series(const Run& run) const;
  QString xTitle() const;
  QColor nextColor() const;

  std::vector<Run> runs_;
  QString metric_ = "val_accuracy";
  XAxis x_ = XAxis::Epoch;
  QString runsRoot_;
  QStringList recent_;
  QCustomPlot* plot_;
  QCPItemTracer* tracer_;
  QLabel* readout_;
  QTableWidget* table_;
  QComboBox *metricBox_, *xBox_;
  QLabel* empty_;
  QTimer* reloadTimer_;
  bool updatingTable_ = false;
};
