// After evaluation on the test set: the confusion matrix (rows are true classes, columns the
// predictions, cells shaded by the row's share; click a cell to see its images), per-class
// accuracy, and a gallery of the most confidently wrong images (double-click one to look at its
// attention). It names the weights it evaluated, and says when newer ones are loaded.
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
  // The weights now loaded: a report of older ones is marked stale, with one click to redo it.
  void setCurrentWeights(int generation, const QString& label);

  QTableWidget* matrix() const { return matrix_; }
  QListWidget* gallery() const { return gallery_; }
  QPushButton* evaluateButton() const { return evaluate_; }
  QPushButton* cancelButton() const { return cancel_; }
  const EvaluationReport& report() const { return report_; }
  QString summaryText() const;
  QString galleryTitle() const;
  bool isStale() const;

 signals:
  void evaluateRequested();
  void cancelRequested();
  void cellClicked(int trueLabel, int predicted);
  void openInAttention(qint64 testIndex);  // a gallery image double-clicked

 private:
  void startEvaluation();

  QPushButton* evaluate_;
  QPushButton* cancel_;
  QProgressBar* progress_;
  QLabel* summary_;
  QLabel* stale_;
  QTableWidget* matrix_;
  QLabel* galleryTitle_;
  QListWidget* gallery_;
  EvaluationReport report_;
  int currentGeneration_ = 0;
  QString currentWeights_;
};
