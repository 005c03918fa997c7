// After evaluation on the test set: the confusion matrix (rows are true classes, columns the
// predictions, cells shaded by the row's share; click a cell to see its images), per-class
// accuracy, and a gallery of the most confidently wrong images.
#pragma once

#include <QWidget>

#include "inspection_types.h"

class QLabel;
class QListWidget;
class QProgressBar;
class QPushButton;
class QTableWidget;

class EvaluationView : public QWidget {
  Q_OBJECT

 public:
  explicit EvaluationView(QWidget* parent = nullptr);

  void setProgress(qint64 done, qint64 total);
  void showReport(const EvaluationReport& report);
  void showCell(const CellImages& images);
  void setEnabledForModel(bool hasModel);

  QTableWidget* matrix() const { return matrix_; }
  QListWidget* gallery() const { return gallery_; }
  const EvaluationReport& report() const { return report_; }

 signals:
  void evaluateRequested();
  void cellClicked(int trueLabel, int predicted);

 private:
  QPushButton* evaluate_;
  QProgressBar* progress_;
  QLabel* summary_;
  QTableWidget* matrix_;
  QLabel* galleryTitle_;
  QListWidget* gallery_;
  EvaluationReport report_;
};
